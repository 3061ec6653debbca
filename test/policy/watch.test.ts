import { mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t, { type Test } from 'tap';
import { PolicyError, type Policy } from '../../src/policy/compile.js';
import { MAX_LOGGED_PROBLEMS, PolicyWatcher } from '../../src/policy/watch.js';
import { capturingLogger } from '../helpers/logger.js';

const policyText = (name: string, actions: string[]) =>
  `agent_policy:\n  name: ${name}\n  spiffe_id: spiffe://td/${name}\n  allowed_actions: [${actions.join(', ')}]\n`;

/** Waits for one event; a generous limit turns "never happened" into a failure instead of a hang. */
function next<T>(w: PolicyWatcher, event: 'reload' | 'error', limitMs = 30_000): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no '${event}' event within ${limitMs} ms`)), limitMs);
    w.once(event as 'reload', (v: unknown) => {
      clearTimeout(timer);
      resolve(v as T);
    });
  });
}

function tempDir(t: Test): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'policy-watch-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

t.test('initial load failure throws: no sidecar without a policy', async (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'policy.yaml');
  writeFileSync(file, 'agent_policy: {name: a}\n');
  t.throws(() => new PolicyWatcher(file), PolicyError);
  await t.rejects(PolicyWatcher.open(path.join(dir, 'missing.yaml')), PolicyError);
});

t.test('good change swaps; broken change keeps the old policy and emits error', async (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'policy.yaml');
  writeFileSync(file, policyText('a', ['x']));
  const logger = capturingLogger();
  const w = await PolicyWatcher.open(file, { logger, debounceMs: 20 });
  t.teardown(() => w.close());
  const first = w.current()!;
  t.ok(first.agentsBySpiffeId.get('spiffe://td/a')!.allowedActions.has('x'));

  let reloaded = next<Policy>(w, 'reload');
  writeFileSync(file, policyText('a', ['x', 'y']));
  const second = await reloaded;
  t.equal(w.current(), second);
  t.not(second.version, first.version);
  t.ok(second.agentsBySpiffeId.get('spiffe://td/a')!.allowedActions.has('y'));
  t.equal(w.reloads, 1);
  t.equal(w.reloadFailures, 0);

  const failed = next<PolicyError>(w, 'error');
  writeFileSync(file, 'agent_policy:\n  name: a\n  spiffe_id: spiffe://td/a\n  allowed_action: [z]\n');
  const err = await failed;
  t.ok(err instanceof PolicyError);
  t.match(err.problems[0], { file, line: 4, column: 3, key: 'agent_policy.allowed_action' });
  t.equal(w.current(), second, 'last good policy stays in force');
  t.equal(w.reloadFailures, 1);
  t.equal(w.reloads, 1);
  const logged = logger.lines.find((l) => l.level === 'error');
  t.match(logged?.msg, `${file}:4:3: agent_policy.allowed_action: unknown key 'allowed_action'`);
  t.match(logged?.obj, { reason: 'policy_invalid', line: 4, column: 3 });

  // Fixing the file recovers.
  reloaded = next<Policy>(w, 'reload');
  writeFileSync(file, policyText('a', ['z']));
  t.ok((await reloaded).agentsBySpiffeId.get('spiffe://td/a')!.allowedActions.has('z'));
  t.equal(w.reloads, 2);
});

t.test('atomic replace by rename is picked up', async (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'policy.yaml');
  writeFileSync(file, policyText('a', ['x']));
  const w = new PolicyWatcher(file, { debounceMs: 20 });
  t.teardown(() => w.close());
  const reloaded = next<Policy>(w, 'reload');
  const tmp = path.join(dir, '.policy.yaml.tmp');
  writeFileSync(tmp, policyText('b', ['y']));
  renameSync(tmp, file);
  const p = await reloaded;
  t.strictSame(p.agents.map((a) => a.name), ['b']);
  t.equal(w.current(), p);
});

t.test('a Kubernetes ConfigMap-style symlink swap is picked up', async (t) => {
  const dir = tempDir(t);
  mkdirSync(path.join(dir, '..v1'));
  writeFileSync(path.join(dir, '..v1', 'policy.yaml'), policyText('a', ['x']));
  symlinkSync('..v1', path.join(dir, '..data'));
  symlinkSync('..data/policy.yaml', path.join(dir, 'policy.yaml'));
  const w = new PolicyWatcher(path.join(dir, 'policy.yaml'), { debounceMs: 20 });
  t.teardown(() => w.close());
  const reloaded = next<Policy>(w, 'reload');
  mkdirSync(path.join(dir, '..v2'));
  writeFileSync(path.join(dir, '..v2', 'policy.yaml'), policyText('b', ['y']));
  symlinkSync('..v2', path.join(dir, '..data_tmp'));
  renameSync(path.join(dir, '..data_tmp'), path.join(dir, '..data'));
  t.strictSame((await reloaded).agents.map((a) => a.name), ['b']);
});

t.test('reload(): unchanged content is no reload; a bad file without error listeners does not throw', async (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'policy.yaml');
  writeFileSync(file, policyText('a', ['x']));
  const w = new PolicyWatcher(file, { debounceMs: 60_000 }); // file events never fire within this test
  t.teardown(() => w.close());
  const first = w.current();
  t.equal(w.reload(), false);
  t.equal(w.reloads, 0);
  writeFileSync(file, 'not: [valid');
  t.equal(w.reload(), false);
  t.equal(w.current(), first);
  t.equal(w.reloadFailures, 1);
  rmSync(file);
  t.equal(w.reload(), false, 'a vanished file keeps the old policy');
  t.equal(w.reloadFailures, 2);
  writeFileSync(file, policyText('c', []));
  t.equal(w.reload(), true);
  t.equal(w.current()!.agents[0]!.name, 'c');
});

t.test('a rejected reload logs at most MAX_LOGGED_PROBLEMS problems, then a count', async (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'policy.yaml');
  writeFileSync(file, policyText('a', ['x']));
  const logger = capturingLogger();
  const w = await PolicyWatcher.open(file, { logger, debounceMs: 60_000 });
  t.teardown(() => w.close());
  const junk = Array.from({ length: MAX_LOGGED_PROBLEMS + 10 }, (_, i) => `junk${i}: 1\n`).join('');
  writeFileSync(file, policyText('a', ['x']) + junk);
  t.equal(w.reload(), false);
  const errors = logger.lines.filter((l) => l.level === 'error');
  t.equal(errors.length, MAX_LOGGED_PROBLEMS + 1);
  t.match(errors[0]!.obj, { line: 5, column: 1, field: 'junk0' });
  t.match(errors[MAX_LOGGED_PROBLEMS]!.msg, /10 more problems not logged/);
  t.match(errors[MAX_LOGGED_PROBLEMS]!.obj, { problems: MAX_LOGGED_PROBLEMS + 10 });
});
