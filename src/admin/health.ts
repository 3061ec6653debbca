/**
 * Health listener: the probe endpoints (/healthz, /readyz, /metrics, see probes.ts) on an
 * address kubelet and Prometheus reach (the pod IP), and nothing else. The admin listener, with
 * /status and the kill switch API, stays on loopback: no path here leads to it.
 *
 * It keeps answering while the sidecar drains (so probes see /readyz 503 `draining`) and closes
 * last.
 */
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from '../lib/log.js';
import type { ReadinessCheck } from '../lib/readiness.js';
import { closeServer, listen, throttledListenerErrorLog } from '../lib/net.js';
import { ADMIN_LIMITS, guardListener, serverLimitOptions } from '../lib/listener-limits.js';
import { READ_METHODS, adminRefusal, methodNotAllowed, sendRefusal } from './json.js';
import { PROBES, type ProbeDeps } from './probes.js';
import type { AdminMetrics } from './server.js';
import type { AuditSink } from '../audit/record.js';
import { AggregatedAudit } from '../audit/aggregate.js';

export interface HealthDeps {
  listen: { host: string; port: number };
  metrics: AdminMetrics;
  readiness: () => Record<string, ReadinessCheck>;
  logger: Logger;
  /** Where refused connections are audited (aggregated); absent: counted only. */
  audit?: AuditSink;
}

const INTERNAL_ERROR = adminRefusal('internal_error', 'Internal error');

export class HealthServer {
  private server: http.Server | undefined;
  private readonly probeDeps: ProbeDeps;
  private readonly refusals: AggregatedAudit | undefined;

  constructor(private readonly deps: HealthDeps) {
    this.probeDeps = { readiness: deps.readiness, registry: deps.metrics.registry };
    this.refusals = deps.audit ? new AggregatedAudit(deps.audit) : undefined;
  }

  address(): AddressInfo | undefined {
    const a = this.server?.address();
    return a && typeof a === 'object' ? a : undefined;
  }

  async start(): Promise<void> {
    const server = http.createServer(serverLimitOptions(ADMIN_LIMITS, false), (req, res) => this.handle(req, res));
    guardListener(server, { listener: 'health', limits: ADMIN_LIMITS, metrics: this.deps.metrics, ...(this.refusals ? { audit: this.refusals } : {}) }, { tls: false });
    this.server = server;
    await listen(server, this.deps.listen, throttledListenerErrorLog(this.deps.logger, 'health'));
    this.deps.logger.info({ address: this.address() }, 'health listening (/healthz, /readyz, /metrics only)');
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const path = (req.url ?? '/').split('?')[0]!;
    const probe = PROBES.get(path);
    if (!probe) {
      sendRefusal(res, adminRefusal('admin_endpoint_unknown', `No endpoint ${path.slice(0, 200)} on the health listener (it serves /healthz, /readyz and /metrics)`));
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      sendRefusal(res, methodNotAllowed(req.method, READ_METHODS));
      return;
    }
    Promise.resolve(probe(req, res, this.probeDeps)).catch((err: unknown) => {
      this.deps.logger.error({ err: (err as Error).message }, 'health request failed');
      if (!res.headersSent) sendRefusal(res, INTERNAL_ERROR);
      else res.destroy();
    });
  }

  async close(): Promise<void> {
    this.refusals?.close();
    if (this.server) await closeServer(this.server);
  }
}
