/**
 * `Expect: 100-continue` through both sidecars over real sockets: curl's large uploads, a raw
 * client that waits for the 100 before sending its body, and refusals that come without a 100.
 */
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import t from 'tap';
import { TestMesh, idOf } from '../helpers/mesh.js';
import { skipFor, toolsMissing } from '../helpers/needs.js';

const mesh = await TestMesh.start({ agents: ['orchestrator'] });
t.teardown(() => mesh.close());

const curlSkip = skipFor(toolsMissing(['curl'], 'curl'));

function curl(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn('curl', args);
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (c: Buffer) => (stdout += c));
    p.stderr.on('data', (c: Buffer) => (stderr += c));
    p.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/**
 * Reads an HTTP/1.1 exchange from a raw socket: everything received, until `until` holds for
 * the text so far, the connection ends, or 20 s pass.
 */
function readUntil(socket: net.Socket, seen: { text: string; ended: boolean }, until: (text: string) => boolean): Promise<void> {
  return new Promise((resolve) => {
    const check = () => {
      if (until(seen.text) || seen.ended) {
        clearTimeout(timer);
        socket.off('data', check).off('close', check);
        resolve();
      }
    };
    const timer = setTimeout(() => {
      socket.off('data', check).off('close', check);
      resolve();
    }, 20_000);
    socket.on('data', check).on('close', check);
    check();
  });
}

function record(socket: net.Socket): { text: string; ended: boolean } {
  const seen = { text: '', ended: false };
  socket.on('data', (c: Buffer) => (seen.text += c.toString('latin1')));
  socket.on('close', () => (seen.ended = true));
  socket.on('error', () => undefined);
  return seen;
}

const finalResponse = (text: string) => /HTTP\/1\.1 [2-5]\d\d [^\r]*\r\n[\s\S]*?\r\n\r\n/.exec(text);
const complete = (text: string) => {
  const m = finalResponse(text);
  if (!m) return false;
  const len = /content-length: (\d+)/i.exec(m[0]);
  return len !== null && text.length >= m.index + m[0].length + Number(len[1]);
};

t.test('curl uploads over 1 MiB (Expect: 100-continue) through both sidecars', { skip: curlSkip }, async (t) => {
  const file = path.join(mesh.dir, 'big.bin');
  const size = 3 * 1024 * 1024 + 17;
  writeFileSync(file, Buffer.alloc(size, 0x5a));
  const r = await curl(['-sS', '-v', '--max-time', '60', '-x', mesh.proxyOf('orchestrator'), '--data-binary', `@${file}`, '-H', 'content-type: application/octet-stream', 'http://control-plane/upload']);
  t.equal(r.code, 0, r.stderr.slice(-2000));
  t.match(r.stderr, /Expect: 100-continue/i, 'curl asked for a 100');
  t.match(r.stderr, /HTTP\/1\.1 100 Continue/, 'the outbound sidecar answered it');
  t.match(r.stderr, /HTTP\/1\.1 200/);
  const echoed = JSON.parse(r.stdout) as { bytes: number; headers: Record<string, string> };
  t.equal(echoed.bytes, size, 'the whole body reached the app');
  t.equal(echoed.headers.expect, undefined, 'no Expect reaches the app');
  t.equal(echoed.headers['x-spiffe-id'], idOf('orchestrator'));
});

t.test('outbound: a raw client waits for the 100, then sends its body', async (t) => {
  const port = Number(new URL(mesh.proxyOf('orchestrator')).port);
  const socket = net.connect(port, '127.0.0.1');
  t.teardown(() => socket.destroy());
  const seen = record(socket);
  const body = Buffer.alloc(200_000, 0x41);
  socket.write(`POST http://control-plane/upload HTTP/1.1\r\nHost: control-plane\r\nContent-Length: ${body.length}\r\nExpect: 100-continue\r\n\r\n`);
  await readUntil(socket, seen, (s) => s.includes('\r\n\r\n'));
  t.match(seen.text, /^HTTP\/1\.1 100 Continue\r\n\r\n/, 'the 100 comes before any body byte was sent');
  socket.write(body);
  await readUntil(socket, seen, complete);
  const m = finalResponse(seen.text);
  t.ok(m, seen.text.slice(0, 300));
  t.match(m![0], /^HTTP\/1\.1 200 /);
  t.equal(JSON.parse(seen.text.slice(m!.index + m![0].length)).bytes, body.length);
});

t.test('outbound: a refused request gets its final status without a 100, and the connection closes', async (t) => {
  const port = Number(new URL(mesh.proxyOf('orchestrator')).port);
  const socket = net.connect(port, '127.0.0.1');
  t.teardown(() => socket.destroy());
  const seen = record(socket);
  socket.write('POST http://billing/upload HTTP/1.1\r\nHost: billing\r\nContent-Length: 100000\r\nExpect: 100-continue\r\n\r\n');
  await readUntil(socket, seen, complete);
  t.match(seen.text, /^HTTP\/1\.1 404 /, 'unknown route, no 100 first');
  t.match(seen.text, /connection: close/i);
  await readUntil(socket, seen, () => false);
  t.ok(seen.ended, 'the connection was closed (the unsent body cannot be skipped)');
});

async function inboundSocket(name: string): Promise<tls.TLSSocket> {
  const svid = await mesh.issuer.ca.issueX509Svid(idOf(name));
  const socket = tls.connect({ host: '127.0.0.1', port: mesh.server.inbound!.address()!.port, cert: svid.certChainPem, key: svid.keyPem, ca: mesh.issuer.ca.rootPem(), checkServerIdentity: () => undefined });
  await new Promise<void>((resolve, reject) => socket.once('secureConnect', resolve).once('error', reject));
  return socket;
}

t.test('inbound: an allowed request gets the 100 and the app its body', async (t) => {
  const socket = await inboundSocket('orchestrator');
  t.teardown(() => socket.destroy());
  const seen = record(socket);
  const body = Buffer.alloc(1_500_000, 0x42);
  socket.write(`POST /upload HTTP/1.1\r\nHost: control-plane\r\nContent-Length: ${body.length}\r\nExpect: 100-continue\r\n\r\n`);
  await readUntil(socket, seen, (s) => s.includes('\r\n\r\n'));
  t.match(seen.text, /^HTTP\/1\.1 100 Continue\r\n\r\n/);
  socket.write(body);
  await readUntil(socket, seen, complete);
  const m = finalResponse(seen.text);
  t.ok(m, seen.text.slice(0, 300));
  t.match(m![0], /^HTTP\/1\.1 200 /);
  t.equal(JSON.parse(seen.text.slice(m!.index + m![0].length)).bytes, body.length);
  t.notMatch(m![0], /connection: close/i, 'the connection stays usable after a continued request');
});

t.test('inbound: a denied request gets 403 without a 100 and nothing reaches the app', async (t) => {
  const before = mesh.app.seen.length;
  const socket = await inboundSocket('orchestrator');
  t.teardown(() => socket.destroy());
  const seen = record(socket);
  socket.write('POST /fuzzer/harness HTTP/1.1\r\nHost: control-plane\r\nContent-Length: 100000\r\nExpect: 100-continue\r\n\r\n');
  await readUntil(socket, seen, complete);
  t.match(seen.text, /^HTTP\/1\.1 403 /);
  t.notMatch(seen.text, /100 Continue/);
  t.match(seen.text, /"Action 'fuzzer\.write_harness' not permitted"/);
  t.equal(mesh.app.seen.length, before);
});

t.test('a final status the app gives before reading the body is relayed by both sidecars', async (t) => {
  const early = (req: { url?: string }, res: { writeHead: (s: number, h: Record<string, string>) => { end: (b: string) => void } }) => {
    if (req.url === '/upload?early=1') res.writeHead(413, { 'content-type': 'application/json', 'content-length': '31', connection: 'close' }).end('{"error":"too big for the app"}');
  };
  const listeners = mesh.app.server.listeners('request') as ((...a: unknown[]) => void)[];
  mesh.app.server.removeAllListeners('request');
  mesh.app.server.on('request', (req, res) => {
    if (req.url === '/upload?early=1') early(req, res);
    else for (const l of listeners) l(req, res);
  });
  t.teardown(() => {
    mesh.app.server.removeAllListeners('request');
    for (const l of listeners) mesh.app.server.on('request', l);
  });
  const port = Number(new URL(mesh.proxyOf('orchestrator')).port);
  const socket = net.connect(port, '127.0.0.1');
  t.teardown(() => socket.destroy());
  const seen = record(socket);
  socket.write('POST http://control-plane/upload?early=1 HTTP/1.1\r\nHost: control-plane\r\nContent-Length: 5000000\r\nExpect: 100-continue\r\n\r\n');
  await readUntil(socket, seen, (s) => s.includes('\r\n\r\n'));
  t.match(seen.text, /^HTTP\/1\.1 100 Continue\r\n\r\n/);
  socket.write(Buffer.alloc(64 * 1024, 0x43));
  await readUntil(socket, seen, complete);
  const m = finalResponse(seen.text);
  t.ok(m, seen.text.slice(0, 300));
  t.match(m![0], /^HTTP\/1\.1 413 /);
  t.equal(seen.text.slice(m!.index + m![0].length), '{"error":"too big for the app"}');
});
