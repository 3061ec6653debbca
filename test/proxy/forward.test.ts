/**
 * forwardRequestThen over real sockets: a plain HTTP front (the proxy) forwarding through an
 * undici Pool to an upstream server, on the plain path (no response hooks).
 */
import t, { type Test } from 'tap';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import { createHash } from 'node:crypto';
import net, { type AddressInfo } from 'node:net';
import { Pool } from '../../src/undici/pool.js';
import { forwardRequestHeaders } from '../../src/proxy/headers.js';
import { CLIENT_CLOSED_STATUS, forwardRequestThen, type ForwardResult, type UpstreamFailure } from '../../src/proxy/forward.js';

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

async function listen(handler: Handler): Promise<{ server: http.Server; url: string }> {
  const server = http.createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

/** Upstream + proxy front; every result passed to `done` is collected. */
async function setup(t: Test, upstream: Handler, timeoutMs = 10_000) {
  const up = await listen(upstream);
  const pool = new Pool(up.url, { connections: 4 });
  const results: ForwardResult[] = [];
  const settled: Array<() => void> = [];
  const front = await listen((req, res) => {
    const headers = forwardRequestHeaders(req.rawHeaders, undefined);
    forwardRequestThen(pool, req, res, { path: req.url!, headers, headersTimeoutMs: timeoutMs, bodyTimeoutMs: timeoutMs }, (r) => {
      results.push(r);
      if (typeof r !== 'number') {
        res.writeHead(r.status, { 'content-type': 'application/json' }).end(JSON.stringify({ error: r.message }));
      }
      settled.shift()?.();
    });
  });
  t.teardown(async () => {
    front.server.closeAllConnections();
    up.server.closeAllConnections();
    front.server.close();
    up.server.close();
    await pool.destroy();
  });
  const nextResult = () => new Promise<void>((resolve) => settled.push(resolve));
  return { front: front.url, upstream: up.url, results, nextResult };
}

const get = (url: string) => new Promise<IncomingMessage>((resolve, reject) => http.get(url, resolve).on('error', reject));

t.test('response headers: repeated fields kept, hop-by-hop and Connection-listed dropped, bytes unchanged', async (t) => {
  const { front, upstream, results } = await setup(t, (_req, res) => {
    res.writeHead(201, [
      'Set-Cookie', 'a=1', 'Set-Cookie', 'b=2',
      'Connection', 'X-Hop', 'X-Hop', 'secret', 'Keep-Alive', 'timeout=77',
      'X-Latin1', 'caf\u00e9',
      'Content-Length', '2',
    ]);
    res.end(Buffer.from('ok'));
  });
  const res = await get(`${front}/h`);
  const direct = await get(`${upstream}/h`);
  direct.resume();
  let body = '';
  for await (const c of res) body += c;
  t.equal(res.statusCode, 201);
  t.equal(body, 'ok');
  t.same(res.headers['set-cookie'], ['a=1', 'b=2']);
  t.equal(res.headers['x-hop'], undefined, 'a field the upstream named in Connection is hop-by-hop');
  t.not(res.headers['keep-alive'], 'timeout=77', 'the upstream keep-alive parameters are not relayed');
  const bytes = (v: unknown) => Buffer.from(v as string, 'latin1').toString('hex');
  t.equal(bytes(direct.headers['x-latin1']), '636166e9', 'the upstream sends one latin1 byte');
  t.equal(bytes(res.headers['x-latin1']), bytes(direct.headers['x-latin1']), 'relayed byte for byte');
  t.same(results, [201]);
});

t.test('a large response streams with backpressure to a slow reader, intact', async (t) => {
  const chunk = Buffer.alloc(64 * 1024, 7);
  const total = 1024; // 64 MiB: more than every socket buffer on the way can hold
  let sent = 0;
  const expected = createHash('sha256');
  for (let i = 0; i < total; i++) expected.update(chunk);
  const { front, results } = await setup(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream' });
    const pump = () => {
      while (sent < total) {
        sent++;
        if (!res.write(chunk)) return void res.once('drain', pump);
      }
      res.end();
    };
    pump();
  });
  const res = await get(`${front}/big`);
  res.pause();
  // Not reading: the whole chain must stall, so the upstream stops sending.
  await new Promise((r) => setTimeout(r, 1000));
  const after1s = sent;
  await new Promise((r) => setTimeout(r, 500));
  t.ok(sent < total, `the upstream was held back (${sent} of ${total} chunks sent)`);
  t.equal(sent, after1s, 'and stays stalled while the client does not read');
  const hash = createHash('sha256');
  for await (const c of res) hash.update(c as Buffer);
  t.equal(hash.digest('hex'), expected.digest('hex'));
  t.same(results, [200]);
});

t.test('the client going away mid-response abandons the upstream exchange', async (t) => {
  let upstreamClosed!: () => void;
  const closed = new Promise<void>((resolve) => (upstreamClosed = resolve));
  const { front, results, nextResult } = await setup(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.write('first part');
    res.on('close', upstreamClosed); // never ends on its own
  });
  const settled = nextResult();
  const res = await get(`${front}/hang`);
  await new Promise<void>((resolve) => res.once('data', () => resolve()));
  res.destroy();
  const bound = new Promise<string>((resolve) => setTimeout(() => resolve('timed out'), 3000).unref());
  t.equal(await Promise.race([closed.then(() => 'closed'), bound]), 'closed', 'upstream closed well before the 10 s body timeout');
  await settled;
  t.same(results, [200], 'settled once, with the status already sent');
});

t.test('the upstream failing mid-body destroys the client connection (no whole-looking truncation)', async (t) => {
  const { front, results, nextResult } = await setup(t, (_req, res) => {
    res.writeHead(200, { 'content-length': '100' });
    res.write('only part');
    setTimeout(() => res.socket!.destroy(), 50);
  });
  const settled = nextResult();
  const res = await get(`${front}/cut`);
  const outcome = await new Promise<string>((resolve) => {
    res.on('data', () => undefined);
    res.on('end', () => resolve('end'));
    res.on('error', () => resolve('error'));
    res.on('aborted', () => resolve('aborted'));
  });
  t.not(outcome, 'end');
  await settled;
  t.same(results, [200]);
});

t.test('the client going away before the response abandons the upstream exchange (499, not an upstream error)', async (t) => {
  let upstreamClosed!: () => void;
  const closed = new Promise<void>((resolve) => (upstreamClosed = resolve));
  let arrived!: () => void;
  const atUpstream = new Promise<void>((resolve) => (arrived = resolve));
  const { front, results, nextResult } = await setup(t, (req) => {
    arrived();
    req.socket.on('close', upstreamClosed); // never answers
  });
  const settled = nextResult();
  const req = http.get(`${front}/silent`);
  req.on('error', () => undefined);
  await atUpstream;
  req.destroy();
  const bound = new Promise<string>((resolve) => setTimeout(() => resolve('timed out'), 3000).unref());
  t.equal(await Promise.race([closed.then(() => 'closed'), bound]), 'closed', 'upstream closed well before the 10 s headers timeout');
  await settled;
  t.same(results, [CLIENT_CLOSED_STATUS]);
});

t.test('a paused response is abandoned when its client leaves', async (t) => {
  let upstreamClosed!: () => void;
  const closed = new Promise<void>((resolve) => (upstreamClosed = resolve));
  const chunk = Buffer.alloc(64 * 1024, 1);
  const { front, results, nextResult } = await setup(t, (_req, res) => {
    res.writeHead(200);
    const pump = () => {
      while (res.write(chunk));
      res.once('drain', pump);
    };
    pump();
    res.on('close', upstreamClosed);
  });
  const settled = nextResult();
  const res = await get(`${front}/flood`);
  res.pause();
  await new Promise((r) => setTimeout(r, 300)); // the chain fills up and undici pauses
  res.destroy();
  const bound = new Promise<string>((resolve) => setTimeout(() => resolve('timed out'), 3000).unref());
  t.equal(await Promise.race([closed.then(() => 'closed'), bound]), 'closed');
  await settled;
  t.same(results, [200]);
});

t.test('pipelined exchanges on one client connection: one ending in the middle, the rest abandoned together when the client leaves', async (t) => {
  // Three requests in one write: Node's server dispatches all of them at once, so the
  // connection has three exchanges in flight. The middle one ends first (unlinked from the
  // middle of the connection's list); closing the connection must then abandon the other two.
  let arrivals = 0;
  let allArrived!: () => void;
  const arrived = new Promise<void>((resolve) => (allArrived = resolve));
  let upstreamClosed = 0;
  let bothClosed!: () => void;
  const closed = new Promise<void>((resolve) => (bothClosed = resolve));
  const { front, results, nextResult } = await setup(t, (req, res) => {
    if (++arrivals === 3) allArrived();
    if (req.url === '/fast') return void res.end('ok');
    req.socket.on('close', () => {
      if (++upstreamClosed === 2) bothClosed();
    }); // never answers
  });
  const settledFast = nextResult();
  const { port } = new URL(front);
  const socket = net.connect(Number(port), '127.0.0.1');
  socket.on('error', () => undefined);
  await new Promise<void>((resolve) => socket.once('connect', resolve));
  socket.write(['/hang-1', '/fast', '/hang-2'].map((p) => `GET ${p} HTTP/1.1\r\nHost: x\r\n\r\n`).join(''));
  await arrived;
  await settledFast;
  t.same(results, [200], 'the middle exchange ended on its own');
  const rest = Promise.all([nextResult(), nextResult()]);
  socket.destroy();
  const bound = new Promise<string>((resolve) => setTimeout(() => resolve('timed out'), 3000).unref());
  t.equal(await Promise.race([closed.then(() => 'closed'), bound]), 'closed', 'both hanging upstream exchanges closed well before the 10 s headers timeout');
  await rest;
  t.same(results, [200, CLIENT_CLOSED_STATUS, CLIENT_CLOSED_STATUS], 'each settled once');
});

t.test('many exchanges on one kept-alive client connection: each settles once, no listener growth', async (t) => {
  const up = await listen((_req, res) => res.end('x'));
  const pool = new Pool(up.url, { connections: 1 });
  const results: ForwardResult[] = [];
  const closeListeners: number[] = [];
  const front = await listen((req, res) => {
    forwardRequestThen(pool, req, res, { path: req.url!, headers: [], headersTimeoutMs: 5000, bodyTimeoutMs: 5000 }, (r) => {
      results.push(r);
      closeListeners.push(req.socket.listenerCount('close'));
    });
  });
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  t.teardown(async () => {
    agent.destroy();
    front.server.closeAllConnections();
    up.server.closeAllConnections();
    front.server.close();
    up.server.close();
    await pool.destroy();
  });
  const ports = new Set<number>();
  for (let i = 0; i < 50; i++) {
    const res = await new Promise<IncomingMessage>((resolve, reject) => http.get(`${front.url}/k`, { agent }, resolve).on('error', reject));
    ports.add(res.socket.localPort!);
    res.resume();
    await new Promise((r) => res.on('end', r));
  }
  t.equal(ports.size, 1, 'one client connection');
  t.equal(results.length, 50);
  t.ok(results.every((r) => r === 200));
  t.equal(new Set(closeListeners).size, 1, `the same number of close listeners after every exchange (${closeListeners[0]})`);
});

t.test('upstream failures before any response map to status and reason, exactly once', async (t) => {
  t.test('headers timeout: 504 upstream_timeout', async (t) => {
    const { front, results } = await setup(t, () => undefined, 200);
    const res = await get(`${front}/slow`);
    res.resume();
    t.equal(res.statusCode, 504);
    t.equal(results.length, 1);
    t.equal((results[0] as UpstreamFailure).reason, 'upstream_timeout');
  });
  t.test('a malformed upstream response header: 502 naming it, and the proxy goes on', async (t) => {
    const net = await import('node:net');
    const up = net.createServer((s) => s.once('data', () => s.end('HTTP/1.1 200 OK\r\nX-Bad: a\x7fb\r\nContent-Length: 2\r\n\r\nok')));
    await new Promise<void>((resolve) => up.listen(0, '127.0.0.1', resolve));
    const pool = new Pool(`http://127.0.0.1:${(up.address() as AddressInfo).port}`);
    const results: ForwardResult[] = [];
    const front = await listen((req, res) => {
      forwardRequestThen(pool, req, res, { path: '/', headers: [], headersTimeoutMs: 2000, bodyTimeoutMs: 2000 }, (r) => {
        results.push(r);
        const f = r as UpstreamFailure;
        res.writeHead(f.status, { 'content-type': 'application/json' }).end(JSON.stringify({ error: f.message }));
      });
    });
    t.teardown(async () => {
      front.server.closeAllConnections();
      front.server.close();
      up.close();
      await pool.destroy();
    });
    for (let i = 0; i < 2; i++) {
      const res = await get(`${front.url}/`);
      let body = '';
      for await (const c of res) body += c;
      t.equal(res.statusCode, 502);
      t.match(JSON.parse(body).error, /Invalid header value char/);
    }
    t.match(results, [{ status: 502, reason: 'upstream_error' }, { status: 502, reason: 'upstream_error' }]);
  });
  t.test('connection refused: 503 upstream_unavailable', async (t) => {
    const { server, url } = await listen(() => undefined);
    await new Promise((r) => server.close(r));
    const pool = new Pool(url);
    t.teardown(() => pool.destroy());
    const results: ForwardResult[] = [];
    const front = await listen((req, res) => {
      forwardRequestThen(pool, req, res, { path: '/', headers: [], headersTimeoutMs: 1000, bodyTimeoutMs: 1000 }, (r) => {
        results.push(r);
        res.writeHead(599).end();
      });
    });
    t.teardown(() => front.server.close());
    const res = await get(`${front.url}/`);
    res.resume();
    t.equal(results.length, 1);
    t.match(results[0], { status: 503, reason: 'upstream_unavailable' });
  });
});
