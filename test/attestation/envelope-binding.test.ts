import { createHash, randomBytes } from 'node:crypto';
import t from 'tap';
import { BINDING_LABEL, bindingUserData } from '../../src/attestation/binding.js';
import { COLLECTION_TYPE, MAX_ENVELOPE_CHARS, decodeEvidence, encodeEvidence } from '../../src/attestation/envelope.js';
import { AttestationError } from '../../src/attestation/types.js';

t.test('binding: documented construction, sizes, and sensitivity to every input', async (t) => {
  const spki = randomBytes(91);
  const nonce = randomBytes(32);
  const u32 = (n: number) => {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(n);
    return b;
  };
  const expected = createHash('sha512')
    .update(Buffer.concat([Buffer.from(`${BINDING_LABEL}\0`), u32(spki.length), spki, u32(nonce.length), nonce]))
    .digest();
  t.same(bindingUserData(spki, nonce), expected, 'SHA-512 over label, length-prefixed SPKI and nonce');
  t.equal(bindingUserData(spki).length, 64);
  t.equal(bindingUserData(spki, nonce, 32).length, 32);
  t.not(bindingUserData(spki).toString('hex'), bindingUserData(spki, nonce).toString('hex'), 'nonce changes it');
  const other = Buffer.from(spki);
  other[10] ^= 1;
  t.not(bindingUserData(other).toString('hex'), bindingUserData(spki).toString('hex'), 'SPKI changes it');
  // Length prefixes: moving a byte from the key into the nonce changes the digest.
  t.not(bindingUserData(spki.subarray(0, 90), spki.subarray(90)).toString('hex'), bindingUserData(spki).toString('hex'));
});

t.test('envelope: round trip and strict decoding', async (t) => {
  const report = randomBytes(336);
  const text = encodeEvidence({ type: 'sim', parts: { report } });
  t.match(text, /^[A-Za-z0-9_-]+$/);
  const back = decodeEvidence(text);
  t.equal(back.type, 'sim');
  t.same(back.parts.report, report);
  const json = JSON.parse(Buffer.from(text, 'base64url').toString());
  t.equal(json.__cmwc_t, COLLECTION_TYPE);
  t.same(json.report[0], 'application/vnd.attest-sidecar.sim-report');

  const enc = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const typeRec = (s: string) => ['text/plain', Buffer.from(s).toString('base64url')];
  const cases: [string, string, RegExp][] = [
    ['not base64url', 'a+b/', /not base64url/],
    ['not JSON', Buffer.from('{nope').toString('base64url'), /not strict JSON/],
    ['array', enc([1, 2]), /JSON object/],
    ['wrong collection type', enc({ __cmwc_t: 'x', type: typeRec('sim') }), /is not tag:/],
    ['unknown evidence type', enc({ __cmwc_t: COLLECTION_TYPE, type: typeRec('nitro') }), /"nitro" is not supported/],
    ['unknown part', enc({ __cmwc_t: COLLECTION_TYPE, type: typeRec('sim'), report: ['application/vnd.attest-sidecar.sim-report', 'AA'], extra: ['text/plain', 'AA'] }), /has no part 'extra'/],
    ['wrong media type', enc({ __cmwc_t: COLLECTION_TYPE, type: typeRec('sim'), report: ['text/plain', 'AA'] }), /media type "text\/plain"/],
    ['missing part', enc({ __cmwc_t: COLLECTION_TYPE, type: typeRec('sev-snp') }), /missing part 'report'/],
    ['not a record', enc({ __cmwc_t: COLLECTION_TYPE, type: typeRec('sim'), report: 'AA' }), /CMW record/],
    ['oversized part', enc({ __cmwc_t: COLLECTION_TYPE, type: typeRec('sim'), report: ['application/vnd.attest-sidecar.sim-report', randomBytes(2000).toString('base64url')] }), /bytes \(1\.\.1024 allowed\)/],
    ['prototype key', enc({ __cmwc_t: COLLECTION_TYPE, type: typeRec('sim'), report: ['application/vnd.attest-sidecar.sim-report', 'AA'], toString: ['x', 'AA'] }), /has no part 'toString'/],
    ['oversized header', 'A'.repeat(MAX_ENVELOPE_CHARS + 1), /over/],
  ];
  for (const [name, header, message] of cases) {
    let caught: unknown;
    try {
      decodeEvidence(header);
    } catch (err) {
      caught = err;
    }
    t.ok(caught instanceof AttestationError, `${name}: AttestationError`);
    t.match((caught as Error).message, message, name);
  }
  t.throws(() => decodeEvidence(text.slice(0, -1) + (text.endsWith('A') ? 'B' : 'A')), 'a changed last character is refused or decodes differently');
});
