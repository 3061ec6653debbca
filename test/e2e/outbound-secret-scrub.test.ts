/**
 * A `tls: web` route holding an injected API key, to an upstream that echoes the request back
 * compressed (gzip, deflate, br), base64-encoded (standard and URL-safe, at every alignment) and
 * hex-encoded: the agent never sees the key in any of those forms. And the route's upstream
 * base path is a boundary: dot segments and encoded separators are refused before anything is
 * sent upstream.
 */
import { writeFileSync } from 'node:fs';
import https from 'node:https';
import net, { type AddressInfo } from 'node:net';
import path from 'node:path';
import { brotliCompressSync, deflateSync, gzipSync } from 'node:zlib';
import t from 'tap';
import type { Test } from 'tap';
import { TestMesh, idOf, viaProxy } from '../helpers/mesh.js';
import { webCertificate } from '../helpers/web-ca.js';
import type { SidecarConfig } from '../../src/config/types.js';

const KEY = 'sk-live-9c1e4b7a2f0d4e8b9a6c3d5e7f1a2b3c';

/** Every form of the key the agent must never receive (the raw, hex and base64 encodings). */
function forbiddenForms(): string[] {
  const key = Buffer.from(KEY);
  const forms = [KEY, key.toString('hex'), key.toString('hex').toUpperCase()];
  for (let pad = 0; pad < 3; pad++) {
    // The stable middle of base64(pad bytes + key + anything): trim the characters touching either side.
    const b64 = Buffer.concat([Buffer.alloc(pad, 0x41), key]).toString('base64');
    forms.push(b64.slice(4, -4), b64.slice(4, -4).replace(/\+/g, '-').replace(/\//g, '_'));
  }
  return forms;
}

/** Reflects the request headers back, encoded as the path asks. */
class EchoApi {
  readonly seen: { url: string; headers: Record<string, string | string[] | undefined> }[] = [];
  server!: https.Server;

  async start(certPem: string, keyPem: string): Promise<number> {
    this.server = https.createServer({ cert: certPem, key: keyPem }, (req, res) => {
      req.resume();
      req.on('end', () => {
        this.seen.push({ url: req.url!, headers: req.headers });
        const url = new URL(req.url!, 'https://x');
        const pad = 'A'.repeat(Number(url.searchParams.get('pad') ?? 0));
        const echo = Buffer.from(pad + JSON.stringify({ headers: req.headers }));
        const send = (body: Buffer, headers: Record<string, string> = {}) => {
          res.writeHead(200, { 'content-type': 'application/octet-stream', ...headers });
          res.end(body);
        };
        switch (url.pathname.replace(/^\/tenant-a/, '')) {
          // Compressed although the request asked for identity: the sidecar must decode to scan.
          case '/echo/gzip':
            return send(gzipSync(echo), { 'content-encoding': 'gzip' });
          case '/echo/deflate':
            return send(deflateSync(echo), { 'content-encoding': 'deflate' });
          case '/echo/br':
            return send(brotliCompressSync(echo), { 'content-encoding': 'br' });
          case '/echo/zstd':
            return send(echo, { 'content-encoding': 'zstd' });
          case '/echo/zstd-endless':
            // Never ends: the agent must still get its complete answer.
            res.writeHead(200, { 'content-type': 'text/event-stream', 'content-encoding': 'zstd' });
            res.write(echo);
            return;
          case '/echo/base64':
            return send(Buffer.from(echo.toString('base64')));
          case '/echo/base64url':
            return send(Buffer.from(echo.toString('base64url')));
          case '/echo/hex':
            return send(Buffer.from(echo.toString('hex')));
          case '/echo/HEX':
            return send(Buffer.from(echo.toString('hex').toUpperCase()));
          case '/echo/trickle': {
            // base64 in 3-byte writes: every alignment of the key across chunk boundaries.
            const text = Buffer.from(echo.toString('base64'));
            res.writeHead(200, { 'content-type': 'text/plain' });
            let at = 0;
            const next = () => {
              if (at >= text.length) return res.end();
              res.write(text.subarray(at, (at += 3)));
              setImmediate(next);
            };
            return next();
          }
          case '/echo/gzip-trickle': {
            const gz = gzipSync(echo);
            res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'gzip' });
            let at = 0;
            const next = () => {
              if (at >= gz.length) return res.end();
              res.write(gz.subarray(at, (at += 5)));
              setImmediate(next);
            };
            return next();
          }
          default:
            return send(Buffer.from(JSON.stringify({ path: req.url })), { 'content-type': 'application/json' });
        }
      });
    });
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', () => r()));
    return (this.server.address() as AddressInfo).port;
  }

  close(): Promise<void> {
    return new Promise((r) => {
      this.server.close(() => r());
      this.server.closeAllConnections();
    });
  }
}

async function setup(t: Test) {
  const mesh = await TestMesh.start({ agents: [] });
  t.teardown(() => mesh.close());
  const { caFile, certPem, keyPem } = webCertificate(mesh.dir);
  const api = new EchoApi();
  const port = await api.start(certPem, keyPem);
  t.teardown(() => api.close());
  const keyFile = path.join(mesh.dir, 'api-key');
  writeFileSync(keyFile, `${KEY}\n`, { mode: 0o600 });
  const base = mesh.agentConfig('orchestrator', idOf('control-plane'));
  const web = { tls: 'web' as const, caFile, connectTimeoutMs: 2_000, requestTimeoutMs: 5_000 };
  const config: SidecarConfig = {
    ...base,
    outbound: {
      ...base.outbound!,
      routes: [
        { name: 'api', upstream: `https://localhost:${port}`, ...web, injectHeaders: [{ name: 'authorization', file: keyFile, prefix: 'Bearer ' }] },
        { name: 'tenant', upstream: `https://localhost:${port}/tenant-a`, ...web, injectHeaders: [{ name: 'x-api-key', file: keyFile, prefix: '' }] },
      ],
    },
  };
  const agent = await mesh.startSidecar('orchestrator', config);
  return { api, agent, proxy: `http://127.0.0.1:${agent.outbound!.address()!.port}`, admin: mesh.adminOf(agent) };
}

function assertNoKey(t: Test, what: string, body: string, headers: Record<string, unknown>) {
  const text = body + JSON.stringify(headers);
  t.same(forbiddenForms().filter((form) => text.includes(form)), [], `${what}: no raw, hex or base64 form of the key`);
  const decoded = [Buffer.from(body, 'base64'), Buffer.from(body, 'base64url'), Buffer.from(body.replace(/[^0-9a-fA-F]/g, ''), 'hex')];
  t.notOk(decoded.some((d) => d.includes(KEY)), `${what}: decoding the body as base64, base64url or hex does not reveal the key`);
}

t.test('the forms the test looks for are what an unfiltered echo would carry', async (t) => {
  // Guards the test itself: each encoding of a header echo carries one of the forbidden forms.
  const echo = (pad: number) => Buffer.from('A'.repeat(pad) + JSON.stringify({ headers: { authorization: `Bearer ${KEY}` } }));
  for (let pad = 0; pad < 3; pad++) {
    for (const text of [echo(pad).toString('base64'), echo(pad).toString('base64url'), echo(pad).toString('hex'), echo(pad).toString('hex').toUpperCase()]) {
      t.ok(forbiddenForms().some((f) => text.includes(f)), `pad ${pad}: ${text.slice(0, 16)}...`);
    }
  }
});

t.test('an echoing upstream cannot hand the key back compressed or encoded', async (t) => {
  const { api, proxy } = await setup(t);
  for (const p of ['/echo/gzip', '/echo/deflate', '/echo/br']) {
    const r = await viaProxy(proxy, 'GET', `http://api${p}`, { headers: { 'accept-encoding': 'gzip, deflate, br' } });
    t.equal(r.status, 200, p);
    t.equal(r.headers['content-encoding'], undefined, `${p}: the agent gets the body decoded`);
    t.match(JSON.parse(r.body).headers.authorization, 'Bearer [redacted]', `${p}: the echo is readable and scrubbed`);
    assertNoKey(t, p, r.body, r.headers);
  }
  t.ok(api.seen.length >= 3);
  for (const s of api.seen) t.equal(s.headers['accept-encoding'], 'identity', 'the upstream was asked for an unencoded body, whatever the agent sent');
  for (const p of ['/echo/base64', '/echo/base64url', '/echo/hex', '/echo/HEX', '/echo/trickle', '/echo/gzip-trickle']) {
    for (let pad = 0; pad < 3; pad++) {
      const r = await viaProxy(proxy, 'GET', `http://api${p}?pad=${pad}`);
      t.equal(r.status, 200, p);
      assertNoKey(t, `${p} pad ${pad}`, r.body, r.headers);
    }
  }
  // An encoding the sidecar cannot undo could carry the key unseen: refused, not relayed.
  const zstd = await viaProxy(proxy, 'GET', 'http://api/echo/zstd');
  t.equal(zstd.status, 502);
  t.match(JSON.parse(zstd.body).error, /content-encoding 'zstd' cannot be scanned/);
  t.notOk(zstd.body.includes(KEY));
  const endless = await viaProxy(proxy, 'GET', 'http://api/echo/zstd-endless');
  t.equal(endless.status, 502, 'the refusal is complete without waiting for the upstream to end');
  t.notOk(endless.body.includes(KEY));
});

/** One request written byte for byte on a raw socket (curl and Node normalise paths). */
function rawRequest(proxy: string, requestLine: string): Promise<string> {
  const { hostname, port } = new URL(proxy);
  return new Promise((resolve, reject) => {
    // Not half-closed: Node's server drops a request whose client sent FIN before the answer.
    const socket = net.connect(Number(port), hostname, () => socket.write(`${requestLine}\r\nHost: tenant\r\nConnection: close\r\n\r\n`));
    let data = '';
    socket.setEncoding('latin1');
    socket.on('data', (c: string) => (data += c));
    socket.on('end', () => resolve(data));
    socket.on('error', reject);
  });
}

t.test("a route's upstream base path cannot be escaped", async (t) => {
  const { api, proxy, admin } = await setup(t);
  const ok = await rawRequest(proxy, 'GET http://tenant/v1/x HTTP/1.1');
  t.match(ok, /^HTTP\/1\.1 200 /);
  t.equal(api.seen.at(-1)?.url, '/tenant-a/v1/x', 'a canonical path goes under the base path');
  const before = api.seen.length;
  for (const target of [
    'http://tenant/../tenant-b/x',
    'http://tenant/v1/../../tenant-b/x',
    'http://tenant/%2e%2e/tenant-b/x',
    'http://tenant/.%2e/tenant-b/x',
    'http://tenant/..%2ftenant-b/x',
    'http://tenant/..%5ctenant-b/x',
    'http://tenant/..\\tenant-b/x',
    'http://tenant/..;/tenant-b/x',
    'http://tenant//tenant-b/x',
    '/../tenant-b/x',
  ]) {
    const r = await rawRequest(proxy, `GET ${target} HTTP/1.1`);
    t.match(r, /^HTTP\/1\.1 400 /, target);
    t.match(r, /Malformed request path/, target);
  }
  t.equal(api.seen.length, before, 'none of them reached the upstream (nor carried the key anywhere)');
  const metrics = await (await fetch(`${admin}/metrics`)).text();
  t.match(metrics, /attest_sidecar_requests_total\{direction="outbound",decision="deny",reason="path_not_canonical",sidecar="orchestrator"\} 10/);
});
