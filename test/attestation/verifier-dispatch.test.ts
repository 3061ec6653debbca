/**
 * The evidence dispatcher with SEV-SNP: a synthetic AMD hierarchy signs reports whose
 * REPORT_DATA carries (or does not carry) the binding to the connection's SVID key.
 */
import 'reflect-metadata';
import { generateKeyPairSync } from 'node:crypto';
import t from 'tap';
import { bindingUserData } from '../../src/attestation/binding.js';
import { loadSnpAnchors } from '../../src/attestation/sev-snp/anchors.js';
import { buildSnpCertTable, SNP_CERT_GUIDS } from '../../src/attestation/sev-snp/cert-table.js';
import { verifyEvidence } from '../../src/attestation/verifier.js';
import { makeEndorsement, makeHierarchy, makeReport } from '../helpers/snp-synthetic.js';
import { reasonOf } from '../helpers/attestation.js';

const h = await makeHierarchy('Milan');
const tcb = { bootloader: 3, tee: 0, snp: 8, microcode: 115 };
const chipId = Buffer.alloc(64, 0x3c);
const vcek = await makeEndorsement(h, { tcb, hwId: chipId });
const anchors = loadSnpAnchors([h.ark.pem, h.ask.pem, h.asvk.pem]);
const spki = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ type: 'spki', format: 'der' });
const now = new Date('2026-11-22T12:00:00Z');

t.test('a report bound to the SVID key verifies; claims are normalized for appraisal', async (t) => {
  const report = makeReport({ product: 'Milan', tcb, chipId, reportData: bindingUserData(spki) }, vcek.privateKey);
  const v = verifyEvidence({ type: 'sev-snp', parts: { report, vcek: vcek.der } }, { simKeys: [], snpAnchors: anchors }, { spki }, now);
  t.equal(v.type, 'sev-snp');
  t.same(v.normalized.tcb, tcb);
  t.equal(v.normalized.debug, false);
  t.equal(v.normalized.chip_id, chipId.toString('hex'));
  t.equal(v.normalized.measurement, 'a1'.repeat(48));
  t.ok(v.expiresAtMs && v.expiresAtMs <= Date.parse('2045-01-01T00:00:00Z'), 'collateral expiry carried to the cache');
});

t.test('the VCEK may come from the certificate table instead', async (t) => {
  const report = makeReport({ product: 'Milan', tcb, chipId, reportData: bindingUserData(spki) }, vcek.privateKey);
  const certTable = buildSnpCertTable([{ guid: SNP_CERT_GUIDS.vcek, data: vcek.der }]);
  t.equal(reasonOf(() => verifyEvidence({ type: 'sev-snp', parts: { report, cert_table: Buffer.from(certTable) } }, { simKeys: [], snpAnchors: anchors }, { spki }, now)), 'ok');
});

t.test('binding, anchors and nonce failures', async (t) => {
  const other = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ type: 'spki', format: 'der' });
  const bound = makeReport({ product: 'Milan', tcb, chipId, reportData: bindingUserData(spki) }, vcek.privateKey);
  const ev = { type: 'sev-snp' as const, parts: { report: bound, vcek: vcek.der } };
  t.equal(reasonOf(() => verifyEvidence(ev, { simKeys: [], snpAnchors: anchors }, { spki: other }, now)), 'binding_mismatch', 'another connection key');
  t.equal(reasonOf(() => verifyEvidence(ev, { simKeys: [], snpAnchors: anchors }, { spki, nonce: Buffer.alloc(32, 1) }, now)), 'binding_mismatch', 'a nonce was expected');
  t.equal(reasonOf(() => verifyEvidence(ev, { simKeys: [] }, { spki }, now)), 'collateral_missing', 'no anchors configured');
  const foreign = await makeHierarchy('Milan');
  t.equal(reasonOf(() => verifyEvidence(ev, { simKeys: [], snpAnchors: loadSnpAnchors([foreign.ark.pem, foreign.ask.pem]) }, { spki }, now)), 'chain_invalid', 'another ARK');
  t.equal(reasonOf(() => verifyEvidence({ type: 'tdx', parts: { quote: Buffer.alloc(10) } }, { simKeys: [] }, { spki }, now)), 'evidence_unsupported');
});
