/**
 * The request-body progress timeout on both sidecars, over real sockets: a body that stops
 * arriving is answered 408 and its upstream exchange abandoned; a slow body that keeps coming
 * is not cut.
 */
import net from 'node:net';
import tls from 'node:tls';
import t from 'tap';
import { TestMesh, idOf } from '../helpers/mesh.js';

// The agent's sidecar gives up well before the server's (a stall is noticed within one to two
// periods), so each test knows which side answers.
const mesh = await TestMesh.start({ agents: ['orchestrator'], requestLimits: { bodyProgressTimeoutMs: 3_000 }, agentRequestLimits: { bodyProgressTimeoutMs: 1_000 } });
t.teardown(() => mesh.close());

interface Exchange {
  text: string;
  ended: boolean;
}

function record(socket: net.Socket): Exchange {
  const ex = { text: '', ended: false };
  socket.on('data', (c: Buffer) => (ex.text += c.toString('latin1')));
  socket.on('close', () => (ex.ended = true));
  socket.on('error', () => undefined);
  return ex;
}

async function waitFor(cond: () => boolean, ms = 30_000): Promise<boolean> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) return false;
    await new Promise((r) => setTimeout(r, 50));
  }
  return true;
}

async function inboundSocket(): Promise<tls.TLSSocket> {
  const svid = await mesh.issuer.ca.issueX509Svid(idOf('orchestrator'));
  const socket = tls.connect({ host: '127.0.0.1', port: mesh.server.inbound!.address()!.port, cert: svid.certChainPem, key: svid.keyPem, ca: mesh.issuer.ca.rootPem(), checkServerIdentity: () => undefined });
  await new Promise<void>((resolve, reject) => socket.once('secureConnect', resolve).once('error', reject));
  return socket;
}

function outboundSocket(): Promise<net.Socket> {
  const socket = net.connect(Number(new URL(mesh.proxyOf('orchestrator')).port), '127.0.0.1');
  return new Promise((resolve, reject) => socket.once('connect', () => resolve(socket)).once('error', reject));
}

const timedOut = (ex: Exchange) => ex.text.startsWith('HTTP/1.1 408 ') && ex.text.includes('{"error":"Request body timeout"}');

t.test('inbound: a stalled upload is answered 408 and the app exchange is abandoned', async (t) => {
  let appOpen = 0;
  const onRequest = (_req: unknown, res: { once: (e: string, f: () => void) => void }) => {
    appOpen++;
    res.once('close', () => appOpen--);
  };
  mesh.app.server.on('request', onRequest);
  t.teardown(() => mesh.app.server.off('request', onRequest));
  const socket = await inboundSocket();
  t.teardown(() => socket.destroy());
  const ex = record(socket);
  socket.write('POST /upload HTTP/1.1\r\nHost: control-plane\r\nContent-Length: 5000\r\n\r\n0123456789');
  t.ok(await waitFor(() => ex.text.includes('\r\n\r\n') && ex.text.includes('}')), 'an answer came');
  t.ok(timedOut(ex), ex.text);
  t.match(ex.text, /connection: close/i, 'the rest of the body cannot follow on this connection');
  t.ok(await waitFor(() => ex.ended), 'the connection closed');
  t.ok(await waitFor(() => appOpen === 0), 'the exchange with the app was abandoned');
  const rec = mesh.serverAudit.records.find((r) => r.type === 'inbound_decision' && r.reason === 'request_body_timeout');
  t.equal(rec?.status, 408);
  t.equal(rec?.peer, idOf('orchestrator'));
});

t.test('outbound: a stalled upload is answered 408', async (t) => {
  const socket = await outboundSocket();
  t.teardown(() => socket.destroy());
  const ex = record(socket);
  socket.write('POST http://control-plane/upload HTTP/1.1\r\nHost: control-plane\r\nContent-Length: 200000\r\n\r\n');
  socket.write(Buffer.alloc(70_000, 0x61));
  t.ok(await waitFor(() => ex.text.includes('}')), 'an answer came');
  t.ok(timedOut(ex), ex.text);
  t.ok(await waitFor(() => ex.ended), 'the connection closed');
});

t.test('a slow upload that keeps bringing bytes is not cut (both sidecars)', async (t) => {
  const socket = await outboundSocket();
  t.teardown(() => socket.destroy());
  const ex = record(socket);
  const parts = 12;
  socket.write(`POST http://control-plane/upload HTTP/1.1\r\nHost: control-plane\r\nContent-Length: ${parts}\r\n\r\n`);
  // 250 ms apart: three seconds in all, several times the agent side's timeout, never a second without a byte.
  for (let i = 0; i < parts; i++) {
    await new Promise((r) => setTimeout(r, 250));
    socket.write('z');
  }
  t.ok(await waitFor(() => ex.text.includes('}')), 'an answer came');
  t.match(ex.text, /^HTTP\/1\.1 200 /, ex.text.slice(0, 300));
  t.match(ex.text, /"bytes":12/);
});

t.test('an app that reads the body slowly is not mistaken for a stalled client', async (t) => {
  // The app takes 4 s before it reads (several of the agent side's periods, over the server
  // side's timeout; under the 5 s request timeout): the body waits in the sidecars, paused.
  const slowPaths = new Set(['/upload?slow=1']);
  const listeners = mesh.app.server.listeners('request');
  mesh.app.server.removeAllListeners('request');
  mesh.app.server.on('request', (req, res) => {
    if (!slowPaths.has(req.url ?? '')) {
      for (const l of listeners) (l as (a: unknown, b: unknown) => void)(req, res);
      return;
    }
    req.pause();
    setTimeout(() => {
      let bytes = 0;
      req.on('data', (c: Buffer) => (bytes += c.length));
      req.on('end', () => res.end(JSON.stringify({ bytes })));
      req.resume();
    }, 4_000);
  });
  t.teardown(() => {
    mesh.app.server.removeAllListeners('request');
    for (const l of listeners) mesh.app.server.on('request', l as (...a: unknown[]) => void);
  });
  const socket = await outboundSocket();
  t.teardown(() => socket.destroy());
  const ex = record(socket);
  const body = Buffer.alloc(48 * 1024 * 1024, 0x62);
  socket.write(`POST http://control-plane/upload?slow=1 HTTP/1.1\r\nHost: control-plane\r\nContent-Length: ${body.length}\r\n\r\n`);
  socket.write(body);
  t.ok(await waitFor(() => ex.text.includes('}')), 'an answer came');
  t.match(ex.text, /^HTTP\/1\.1 200 /, ex.text.slice(0, 300));
  t.match(ex.text, new RegExp(`"bytes":${body.length}`));
});
