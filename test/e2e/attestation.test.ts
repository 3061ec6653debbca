/**
 * Attestation-Based Access Control end to end with the sim TEE: evidence bound to the SVID
 * key, verified once per session, step-up freshness per request, and the failure reasons.
 */
import t from 'tap';
import { prepareEvidence } from '../../src/attestation/attester.js';
import { SimAttester } from '../../src/attestation/sim/attester.js';
import { generateSimKey } from '../../src/attestation/sim/report.js';
import { TestMesh, idOf, viaProxy } from '../helpers/mesh.js';

const GOOD = 'a1'.repeat(48);
const simKey = generateSimKey();
const rogueKey = generateSimKey();
const attester = (o: Partial<ConstructorParameters<typeof SimAttester>[0]> = {}) =>
  new SimAttester({ key: simKey.privateKey, measurement: GOOD, guestSvn: 3, ...o });

const agent = (name: string, extra: string) => `  - name: ${name}
    spiffe_id: ${idOf(name)}
    allowed_actions: [agent.list, task.dispatch, upload]
    attestation_requirements:
      tee_type: sim
      expected_measurement: "${GOOD}"
      minimum_security_version: 2
      require_runtime_debug_disabled: true
${extra}`;
const POLICY = `agents:
${agent('orchestrator', '')}
${agent('payments', '      freshness: per_request\n')}
${agent('debugger', '')}
${agent('rogue', '')}
${agent('oldbuild', '')}
${agent('plain', '')}
  - name: harness-writer
    spiffe_id: ${idOf('harness-writer')}
    allowed_actions: [agent.list]
`;

const mesh = await TestMesh.start({
  policy: POLICY,
  agents: ['orchestrator', 'payments', 'debugger', 'rogue', 'oldbuild', 'plain', 'harness-writer'],
  attesters: {
    orchestrator: attester(),
    payments: attester(),
    debugger: attester({ debug: true }),
    rogue: attester({ key: rogueKey.privateKey }),
    oldbuild: attester({ measurement: 'b2'.repeat(48) }),
    'harness-writer': attester(),
  },
  trust: { simKeys: [simKey.publicKey] },
});
t.teardown(() => mesh.close());

const metric = async (name: string, labels = '') => {
  const text = await mesh.server.metrics.registry.getSingleMetricAsString(name);
  const line = text.split('\n').find((l) => l.startsWith(name) && l.includes(labels));
  return line ? Number(line.split(' ').pop()) : 0;
};

t.test('session mode: verified once, then served from the session cache', async (t) => {
  const before = await metric('attest_sidecar_attestation_verifications_total', 'result="success"');
  for (let i = 0; i < 5; i++) {
    const r = await viaProxy(mesh.proxyOf('orchestrator'), 'GET', 'http://control-plane/agents');
    t.equal(r.status, 200, `request ${i}`);
    t.equal(JSON.parse(r.body).headers['attest-evidence'], undefined, 'evidence headers never reach the app');
  }
  t.equal(await metric('attest_sidecar_attestation_verifications_total', 'result="success"'), before + 1, 'one verification for five requests');
  t.ok((await metric('attest_sidecar_attestation_cache_hits_total')) >= 4, 'later requests hit the cache');
  const status = mesh.server.status() as { inbound: { peers: { spiffe_id: string; attestation?: { type: string; claims: { measurement: string }; session_expires_at: string } }[] } };
  const peer = status.inbound.peers.find((p) => p.spiffe_id === idOf('orchestrator') && p.attestation);
  t.equal(peer?.attestation?.type, 'sim');
  t.equal(peer?.attestation?.claims.measurement, GOOD);
  t.ok(Date.parse(peer!.attestation!.session_expires_at) > Date.now(), '/status shows the session expiry');
});

t.test('failures name their reason', async (t) => {
  const cases: [string, RegExp, string][] = [
    ['debugger', /^Attestation failed: the guest runs with debug enabled$/, 'debug_enabled'],
    ['rogue', /^Attestation failed: sim report signature does not verify/, 'signature_invalid'],
    ['oldbuild', /^Attestation failed: measurement b2b2.* is not an expected value$/, 'measurement_mismatch'],
  ];
  for (const [name, message, reason] of cases) {
    const r = await viaProxy(mesh.proxyOf(name), 'GET', 'http://control-plane/agents');
    t.equal(r.status, 403, name);
    t.match(JSON.parse(r.body).error, message, name);
    t.ok(mesh.serverAudit.records.some((a) => a.peer === idOf(name) && a.reason === reason), `audited as ${reason}`);
  }
  const plain = await viaProxy(mesh.proxyOf('plain'), 'GET', 'http://control-plane/agents');
  t.equal(plain.status, 401, 'no attester: the challenge reaches the agent');
  t.same(JSON.parse(plain.body), { error: 'Attestation required' });
  const none = await viaProxy(mesh.proxyOf('harness-writer'), 'GET', 'http://control-plane/agents');
  t.equal(none.status, 200, 'an agent without requirements is not asked for evidence');
});

t.test('binding: evidence of peer A presented on B\'s connection is rejected', async (t) => {
  // A's genuine evidence, bound to A's SVID key.
  const a = await mesh.issuer.ca.issueX509Svid(idOf('orchestrator'));
  const b = await mesh.issuer.ca.issueX509Svid(idOf('orchestrator'));
  const spkiA = a.svid.certificates[0]!.publicKey.export({ type: 'spki', format: 'der' });
  const evidenceA = prepareEvidence(await attester().produce(spkiA));
  const send = (svid: typeof a) => mesh.mtlsRequest(svid.certChainPem, svid.keyPem, { headers: { 'attest-evidence': evidenceA.header } });
  t.equal((await send(a)).status, 200, 'on A\'s own connection it is accepted');
  const relayed = await send(b);
  t.equal(relayed.status, 403);
  t.match(JSON.parse(relayed.body).error, /not bound to the SVID key of this connection/);
});

t.test('per_request freshness: a nonce challenge answered transparently, every time', async (t) => {
  const before = await metric('attest_sidecar_attestation_verifications_total', 'result="success"');
  for (let i = 0; i < 3; i++) {
    const body = JSON.stringify({ amount: 10 + i });
    const r = await viaProxy(mesh.proxyOf('payments'), 'POST', 'http://control-plane/tasks', { body });
    t.equal(r.status, 200, `request ${i}`);
    t.equal(JSON.parse(r.body).bytes, body.length, 'the buffered body was replayed intact');
  }
  t.equal(await metric('attest_sidecar_attestation_verifications_total', 'result="success"'), before + 3, 'fresh evidence verified for each request');
  const big = await viaProxy(mesh.proxyOf('payments'), 'POST', 'http://control-plane/upload', { body: Buffer.alloc(200_000, 1) });
  t.equal(big.status, 413);
  t.match(JSON.parse(big.body).error, /cannot be replayed/);
});

t.test('a policy change invalidates cached verdicts', async (t) => {
  const before = await metric('attest_sidecar_attestation_verifications_total', 'result="success"');
  const { writeFileSync, renameSync } = await import('node:fs');
  writeFileSync(`${mesh.policyFile}.tmp`, `${POLICY}\n# changed\n`);
  renameSync(`${mesh.policyFile}.tmp`, mesh.policyFile);
  const v0 = (mesh.server.status().policy as { version: string }).version;
  for (let i = 0; i < 100 && (mesh.server.status().policy as { version: string }).version === v0; i++) await new Promise((r) => setTimeout(r, 50));
  const r = await viaProxy(mesh.proxyOf('orchestrator'), 'GET', 'http://control-plane/agents');
  t.equal(r.status, 200, 'allowed');
  t.equal(await metric('attest_sidecar_attestation_verifications_total', 'result="success"'), before + 1, 're-verified under the new policy version');
});
