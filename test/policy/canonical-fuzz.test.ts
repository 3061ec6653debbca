/** canonicalRequestPath against a plain reference model on many generated paths. */
import t from 'tap';
import { canonicalRequestPath } from '../../src/policy/actions.js';

/** The straightforward model: split into segments, refuse empty inner segments and dot segments. */
function modelSegmentsOk(path: string): boolean {
  if (path.includes('//')) return false;
  for (const seg of path.split('/')) {
    const name = seg.includes(';') ? seg.slice(0, seg.indexOf(';')) : seg;
    if (name === '.' || name === '..') return false;
  }
  return true;
}

t.test('agrees with the segment model on 20000 generated paths', async (t) => {
  const alphabet = ['a', 'b', '.', '..', '/', '/', ';', ';x', '-', '~'];
  let seed = 42;
  const rand = (n: number) => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  let disagreements = 0;
  for (let i = 0; i < 20000; i++) {
    let p = '/';
    const len = 1 + rand(8);
    for (let j = 0; j < len; j++) p += alphabet[rand(alphabet.length)];
    const got = canonicalRequestPath(p).ok;
    if (got !== modelSegmentsOk(p)) {
      disagreements++;
      if (disagreements < 5) t.fail(`${p}: got ${got}`);
    }
  }
  t.equal(disagreements, 0);
});
