/**
 * The state the inbound gate keeps for the pure verifiers: the TPM clock memory that refuses a
 * replayed older quote, and the background KDS fetch of a VCEK that evidence arrived without.
 */
import { createHash, generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import type { IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { bindingUserData } from '../../src/attestation/binding.js';
import { encodeEvidence } from '../../src/attestation/envelope.js';
import { loadSnpAnchors } from '../../src/attestation/sev-snp/anchors.js';
import { KdsCollateral } from '../../src/attestation/sev-snp/kds.js';
import { kdsVcekPath, vcekKeyForReport } from '../../src/attestation/sev-snp/kds-key.js';
import { TpmWriter } from '../../src/attestation/tpm/bytes.js';
import { TPM_GENERATED_VALUE, TPM_ST_ATTEST_QUOTE } from '../../src/attestation/tpm/constants.js';
import { encodePcrs } from '../../src/attestation/tpm/evidence.js';
import { akTemplate, tpmName } from '../../src/attestation/tpm/public.js';
import { writePcrSelection } from '../../src/attestation/tpm/structures.js';
import { AttestationGate, type AttestationSession } from '../../src/proxy/attestation-gate.js';
import { makeEndorsement, makeHierarchy, makeReport } from '../helpers/snp-synthetic.js';

const NOW = Date.parse('2026-11-22T12:00:00Z');
const spki = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ type: 'spki', format: 'der' });
const session = (): AttestationSession => ({ spki, spkiSha256Hex: createHash('sha256').update(spki).digest('hex'), notAfterMs: NOW + 3_600_000 });
const request = (evidence: string) => ({ headers: { 'attest-evidence': evidence } }) as unknown as IncomingMessage;
/** The refusal's reason code, or undefined when the gate let the request through (whatever the result's shape). */
const reasonOf = (result: unknown): string | undefined => (result as { reason?: string } | undefined)?.reason;

/** A TPMT_PUBLIC for an RSA-2048 restricted signing key: our AK template with the key's modulus as `unique`. */
function rsaAkPublic(key: KeyObject): Buffer {
  const template = akTemplate('rsa-2048');
  const modulus = Buffer.from(key.export({ format: 'jwk' }).n!, 'base64url');
  const size = Buffer.alloc(2);
  size.writeUInt16BE(modulus.length);
  return Buffer.concat([template.subarray(0, template.length - 2), size, modulus]);
}

const PCR = '00'.repeat(32);
function quote(ak: { privateKey: KeyObject; publicKey: KeyObject }, clock: bigint): Buffer[] {
  const w = new TpmWriter();
  w.u32(TPM_GENERATED_VALUE).u16(TPM_ST_ATTEST_QUOTE).tpm2b(Buffer.alloc(34, 1)).tpm2b(bindingUserData(spki, undefined, 32));
  w.u64(clock).u32(3).u32(0).u8(1).u64(0x20200312n);
  writePcrSelection(w, [{ alg: 'sha256', indices: [0] }]);
  w.tpm2b(createHash('sha256').update(Buffer.from(PCR, 'hex')).digest());
  const attest = w.finish();
  const signature = Buffer.concat([Buffer.from([0x00, 0x14, 0x00, 0x0b, 0x01, 0x00]), sign('sha256', attest, ak.privateKey)]);
  return [attest, signature];
}

t.test('a replayed older TPM quote is refused: the gate remembers the last clock per attestation key', async (t) => {
  const ak = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const akPublic = rsaAkPublic(ak.publicKey);
  const envelope = (clock: bigint) => {
    const [attest, signature] = quote(ak, clock);
    return encodeEvidence({ type: 'tpm', parts: { attest: attest!, signature: signature!, pcrs: encodePcrs({ alg: 'sha256', values: { 0: PCR } }), ak: akPublic } });
  };
  const gate = new AttestationGate({ tpm: { names: [tpmName('sha256', akPublic)] } }, () => NOW);
  const reqs = { teeType: 'tpm' as const };
  t.equal(reasonOf(gate.check(request(envelope(2000n)), session(), reqs, 'v1', 'read')), undefined, 'the newer quote verifies');
  t.equal(reasonOf(gate.check(request(envelope(1000n)), session(), reqs, 'v1', 'read')), 'counter_regression', 'an older one after it is a replay');
  t.equal(reasonOf(gate.check(request(envelope(3000n)), session(), reqs, 'v1', 'read')), undefined, 'a later one verifies');

  const other = new AttestationGate({ tpm: { names: [tpmName('sha256', akPublic)] } }, () => NOW);
  t.equal(reasonOf(other.check(request(envelope(1000n)), session(), reqs, 'v1', 'read')), undefined, 'the memory is per gate: a fresh one has seen nothing');
});

t.test('a missing VCEK is fetched from KDS in the background; the first attempt fails closed, a later one verifies', async (t) => {
  const h = await makeHierarchy('Milan');
  const tcb = { bootloader: 3, tee: 0, snp: 8, microcode: 115 };
  const chipId = Buffer.alloc(64, 0x3c);
  const vcek = await makeEndorsement(h, { tcb, hwId: chipId });
  const anchors = loadSnpAnchors([h.ark.pem, h.ask.pem, h.asvk.pem]);
  const report = makeReport({ product: 'Milan', tcb, chipId, reportData: bindingUserData(spki) }, vcek.privateKey);
  const vcekPath = kdsVcekPath(vcekKeyForReport(report, 'Milan'));
  const requests: string[] = [];
  const server = createServer((req, res) => {
    requests.push(req.url!);
    if (req.url === vcekPath) res.writeHead(200, { 'content-type': 'application/pkix-cert' }).end(vcek.der);
    else res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const cacheDir = mkdtempSync(path.join(tmpdir(), 'gate-kds-'));
  t.teardown(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
    rmSync(cacheDir, { recursive: true, force: true });
  });
  const kds = new KdsCollateral({ cacheDir, baseUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, product: 'Milan', anchors, timeoutMs: 30_000, now: () => NOW });
  await kds.init();
  const gate = new AttestationGate({ snpAnchors: anchors, kds }, () => NOW);
  const reqs = { teeType: 'sev-snp' as const };
  const evidence = encodeEvidence({ type: 'sev-snp', parts: { report } });

  t.equal(reasonOf(gate.check(request(evidence), session(), reqs, 'v1', 'read')), 'collateral_missing', 'no VCEK yet: refused, not waited for');
  // Condition-based wait with a generous bound: the fetch runs in the background.
  const deadline = Date.now() + 60_000;
  while (!kds.vcekFor(report) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
  t.ok(kds.vcekFor(report), 'the gate asked KDS for the VCEK');
  t.same(requests, [vcekPath], 'one request, to the report’s VCEK URL');
  t.equal(reasonOf(gate.check(request(evidence), session(), reqs, 'v1', 'read')), undefined, 'the next attempt verifies from memory');

  const noKds = new AttestationGate({ snpAnchors: anchors }, () => NOW);
  t.equal(reasonOf(noKds.check(request(evidence), session(), reqs, 'v1', 'read')), 'collateral_missing', 'without a KDS cache nothing is fetched');
  t.equal(requests.length, 1);
});
