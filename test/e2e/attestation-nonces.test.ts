/**
 * Outstanding per-request attestation nonces are capped per peer key: a peer that asks for
 * challenges and never answers them drops its own oldest nonces, never another peer's.
 */
import https from 'node:https';
import t from 'tap';
import { prepareEvidence } from '../../src/attestation/attester.js';
import { SimAttester } from '../../src/attestation/sim/attester.js';
import { generateSimKey } from '../../src/attestation/sim/report.js';
import { MAX_NONCES_PER_PEER } from '../../src/proxy/attestation-gate.js';
import { TestMesh, idOf } from '../helpers/mesh.js';

const GOOD = 'a1'.repeat(48);
const simKey = generateSimKey();
const attester = new SimAttester({ key: simKey.privateKey, measurement: GOOD, guestSvn: 3 });

const agent = (name: string) => `  - name: ${name}
    spiffe_id: ${idOf(name)}
    allowed_actions: [agent.list]
    attestation_requirements:
      tee_type: sim
      expected_measurement: "${GOOD}"
      freshness: per_request
`;

const mesh = await TestMesh.start({
  policy: `agents:\n${agent('payments')}${agent('treasury')}`,
  agents: ['payments', 'treasury'],
  trust: { simKeys: [simKey.publicKey] },
});
t.teardown(() => mesh.close());

interface Peer {
  agent: https.Agent;
  spki: Buffer;
  cert: string;
  key: string;
}

async function peer(name: string): Promise<Peer> {
  const svid = await mesh.issuer.ca.issueX509Svid(idOf(name));
  const spki = svid.svid.certificates[0]!.publicKey.export({ type: 'spki', format: 'der' });
  // One kept-alive connection: every challenge is issued to the same peer key.
  return { agent: new https.Agent({ keepAlive: true, maxSockets: 1 }), spki, cert: svid.certChainPem, key: svid.keyPem };
}

function get(p: Peer, headers: Record<string, string> = {}): Promise<{ status: number; challenge?: string; body: string }> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        host: '127.0.0.1',
        port: mesh.server.inbound!.address()!.port,
        path: '/agents',
        cert: p.cert,
        key: p.key,
        ca: mesh.issuer.ca.rootPem(),
        checkServerIdentity: () => undefined,
        agent: p.agent,
        headers,
      },
      (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c));
        res.on('end', () => {
          const challenge = res.headers['attest-challenge'];
          resolve({ status: res.statusCode!, body, ...(typeof challenge === 'string' ? { challenge } : {}) });
        });
      },
    );
    req.on('error', reject);
    req.end();
  });
}

async function nonceFor(p: Peer): Promise<string> {
  const r = await get(p);
  if (r.status !== 401 || !r.challenge?.startsWith('nonce=')) throw new Error(`expected a nonce challenge, got ${r.status} ${r.challenge}`);
  return r.challenge.slice('nonce='.length);
}

async function answer(p: Peer, nonce: string) {
  const evidence = prepareEvidence(await attester.produce(p.spki, Buffer.from(nonce, 'base64url')));
  return get(p, { 'attest-evidence': evidence.header, 'attest-nonce': nonce });
}

t.test('a peer that hoards challenges loses its own oldest nonce, not another peer\'s', async (t) => {
  const payments = await peer('payments');
  const treasury = await peer('treasury');
  t.teardown(() => {
    payments.agent.destroy();
    treasury.agent.destroy();
  });
  const first = await nonceFor(payments);
  const others = await nonceFor(treasury);
  let last = first;
  for (let i = 0; i < MAX_NONCES_PER_PEER; i++) last = await nonceFor(payments);

  const stale = await answer(payments, first);
  t.equal(stale.status, 401, 'the hoarding peer\'s oldest nonce was dropped');
  t.same(JSON.parse(stale.body), { error: 'Attestation nonce unknown, expired or already used' });
  t.equal((await answer(payments, last)).status, 200, 'its latest nonce is still valid');
  t.equal((await answer(treasury, others)).status, 200, 'the other peer\'s nonce is still valid');
});
