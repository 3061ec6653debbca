/**
 * The read-only probe endpoints both the admin listener and the health listener serve, with
 * identical bodies: /healthz (the process answers), /readyz (every readiness check ok) and
 * /metrics (Prometheus text, or OpenMetrics when the scraper asks for it).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Registry } from 'prom-client';
import type { ReadinessCheck } from '../lib/readiness.js';
import { sendJson } from './json.js';
import { OPENMETRICS_CONTENT_TYPE, openMetricsText, wantsOpenMetrics } from './openmetrics.js';

export interface ProbeDeps {
  readiness: () => Record<string, ReadinessCheck>;
  registry: Registry;
}

export type ProbeHandler = (req: IncomingMessage, res: ServerResponse, deps: ProbeDeps) => void | Promise<void>;

function health(_req: IncomingMessage, res: ServerResponse): void {
  sendJson(res, 200, { status: 'ok' });
}

function readiness(_req: IncomingMessage, res: ServerResponse, deps: ProbeDeps): void {
  const checks = deps.readiness();
  const ready = Object.values(checks).every((c) => c.ok);
  sendJson(res, ready ? 200 : 503, { ready, checks });
}

async function metrics(req: IncomingMessage, res: ServerResponse, deps: ProbeDeps): Promise<void> {
  const registry = deps.registry;
  const openMetrics = wantsOpenMetrics(req.headers.accept);
  const body = openMetrics ? await openMetricsText(registry) : await registry.metrics();
  res.writeHead(200, { 'content-type': openMetrics ? OPENMETRICS_CONTENT_TYPE : registry.contentType, 'cache-control': 'no-store', vary: 'accept' });
  res.end(req.method === 'HEAD' ? undefined : body);
}

/** Path -> handler of the probe endpoints (GET and HEAD). */
export const PROBES: ReadonlyMap<string, ProbeHandler> = new Map<string, ProbeHandler>([
  ['/healthz', health],
  ['/readyz', readiness],
  ['/metrics', metrics],
]);
