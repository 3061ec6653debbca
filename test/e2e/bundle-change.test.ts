/**
 * Trust withdrawn while a connection is open: when the inbound sidecar's bundles change (a
 * federation removed, a CA revoked), a kept-alive peer whose chain no longer verifies is refused
 * at its next request (`peer_trust_withdrawn`, connection closed), as a new handshake would be;
 * peers that still verify keep their connection.
 */
import t from 'tap';
import { Client } from 'undici';
import { DevCa } from '../../src/dev/ca.js';
import { TestMesh, idOf } from '../helpers/mesh.js';

const PARTNER = 'partner.test';
const partnerId = `spiffe://${PARTNER}/ns/agent-swarm/sa/orchestrator`;

const mesh = await TestMesh.start({
  agents: [],
  policy: `agents:
  - name: orchestrator
    spiffe_id: ${idOf('orchestrator')}
    allowed_actions: [agent.list]
  - name: partner
    spiffe_id: ${partnerId}
    allowed_actions: [agent.list]
`,
});
t.teardown(() => mesh.close());

const domains = () => mesh.server.status().trust_domains as string[];

/** `entry update -federatesWith` for the server's entry: only entries that federate get the partner bundle. */
const federateServer = () => mesh.issuer.setFederatesWith(idOf('control-plane'), [PARTNER]);

async function until(f: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 600 && !f(); i++) await new Promise((r) => setTimeout(r, 50));
  if (!f()) throw new Error(`timed out waiting for ${what}`);
  await mesh.server.settled();
}

function keptAlive(cert: string, key: string): { client: Client; connects: () => number; get: () => Promise<{ status: number; body: string; connection: string | undefined }> } {
  let connects = 0;
  const client = new Client(mesh.inboundUrl, { connect: { cert, key, ca: mesh.issuer.ca.rootPem(), checkServerIdentity: () => undefined }, pipelining: 1, keepAliveTimeout: 60_000 });
  client.on('connect', () => connects++);
  t.teardown(() => client.destroy());
  return {
    client,
    connects: () => connects,
    get: async () => {
      const r = await client.request({ path: '/agents', method: 'GET' });
      return { status: r.statusCode, body: await r.body.text(), connection: r.headers.connection as string | undefined };
    },
  };
}

t.test('a federated peer kept alive across the removal of its bundle is refused at its next request', async (t) => {
  const partner = await DevCa.create({ trustDomain: PARTNER });
  federateServer();
  mesh.issuer.setFederatedBundle(PARTNER, partner.bundle());
  await until(() => domains().includes(PARTNER), 'the partner bundle');
  const p = await partner.issueX509Svid(partnerId);
  const home = await mesh.issuer.ca.issueX509Svid(idOf('orchestrator'));
  const partnerConn = keptAlive(p.certChainPem, p.keyPem);
  const homeConn = keptAlive(home.certChainPem, home.keyPem);
  t.equal((await partnerConn.get()).status, 200, 'the partner peer is served while federated');
  t.equal((await homeConn.get()).status, 200, 'the home peer is served');

  mesh.issuer.setFederatedBundle(PARTNER, undefined);
  await until(() => !domains().includes(PARTNER), 'the partner bundle to go');
  const refused = await partnerConn.get();
  t.equal(refused.status, 403);
  t.same(JSON.parse(refused.body), { error: 'Peer no longer trusted' });
  t.equal(refused.connection, 'close', 'the connection is closed after the answer');
  t.equal(partnerConn.connects(), 1, 'on the connection opened while federated');
  t.match(mesh.serverAudit.records.filter((r) => r.reason === 'peer_trust_withdrawn'), [{ decision: 'deny', peer: partnerId }], 'audited');

  const still = await homeConn.get();
  t.equal(still.status, 200, 'a peer that still verifies keeps being served');
  t.equal(homeConn.connects(), 1, 'on its same connection');
});

t.test('an mTLS admin connection whose peer no longer verifies is closed when the bundles change', async (t) => {
  const partner = await DevCa.create({ trustDomain: PARTNER });
  const replica = await mesh.startReplica('admin-mtls', { admin: { listen: { host: '127.0.0.1', port: 0 }, mtlsListen: { host: '127.0.0.1', port: 0 } } });
  const partnerDomains = () => replica.status().trust_domains as string[];
  federateServer();
  mesh.issuer.setFederatedBundle(PARTNER, partner.bundle());
  await until(() => partnerDomains().includes(PARTNER) && domains().includes(PARTNER), 'the partner bundle');
  await replica.settled();
  const p = await partner.issueX509Svid(partnerId);
  const admin = new Client(`https://127.0.0.1:${replica.admin!.mtlsAddress()!.port}`, {
    connect: { cert: p.certChainPem, key: p.keyPem, ca: mesh.issuer.ca.rootPem(), checkServerIdentity: () => undefined },
    pipelining: 1,
    keepAliveTimeout: 60_000,
  });
  t.teardown(() => admin.destroy());
  const healthz = async () => {
    const r = await admin.request({ path: '/healthz', method: 'GET' });
    await r.body.text();
    return r.statusCode;
  };
  t.equal(await healthz(), 200, 'the federated peer reaches the mTLS admin listener');

  mesh.issuer.setFederatedBundle(PARTNER, undefined);
  await until(() => !partnerDomains().includes(PARTNER), 'the partner bundle to go');
  await replica.settled();
  // Kept open, the connection would still answer 200 (its idle timeout is far away).
  await t.rejects(healthz(), 'the kept-alive admin connection was closed, and a new one fails the handshake');
});
