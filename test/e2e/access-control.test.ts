/**
 * access_control end to end: SVIDs from the dev CA with (and without) a custom extension, sent
 * by a raw mTLS client to an inbound sidecar whose action mappings name resource/permission.
 * And per-action freshness: only the listed action asks the sim-attested agent for fresh
 * evidence; the others are served from the session cache.
 */
import t from 'tap';
import { SimAttester } from '../../src/attestation/sim/attester.js';
import { generateSimKey } from '../../src/attestation/sim/report.js';
import type { CustomExtension } from '../../src/dev/ca-keys.js';
import { svidExtensionClaims } from '../../src/spiffe/extensions.js';
import { DEFAULT_ACTIONS, TestMesh, idOf, viaProxy } from '../helpers/mesh.js';

const TEAM_OID = '1.3.6.1.4.1.55555.1.1';
const LEDGER_OID = '1.3.6.1.4.1.55555.1.2';
const utf8 = (s: string) => new Uint8Array([0x0c, Buffer.byteLength(s), ...Buffer.from(s)]);
const GOOD = 'a1'.repeat(48);
const simKey = generateSimKey();

const POLICY = `agents:
  - name: ledger-reader
    spiffe_id: ${idOf('ledger-reader')}
    allowed_actions: [ledger.read, ledger.write, agent.list]
    access_control:
      - { principal_attestation_claim: "oid:${LEDGER_OID}", resource: ledger_db, permission: read }
      - { principal_attestation_claim: "oid:${TEAM_OID}=payments", resource: ledger_db, permission: write }
  - name: payments
    spiffe_id: ${idOf('payments')}
    allowed_actions: [task.dispatch, agent.list]
    attestation_requirements:
      tee_type: sim
      expected_measurement: "${GOOD}"
      freshness: { per_request: [task.dispatch] }
`;

const mesh = await TestMesh.start({
  policy: POLICY,
  actions: [
    { method: 'GET', path: '/ledger', action: 'ledger.read', resource: 'ledger_db', permission: 'read' },
    { method: 'POST', path: '/ledger', action: 'ledger.write', resource: 'ledger_db', permission: 'write' },
    ...DEFAULT_ACTIONS,
  ],
  agents: ['payments'],
  attesters: { payments: new SimAttester({ key: simKey.privateKey, measurement: GOOD, guestSvn: 1 }) },
  trust: { simKeys: [simKey.publicKey] },
});
t.teardown(() => mesh.close());

async function svid(extensions: CustomExtension[]) {
  return mesh.issuer.ca.issueX509Svid(idOf('ledger-reader'), { extensions });
}

const rawRequest = (s: { certChainPem: string; keyPem: string }, method: string, urlPath: string) =>
  mesh.mtlsRequest(s.certChainPem, s.keyPem, { method, path: urlPath });

t.test('the dev CA puts the requested extension into the SVID leaf', async (t) => {
  const s = await svid([{ oid: TEAM_OID, derValue: utf8('payments') }]);
  t.strictSame(svidExtensionClaims(s.svid.certificates[0]!).get(TEAM_OID), { text: 'payments', hex: '0c087061796d656e7473' });
});

t.test('granted with the extension', async (t) => {
  const s = await svid([{ oid: LEDGER_OID, derValue: new Uint8Array([0x05, 0x00]) }, { oid: TEAM_OID, derValue: utf8('payments') }]);
  const seen = mesh.app.seen.length;
  const read = await rawRequest(s, 'GET', '/ledger');
  t.equal(read.status, 200);
  t.equal(JSON.parse(read.body).headers['x-spiffe-id'], idOf('ledger-reader'));
  t.equal((await rawRequest(s, 'POST', '/ledger')).status, 200, 'write needs team=payments: held');
  t.equal(mesh.app.seen.length, seen + 2, 'both reached the app');
});

t.test('403 permission_not_granted without it', async (t) => {
  const before = mesh.app.seen.length;
  const audited = () => mesh.serverAudit.records.filter((r) => r.peer === idOf('ledger-reader') && r.reason === 'permission_not_granted').length;
  const start = audited();

  const none = await svid([]);
  const read = await rawRequest(none, 'GET', '/ledger');
  t.equal(read.status, 403);
  t.equal(read.body, `{"error":"Permission 'read' on resource 'ledger_db' not granted"}`);
  t.equal((await rawRequest(none, 'GET', '/agents')).status, 200, 'an action without resource/permission needs no grant');

  const wrongTeam = await svid([{ oid: LEDGER_OID, derValue: new Uint8Array([0x05, 0x00]) }, { oid: TEAM_OID, derValue: utf8('marketing') }]);
  t.equal((await rawRequest(wrongTeam, 'GET', '/ledger')).status, 200, 'read is granted by the other extension');
  const write = await rawRequest(wrongTeam, 'POST', '/ledger');
  t.equal(write.status, 403);
  t.same(JSON.parse(write.body), { error: "Permission 'write' on resource 'ledger_db' not granted" });

  t.equal(audited(), start + 2, 'both denials audited as permission_not_granted');
  t.equal(mesh.app.seen.length, before + 2, 'denied requests never reach the app');
});

const metric = async (name: string, labels = '') => {
  const text = await mesh.server.metrics.registry.getSingleMetricAsString(name);
  const line = text.split('\n').find((l) => l.startsWith(name) && l.includes(labels));
  return line ? Number(line.split(' ').pop()) : 0;
};
const verifications = () => metric('attest_sidecar_attestation_verifications_total', 'result="success"');

t.test('per-action freshness: fresh evidence for task.dispatch only, the session cache for agent.list', async (t) => {
  const proxy = mesh.proxyOf('payments');
  const v0 = await verifications();
  for (let i = 0; i < 3; i++) t.equal((await viaProxy(proxy, 'GET', 'http://control-plane/agents')).status, 200, `agent.list ${i}`);
  t.equal(await verifications(), v0 + 1, 'agent.list: verified once for the session');

  for (let i = 0; i < 3; i++) {
    const body = JSON.stringify({ task: i });
    const r = await viaProxy(proxy, 'POST', 'http://control-plane/tasks', { body });
    t.equal(r.status, 200, `task.dispatch ${i}`);
    t.equal(JSON.parse(r.body).bytes, body.length, 'the body was replayed after the nonce challenge');
  }
  t.equal(await verifications(), v0 + 4, 'task.dispatch: one fresh verification per request');

  for (let i = 0; i < 2; i++) t.equal((await viaProxy(proxy, 'GET', 'http://control-plane/agents')).status, 200);
  t.equal(await verifications(), v0 + 4, 'agent.list stays on the session verdict');
});
