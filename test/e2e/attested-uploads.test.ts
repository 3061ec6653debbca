/**
 * Uploads the outbound sidecar cannot replay (chunked, or over MAX_REPLAY_BYTES) on an attested
 * route: a refusal the peer gives before looking at our evidence (an action not permitted) must
 * not make the route believe the peer accepted it, also right after an identity rotation. Over
 * real sockets, with the dev issuer rotating SVIDs.
 */
import http from 'node:http';
import net from 'node:net';
import t from 'tap';
import { SimAttester } from '../../src/attestation/sim/attester.js';
import { generateSimKey } from '../../src/attestation/sim/report.js';
import { MAX_REPLAY_BYTES } from '../../src/proxy/outbound/attestation.js';
import { TestMesh, idOf, viaProxy } from '../helpers/mesh.js';

const M = 'd4'.repeat(48);
const sim = generateSimKey();
const mesh = await TestMesh.start({
  svidTtlSeconds: 4,
  agents: ['orchestrator'],
  policy: `agents:
  - name: orchestrator
    spiffe_id: ${idOf('orchestrator')}
    allowed_actions: [agent.list, upload]
    attestation_requirements: { tee_type: sim, expected_measurement: "${M}" }
`,
  attesters: { orchestrator: new SimAttester({ key: sim.privateKey, measurement: M }) },
  trust: { simKeys: [sim.publicKey] },
  requestLimits: { bodyProgressTimeoutMs: 1_000 },
});
t.teardown(() => mesh.close());

/** A chunked upload (no Content-Length) through the outbound proxy. */
function chunkedUpload(bytes: number): Promise<{ status: number; body: string }> {
  const proxy = new URL(mesh.proxyOf('orchestrator'));
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: proxy.hostname, port: proxy.port, method: 'POST', path: 'http://control-plane/upload', headers: { host: 'control-plane' }, agent: false },
      (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode!, body }));
      },
    );
    req.on('error', reject);
    for (let sent = 0; sent < bytes; sent += 16 * 1024) req.write(Buffer.alloc(Math.min(16 * 1024, bytes - sent), 0x63));
    req.end();
  });
}

const denied = () => viaProxy(mesh.proxyOf('orchestrator'), 'POST', 'http://control-plane/fuzzer/harness', { body: '{}' });
const largeUpload = () => viaProxy(mesh.proxyOf('orchestrator'), 'POST', 'http://control-plane/upload', { body: Buffer.alloc(MAX_REPLAY_BYTES * 2, 0x64) });
const serial = () => (mesh.agents.get('orchestrator')!.status().svid as { serial: string }).serial;

t.test('first contact: a denied request, then uploads that cannot be replayed', async (t) => {
  const d = await denied();
  t.equal(d.status, 403, d.body);
  const chunked = await chunkedUpload(100 * 1024);
  t.equal(chunked.status, 200, chunked.body);
  t.equal(JSON.parse(chunked.body).bytes, 100 * 1024);
  const large = await largeUpload();
  t.equal(large.status, 200, large.body);
  t.equal(JSON.parse(large.body).bytes, MAX_REPLAY_BYTES * 2);
});

t.test('after each of several rotations: a denied request, then a chunked and a large upload', async (t) => {
  // Warm the route on the current SVID first (the peer accepted its evidence).
  t.equal((await viaProxy(mesh.proxyOf('orchestrator'), 'GET', 'http://control-plane/agents')).status, 200);
  for (let round = 0; round < 3; round++) {
    const before = serial();
    const end = Date.now() + 30_000;
    while (serial() === before && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
    t.not(serial(), before, `round ${round}: the agent's SVID rotated`);
    // The first request on the new SVID is refused before the peer looks at any evidence.
    t.equal((await denied()).status, 403, `round ${round}: denied`);
    const chunked = await chunkedUpload(100 * 1024);
    t.equal(chunked.status, 200, `round ${round}: chunked upload: ${chunked.body}`);
    const large = await largeUpload();
    t.equal(large.status, 200, `round ${round}: large upload: ${large.body}`);
    t.equal((await viaProxy(mesh.proxyOf('orchestrator'), 'GET', 'http://control-plane/agents')).status, 200, `round ${round}: bodiless`);
  }
});

t.test('a small body kept for replay that stops arriving is answered 408', async (t) => {
  const socket = net.connect(Number(new URL(mesh.proxyOf('orchestrator')).port), '127.0.0.1');
  t.teardown(() => socket.destroy());
  let text = '';
  let ended = false;
  socket.on('data', (c: Buffer) => (text += c));
  socket.on('close', () => (ended = true));
  socket.on('error', () => undefined);
  socket.write('POST http://control-plane/upload HTTP/1.1\r\nHost: control-plane\r\nContent-Length: 1000\r\n\r\nabc');
  const end = Date.now() + 30_000;
  while (!ended && !text.includes('}') && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
  t.match(text, /^HTTP\/1\.1 408 /, text);
  t.match(text, /\{"error":"Request body timeout"\}/);
  t.match(text, /connection: close/i);
});

t.test('a peer that restarted (and forgot our evidence) still takes an upload that cannot be replayed', async (t) => {
  t.equal((await viaProxy(mesh.proxyOf('orchestrator'), 'GET', 'http://control-plane/agents')).status, 200, 'the route is warm');
  await mesh.restartServer();
  // The first attempts may meet pooled connections the old server closed (502, before any
  // answer from the new one): that leaves what the route knows unchanged.
  let chunked = await chunkedUpload(100 * 1024);
  for (let attempt = 0; attempt < 3 && chunked.status === 502; attempt++) chunked = await chunkedUpload(100 * 1024);
  t.equal(chunked.status, 200, chunked.body);
  t.equal((await viaProxy(mesh.proxyOf('orchestrator'), 'GET', 'http://control-plane/agents')).status, 200, 'bodiless after the restart');
});
