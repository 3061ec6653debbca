import { randomBytes } from 'node:crypto';
import t from 'tap';
import { SIM_REPORT_SIZE, describeSimReport, generateSimKey, signSimReport, verifySimReport } from '../../src/attestation/sim/report.js';
import { AttestationError } from '../../src/attestation/types.js';
import { reasonOf } from '../helpers/attestation.js';

const key = generateSimKey();
const fields = {
  measurement: Buffer.alloc(48, 0xab),
  guestSvn: 3,
  debug: false,
  tcb: 0x7308000000000003n,
  chipId: Buffer.alloc(64, 0x11),
  reportData: randomBytes(64),
  issuedAtMs: Date.parse('2026-11-22T12:00:00Z'),
};
const now = new Date('2026-11-22T12:00:05Z');

t.test('a signed sim report verifies and yields its claims', async (t) => {
  const r = signSimReport(fields, key.privateKey);
  t.equal(r.length, SIM_REPORT_SIZE);
  const c = verifySimReport(r, { keys: [key.publicKey] }, now);
  t.equal(c.type, 'sim');
  t.equal(c.measurement, 'ab'.repeat(48));
  t.equal(c.guest_svn, 3);
  t.equal(c.debug, false);
  t.equal(c.tcb, '7308000000000003');
  t.equal(c.report_data, fields.reportData.toString('hex'));
  t.equal(c.issued_at, '2026-11-22T12:00:00.000Z');
  t.match(c.signer_spki_sha256, /^[0-9a-f]{64}$/);
  t.equal(describeSimReport(r).debug, false);
});

t.test('every signed byte is covered by the signature', async (t) => {
  const r = signSimReport(fields, key.privateKey);
  for (let i = 0; i < 272; i += 7) {
    const bad = Buffer.from(r);
    bad[i] ^= 0x01;
    t.throws(() => verifySimReport(bad, { keys: [key.publicKey] }, now), AttestationError, `byte ${i}`);
  }
});

t.test('failures carry reason codes', async (t) => {
  const r = signSimReport(fields, key.privateKey);
  t.equal(reasonOf(() => verifySimReport(r, { keys: [generateSimKey().publicKey] }, now)), 'signature_invalid');
  t.equal(reasonOf(() => verifySimReport(r, { keys: [] }, now)), 'collateral_missing');
  t.equal(reasonOf(() => verifySimReport(r.subarray(0, 300), { keys: [key.publicKey] }, now)), 'evidence_malformed');
  t.equal(reasonOf(() => verifySimReport(Buffer.concat([r, Buffer.alloc(1)]), { keys: [key.publicKey] }, now)), 'evidence_malformed');
  const future = signSimReport({ ...fields, issuedAtMs: now.getTime() + 3_600_000 }, key.privateKey);
  t.equal(reasonOf(() => verifySimReport(future, { keys: [key.publicKey] }, now)), 'evidence_malformed');
  const v2 = Buffer.from(r);
  v2.writeUInt16BE(2, 4);
  t.equal(reasonOf(() => describeSimReport(v2)), 'evidence_unsupported');
});
