/**
 * Inbound listener: terminates mTLS, verifies the peer's X509-SVID per SPIFFE rules once per
 * connection, then for every request: expiry check, canonical path, action mapping, policy
 * decision (pure), and forwarding of allowed calls to the local app with identity headers.
 *
 * Hot path (warm connection): a timestamp compare, a path check, a map lookup, a Set lookup,
 * the header copy and the proxying itself. No crypto, no disk I/O.
 */
import https from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TLSSocket } from 'node:tls';
import type { AddressInfo } from 'node:net';
import { Pool } from '../undici/pool.js';
import type { InboundConfig } from '../config/types.js';
import { SidecarError } from '../errors.js';
import type { Logger, AuditSink } from '../log.js';
import type { SidecarMetrics } from '../admin/metrics.js';
import type { CompiledPolicy, Decision } from '../policy/types.js';
import { decide, denialBody } from '../policy/decide.js';
import { compileActionMatcher, canonicalRequestPath } from '../policy/actions.js';
import { DEFAULT_MAX_REQUEST_HEADERS, appLeadHeaders, kRequestId, screenInboundHeaders, tooManyHeadersRefusal, type RequestWithId } from './request-headers.js';
import { awaitContinue, errorBody, forwardRequestThen, hasRequestBody, sendJsonError } from './forward.js';
import { DEFAULT_REQUEST_LIMITS, PEER_CONCURRENCY_REASON, PeerAdmission, type PeerSlots, type RequestLimits } from './peer-admission.js';
import { DecisionLog, pathOnly, type RecentDenials } from './decision-log.js';
import { H_CHALLENGE, type AttestationGate, type AttestationSession } from './attestation-gate.js';
import { closeServer, listen, throttledListenerErrorLog } from '../lib/net.js';
import { armIdle, guardListener, serverLimitOptions } from '../lib/listener-limits.js';
import { AggregatedAudit } from '../audit/aggregate.js';
import { handshakeFailureReason } from '../spiffe/handshake-reasons.js';
import type { RevocationState } from '../revocation/state.js';
import type { PolicyAgent } from '../policy/read-agent.js';
import type { ActionMappingConfig } from '../config/types.js';
import type { SpendGate } from './spend.js';
import type { Refusal } from '../reasons.js';
import { serverContextOptions, verifyClientPeer, type TlsMaterial, type VerifiedPeer } from '../spiffe/tls.js';

export interface InboundDeps {
  config: InboundConfig;
  policy: () => CompiledPolicy | undefined;
  metrics: SidecarMetrics;
  audit: AuditSink;
  logger: Logger;
  /** Verifies peer evidence for agents whose policy requires attestation; absent: such agents are denied. */
  attestation?: AttestationGate;
  /** Clock for expiry checks (tests pass a fake). */
  now?: () => number;
  /** Current revocations (sync, no I/O); absent: none. */
  revocations?: () => RevocationState;
  /** Budget enforcement for agents whose policy sets `budget`; absent: budgeted agents are refused (503). */
  spend?: SpendGate;
  /** Where refused requests are kept for the status page. */
  denials?: RecentDenials;
  /** Per-peer share of the app connections and the body-progress timeout; defaults DEFAULT_REQUEST_LIMITS. */
  requestLimits?: Partial<RequestLimits>;
}

/** Connections to the app (all peers together). */
export const APP_POOL_CONNECTIONS = 256;

/** What the listener keeps per verified connection (one property on the socket: sockets are big). */
interface Connection {
  readonly peer: VerifiedPeer;
  /** The peer as policy decisions see it (built once). */
  readonly identity: { spiffeId: string; extensions: VerifiedPeer['extensions'] };
  attestation?: AttestationSession;
  /** The identity and forwarding pairs the app gets first (appLeadHeaders), and our SPIFFE ID they were built with. */
  appHeaders?: string[];
  appHeadersOwnId?: string;
  /**
   * The last request target's mapping and decision, reused while method, target and policy
   * are the same objects/strings (a keep-alive peer usually repeats its requests). Decisions
   * are pure functions of exactly these and the connection's peer, so a hit is the same answer.
   */
  lastMethod?: string;
  lastUrl?: string;
  lastPolicy?: CompiledPolicy;
  lastRoute?: Route;
  /** The peer identity's share of the app connections (taken on its first forwarded request). */
  slots?: PeerSlots;
}

/** A request target that passed canonicalisation: its mapping and the policy's decision. */
interface Route {
  readonly mapping: ActionMappingConfig | undefined;
  readonly decision: Decision;
}

/** Header bytes the inbound listener accepts (see the server options). */
export const INBOUND_MAX_HEADER_BYTES = 32 * 1024;

const kConn = Symbol('attest-sidecar.connection');
type PeeredSocket = TLSSocket & { [kConn]?: Connection };

/** The lead headers of a request on an unverified connection (it is refused anyway). */
const NO_LEAD: readonly string[] = [];

const EXPIRED_BODY = errorBody('Peer SVID expired');
const UNVERIFIED_BODY = errorBody('Peer identity not verified');
const NO_POLICY_BODY = errorBody('No policy loaded');
const REVOKED_BODY = errorBody('Agent revoked');
const NO_LEDGER_BODY = errorBody('Budget ledger unavailable');
const BUSY_BODY = errorBody('Too many concurrent requests from this peer identity');
const RETRY_LATER = { 'retry-after': '1' };

export class InboundListener {
  private server: https.Server | undefined;
  private material: TlsMaterial | undefined;
  private readonly app: Pool;
  private readonly match: ReturnType<typeof compileActionMatcher>;
  private readonly connections = new Set<PeeredSocket>();
  /** Open verified connections per peer SPIFFE ID (for `limits.max_connections_per_peer`). */
  private readonly perPeer = new Map<string, number>();
  private readonly refusals: AggregatedAudit;
  private readonly now: () => number;
  private readonly log: DecisionLog;
  /**
   * undici's TLS server name for app requests. The app is plain HTTP (config), where undici
   * never uses it; given explicitly, undici skips deriving one from each request's Host.
   */
  private readonly appServername: string;
  private readonly maxRequestHeaders: number;
  private readonly tooManyHeaders: Refusal;
  private readonly admission: PeerAdmission;
  private readonly bodyProgressTimeoutMs: number;

  constructor(private readonly deps: InboundDeps) {
    this.maxRequestHeaders = deps.config.maxRequestHeaders ?? DEFAULT_MAX_REQUEST_HEADERS;
    this.tooManyHeaders = tooManyHeadersRefusal(this.maxRequestHeaders);
    this.log = new DecisionLog('inbound', deps.metrics, deps.audit, deps.denials);
    this.refusals = new AggregatedAudit(deps.audit);
    this.app = new Pool(deps.config.app, { connections: APP_POOL_CONNECTIONS, pipelining: 1, keepAliveTimeout: 30_000 });
    // `inbound.limits.body_progress_timeout` from the config; `requestLimits` (tests) overrides.
    const limits = { ...DEFAULT_REQUEST_LIMITS, bodyProgressTimeoutMs: deps.config.limits.bodyProgressTimeoutMs, ...deps.requestLimits };
    this.admission = new PeerAdmission(APP_POOL_CONNECTIONS, limits);
    this.bodyProgressTimeoutMs = limits.bodyProgressTimeoutMs;
    this.appServername = new URL(deps.config.app).hostname || 'app';
    this.match = compileActionMatcher(deps.config.actions);
    this.now = deps.now ?? Date.now;
  }

  get listening(): boolean {
    return this.server?.listening ?? false;
  }

  address(): AddressInfo | undefined {
    const a = this.server?.address();
    return a && typeof a === 'object' ? a : undefined;
  }

  openConnections(): number {
    return this.connections.size;
  }

  /** Open connections with their peer and, when the peer attested, its current verdict. */
  sessions(): { peer: VerifiedPeer; attestation?: AttestationSession }[] {
    const out: { peer: VerifiedPeer; attestation?: AttestationSession }[] = [];
    for (const s of this.connections) {
      const c = s[kConn];
      if (c) out.push({ peer: c.peer, ...(c.attestation ? { attestation: c.attestation } : {}) });
    }
    return out;
  }

  /** Installs a new identity: the first call starts listening, later ones swap the context. */
  async applyIdentity(material: TlsMaterial): Promise<void> {
    this.material = material;
    if (this.server) {
      this.server.setSecureContext(serverContextOptions(material));
      return;
    }
    const limits = this.deps.config.limits;
    const handler = (req: IncomingMessage, res: ServerResponse) => this.guarded(req, res);
    // Room for the agent's own headers (node's 16 KiB default at the outbound listener) plus the
    // evidence its sidecar adds (up to 14 KiB), so first contact never meets node's bare 431.
    const server = https.createServer({ ...serverContextOptions(material), ...serverLimitOptions(limits, true), maxHeaderSize: INBOUND_MAX_HEADER_BYTES }, handler);
    server.on('checkContinue', awaitContinue(handler));
    // Runs before the HTTP parser sees any byte of this connection.
    server.prependListener('secureConnection', (socket: TLSSocket) => this.onSecureConnection(socket as PeeredSocket));
    server.on('tlsClientError', (err: Error & { code?: string }, socket: TLSSocket) => {
      // Rejected by OpenSSL before SPIFFE verification (no certificate, unknown CA, expired,
      // handshake timeout or abort). Aggregated: a flood of bad handshakes is a few audit lines.
      const { reason, detail } = handshakeFailureReason(err, socket);
      this.deps.metrics.peerRejected('inbound', reason);
      this.refusals.note('peer_rejected', reason, detail, undefined, socket?.remoteAddress);
      this.deps.logger.debug({ err: err.message, code: err.code }, 'inbound TLS handshake failed');
    });
    guardListener(server, { listener: 'inbound', limits, metrics: this.deps.metrics, audit: this.refusals }, { tls: true });
    this.server = server;
    await listen(server, this.deps.config.listen, throttledListenerErrorLog(this.deps.logger, 'inbound'));
    this.deps.logger.info({ address: this.address() }, 'inbound mTLS listener up');
  }

  private onSecureConnection(socket: PeeredSocket): void {
    const material = this.material!;
    try {
      const peer = verifyClientPeer(socket, material.bundles, this.now());
      socket[kConn] = { peer, identity: { spiffeId: peer.id, extensions: peer.extensions } };
    } catch (err) {
      const reason = err instanceof SidecarError ? err.reason : 'svid_malformed';
      this.deps.metrics.peerRejected('inbound', reason);
      this.deps.audit.record({
        type: 'peer_rejected',
        decision: 'deny',
        reason,
        detail: (err as Error).message,
      });
      this.deps.logger.warn({ reason, err: (err as Error).message, remote: socket.remoteAddress }, 'inbound peer rejected');
      socket.destroy();
      return;
    }
    const limits = this.deps.config.limits;
    const id = socket[kConn].peer.id;
    const open = this.perPeer.get(id) ?? 0;
    if (limits.maxConnectionsPerPeer > 0 && open >= limits.maxConnectionsPerPeer) {
      this.deps.metrics.connectionRefused('inbound', 'peer_connection_limit');
      this.refusals.note('connection_refused', 'peer_connection_limit', `peer holds its maximum of ${limits.maxConnectionsPerPeer} connections`, id, socket.remoteAddress);
      socket.destroy();
      return;
    }
    this.perPeer.set(id, open + 1);
    this.deps.metrics.inboundHandshakes.inc();
    this.connections.add(socket);
    socket.once('close', () => {
      this.connections.delete(socket);
      const n = (this.perPeer.get(id) ?? 1) - 1;
      if (n > 0) this.perPeer.set(id, n);
      else this.perPeer.delete(id);
      const slots = socket[kConn]?.slots;
      if (slots) this.admission.detach(slots);
    });
    armIdle(socket, limits.idleTimeoutMs, { listener: 'inbound', metrics: this.deps.metrics });
  }

  /** A bug on the request path must deny that request, never take the sidecar down. */
  private guarded(req: IncomingMessage, res: ServerResponse): void {
    try {
      this.onRequest(req, res);
    } catch (err) {
      this.deps.logger.error({ err: (err as Error)?.stack ?? String(err) }, 'inbound request handler failed');
      this.finish(req, res, performance.now(), req.socket ? (req.socket as PeeredSocket)[kConn]?.peer : undefined, 500, errorBody('Internal error'), 'internal_error', undefined, 'error');
    }
  }

  private onRequest(req: IncomingMessage, res: ServerResponse): void {
    const start = performance.now();
    const socket = req.socket as PeeredSocket;
    const conn = socket[kConn];
    // First, so that every record of this request carries its id; refusals come after the peer checks.
    const screen = screenInboundHeaders(req.rawHeaders, this.maxRequestHeaders, this.tooManyHeaders, conn ? this.leadHeaders(conn, socket) : NO_LEAD);
    (req as RequestWithId)[kRequestId] = screen.requestId;
    if (!conn) {
      this.finish(req, res, start, undefined, 403, UNVERIFIED_BODY, 'peer_unverified');
      return;
    }
    const peer = conn.peer;
    if (this.now() >= peer.notAfterMs) {
      // The certificate expired while the connection was kept alive: refuse and close.
      res.shouldKeepAlive = false;
      this.finish(req, res, start, peer, 403, EXPIRED_BODY, 'svid_expired');
      return;
    }
    // A revoked peer still completes the handshake so that it can be told why (403 "Agent
    // revoked"); its connection is closed after that answer.
    if (this.deps.revocations?.().isRevoked(peer.id)) {
      res.shouldKeepAlive = false;
      this.finish(req, res, start, peer, 403, REVOKED_BODY, 'agent_revoked');
      return;
    }
    if (!screen.ok) {
      this.finish(req, res, start, peer, screen.status, screen.body, screen.reason);
      return;
    }
    const url = req.url ?? '';
    const method = req.method ?? 'GET';
    const policy = this.deps.policy();
    let route: Route;
    if (conn.lastUrl === url && conn.lastMethod === method && conn.lastPolicy === policy && policy !== undefined) {
      route = conn.lastRoute!;
    } else {
      const canonical = canonicalRequestPath(url);
      if (!canonical.ok) {
        this.finish(req, res, start, peer, 400, errorBody(`Malformed request path: ${canonical.error}`), 'path_not_canonical');
        return;
      }
      if (!policy) {
        this.finish(req, res, start, peer, 503, NO_POLICY_BODY, 'no_policy');
        return;
      }
      const mapping = this.match(method, canonical.path);
      const request = { method, path: canonical.path, action: mapping?.action, resource: mapping?.resource, permission: mapping?.permission };
      route = { mapping, decision: decide(policy, request, conn.identity) };
      conn.lastUrl = url;
      conn.lastMethod = method;
      conn.lastPolicy = policy;
      conn.lastRoute = route;
    }
    const { mapping, decision } = route;
    if (!decision.allow) {
      // The action is permitted but the agent must attest: the gate decides (session cache first).
      const reqs = decision.reason === 'attestation_required' ? decision.agent?.attestation : undefined;
      const gate = this.deps.attestation;
      if (!reqs || !gate || !mapping) {
        this.finish(req, res, start, peer, decision.status, denialBody(decision), decision.reason, mapping?.action);
        return;
      }
      const session = (conn.attestation ??= {
        spki: peer.spki,
        spkiSha256Hex: peer.spkiSha256Hex,
        notAfterMs: peer.notAfterMs,
      });
      const verdict = gate.check(req, session, reqs, policy!.version, mapping.action);
      if (!verdict.ok) {
        const extra = verdict.status === 401 ? { [H_CHALLENGE]: verdict.challenge } : undefined;
        sendJsonError(res, verdict.status, errorBody(verdict.error), extra);
        this.record(req, start, peer, 'deny', verdict.reason, verdict.status, mapping?.action);
        return;
      }
    }
    // The peer identity's share of the app connections: its turn now, or a bounded wait.
    const slots = (conn.slots ??= this.admission.attach(peer.id));
    if (this.admission.tryAcquire(slots)) {
      this.admitted(req, res, start, socket, conn, route, slots, screen.headers);
      return;
    }
    this.admission.wait(
      slots,
      res,
      () => this.admitted(req, res, start, socket, conn, route, slots, screen.headers),
      () => this.refuseBusy(req, res, start, peer, mapping?.action),
    );
  }

  /** An allowed request holding a turn (`slots`): every path below gives it back exactly once. */
  private admitted(req: IncomingMessage, res: ServerResponse, start: number, socket: PeeredSocket, conn: Connection, route: Route, slots: PeerSlots, headers: string[]): void {
    const { mapping, decision } = route;
    const peer = conn.peer;
    try {
      const budget = (decision.agent as PolicyAgent | undefined)?.budget;
      if (budget) {
        this.forwardBudgeted(req, res, start, socket, conn, mapping!, decision.agent!.name, budget, slots, headers).catch((err: unknown) => {
          // Async half of the request path: a bug fails this request, never the process.
          this.deps.logger.error({ err: (err as Error)?.stack ?? String(err) }, 'inbound budgeted request failed');
          this.finish(req, res, start, peer, 500, errorBody('Internal error'), 'internal_error', mapping?.action, 'error');
        });
        return;
      }
      this.forwardAllowed(req, res, start, conn, mapping?.action, slots, headers);
    } catch (err) {
      // Also runs from the admission queue (a microtask): a bug fails this request only.
      this.deps.logger.error({ err: (err as Error)?.stack ?? String(err) }, 'inbound admitted request failed');
      this.finish(req, res, start, peer, 500, errorBody('Internal error'), 'internal_error', mapping?.action, 'error');
    }
  }

  /** The peer identity already uses its share of the app connections and its queue is full or too slow. */
  private refuseBusy(req: IncomingMessage, res: ServerResponse, start: number, peer: VerifiedPeer, action: string | undefined): void {
    // An unread body would have to be drained: close instead.
    if (hasRequestBody(req)) res.shouldKeepAlive = false;
    sendJsonError(res, 429, BUSY_BODY, RETRY_LATER);
    this.record(req, start, peer, 'deny', PEER_CONCURRENCY_REASON, 429, action);
  }

  /** The connection's appLeadHeaders, built once (again only when our SPIFFE ID changes). */
  private leadHeaders(conn: Connection, socket: PeeredSocket): readonly string[] {
    const ownId = this.material!.ownId;
    if (conn.appHeaders === undefined || conn.appHeadersOwnId !== ownId) {
      conn.appHeaders = appLeadHeaders(ownId, conn.peer, socket.remoteAddress);
      conn.appHeadersOwnId = ownId;
    }
    return conn.appHeaders;
  }

  /** Budgeted agents: the action's cost is charged durably before the request is forwarded. */
  private async forwardBudgeted(
    req: IncomingMessage,
    res: ServerResponse,
    start: number,
    socket: PeeredSocket,
    conn: Connection,
    mapping: ActionMappingConfig,
    agent: string,
    budget: NonNullable<PolicyAgent['budget']>,
    slots: PeerSlots,
    headers: string[],
  ): Promise<void> {
    const peer = conn.peer;
    let forwarded = false;
    try {
      const spend = this.deps.spend;
      if (!spend) {
        this.finish(req, res, start, peer, 503, NO_LEDGER_BODY, 'budget_ledger_unavailable', mapping.action);
        return;
      }
      const admission = await spend.admit(agent, budget, mapping.costUsd ?? 0, { peer: peer.id, action: mapping.action, direction: 'inbound' });
      if (!admission.ok) {
        this.finish(req, res, start, peer, admission.status, admission.body, admission.reason, mapping.action);
        return;
      }
      // A revocation that landed while the charge was being made still wins.
      if (this.deps.revocations?.().isRevoked(peer.id) || socket.destroyed) {
        res.shouldKeepAlive = false;
        this.finish(req, res, start, peer, 403, REVOKED_BODY, 'agent_revoked', mapping.action);
        return;
      }
      forwarded = true;
      this.forwardAllowed(req, res, start, conn, mapping.action, slots, headers);
    } finally {
      // Refused or failed before forwarding: its turn goes back (forwardAllowed gives it back otherwise).
      if (!forwarded) this.admission.release(slots);
    }
  }

  /** Forwards the screened `headers` (identity first) to the app; the turn `slots` holds is given back when the exchange ends. */
  private forwardAllowed(req: IncomingMessage, res: ServerResponse, start: number, conn: Connection, action: string | undefined, slots: PeerSlots, headers: string[]): void {
    const peer = conn.peer;
    const timeout = this.deps.config.requestTimeoutMs;
    const opts = { path: req.url!, headers, headersTimeoutMs: timeout, bodyTimeoutMs: timeout, bodyProgressTimeoutMs: this.bodyProgressTimeoutMs, servername: this.appServername };
    forwardRequestThen(this.app, req, res, opts, (result) => {
      this.admission.release(slots);
      try {
        if (typeof result === 'number') {
          this.record(req, start, peer, 'allow', 'allowed', result, action);
        } else if (!('intercepted' in result)) {
          // A stalled request body (408) is the client's doing, not an upstream failure.
          const clientFault = result.status === 408;
          if (!clientFault) this.deps.metrics.upstreamError('inbound', result.reason);
          this.finish(req, res, start, peer, result.status, errorBody(result.message), result.reason, action, clientFault ? 'deny' : 'error');
        }
      } catch (err) {
        // A bug after the exchange fails this request, never the process.
        this.deps.logger.error({ err: (err as Error)?.stack ?? String(err) }, 'inbound request settling failed');
        this.finish(req, res, start, peer, 500, errorBody('Internal error'), 'internal_error', action, 'error');
      }
    });
  }

  /**
   * Closes every open connection whose peer the new revocation state revokes (kill switch:
   * in-flight responses are cut; a reconnecting peer gets 403 "Agent revoked" and is closed again).
   * Returns how many were closed.
   */
  closeRevoked(state: RevocationState): number {
    let closed = 0;
    for (const s of this.connections) {
      const peer = s[kConn]?.peer;
      if (peer && state.isRevoked(peer.id)) {
        s.destroy();
        this.connections.delete(s);
        closed++;
      }
    }
    return closed;
  }

  private finish(
    req: IncomingMessage,
    res: ServerResponse,
    start: number,
    peer: VerifiedPeer | undefined,
    status: number,
    body: string,
    reason: string,
    action?: string,
    decision: 'deny' | 'error' = 'deny',
  ): void {
    sendJsonError(res, status, body);
    this.record(req, start, peer, decision, reason, status, action);
  }

  private record(
    req: IncomingMessage,
    start: number,
    peer: VerifiedPeer | undefined,
    decision: 'allow' | 'deny' | 'error',
    reason: string,
    status: number,
    action: string | undefined,
  ): void {
    this.log.record(start, decision, reason, status, req.method, pathOnly(req.url), peer?.id, undefined, action, (req as RequestWithId)[kRequestId]);
  }

  async close(): Promise<void> {
    this.refusals.close();
    if (this.server) await closeServer(this.server);
    await this.app.close();
  }
}
