/**
 * TPM evidence end to end: the agent's sidecar quotes with a real swtpm (our own TPM
 * commands), the service's sidecar verifies the quote against the pinned AK, the SVID-key
 * binding in extraData and the policy's PCR values.
 */
import t from 'tap';
import { TpmEvidenceAttester } from '../../src/attestation/tpm/evidence.js';
import { TestMesh, idOf, viaProxy } from '../helpers/mesh.js';
import { startSwtpm, swtpmSkipReason, tpm2 } from '../attestation/tpm-swtpm-helper.js';

const skip = swtpmSkipReason();
if (skip) {
  t.skip(skip, async () => {});
} else {
  const tpm = await startSwtpm();
  t.teardown(() => tpm.stop());
  const attester = new TpmEvidenceAttester({ endpoint: { host: '127.0.0.1', port: tpm.port }, pcrs: { alg: 'sha256', indices: [0, 1, 2, 3, 7] } });
  t.teardown(() => attester.close());
  const akName = await attester.akName();
  const zero = '00'.repeat(32);
  const policy = (pcr7: string) => `agents:
  - name: orchestrator
    spiffe_id: ${idOf('orchestrator')}
    allowed_actions: [agent.list]
    attestation_requirements:
      tee_type: tpm
      pcrs: { 0: "${zero}", 7: "${pcr7}" }
`;
  const mesh = await TestMesh.start({
    policy: policy(zero),
    agents: ['orchestrator'],
    attesters: { orchestrator: attester },
    trust: { simKeys: [], tpm: { names: [akName] } },
  });
  t.teardown(() => mesh.close());

  t.test('a quote from the swtpm, bound to the SVID key, satisfies the PCR policy', async (t) => {
    for (let i = 0; i < 3; i++) {
      const r = await viaProxy(mesh.proxyOf('orchestrator'), 'GET', 'http://control-plane/agents');
      t.equal(r.status, 200, `request ${i}: ${r.status === 200 ? 'ok' : r.body}`);
    }
    const peers = (mesh.server.status().inbound as { peers: { attestation?: { type: string; claims: { pcrs: Record<string, string> } } }[] }).peers;
    const att = peers.find((p) => p.attestation)?.attestation;
    t.equal(att?.type, 'tpm');
    t.equal(att?.claims.pcrs['7'], zero);
  });

  const setPolicy = async (text: string) => {
    const { writeFileSync, renameSync } = await import('node:fs');
    const v0 = (mesh.server.status().policy as { version: string }).version;
    writeFileSync(`${mesh.policyFile}.tmp`, text);
    renameSync(`${mesh.policyFile}.tmp`, mesh.policyFile);
    for (let i = 0; i < 100 && (mesh.server.status().policy as { version: string }).version === v0; i++) await new Promise((r) => setTimeout(r, 50));
  };

  t.test('a pinned PCR changes: fresh evidence fails with pcr_mismatch until the policy expects it', async (t) => {
    // The simulator serves one client at a time: release it for tpm2-tools.
    await attester.close();
    tpm2(tpm, 'tpm2_pcrextend', [`7:sha256=${'11'.repeat(32)}`]);
    const { createHash } = await import('node:crypto');
    const extended = createHash('sha256').update(Buffer.from(zero + '11'.repeat(32), 'hex')).digest('hex');
    // Per-request freshness: every request carries a new quote over the verifier's nonce.
    await setPolicy(policy(zero).replace('pcrs:', 'freshness: per_request\n      pcrs:'));
    const r = await viaProxy(mesh.proxyOf('orchestrator'), 'GET', 'http://control-plane/agents');
    t.equal(r.status, 403);
    t.equal(JSON.parse(r.body).error, `Attestation failed: PCR 7 is ${extended}, expected ${zero}`);
    await setPolicy(policy(extended).replace('pcrs:', 'freshness: per_request\n      pcrs:'));
    const ok = await viaProxy(mesh.proxyOf('orchestrator'), 'GET', 'http://control-plane/agents');
    t.equal(ok.status, 200, 'the new PCR value is accepted once the policy expects it');
  });

  t.test('an AK the verifier does not pin is refused', async (t) => {
    const otherName = Buffer.from(akName);
    otherName[otherName.length - 1]! ^= 1;
    mesh.server.setAttestationTrust({ simKeys: [], tpm: { names: [otherName] } });
    const r = await viaProxy(mesh.proxyOf('orchestrator'), 'GET', 'http://control-plane/agents');
    t.equal(r.status, 403);
    t.match(JSON.parse(r.body).error, /^Attestation failed: /);
    t.ok(mesh.serverAudit.records.some((a) => a.reason === 'chain_invalid' || a.reason === 'collateral_missing'), 'audited with the AK trust reason');
  });
}
