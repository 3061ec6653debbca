/**
 * Outbound proxy (the agent's side): plain HTTP on loopback in, mTLS with the pod's SVID out.
 *
 * Agents use it as an HTTP proxy (`HTTP_PROXY=http://127.0.0.1:15001`, absolute-form
 * `http://control-plane/tasks`) or send origin-form requests with the route name as Host.
 * Every route has its own undici Pool built on the TLS context of the current identity
 * generation; a rotation swaps in new pools and drains the old ones gracefully, so new
 * connections use the new SVID at once and no in-flight request fails.
 */
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { Pool } from '../undici/pool.js';
import type { OutboundConfig } from '../config/types.js';
import type { Logger, AuditSink } from '../log.js';
import type { SidecarMetrics } from '../admin/metrics.js';
import { forwardRequestHeaders, isBrowserRequest } from './headers.js';
import { RequestBodyTimeoutError, awaitContinue, continueRequest, readBody } from './request-body.js';
import {
  errorBody,
  forwardRequest,
  forwardRequestThen,
  hasRequestBody,
  sendJsonError,
  type ForwardOptions,
  type Intercepted,
  type ResponseIntercept,
  type UpstreamFailure,
} from './forward.js';
import { H_CHALLENGE, H_EVIDENCE, H_NONCE, H_REF } from './attestation-gate.js';
import { prepareEvidence, type Attester, type PreparedEvidence } from '../attestation/attester.js';
import { DecisionLog, pathOnly } from './decision-log.js';
import { DEFAULT_OUTBOUND_MAX_REQUEST_HEADERS, H_REQUEST_ID, TOO_MANY_HEADERS_REASON, TOO_MANY_HEADERS_STATUS, kRequestId, newRequestId, outboundRequestId, tooManyHeadersBody, type RequestWithId } from './request-headers.js';
import { closeServer, listen, throttledListenerErrorLog } from '../lib/net.js';
import { answerAndClose, guardListener, serverLimitOptions } from '../lib/listener-limits.js';
import { AggregatedAudit } from '../audit/aggregate.js';
import type { TlsMaterial } from '../spiffe/tls.js';
import { buildRouteRuntime, createRoutePool, type RouteRuntime } from './outbound-routes.js';
import { responseTransform } from './metering.js';
import type { SpendGate } from './spend.js';
import type { RevocationState } from '../revocation/state.js';
import type { PolicyBudget } from '../policy/read-agent.js';
import type { OperationsMetrics } from '../admin/ops-metrics.js';
import type { RecentDenials } from './decision-log.js';
import { canonicalRequestPath } from '../policy/actions.js';
import { CallerTokenCheck } from './caller-auth.js';

export interface OutboundDeps {
  config: OutboundConfig;
  /** Produces this sidecar's evidence; absent: requests carry none. */
  attester?: Attester;
  metrics: SidecarMetrics;
  audit: AuditSink;
  logger: Logger;
  now?: () => number;
  /** Current revocations: a kill-all or a revoked own ID stops this side; revoked servers are refused. */
  revocations?: () => RevocationState;
  /** Budget enforcement for metered routes; `ownBudget` names our agent and its budget (from the policy). */
  spend?: SpendGate;
  ownBudget?: (ownId: string) => { agent: string; budget: PolicyBudget } | undefined;
  ops?: OperationsMetrics;
  denials?: RecentDenials;
  /** A request body bringing no byte for this long is abandoned (408); default DEFAULT_BODY_PROGRESS_TIMEOUT_MS. */
  requestLimits?: { bodyProgressTimeoutMs?: number };
}

/** Per-request additions of routes with injected credentials or metering. */
interface RequestControls {
  headers?: readonly string[];
  transformResponse?: ForwardOptions['transformResponse'];
}

/** Largest request body buffered so that an attestation challenge can be answered by replay. */
export const MAX_REPLAY_BYTES = 64 * 1024;

/** A 401 carrying our attestation challenge is answered here, never relayed to the agent. */
const CHALLENGE: ResponseIntercept = { status: 401, when: (h) => typeof h[H_CHALLENGE] === 'string' };

const BROWSER_BODY = errorBody('Browser-originated requests are refused: a web page must never use the agent identity');
const NO_SVID_BODY = errorBody('No valid SVID: the sidecar has no unexpired identity');
const CONNECT_BODY = errorBody('CONNECT is not supported: send plain HTTP to the sidecar, it originates mTLS');
const TUNNEL_REFUSAL = `HTTP/1.1 405 Method Not Allowed\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(CONNECT_BODY)}\r\nconnection: close\r\n\r\n${CONNECT_BODY}`;
const STOPPED_BODY = errorBody('Sidecar stopped by the kill switch');
const UPSTREAM_REVOKED_BODY = errorBody('Upstream revoked');
const REQUEST_BODY_TIMEOUT_BODY = errorBody('Request body timeout');

/** An answer the peer gives only after its attestation gate let the request through. */
const acceptedStatus = (status: number) => status >= 200 && status < 400;

export class OutboundProxy {
  private server: http.Server | undefined;
  private readonly routes = new Map<string, RouteRuntime>();
  private material: TlsMaterial | undefined;
  private expiryTimer: NodeJS.Timeout | undefined;
  private evidence: { generation: number; pending: Promise<PreparedEvidence>; ready?: PreparedEvidence } | undefined;
  private readonly now: () => number;
  private readonly log: DecisionLog;
  /** Set when `caller_token_file` is configured: every request must carry the token. */
  private readonly callerToken: CallerTokenCheck | undefined;
  private readonly maxRequestHeaders: number;
  private readonly tooManyHeadersBody: string;
  private readonly refusals: AggregatedAudit;
  private readonly bodyProgressTimeoutMs: number;

  constructor(private readonly deps: OutboundDeps) {
    this.log = new DecisionLog('outbound', deps.metrics, deps.audit, deps.denials);
    this.refusals = new AggregatedAudit(deps.audit);
    this.callerToken = deps.config.callerTokenFile ? new CallerTokenCheck(deps.config.callerTokenFile, deps.logger) : undefined;
    this.maxRequestHeaders = deps.config.maxRequestHeaders ?? DEFAULT_OUTBOUND_MAX_REQUEST_HEADERS;
    this.tooManyHeadersBody = tooManyHeadersBody(this.maxRequestHeaders);
    this.bodyProgressTimeoutMs = deps.requestLimits?.bodyProgressTimeoutMs ?? deps.config.limits.bodyProgressTimeoutMs;
    this.now = deps.now ?? Date.now;
    for (const r of deps.config.routes) this.routes.set(r.name.toLowerCase(), buildRouteRuntime(r, deps.logger));
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
      route.pool = this.createPool(route, this.material);
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
      // A bug on the request path must fail that request, never take the sidecar down.
      try {
        this.onRequest(req, res);
      } catch (err) {
        this.deps.logger.error({ err: (err as Error)?.stack ?? String(err) }, 'outbound request handler failed');
        this.finish(req, res, performance.now(), undefined, 500, errorBody('Internal error'), 'internal_error', 'error');
      }
    };
    const server = http.createServer(serverLimitOptions(limits, false), handler);
    server.on('checkContinue', awaitContinue(handler));
    server.on('connect', (req: IncomingMessage, socket: Socket) => this.refuseTunnel(req, socket));
    server.on('upgrade', (req: IncomingMessage, socket: Socket) => this.refuseTunnel(req, socket));
    guardListener(server, { listener: 'outbound', limits, metrics: this.deps.metrics, audit: this.refusals }, { tls: false });
    this.server = server;
    await listen(server, this.deps.config.listen, throttledListenerErrorLog(this.deps.logger, 'outbound'));
    this.deps.logger.info({ address: this.address() }, 'outbound proxy listening');
  }

  /** Installs a new identity generation: new pools for new connections, old ones drain. */
  applyIdentity(material: TlsMaterial): void {
    this.material = material;
    for (const route of this.routes.values()) {
      const old = route.pool;
      route.pool = this.createPool(route, material);
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
      route.pool = undefined;
      if (pool) void pool.destroy().catch(() => undefined);
    }
  }

  private createPool(runtime: RouteRuntime, material: TlsMaterial): Pool {
    const revocations = this.deps.revocations;
    return createRoutePool(runtime, material, revocations ? (id) => revocations().byId.get(id) !== undefined : undefined);
  }

  private refuseTunnel(req: IncomingMessage, socket: Socket): void {
    answerAndClose(socket, TUNNEL_REFUSAL);
    this.log.record(performance.now(), 'deny', 'method_not_supported', 405, req.method, pathOnly(req.url), undefined, undefined, undefined, outboundRequestId(req.rawHeaders));
  }

  private onRequest(req: IncomingMessage, res: ServerResponse): void {
    const start = performance.now();
    (req as RequestWithId)[kRequestId] = outboundRequestId(req.rawHeaders);
    if (this.callerToken && !this.callerAdmitted(req, res, start)) return;
    // What we add must fit under the peer's limit, and an app must never lose the identity fields.
    if (req.rawHeaders.length > 2 * this.maxRequestHeaders) {
      this.finish(req, res, start, undefined, TOO_MANY_HEADERS_STATUS, this.tooManyHeadersBody, TOO_MANY_HEADERS_REASON);
      return;
    }
    const target = resolveTarget(req);
    if (!target) {
      this.finish(req, res, start, undefined, 400, errorBody('Request names no route: use an absolute-form URL or a Host header'), 'no_route_named');
      return;
    }
    const route = this.routes.get(target.host);
    if (!route) {
      this.finish(req, res, start, target.host, 404, errorBody(`Unknown route '${target.host}'`), 'unknown_route');
      return;
    }
    if (!route.config.allowBrowserRequests && isBrowserRequest(req.headers)) {
      this.finish(req, res, start, route.config.name, 403, BROWSER_BODY, 'browser_request');
      return;
    }
    // The upstream URL's base path is a boundary: no dot segment or encoded separator may climb out of it.
    const canonical = canonicalRequestPath(target.path);
    if (!canonical.ok) {
      this.finish(req, res, start, route.config.name, 400, errorBody(`Malformed request path: ${canonical.error}`), 'path_not_canonical');
      return;
    }
    const material = this.material;
    if (!material || this.now() >= material.notAfterMs || !route.pool) {
      this.finish(req, res, start, route.config.name, 503, NO_SVID_BODY, 'no_svid');
      return;
    }
    if (this.deps.revocations && this.stoppedReason() !== undefined) {
      this.finish(req, res, start, route.config.name, 503, STOPPED_BODY, 'kill_switch');
      return;
    }
    if (route.config.serverId && this.deps.revocations?.().byId.has(route.config.serverId)) {
      this.finish(req, res, start, route.config.name, 403, UPSTREAM_REVOKED_BODY, 'upstream_revoked');
      return;
    }
    if (route.injector || route.config.metering) {
      this.forwardControlled(req, res, start, route, target.path, material).catch((err: unknown) => {
        // Async half of the request path: a bug fails this request, never the process.
        this.deps.logger.error({ err: (err as Error)?.stack ?? String(err) }, 'outbound controlled request failed');
        this.finish(req, res, start, route.config.name, 500, errorBody('Internal error'), 'internal_error', 'error', target.path);
      });
      return;
    }
    this.dispatch(req, res, start, route, target.path, material, undefined);
  }

  /** Caller authentication (when configured): false when the request was answered with a refusal. */
  private callerAdmitted(req: IncomingMessage, res: ServerResponse, start: number): boolean {
    const refusal = this.callerToken!.check(req.headers['proxy-authorization']);
    if (refusal === undefined) return true;
    sendJsonError(res, refusal.status, refusal.body, refusal.headers);
    this.record(req, start, undefined, refusal.decision, refusal.reason, refusal.status, undefined);
    return false;
  }

  /** Plain, attested or warm-attested forwarding, with optional per-request controls. */
  private dispatch(req: IncomingMessage, res: ServerResponse, start: number, route: RouteRuntime, path: string, material: TlsMaterial, controls: RequestControls | undefined): void {
    if (!this.deps.attester || route.config.tls === 'web') {
      this.forward(req, res, start, route, path, forwardRequestHeaders(req.rawHeaders, route.drop, ownHeaders(req, route, controls)), controls);
      return;
    }
    // An attester failure (e.g. producing fresh evidence for a challenge) fails this request, never the process.
    const failed = (err: unknown) => {
      this.deps.logger.error({ route: route.config.name, err: (err as Error).message }, 'attested forwarding failed');
      this.finish(req, res, start, route.config.name, 502, errorBody(`Attestation failed on this side: ${(err as Error).message}`), 'attester_error', 'error', path);
    };
    // Warm session: the peer already accepted this SVID's evidence, so send only its id. Only
    // bodiless requests take this shortcut: a challenge is then answered by replaying with no body.
    const ready = this.evidence?.generation === material.generation ? this.evidence.ready : undefined;
    if (ready !== undefined && route.ackedEvidenceId === ready.id && !hasRequestBody(req)) {
      this.forwardAttestedWarm(req, res, start, route, path, material, ready, controls, failed);
      return;
    }
    this.forwardAttested(req, res, start, route, path, material, controls).catch(failed);
  }

  /** Plain forwarding: one attempt, the response streams straight back. */
  private forward(
    req: IncomingMessage,
    res: ServerResponse,
    start: number,
    route: RouteRuntime,
    path: string,
    headers: string[],
    controls: RequestControls | undefined,
  ): void {
    const opts: ForwardOptions = {
      path: route.basePath + path,
      headers,
      headersTimeoutMs: route.config.requestTimeoutMs,
      bodyTimeoutMs: route.config.requestTimeoutMs,
      bodyProgressTimeoutMs: this.bodyProgressTimeoutMs,
      servername: route.servername,
    };
    if (controls?.transformResponse) opts.transformResponse = controls.transformResponse;
    forwardRequestThen(route.pool!, req, res, opts, (result) => {
      try {
        this.settle(req, res, start, route, path, result);
      } catch (err) {
        // A bug after the exchange fails this request, never the process.
        this.deps.logger.error({ err: (err as Error)?.stack ?? String(err) }, 'outbound request failed');
        this.finish(req, res, start, route.config.name, 500, errorBody('Internal error'), 'internal_error', 'error', path);
      }
    });
  }

  private settle(req: IncomingMessage, res: ServerResponse, start: number, route: RouteRuntime, path: string, result: number | UpstreamFailure | Intercepted): void {
    if (typeof result === 'number') {
      this.record(req, start, route.config.name, 'allow', 'forwarded', result, path);
    } else if (!('intercepted' in result) && result.status === 408) {
      // The agent's body stalled: its doing, not an upstream failure.
      this.finish(req, res, start, route.config.name, 408, errorBody(result.message), result.reason, 'deny', path);
    } else if (!('intercepted' in result)) {
      this.deps.metrics.upstreamError('outbound', result.reason);
      this.deps.logger.warn({ route: route.config.name, reason: result.reason, err: result.message }, 'outbound upstream failure');
      this.finish(req, res, start, route.config.name, result.status, errorBody(result.message), result.reason, 'error', path);
    }
  }

  /**
   * Forwarding with evidence: the evidence id once the peer has accepted the full evidence on
   * this route, the full envelope until then. A 401 challenge is answered once, transparently:
   * full evidence, or fresh evidence over the peer's nonce; the request is replayed with its
   * buffered body. Bodies over MAX_REPLAY_BYTES, or of unknown length, cannot be replayed: they
   * always carry the full evidence, so the peer has no reason to ask for it (a peer that
   * restarted, changed policy or never saw this generation's evidence still accepts them).
   *
   * The route counts the evidence as accepted only after a 2xx or 3xx answer to a request that
   * carried it: a refusal (403 for an action not permitted, 429, ...) may come before the peer
   * looked at the evidence at all.
   */
  private async forwardAttested(
    req: IncomingMessage,
    res: ServerResponse,
    start: number,
    route: RouteRuntime,
    path: string,
    material: TlsMaterial,
    controls?: RequestControls,
  ): Promise<void> {
    const evidence = await this.evidenceFor(material);
    const base = forwardRequestHeaders(req.rawHeaders, route.drop, ownHeaders(req, route, controls));
    const length = req.headers['content-length'];
    const bodyBytes = length === undefined ? (hasRequestBody(req) ? Infinity : 0) : Number(length);
    const replayable = bodyBytes <= MAX_REPLAY_BYTES;
    const sentFull = route.ackedEvidenceId !== evidence.id || !replayable;
    const first = sentFull ? [...base, H_EVIDENCE, evidence.header] : [...base, H_REF, evidence.id];
    let body: Buffer | null | undefined;
    if (!replayable) body = undefined;
    else if (bodyBytes === 0) body = null;
    else {
      continueRequest(res);
      try {
        body = await readBody(req, MAX_REPLAY_BYTES, this.bodyProgressTimeoutMs);
      } catch (err) {
        // The rest of the body may still come: this connection cannot carry another request.
        res.shouldKeepAlive = false;
        if (err instanceof RequestBodyTimeoutError) this.finish(req, res, start, route.config.name, 408, REQUEST_BODY_TIMEOUT_BODY, 'request_body_timeout', 'deny', path);
        else this.finish(req, res, start, route.config.name, 400, errorBody(`Request body could not be read: ${(err as Error).message}`), 'request_body_unreadable', 'deny', path);
        return;
      }
    }
    const opts = {
      path: route.basePath + path,
      headersTimeoutMs: route.config.requestTimeoutMs,
      bodyTimeoutMs: route.config.requestTimeoutMs,
      bodyProgressTimeoutMs: this.bodyProgressTimeoutMs,
      servername: route.servername,
      ...(controls?.transformResponse ? { transformResponse: controls.transformResponse } : {}),
    };
    const result = await forwardRequest(route.pool!, req, res, {
      ...opts,
      headers: first,
      ...(body !== undefined ? { body } : {}),
      intercept: CHALLENGE,
    });
    if (typeof result === 'number') {
      if (sentFull && acceptedStatus(result)) route.ackedEvidenceId = evidence.id;
      this.settle(req, res, start, route, path, result);
      return;
    }
    if (!('intercepted' in result)) {
      this.settle(req, res, start, route, path, result);
      return;
    }
    const challenge = String(result.headers[H_CHALLENGE]);
    if (body === undefined) {
      this.finish(req, res, start, route.config.name, 413, errorBody(`Attestation challenge could not be answered: a request body of unknown length or over ${MAX_REPLAY_BYTES} bytes cannot be replayed`), 'attestation_replay_too_large', 'error', path);
      return;
    }
    let retry: string[];
    if (challenge === 'evidence') {
      retry = [...base, H_EVIDENCE, evidence.header];
    } else if (challenge.startsWith('nonce=')) {
      const nonce = challenge.slice('nonce='.length);
      const fresh = prepareEvidence(await this.deps.attester!.produce(material.spki, Buffer.from(nonce, 'base64url')));
      retry = [...base, H_EVIDENCE, fresh.header, H_NONCE, nonce];
    } else {
      this.finish(req, res, start, route.config.name, 502, errorBody(`Unknown attestation challenge '${challenge.slice(0, 64)}'`), 'attestation_challenge_unknown', 'error', path);
      return;
    }
    const second = await forwardRequest(route.pool!, req, res, { ...opts, headers: retry, body });
    if (typeof second === 'number' && challenge === 'evidence' && acceptedStatus(second)) route.ackedEvidenceId = evidence.id;
    this.settle(req, res, start, route, path, second);
  }

  /**
   * Bodiless request on a warm session: the ref header; a challenge still gets the full path.
   * Callback form, like plain forwarding: the common case allocates no promise chain.
   */
  private forwardAttestedWarm(
    req: IncomingMessage,
    res: ServerResponse,
    start: number,
    route: RouteRuntime,
    path: string,
    material: TlsMaterial,
    evidence: PreparedEvidence,
    controls: RequestControls | undefined,
    failed: (err: unknown) => void,
  ): void {
    const extra = ownHeaders(req, route, controls);
    extra.push(H_REF, evidence.id);
    const headers = forwardRequestHeaders(req.rawHeaders, route.drop, extra);
    const opts: ForwardOptions = {
      path: route.basePath + path,
      headers,
      headersTimeoutMs: route.config.requestTimeoutMs,
      bodyTimeoutMs: route.config.requestTimeoutMs,
      bodyProgressTimeoutMs: this.bodyProgressTimeoutMs,
      servername: route.servername,
      body: null,
      intercept: CHALLENGE,
    };
    if (controls?.transformResponse) opts.transformResponse = controls.transformResponse;
    forwardRequestThen(route.pool!, req, res, opts, (result) => {
      try {
        if (typeof result === 'object' && 'intercepted' in result) {
          // The peer forgot us (restart, policy change) or wants fresh evidence: take the full path.
          route.ackedEvidenceId = undefined;
          this.forwardAttested(req, res, start, route, path, material, controls).catch(failed);
          return;
        }
        this.settle(req, res, start, route, path, result);
      } catch (err) {
        failed(err);
      }
    });
  }

  /**
   * Routes holding a credential or metering usage: the secret headers are added (and scrubbed
   * from the response), and a metered route's reservation is charged to our budget before the
   * request leaves; the response settles it with the metered cost.
   */
  private async forwardControlled(req: IncomingMessage, res: ServerResponse, start: number, route: RouteRuntime, path: string, material: TlsMaterial): Promise<void> {
    let injected: string[] | undefined;
    try {
      injected = route.injector?.headerPairs();
    } catch (err) {
      this.finish(req, res, start, route.config.name, 503, errorBody((err as Error).message), 'credential_unavailable', 'error', path);
      return;
    }
    const metering = route.config.metering;
    const own = metering ? this.deps.ownBudget?.(material.ownId) : undefined;
    let reservation: { key: string } | undefined;
    if (metering && own) {
      if (!this.deps.spend) {
        this.finish(req, res, start, route.config.name, 503, errorBody('Budget ledger unavailable'), 'budget_ledger_unavailable', 'deny', path);
        return;
      }
      const admission = await this.deps.spend.admit(own.agent, own.budget, metering.reserveUsd, { route: route.config.name, direction: 'outbound' });
      if (!admission.ok) {
        this.finish(req, res, start, route.config.name, admission.status, admission.body, admission.reason, 'deny', path);
        return;
      }
      reservation = { key: admission.key };
    }
    const secrets = route.injector?.secretValues();
    let settled = false;
    const settle = (costUsd: number) => {
      if (settled) return;
      settled = true;
      if (metering && own && reservation) this.deps.spend!.settle(own.agent, own.budget, reservation.key, metering.reserveUsd, costUsd, route.config.name);
      else if (metering && costUsd > 0) this.deps.ops?.spent(material.ownId, 'metered', costUsd);
    };
    const transform = responseTransform({ route: route.config.name, secrets, metering, ops: this.deps.ops, logger: this.deps.logger, onCost: settle });
    let upstreamAnswered = false;
    const controls: RequestControls = {
      ...(injected ? { headers: injected } : {}),
      transformResponse: (status, headers) => {
        upstreamAnswered = true;
        return transform(status, headers);
      },
    };
    // No upstream response at all (unreachable, refused, timed out before headers): nothing was
    // generated, so the reservation is released. Once a response started, its meter settles it.
    res.once('close', () => {
      if (!upstreamAnswered) settle(0);
    });
    this.dispatch(req, res, start, route, path, material, controls);
  }

  /** This identity generation's session evidence (produced once per SVID). */
  private evidenceFor(material: TlsMaterial): Promise<PreparedEvidence> {
    if (this.evidence?.generation !== material.generation) {
      const pending = this.deps.attester!.produce(material.spki).then(prepareEvidence);
      const entry: { generation: number; pending: Promise<PreparedEvidence>; ready?: PreparedEvidence } = { generation: material.generation, pending };
      this.evidence = entry;
      pending.then(
        (p) => (entry.ready = p),
        () => {
          if (this.evidence === entry) this.evidence = undefined; // retry on the next request
        },
      );
    }
    return this.evidence.pending;
  }

  private finish(
    req: IncomingMessage,
    res: ServerResponse,
    start: number,
    route: string | undefined,
    status: number,
    body: string,
    reason: string,
    decision: 'deny' | 'error' = 'deny',
    path?: string,
  ): void {
    sendJsonError(res, status, body);
    this.record(req, start, route, decision, reason, status, path);
  }

  private record(
    req: IncomingMessage,
    start: number,
    route: string | undefined,
    decision: 'allow' | 'deny' | 'error',
    reason: string,
    status: number,
    path: string | undefined,
  ): void {
    this.log.record(start, decision, reason, status, req.method, pathOnly(path), undefined, route, undefined, (req as RequestWithId)[kRequestId]);
  }

  async close(): Promise<void> {
    clearTimeout(this.expiryTimer);
    this.refusals.close();
    for (const r of this.routes.values()) r.injector?.close();
    this.callerToken?.close();
    if (this.server) await closeServer(this.server);
    await Promise.all([...this.routes.values()].map((r) => r.pool?.close().catch(() => undefined)));
  }
}

/**
 * The fields the proxy sets on a forwarded request (forwardRequestHeaders puts them first): the
 * request id, a web route's Host, the route's injected credentials.
 */
function ownHeaders(req: IncomingMessage, route: RouteRuntime, controls: RequestControls | undefined): string[] {
  const out = [H_REQUEST_ID, (req as RequestWithId)[kRequestId] ?? newRequestId()];
  if (route.hostHeader) out.push(...route.hostHeader);
  if (controls?.headers) out.push(...controls.headers);
  return out;
}

/** Route name (lower-case host without port) and origin-form path of a proxied request. */
export function resolveTarget(req: IncomingMessage): { host: string; path: string } | undefined {
  const url = req.url ?? '';
  if (url.startsWith('/')) {
    const host = req.headers.host;
    if (!host) return undefined;
    return { host: stripPort(host).toLowerCase(), path: url };
  }
  // Absolute form (RFC 9112 §3.2.2). Only http: the sidecar itself provides the TLS. The path
  // is passed on byte for byte (no URL normalisation here): the inbound side judges it.
  if (url.length < 8 || url.slice(0, 7).toLowerCase() !== 'http://') return undefined;
  let end = 7;
  while (end < url.length && url[end] !== '/' && url[end] !== '?' && url[end] !== '#') end++;
  const authority = url.slice(7, end);
  if (!authority || authority.includes('@') || url.includes('#')) return undefined;
  const rest = url.slice(end);
  return { host: stripPort(authority).toLowerCase(), path: rest.startsWith('/') ? rest : `/${rest}` };
}

function stripPort(host: string): string {
  if (host.startsWith('[')) {
    const end = host.indexOf(']');
    return end === -1 ? host : host.slice(1, end);
  }
  const colon = host.indexOf(':');
  return colon === -1 ? host : host.slice(0, colon);
}
