/**
 * Outbound proxy (the agent's side): plain HTTP on loopback in, mTLS with the pod's SVID out.
 *
 * Agents use it as an HTTP proxy (`HTTP_PROXY=http://127.0.0.1:15001`, absolute-form
 * `http://control-plane/tasks`) or send origin-form requests with the route name as Host.
 * Each request runs the filter chain (filters/index.ts) and ends at the router. Every route has
 * its own undici Pool built on the TLS context of the current identity generation; a rotation
 * swaps in new pools and drains the old ones gracefully, so new connections use the new SVID at
 * once and no in-flight request fails.
 */
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { OutboundConfig } from '../../config/types.js';
import type { Logger } from '../../lib/log.js';
import type { AuditSink } from '../../audit/record.js';
import type { Attester } from '../../attestation/attester.js';
import type { TlsMaterial } from '../../spiffe/tls.js';
import type { RevocationState } from '../../revocation/state.js';
import type { PolicyBudget } from '../../budget/period.js';
import { REASONS } from '../../reasons.js';
import { closeServer, listen, throttledListenerErrorLog } from '../../lib/net.js';
import { answerAndClose, guardListener, serverLimitOptions } from '../../lib/listener-limits.js';
import { listenerDrain } from '../../lib/listener-drain.js';
import { composeLegacy } from '../../undici/handler.js';
import { AggregatedAudit } from '../../audit/aggregate.js';
import { FilterChain } from '../chain.js';
import { CallerTokenCheck } from '../caller-auth.js';
import { DecisionLog, pathOnly, type RecentDenials } from '../decision-log.js';
import { errorBody } from '../forward.js';
import { awaitContinue } from '../request-body.js';
import { outboundRequestId } from '../request-headers.js';
import { DEFAULT_OUTBOUND_MAX_REQUEST_HEADERS } from '../../lib/header-limits.js';
import { buildRouteRuntime, createRoutePool, type RouteRuntime } from '../outbound-routes.js';
import type { MeteringMetrics } from '../metering.js';
import type { SpendGate } from '../spend.js';
import { attestationInterceptor } from './attestation.js';
import { OutboundRequest } from './context.js';
import { GenerationEvidence } from './evidence.js';
import { outboundFilters } from './filters/index.js';
import type { OutboundMetrics } from './metrics.js';
import { OutboundRouter } from './router.js';

export interface OutboundDeps {
  config: OutboundConfig;
  /** Produces this sidecar's evidence; absent: requests carry none. */
  attester?: Attester;
  metrics: OutboundMetrics;
  audit: AuditSink;
  logger: Logger;
  now?: () => number;
  /** Current revocations: a kill-all or a revoked own ID stops this side; revoked servers are refused. */
  revocations?: () => RevocationState;
  /** Budget enforcement for metered routes; `ownBudget` names our agent and its budget (from the policy). */
  spend?: SpendGate;
  ownBudget?: (ownId: string) => { agent: string; budget: PolicyBudget } | undefined;
  operationsMetrics?: MeteringMetrics;
  denials?: RecentDenials;
  /** A request body bringing no byte for this long is abandoned (408); default DEFAULT_BODY_PROGRESS_TIMEOUT_MS. */
  requestLimits?: { bodyProgressTimeoutMs?: number };
}

const CONNECT_BODY = errorBody(REASONS.method_not_supported.message);
const TUNNEL_REFUSAL = `HTTP/1.1 405 Method Not Allowed\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(CONNECT_BODY)}\r\nconnection: close\r\n\r\n${CONNECT_BODY}`;

export class OutboundProxy {
  private server: http.Server | undefined;
  private readonly routes = new Map<string, RouteRuntime>();
  private material: TlsMaterial | undefined;
  private expiryTimer: NodeJS.Timeout | undefined;
  /** The current identity generation's evidence (with an attester). */
  private evidence: GenerationEvidence | undefined;
  private readonly now: () => number;
  private readonly log: DecisionLog;
  /** Set when `caller_token_file` is configured: every request must carry the token. */
  private readonly callerToken: CallerTokenCheck | undefined;
  private readonly refusals: AggregatedAudit;
  private readonly bodyProgressTimeoutMs: number;
  private readonly chain: FilterChain<OutboundRequest>;
  /** The drain deadline passed: close destroys the pools instead of waiting for their requests. */
  private cutRequests = false;

  constructor(private readonly deps: OutboundDeps) {
    this.log = new DecisionLog('outbound', deps.metrics as ConstructorParameters<typeof DecisionLog>[1], deps.audit, deps.denials);
    this.refusals = new AggregatedAudit(deps.audit);
    this.callerToken = deps.config.callerTokenFile ? new CallerTokenCheck(deps.config.callerTokenFile, deps.logger) : undefined;
    this.bodyProgressTimeoutMs = deps.requestLimits?.bodyProgressTimeoutMs ?? deps.config.limits.bodyProgressTimeoutMs;
    this.now = deps.now ?? Date.now;
    for (const r of deps.config.routes) this.routes.set(r.name.toLowerCase(), buildRouteRuntime(r, deps.logger));
    const filters = outboundFilters({
      callerToken: this.callerToken,
      maxRequestHeaders: deps.config.maxRequestHeaders ?? DEFAULT_OUTBOUND_MAX_REQUEST_HEADERS,
      routes: this.routes,
      identity: { material: () => this.material, now: this.now, stoppedReason: () => this.stoppedReason() },
      revocations: deps.revocations,
      spend: deps.spend,
      ownBudget: deps.ownBudget,
    });
    const router = new OutboundRouter({ log: this.log, metrics: deps.metrics, logger: deps.logger, bodyProgressTimeoutMs: this.bodyProgressTimeoutMs, spend: deps.spend, operationsMetrics: deps.operationsMetrics });
    this.chain = new FilterChain(filters, router);
  }

  /** Why this side refuses all traffic now (kill-all, or our own ID revoked); undefined when it serves. */
  stoppedReason(): string | undefined {
    const state = this.deps.revocations?.();
    if (!state) return undefined;
    if (state.all) return `kill-all: ${state.all.reason}`;
    const own = this.material?.ownId;
    const entry = own ? state.byId.get(own) : undefined;
    return entry ? `own identity revoked: ${entry.reason}` : undefined;
  }

  /** A revocation changed: connections to servers we must no longer trust are dropped. */
  onRevocationChange(): void {
    if (!this.material) return;
    for (const route of this.routes.values()) {
      if (route.config.tls !== 'spiffe') continue;
      const old = route.pool;
      this.installPool(route, this.material);
      if (old) void old.destroy().catch(() => undefined);
    }
  }

  address(): AddressInfo | undefined {
    const a = this.server?.address();
    return a && typeof a === 'object' ? a : undefined;
  }

  get listening(): boolean {
    return this.server?.listening ?? false;
  }

  /** True when an unexpired SVID is installed (the outbound side can originate mTLS). */
  hasValidIdentity(): boolean {
    return this.material !== undefined && this.now() < this.material.notAfterMs;
  }

  async start(): Promise<void> {
    const limits = this.deps.config.limits;
    const handler = (req: IncomingMessage, res: ServerResponse) => {
      this.chain.run(new OutboundRequest(req, res, performance.now(), outboundRequestId(req.rawHeaders)));
    };
    const server = http.createServer(serverLimitOptions(limits, false), handler);
    server.on('checkContinue', awaitContinue(handler));
    server.on('connect', (req: IncomingMessage, socket: Socket) => this.refuseTunnel(req, socket));
    server.on('upgrade', (req: IncomingMessage, socket: Socket) => this.refuseTunnel(req, socket));
    const metrics = this.deps.metrics as Parameters<typeof guardListener>[1]['metrics'];
    guardListener(server, { listener: 'outbound', limits, metrics, audit: this.refusals }, { tls: false });
    this.server = server;
    await listen(server, this.deps.config.listen, throttledListenerErrorLog(this.deps.logger, 'outbound'));
    this.deps.logger.info({ address: this.address() }, 'outbound proxy listening');
  }

  /** Installs a new identity generation: new pools for new connections, old ones drain. */
  applyIdentity(material: TlsMaterial): void {
    this.material = material;
    // Evidence is produced once per SVID: a new generation gets its own, on its first request.
    if (this.deps.attester && this.evidence?.generation !== material.generation) this.evidence = new GenerationEvidence(this.deps.attester, material.generation, material.spki);
    for (const route of this.routes.values()) {
      const old = route.pool;
      this.installPool(route, material);
      if (old) void old.close().catch(() => undefined);
    }
    // Connections made with this SVID must not outlive it.
    clearTimeout(this.expiryTimer);
    const ms = material.notAfterMs - this.now();
    this.expiryTimer = setTimeout(() => this.onOwnSvidExpired(material), Math.max(0, Math.min(ms, 2 ** 31 - 1)));
    this.expiryTimer.unref();
  }

  private onOwnSvidExpired(material: TlsMaterial): void {
    if (this.material !== material) return;
    this.deps.logger.error({ spiffe_id: material.ownId }, 'own SVID expired without rotation: dropping outbound connections');
    for (const route of this.routes.values()) {
      const pool = route.pool;
      route.pool = route.dispatcher = undefined;
      if (pool) void pool.destroy().catch(() => undefined);
    }
  }

  /**
   * A new pool for `route` on `material`. A SPIFFE route of an attesting sidecar dispatches
   * through the attestation handshake; `tls: web` routes and sidecars without an attester use
   * the plain pool.
   */
  private installPool(route: RouteRuntime, material: TlsMaterial): void {
    const revocations = this.deps.revocations;
    const pool = createRoutePool(route, material, revocations ? (id) => revocations().byId.get(id) !== undefined : undefined);
    route.pool = pool;
    const evidence = this.evidence;
    route.dispatcher =
      evidence !== undefined && route.config.tls !== 'web'
        ? composeLegacy(pool, attestationInterceptor({ route, evidence, bodyProgressTimeoutMs: this.bodyProgressTimeoutMs }))
        : pool;
  }

  private refuseTunnel(req: IncomingMessage, socket: Socket): void {
    answerAndClose(socket, TUNNEL_REFUSAL);
    this.log.record(performance.now(), 'deny', 'method_not_supported', 405, req.method, pathOnly(req.url), undefined, undefined, undefined, outboundRequestId(req.rawHeaders));
  }

  /**
   * Re-reads every secret file (injected headers of each route, the caller token). Returns how
   * many were re-read and the unusable ones (their requests are refused until fixed), each with
   * the reason its requests get.
   */
  reloadSecrets(): { reread: number; unusable: { what: string; reason: 'credential_unavailable' | 'caller_token_unavailable' }[] } {
    const unusable: { what: string; reason: 'credential_unavailable' | 'caller_token_unavailable' }[] = [];
    let reread = 0;
    for (const r of this.routes.values()) {
      if (!r.injector) continue;
      reread++;
      if (!r.injector.reload()) unusable.push({ what: `route ${r.config.name}`, reason: 'credential_unavailable' });
    }
    if (this.callerToken) {
      reread++;
      if (!this.callerToken.reload()) unusable.push({ what: 'caller token', reason: 'caller_token_unavailable' });
    }
    return { reread, unusable };
  }

  /** Stops accepting; resolves once the requests in progress are answered (see ListenerDrain). */
  drain(): Promise<void> {
    return listenerDrain(this.server)?.begin() ?? Promise.resolve();
  }

  /** Cuts the connections the drain left open; returns how many requests were cut. */
  cutDrain(): number {
    this.cutRequests = true;
    return listenerDrain(this.server)?.cut() ?? 0;
  }

  async close(): Promise<void> {
    clearTimeout(this.expiryTimer);
    this.refusals.close();
    for (const r of this.routes.values()) r.injector?.close();
    this.callerToken?.close();
    if (this.server) await closeServer(this.server);
    await Promise.all([...this.routes.values()].map((r) => (this.cutRequests ? r.pool?.destroy() : r.pool?.close())?.catch(() => undefined)));
  }
}
