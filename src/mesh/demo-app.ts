/**
 * The reference deployment's control-plane app (development only): a tiny HTTP service behind
 * the control-plane sidecar. It trusts the `x-spiffe-id` header because only the sidecar can
 * reach it; it echoes the caller so users can see the verified identity arrive.
 */
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { closeServer, listen } from '../lib/net.js';

interface Task {
  id: number;
  created_by: string;
  body: unknown;
}

export class DemoApp {
  private server: http.Server | undefined;
  private readonly tasks: Task[] = [];
  private harnesses = 0;

  address(): AddressInfo {
    return this.server!.address() as AddressInfo;
  }

  async start(host = '127.0.0.1', port = 8080): Promise<void> {
    const server = http.createServer((req, res) => {
      this.handle(req, res).catch(() => {
        if (!res.headersSent) send(res, 500, { error: 'internal error' });
      });
    });
    this.server = server;
    await listen(server, { host, port });
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://app');
    const caller = String(req.headers['x-spiffe-id'] ?? 'unknown');
    const method = req.method ?? 'GET';
    const parts = url.pathname.split('/').filter(Boolean);
    if (method === 'GET' && url.pathname === '/agents') {
      send(res, 200, { caller, agents: ['orchestrator', 'harness-writer'].map((name) => ({ id: name, status: 'running' })) });
    } else if (method === 'GET' && parts.length === 3 && parts[0] === 'agents' && parts[2] === 'status') {
      send(res, 200, { caller, id: parts[1], status: 'running', tasks: this.tasks.length });
    } else if (method === 'POST' && url.pathname === '/tasks') {
      const body = await readJson(req);
      const task = { id: this.tasks.length + 1, created_by: caller, body };
      this.tasks.push(task);
      send(res, 201, { caller, task });
    } else if (method === 'GET' && url.pathname === '/fuzzer/crashes') {
      send(res, 200, { caller, crashes: [{ id: 'crash-0001', signal: 'SIGSEGV', input: 'corpus/seed-17' }] });
    } else if (method === 'GET' && url.pathname === '/fuzzer/corpus') {
      send(res, 200, { caller, corpus: ['seed-01', 'seed-17', 'seed-42'] });
    } else if (method === 'GET' && parts.length === 3 && parts[0] === 'fuzzer' && parts[1] === 'source') {
      send(res, 200, { caller, file: parts[2], source: `/* ${parts[2]} */\nint parse(const char *in) { return 0; }\n` });
    } else if (method === 'POST' && url.pathname === '/fuzzer/harness') {
      const body = await readJson(req);
      this.harnesses += 1;
      send(res, 201, { caller, harness: this.harnesses, accepted: body !== undefined });
    } else {
      send(res, 404, { error: `No route ${method} ${url.pathname}` });
    }
  }

  async close(): Promise<void> {
    if (this.server) await closeServer(this.server);
  }
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body) + '\n';
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > 1 << 20) throw new Error('body too large');
    chunks.push(chunk as Buffer);
  }
  if (size === 0) return undefined;
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    return Buffer.concat(chunks).toString('utf8');
  }
}
