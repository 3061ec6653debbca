/**
 * One peer identity cannot starve the others of app connections: 300 uploads trickling from
 * one agent get its share (64 at the app, 64 waiting, the rest refused with 429) while another
 * agent's requests keep being answered. Over real sockets: raw mTLS clients for the attacker,
 * the other agent through its own outbound sidecar.
 */
import tls from 'node:tls';
import t from 'tap';
import { DEFAULT_PEER_ADMISSION } from '../../src/proxy/peer-admission.js';
import { TestMesh, idOf, viaProxy } from '../helpers/mesh.js';

const mesh = await TestMesh.start({ agents: ['harness-writer'] });
t.teardown(() => mesh.close());

/** Polls `cond` every 50 ms for up to `ms`; true when it held. */
async function waitFor(cond: () => boolean, ms = 60_000): Promise<boolean> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) return false;
    await new Promise((r) => setTimeout(r, 50));
  }
  return true;
}

interface Trickler {
  socket: tls.TLSSocket;
  text: string;
  closed: boolean;
}

t.test('300 trickling uploads from one agent leave the app to the others', async (t) => {
  const { maxInFlightPerPeer, maxQueuedPerPeer } = DEFAULT_PEER_ADMISSION;
  let appUploads = 0;
  let appUploadsMax = 0;
  /** Attack uploads (by index) the app has seen start, and those still open there. */
  const admitted = new Set<number>();
  const atApp = new Set<number>();
  mesh.app.server.on('request', (req, res) => {
    const i = /^\/upload\?i=(\d+)$/.exec(req.url ?? '')?.[1];
    if (i === undefined) return;
    appUploadsMax = Math.max(appUploadsMax, ++appUploads);
    admitted.add(Number(i));
    atApp.add(Number(i));
    res.once('close', () => {
      appUploads--;
      atApp.delete(Number(i));
    });
  });

  const svid = await mesh.issuer.ca.issueX509Svid(idOf('orchestrator'));
  const port = mesh.server.inbound!.address()!.port;
  const attackers: Trickler[] = [];
  t.teardown(() => {
    for (const a of attackers) a.socket.destroy();
  });
  // Handshakes a few at a time: the attack is about app connections, not the TLS listener.
  for (let i = 0; i < 300; i += 20) {
    await Promise.all(
      Array.from({ length: 20 }, () => {
        const socket = tls.connect({ host: '127.0.0.1', port, cert: svid.certChainPem, key: svid.keyPem, ca: mesh.issuer.ca.rootPem(), checkServerIdentity: () => undefined });
        const a: Trickler = { socket, text: '', closed: false };
        const index = attackers.push(a) - 1;
        socket.on('data', (c: Buffer) => (a.text += c.toString('latin1')));
        socket.on('close', () => (a.closed = true));
        socket.on('error', () => undefined);
        return new Promise<void>((resolve) => {
          socket.once('secureConnect', () => {
            socket.write(`POST /upload?i=${index} HTTP/1.1\r\nHost: control-plane\r\nContent-Length: 100000\r\n\r\nx`);
            resolve();
          });
          socket.once('close', () => resolve());
        });
      }),
    );
  }
  // One byte a second on every upload still open: progress, so no body timeout ends the attack.
  const trickle = setInterval(() => {
    for (const a of attackers) if (!a.closed && a.text === '') a.socket.write('x');
  }, 1_000);
  t.teardown(() => clearInterval(trickle));

  const refused = () => attackers.filter((a) => a.text.startsWith('HTTP/1.1 429 '));
  const expectedRefused = 300 - maxInFlightPerPeer - maxQueuedPerPeer;
  t.ok(await waitFor(() => refused().length >= expectedRefused), `uploads over the identity's share and queue are refused (${refused().length})`);
  t.ok(await waitFor(() => appUploads === maxInFlightPerPeer), `the identity's share of uploads reached the app (${appUploads})`);
  const sample = refused()[0]!.text;
  t.match(sample, /retry-after: 1/i);
  t.match(sample, /connection: close/i, 'a refused upload does not keep its connection');
  t.match(sample, /\{"error":"Too many concurrent requests from this peer identity"\}/);

  // The other agent, sequentially and in parallel, while the attack holds its share.
  const proxy = mesh.proxyOf('harness-writer');
  const statuses: number[] = [];
  for (let i = 0; i < 10; i++) statuses.push((await viaProxy(proxy, 'POST', 'http://control-plane/fuzzer/harness', { body: `{"n":${i}}` })).status);
  const parallel = await Promise.all(Array.from({ length: 40 }, (_, i) => viaProxy(proxy, 'POST', 'http://control-plane/fuzzer/harness', { body: `{"p":${i}}` })));
  statuses.push(...parallel.map((r) => r.status));
  t.same(statuses, Array(50).fill(200), 'every request of the other agent was answered 200');

  const stillTrickling = attackers.filter((a) => !a.closed && a.text === '').length;
  t.ok(stillTrickling >= maxInFlightPerPeer, `the attack was still in progress meanwhile (${stillTrickling} uploads unanswered)`);
  t.ok(appUploadsMax <= maxInFlightPerPeer, `never more than the identity's share at the app (${appUploadsMax})`);

  const audited = mesh.serverAudit.records.filter((r) => r.type === 'inbound_decision' && r.reason === 'peer_concurrency_exceeded');
  t.ok(audited.length >= expectedRefused, `refusals are audited (${audited.length})`);
  t.equal(audited[0]?.status, 429);
  t.equal(audited[0]?.peer, idOf('orchestrator'));

  // Uploads that end give their turns to the identity's waiting ones, in order.
  const leaving = [...atApp].slice(0, 10);
  for (const i of leaving) attackers[i]!.socket.destroy();
  t.ok(await waitFor(() => leaving.every((i) => !atApp.has(i)) && appUploads === maxInFlightPerPeer), `waiting uploads took the freed turns (${appUploads} at the app)`);
  t.equal(admitted.size, maxInFlightPerPeer + leaving.length, 'exactly as many as were freed');

  // A wait is bounded: the rest of the queue is refused once maxQueueWaitMs has passed.
  const waiting = () => attackers.filter((a, i) => !a.closed && a.text === '' && !atApp.has(i)).length;
  t.ok(await waitFor(() => waiting() === 0), `no upload waits for ever (${waiting()} still waiting)`);
  t.equal(refused().length, 300 - maxInFlightPerPeer - leaving.length, 'every upload that never reached the app was refused with 429');

  // The attacker leaves: its share is given back and its identity is served again.
  clearInterval(trickle);
  for (const a of attackers) a.socket.destroy();
  t.ok(await waitFor(() => appUploads === 0), 'the abandoned uploads left the app');
  await mesh.addAgent('orchestrator');
  const after = await viaProxy(mesh.proxyOf('orchestrator'), 'POST', 'http://control-plane/upload', { body: Buffer.alloc(1000, 1) });
  t.equal(after.status, 200, after.body);
});
