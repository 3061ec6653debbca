/**
 * The forms of an injected secret the response scanner looks for, and the response filter that
 * decodes a compressed body before scanning it.
 */
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { gzipSync } from 'node:zlib';
import t from 'tap';
import { REDACTED, SecretScanner, scrubForms } from '../../src/proxy/credentials.js';
import { ResponseFilter } from '../../src/proxy/response-filter.js';
import { createBodyDecoder } from '../../src/budget/usage/decode.js';

const SECRET = Buffer.from('sk-ant-api03-Zx9_Qw+/Lm7-0123456789abcdef');

/** Runs `text` through a scanner in `size`-byte chunks. */
function scanInChunks(text: Buffer, size: number): string {
  const scanner = new SecretScanner(scrubForms(SECRET));
  const out: Buffer[] = [];
  for (let i = 0; i < text.length; i += size) out.push(scanner.push(text.subarray(i, i + size)));
  out.push(scanner.end());
  return Buffer.concat(out).toString('latin1');
}

t.test('every base64 alignment, URL-safe base64 and hex of the secret inside larger text is caught', async (t) => {
  for (let pad = 0; pad < 6; pad++) {
    for (let tail = 0; tail < 3; tail++) {
      const plain = Buffer.concat([randomBytes(pad), Buffer.from('Bearer '), SECRET, randomBytes(tail)]);
      for (const encoding of ['base64', 'base64url', 'hex'] as const) {
        const encoded = Buffer.from(plain.toString(encoding));
        const upper = encoding === 'hex' ? [Buffer.from(plain.toString('hex').toUpperCase())] : [];
        for (const text of [encoded, ...upper]) {
          for (const size of [1, 7, 4096]) {
            const out = scanInChunks(text, size);
            t.ok(out.includes(REDACTED), `${encoding} pad ${pad} tail ${tail} chunks of ${size}: redacted`);
            const decoded = Buffer.from(out.replaceAll(REDACTED, ''), encoding === 'hex' ? 'hex' : 'base64');
            t.notOk(decoded.includes(SECRET), 'and not recoverable by decoding');
          }
        }
      }
    }
  }
  t.ok(scanInChunks(Buffer.concat([Buffer.from('x'), SECRET, Buffer.from('y')]), 3).includes(`x${REDACTED}y`), 'the raw secret too');
  const query = `?key=${encodeURIComponent(SECRET.toString())}&x=1`;
  t.equal(scanInChunks(Buffer.from(query), 5), `?key=${REDACTED}&x=1`, 'percent-encoded (the secret has + and /)');
  const lowerEscapes = query.replace(/%[0-9A-F]{2}/g, (e) => e.toLowerCase());
  t.equal(scanInChunks(Buffer.from(lowerEscapes), 5), `?key=${REDACTED}&x=1`, 'with lower-case escapes too');
});

t.test('a very short secret has no encoded forms (they would redact ordinary text)', async (t) => {
  const forms = scrubForms(Buffer.from('abcd')).map((b) => b.toString());
  t.same(forms, ['abcd', '61626364', '61626364'.toUpperCase()].filter((v, i, a) => a.indexOf(v) === i));
});

t.test('a gzip body is decoded, scanned across chunk boundaries, and sent decoded', async (t) => {
  const line = Buffer.from(`{"echo":"Bearer ${SECRET.toString()}","pad":"${'z'.repeat(100)}"}\n`);
  const plain = Buffer.concat(Array.from({ length: 2000 }, () => line));
  const gz = gzipSync(plain);
  let ended: boolean | undefined;
  const filter = new ResponseFilter({ scanner: new SecretScanner(scrubForms(SECRET)), decoder: (b) => createBodyDecoder('gzip', b), onEnd: (c) => (ended = c) });
  const out: Buffer[] = [];
  filter.on('data', (c: Buffer) => out.push(c));
  for (let i = 0; i < gz.length; i += 13) {
    if (!filter.write(gz.subarray(i, i + 13))) await once(filter, 'drain');
  }
  filter.end();
  await once(filter, 'end');
  const text = Buffer.concat(out).toString();
  t.equal(text, plain.toString().replaceAll(SECRET.toString(), REDACTED));
  t.equal(ended, true);
});

t.test('a corrupt compressed body fails the stream (the agent sees a cut response, never raw bytes)', async (t) => {
  let ended: boolean | undefined;
  const filter = new ResponseFilter({ scanner: new SecretScanner(scrubForms(SECRET)), decoder: (b) => createBodyDecoder('gzip', b), onEnd: (c) => (ended = c) });
  const out: Buffer[] = [];
  filter.on('data', (c: Buffer) => out.push(c));
  const failed = once(filter, 'error');
  filter.end(Buffer.concat([Buffer.from([0x1f, 0x8b]), SECRET]));
  const [err] = (await failed) as [Error];
  t.match(err.message, /could not be decoded/);
  t.equal(out.length, 0);
  t.equal(ended, false);
});
