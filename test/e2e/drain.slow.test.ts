/**
 * SIGTERM drain of `attest-sidecar run` processes, with real signals: a streamed response that
 * outlives the signal completes intact, an outbound request waiting on its upstream gets its
 * answer (with `Connection: close`), new connections are refused, /readyz on the health listener
 * answers 503 `draining`, a request past `drain_timeout` is cut and the process still exits 0,
 * and a second signal exits at once.
 */
import http from 'node:http';
import net from 'node:net';
import { once } from 'node:events';
import type { ChildProcess } from 'node:child_process';
import type { AddressInfo } from 'node:net';
import t from 'tap';
import { SidecarProcesses } from '../helpers/sidecar-process.js';
import { freePort } from '../helpers/ports.js';

const STREAM_CHUNKS = 16;
const CHUNK_MS = 250;

/** The app: /things/stream streams STREAM_CHUNKS lines, /things/late answers after a pause, /things/forever never ends. */
class StreamApp {
  /** Requests the app has received, by path. */
  readonly received = new Map<string, number>();
  readonly server = http.createServer((req, res) => {
    const url = req.url ?? '';
    this.received.set(url, (this.received.get(url) ?? 0) + 1);
    if (url.startsWith('/things/stream')) {
      res.writeHead(200, { 'content-type': 'text/plain' });
      let i = 0;
      const timer = setInterval(() => {
        res.write(`chunk ${i}\n`);
        if (++i === STREAM_CHUNKS) {
          clearInterval(timer);
          res.end('done\n');
        }
      }, CHUNK_MS);
      res.on('close', () => clearInterval(timer));
    } else if (url.startsWith('/things/late')) {
      const timer = setTimeout(() => res.end('late answer\n'), 3_000);
      res.on('close', () => clearTimeout(timer));
    } else if (url.startsWith('/things/forever')) {
      res.writeHead(200, { 'content-type': 'text/plain' });
      const timer = setInterval(() => res.write('more\n'), CHUNK_MS);
      res.on('close', () => clearInterval(timer));
    } else {
      res.end('ok\n');
    }
  });

  async start(): Promise<string> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', () => r()));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}

interface Streamed {
  status: number;
  headers: http.IncomingHttpHeaders;
  /** Resolves with the whole body and when it ended, or rejects when the response was cut. */
  body: Promise<{ text: string; endedAt: number }>;
  /** Resolves at the first body byte. */
  firstByte: Promise<void>;
}

/** A GET through the agent sidecar's outbound proxy (route `things`); resolves at the response head. */
function viaOutbound(port: number, path: string): Promise<Streamed> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: `http://things${path}`, agent: false, headers: { host: 'things' } }, (res) => {
      let text = '';
      let first: () => void;
      const firstByte = new Promise<void>((r) => (first = r));
      const body = new Promise<{ text: string; endedAt: number }>((ok, cut) => {
        res.on('data', (d: Buffer) => {
          text += d.toString('utf8');
          first();
        });
        res.on('end', () => ok({ text, endedAt: Date.now() }));
        res.on('aborted', () => cut(new Error(`cut after ${JSON.stringify(text.slice(-40))}`)));
        res.on('error', (err) => cut(err));
      });
      body.catch(() => undefined);
      resolve({ status: res.statusCode!, headers: res.headers, body, firstByte });
    });
    req.on('error', reject);
    req.end();
  });
}

/** Resolves with the exit code (or signal) and the time it exited. */
function exited(p: ChildProcess): Promise<{ code: number | null; signal: string | null; at: number }> {
  if (p.exitCode !== null || p.signalCode !== null) return Promise.resolve({ code: p.exitCode, signal: p.signalCode, at: Date.now() });
  return once(p, 'exit').then(([code, signal]) => ({ code: code as number | null, signal: signal as string | null, at: Date.now() }));
}

function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms)))]).finally(() => clearTimeout(timer));
}

/** Resolves with the connect error code, or 'connected'. */
function tryConnect(port: number): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve('connected');
    });
    s.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
  });
}

t.test('a stream through the inbound sidecar outlives its SIGTERM; readiness says draining; new connections are refused', async (t) => {
  const healthPort = await freePort();
  const procs = await SidecarProcesses.start({ app: new StreamApp(), serviceTop: `health: { listen: "127.0.0.1:${healthPort}" }\ndrain_timeout: 60s` });
  t.teardown(() => procs.close());
  const service = procs.procs[0]!;
  const stream = await viaOutbound(procs.ports.outbound, '/things/stream');
  t.equal(stream.status, 200);
  await stream.firstByte;
  const exit = exited(service);
  service.kill('SIGTERM');

  const ready = await procs.until(async () => {
    const r = await fetch(`http://127.0.0.1:${healthPort}/readyz`);
    return r.status === 503 ? ((await r.json()) as { ready: boolean; checks: Record<string, { ok: boolean; detail?: string }> }) : undefined;
  }, '/readyz 503 on the health listener');
  t.equal(ready.ready, false);
  t.match(ready.checks.draining, { ok: false, detail: /draining/ });
  t.equal(await tryConnect(procs.ports.inbound), 'ECONNREFUSED', 'inbound listener no longer accepts');
  t.equal(await tryConnect(procs.ports.adminIn), 'ECONNREFUSED', 'admin listener no longer accepts');
  t.equal((await fetch(`http://127.0.0.1:${healthPort}/healthz`)).status, 200, 'the health listener still answers');

  const body = await stream.body;
  const expected = Array.from({ length: STREAM_CHUNKS }, (_, i) => `chunk ${i}\n`).join('') + 'done\n';
  t.equal(body.text, expected, 'the whole stream, intact');
  const { code, signal, at } = await exit;
  t.equal(code, 0, `exit 0 (signal ${signal})`);
  t.ok(at >= body.endedAt, 'the process exited after the stream ended');
  const agentAudit = procs.auditRecords().filter((r) => r.type === 'inbound_decision');
  t.ok(agentAudit.some((r) => r.decision === 'allow' && r.status === 200), 'the streamed request was audited before exit (audit flushed)');
});

t.test('an outbound request waiting on its upstream gets its answer, with Connection: close', async (t) => {
  const app = new StreamApp();
  const procs = await SidecarProcesses.start({ app });
  t.teardown(() => procs.close());
  const agent = procs.procs[1]!;
  // A kept-alive connection with no request in progress: closed when the drain starts.
  const keepAlive = new http.Agent({ keepAlive: true });
  t.teardown(() => keepAlive.destroy());
  const idle = await new Promise<net.Socket>((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: procs.ports.outbound, path: 'http://things/things/1', agent: keepAlive, headers: { host: 'things' } }, (res) => {
      res.resume();
      res.on('end', () => setImmediate(() => resolve(req.socket!)));
    });
    req.on('error', reject);
    req.end();
  });
  t.notOk(idle.destroyed, 'kept alive after its answer');
  const idleErrors: string[] = [];
  idle.on('error', (err: NodeJS.ErrnoException) => idleErrors.push(err.code ?? err.message));
  const idleClosed = within(once(idle, 'close'), 30_000, 'the idle connection to close');
  const pending = viaOutbound(procs.ports.outbound, '/things/late');
  // At the app: its answer is due in 3 s, and the agent sidecar waits on it.
  await procs.until(async () => (app.received.has('/things/late') ? true : undefined), 'the request to reach the app');
  const exit = exited(agent);
  agent.kill('SIGTERM');
  await procs.until(async () => ((await tryConnect(procs.ports.outbound)) === 'ECONNREFUSED' ? true : undefined), 'the outbound listener to stop accepting');
  await idleClosed;
  t.same(idleErrors, [], 'the idle kept-alive connection was closed cleanly (no reset)');
  const res = await pending;
  t.equal(res.status, 200);
  t.equal(res.headers.connection, 'close', 'answered during the drain: Connection: close');
  t.equal((await res.body).text, 'late answer\n');
  const { code } = await exit;
  t.equal(code, 0);
});

t.test('a request past drain_timeout is cut; the process exits 0 after the timeout', async (t) => {
  const procs = await SidecarProcesses.start({ app: new StreamApp(), agentTop: 'drain_timeout: 2s' });
  t.teardown(() => procs.close());
  const agent = procs.procs[1]!;
  const forever = await viaOutbound(procs.ports.outbound, '/things/forever');
  t.equal(forever.status, 200);
  await forever.firstByte;
  const exit = exited(agent);
  const sentAt = Date.now();
  agent.kill('SIGTERM');
  await t.rejects(forever.body, 'the endless response is cut');
  const { code, at } = await exit;
  t.equal(code, 0, 'exit 0 after cutting');
  t.ok(at - sentAt >= 2_000, `waited for drain_timeout before cutting (${at - sentAt} ms)`);
  t.ok(at - sentAt < 60_000, 'exited within a generous bound');
  t.match(procs.stderr(), /SIGTERM, shutting down/);
  t.match(procs.stderr(), /"reason":"drain_timeout","cut":1,[^\n]*drain timeout: cut 1 request\(s\) still in progress/, 'the cut is logged (and flushed before exit)');
});

t.test('a second signal exits at once, non-zero', async (t) => {
  const procs = await SidecarProcesses.start({ app: new StreamApp() });
  t.teardown(() => procs.close());
  const agent = procs.procs[1]!;
  const forever = await viaOutbound(procs.ports.outbound, '/things/forever');
  await forever.firstByte;
  const exit = exited(agent);
  agent.kill('SIGTERM');
  await procs.until(async () => ((await tryConnect(procs.ports.outbound)) === 'ECONNREFUSED' ? true : undefined), 'the drain to start');
  t.equal(agent.exitCode, null, 'still draining (drain_timeout 25s by default)');
  agent.kill('SIGTERM');
  const { code } = await exit;
  t.equal(code, 1);
  t.match(procs.stderr(), /SIGTERM again, exiting now/);
});
