/**
 * Admin listener (loopback by default): /healthz (process alive), /readyz (can serve traffic),
 * /metrics (Prometheus exposition), /status (JSON snapshot for operators and the status page).
 * Read-only for now; mutations (kill switch) come with their own authentication.
 */
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from '../log.js';
import { closeServer, listen } from '../net.js';
import type { SidecarMetrics } from './metrics.js';

export interface ReadinessCheck {
  ok: boolean;
  detail?: string;
}

export interface AdminDeps {
  listen: { host: string; port: number };
  metrics: SidecarMetrics;
  readiness: () => Record<string, ReadinessCheck>;
  status: () => unknown;
  logger: Logger;
}

export class AdminServer {
  private server: http.Server | undefined;

  constructor(private readonly deps: AdminDeps) {}

  address(): AddressInfo | undefined {
    const a = this.server?.address();
    return a && typeof a === 'object' ? a : undefined;
  }

  async start(): Promise<void> {
    const server = http.createServer((req, res) => {
      this.handle(req, res).catch((err: unknown) => {
        this.deps.logger.error({ err: (err as Error).message }, 'admin request failed');
        if (!res.headersSent) json(res, 500, { error: 'Internal error' });
        else res.destroy();
      });
    });
    this.server = server;
    await listen(server, this.deps.listen);
    this.deps.logger.info({ address: this.address() }, 'admin listening');
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      json(res, 405, { error: `Method ${req.method} not allowed` }, { allow: 'GET, HEAD' });
      return;
    }
    switch (path) {
      case '/healthz':
        json(res, 200, { status: 'ok' });
        return;
      case '/readyz': {
        const checks = this.deps.readiness();
        const ready = Object.values(checks).every((c) => c.ok);
        json(res, ready ? 200 : 503, { ready, checks });
        return;
      }
      case '/metrics': {
        const body = await this.deps.metrics.registry.metrics();
        res.writeHead(200, { 'content-type': this.deps.metrics.registry.contentType, 'cache-control': 'no-store' });
        res.end(body);
        return;
      }
      case '/status':
        json(res, 200, this.deps.status());
        return;
      default:
        json(res, 404, { error: `No admin endpoint ${path}` });
    }
  }

  async close(): Promise<void> {
    if (this.server) await closeServer(this.server);
  }
}

function json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body, null, 2) + '\n';
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
    ...headers,
  });
  res.end(text);
}
