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

/**
 * The reference for percent-encoded bytes: WHATWG's fatal UTF-8 decoder (shortest form, no
 * surrogates, nothing above U+10FFFF, no truncation), plus the sidecar's refusal of C1 controls.
 */
const strictUtf8 = new TextDecoder('utf-8', { fatal: true });
function modelUtf8Ok(bytes: number[]): boolean {
  let text: string;
  try {
    text = strictUtf8.decode(Uint8Array.from(bytes));
  } catch {
    return false;
  }
  return !/[\u0080-\u009f]/.test(text);
}

t.test('percent-encoded bytes: agrees with a strict UTF-8 decoder on 50000 generated paths', async (t) => {
  // Bytes around every boundary of RFC 3629's table, plus an ASCII letter between escapes.
  const interesting = [
    0x61, 0x7e, 0x80, 0x84, 0x8f, 0x90, 0x9f, 0xa0, 0xaf, 0xbf, 0xc0, 0xc1, 0xc2, 0xc3, 0xdf, 0xe0, 0xe1, 0xec, 0xed, 0xee, 0xef,
    0xf0, 0xf1, 0xf3, 0xf4, 0xf5, 0xf7, 0xf8, 0xfe, 0xff,
  ];
  let seed = 7;
  const rand = (n: number) => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  let disagreements = 0;
  let accepted = 0;
  for (let i = 0; i < 50000; i++) {
    const bytes: number[] = [];
    let p = '/';
    const len = 1 + rand(6);
    for (let j = 0; j < len; j++) {
      const b = interesting[rand(interesting.length)]!;
      bytes.push(b);
      p += b < 0x80 ? String.fromCharCode(b) : `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
    }
    const got = canonicalRequestPath(p).ok;
    if (got) accepted++;
    if (got !== modelUtf8Ok(bytes)) {
      disagreements++;
      if (disagreements < 5) t.fail(`${p}: got ${got}`);
    }
  }
  t.equal(disagreements, 0);
  t.ok(accepted > 1000, `both outcomes are exercised (${accepted} accepted)`);
});
