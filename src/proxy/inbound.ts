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
import { Pool } from './undici-pool.js';
import type { InboundConfig } from '../config/types.js';
import { SidecarError } from '../errors.js';
import type { Logger, AuditSink } from '../log.js';
import type { SidecarMetrics } from '../admin/metrics.js';
import type { CompiledPolicy, Decision } from '../policy/types.js';
import { decide, denialBody } from '../policy/decide.js';
import { compileActionMatcher, canonicalRequestPath } from '../policy/actions.js';
import { IDENTITY_HEADERS, forwardRequestHeaders, xfccValue } from './headers.js';
import { awaitContinue, errorBody, forwardRequestThen, hasRequestBody, sendJsonError } from './forward.js';
import { DEFAULT_REQUEST_LIMITS, PEER_CONCURRENCY_REASON, PeerAdmission, type PeerSlots, type RequestLimits } from './peer-admission.js';
import { DecisionLog, pathOnly, type RecentDenials } from './decision-log.js';
import { ATTESTATION_HEADERS, H_CHALLENGE, type AttestationGate, type AttestationSession } from './attestation-gate.js';
import { closeServer, listen } from '../net.js';
import type { RevocationState } from '../revocation/state.js';
import type { PolicyAgent } from '../policy/read-agent.js';
import type { ActionMappingConfig } from '../config/types.js';
import type { SpendGate } from './spend.js';
import { serverContextOptions, verifyClientPeer, type TlsMaterial, type VerifiedPeer } from './tls.js';

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
  /** Identity header pairs for the app, and our SPIFFE ID they were built with. */
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

const kConn = Symbol('attest-sidecar.connection');
type PeeredSocket = TLSSocket & { [kConn]?: Connection };

/** Never forwarded to the app: caller-supplied identity headers and our attestation protocol. */
const DROPPED_HEADERS: ReadonlySet<string> = new Set([...IDENTITY_HEADERS, ...ATTESTATION_HEADERS]);

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
  private readonly now: () => number;
  private readonly log: DecisionLog;
  /**
   * undici's TLS server name for app requests. The app is plain HTTP (config), where undici
   * never uses it; given explicitly, undici skips deriving one from each request's Host.
   */
  private readonly appServername: string;
  private readonly admission: PeerAdmission;
  private readonly bodyProgressTimeoutMs: number;

  constructor(private readonly deps: InboundDeps) {
    this.log = new DecisionLog('inbound', deps.metrics, deps.audit, deps.denials);
    this.app = new Pool(deps.config.app, { connections: APP_POOL_CONNECTIONS, pipelining: 1, keepAliveTimeout: 30_000 });
    const limits = { ...DEFAULT_REQUEST_LIMITS, ...deps.requestLimits };
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
    const handler = (req: IncomingMessage, res: ServerResponse) => this.guarded(req, res);
    const server = https.createServer({ ...serverContextOptions(material), keepAliveTimeout: 60_000, requestTimeout: 0 }, handler);
    server.on('checkContinue', awaitContinue(handler));
    // Runs before the HTTP parser sees any byte of this connection.
    server.prependListener('secureConnection', (socket: TLSSocket) => this.onSecureConnection(socket as PeeredSocket));
    server.on('tlsClientError', (err: Error & { code?: string }) => {
      this.deps.metrics.peerRejected('inbound', 'tls_handshake_failed');
      this.deps.logger.debug({ err: err.message, code: err.code }, 'inbound TLS handshake failed');
    });
    this.server = server;
    await listen(server, this.deps.config.listen);
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
    this.deps.metrics.inboundHandshakes.inc();
    this.connections.add(socket);
    socket.once('close', () => {
      this.connections.delete(socket);
      const slots = socket[kConn]?.slots;
      if (slots) this.admission.detach(slots);
    });
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
      this.admitted(req, res, start, socket, conn, route, slots);
      return;
    }
    this.admission.wait(
      slots,
      res,
      () => this.admitted(req, res, start, socket, conn, route, slots),
      () => this.refuseBusy(req, res, start, peer, mapping?.action),
    );
  }

  /** An allowed request holding a turn (`slots`): every path below gives it back exactly once. */
  private admitted(req: IncomingMessage, res: ServerResponse, start: number, socket: PeeredSocket, conn: Connection, route: Route, slots: PeerSlots): void {
    const { mapping, decision } = route;
    const peer = conn.peer;
    try {
      const budget = (decision.agent as PolicyAgent | undefined)?.budget;
      if (budget) {
        this.forwardBudgeted(req, res, start, socket, conn, mapping!, decision.agent!.name, budget, slots).catch((err: unknown) => {
          // Async half of the request path: a bug fails this request, never the process.
          this.deps.logger.error({ err: (err as Error)?.stack ?? String(err) }, 'inbound budgeted request failed');
          this.finish(req, res, start, peer, 500, errorBody('Internal error'), 'internal_error', mapping?.action, 'error');
        });
        return;
      }
      this.forwardAllowed(req, res, start, conn, mapping?.action, slots);
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
      this.forwardAllowed(req, res, start, conn, mapping.action, slots);
    } finally {
      // Refused or failed before forwarding: its turn goes back (forwardAllowed gives it back otherwise).
      if (!forwarded) this.admission.release(slots);
    }
  }

  /** Forwards to the app; the turn `slots` holds is given back when the exchange ends. */
  private forwardAllowed(req: IncomingMessage, res: ServerResponse, start: number, conn: Connection, action: string | undefined, slots: PeerSlots): void {
    const material = this.material!;
    const peer = conn.peer;
    let headers: string[];
    try {
      // The XFCC value is fixed for the connection (our ID changes only with a new trust domain).
      let appHeaders = conn.appHeaders;
      if (appHeaders === undefined || conn.appHeadersOwnId !== material.ownId) {
        appHeaders = ['x-forwarded-client-cert', xfccValue(material.ownId, peer.leafSha256Hex, peer.id), 'x-spiffe-id', peer.id];
        conn.appHeaders = appHeaders;
        conn.appHeadersOwnId = material.ownId;
      }
      headers = forwardRequestHeaders(req.rawHeaders, DROPPED_HEADERS, appHeaders);
    } catch (err) {
      this.admission.release(slots);
      throw err;
    }
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
    this.log.record(start, decision, reason, status, req.method, pathOnly(req.url), peer?.id, undefined, action);
  }

  async close(): Promise<void> {
    if (this.server) await closeServer(this.server);
    await this.app.close();
  }
}
