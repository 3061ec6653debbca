/** The skip-or-fail rule every test that needs a tool or data set goes through. */
import t from 'tap';
import { skipFor, toolsMissing } from './needs.js';

t.test('toolsMissing names the absent tools and the packages to install', async (t) => {
  t.equal(toolsMissing(['node', process.execPath], 'nodejs'), undefined, 'a tool on PATH and an absolute path');
  t.equal(toolsMissing(['node', 'no-such-tool-e2b7'], 'pkg-a pkg-b'), 'not installed: no-such-tool-e2b7 (apt-get install pkg-a pkg-b)');
});

t.test('skipFor: the first reason as a skip; nothing missing is no skip', async (t) => {
  const saved = process.env.CI;
  t.teardown(() => {
    if (saved === undefined) delete process.env.CI;
    else process.env.CI = saved;
  });
  delete process.env.CI;
  t.equal(skipFor(undefined, undefined), false);
  t.equal(skipFor(undefined, 'first', 'second'), 'first');
  process.env.CI = 'true';
  t.equal(skipFor(undefined), false, 'nothing missing passes in CI too');
  t.throws(() => skipFor('not installed: swtpm'), { message: 'not installed: swtpm: required when CI=true' }, 'missing under CI=true is a failure');
});
