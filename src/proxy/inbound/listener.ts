/**
 * Inbound listener: terminates mTLS, verifies the peer's X509-SVID per SPIFFE rules once per
 * connection (refusing peers over their connection cap), then runs every request through the
 * inbound filter chain, which ends in the router to the local app:
 *
 *   peer-verified -> peer-expiry -> revocation -> header-screen -> canonical-path -> policy
 *   -> attestation -> admission -> budget -> router
 *
 * The chain is built once from the deps: revocation, attestation and budget are absent when
 * their source or gate is. Hot path (warm connection): a timestamp compare, a Set lookup, the
 * header copy, three compares for the cached route, two counters and the proxying itself. No
 * crypto, no disk I/O.
 */
import https from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TLSSocket } from 'node:tls';
import type { AddressInfo } from 'node:net';
import { Pool } from '../../undici/pool.js';
import type { InboundConfig } from '../../config/types.js';
import { SidecarError } from '../../errors.js';
import type { Logger } from '../../lib/log.js';
import type { AuditSink } from '../../audit/record.js';
import type { CompiledPolicy } from '../../policy/types.js';
import { appLeadHeaders, screenInboundHeaders, tooManyHeadersRefusal } from '../request-headers.js';
import { DEFAULT_MAX_REQUEST_HEADERS } from '../../lib/header-limits.js';
import { errorBody, sendJsonError } from '../forward.js';
import { awaitContinue } from '../request-body.js';
import { DEFAULT_REQUEST_LIMITS, PeerAdmission, type RequestLimits } from '../peer-admission.js';
import { DecisionLog, pathOnly, type DecisionMetrics, type RecentDenials } from '../decision-log.js';
import type { AttestationGate, AttestationSession } from '../attestation-gate.js';
import { FilterChain, type ChainEnds } from '../chain.js';
import type { Refusal } from '../../reasons.js';
import { closeServer, listen, throttledListenerErrorLog } from '../../lib/net.js';
import { armIdle, guardListener, serverLimitOptions } from '../../lib/listener-limits.js';
import { listenerDrain } from '../../lib/listener-drain.js';
import { AggregatedAudit } from '../../audit/aggregate.js';
import { handshakeFailureReason } from '../../spiffe/handshake-reasons.js';
import type { RevocationState } from '../../revocation/state.js';
import type { SpendGate } from '../spend.js';
import { serverContextOptions, stillAnchored, verifyClientPeer, type TlsMaterial, type VerifiedPeer } from '../../spiffe/tls.js';
import { InboundContext, kConnection, newConnection, type Connection, type InboundForwarding, type PeeredSocket } from './context.js';
import { InboundRouter, type UpstreamMetrics } from './router.js';
import { peerVerified, peerExpiry, revocation } from './filters/peer.js';
import { headerScreen } from './filters/header-screen.js';
import { canonicalPath } from './filters/canonical-path.js';
import { policyFilter } from './filters/policy.js';
import { attestationFilter } from './filters/attestation.js';
import { admissionFilter } from './filters/admission.js';
import { budgetFilter } from './filters/budget.js';

/** The metrics the inbound listener feeds (SidecarMetrics satisfies it). */
export interface InboundMetrics extends DecisionMetrics, UpstreamMetrics {
  peerRejected(direction: 'inbound', reason: string): void;
  connectionRefused(listener: string, reason: string): void;
  readonly inboundHandshakes: { inc(): void };
}

export interface InboundDeps {
  config: InboundConfig;
  policy: () => CompiledPolicy | undefined;
  metrics: InboundMetrics;
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

/** Header bytes the inbound listener accepts (see the server options). */
export const INBOUND_MAX_HEADER_BYTES = 32 * 1024;

/** The lead headers of a request on an unverified connection (it is refused anyway). */
const NO_LEAD: readonly string[] = [];

const INTERNAL_ERROR_BODY = errorBody('Internal error');

/** The inbound filters in order, built from the deps (absent features are no filter at all). */
export function inboundChain(deps: InboundDeps, admission: PeerAdmission, ends: ChainEnds<InboundContext>): FilterChain<InboundContext> {
  return new FilterChain<InboundContext>(
    [
      peerVerified,
      peerExpiry(deps.now ?? Date.now),
      deps.revocations && revocation(deps.revocations),
      headerScreen,
      canonicalPath,
      policyFilter({ policy: deps.policy, actions: deps.config.actions, canAttest: deps.attestation !== undefined, canCharge: deps.spend !== undefined }),
      deps.attestation && attestationFilter(deps.attestation),
      admissionFilter(admission),
      deps.spend && budgetFilter(deps.spend, deps.revocations),
    ],
    ends,
  );
}

export class InboundListener {
  private server: https.Server | undefined;
  private material: TlsMaterial | undefined;
  private readonly app: Pool;
  private readonly connections = new Set<PeeredSocket>();
  /** Open verified connections per peer SPIFFE ID (for `limits.max_connections_per_peer`). */
  private readonly perPeer = new Map<string, number>();
  private readonly refusals: AggregatedAudit;
  private readonly now: () => number;
  private readonly log: DecisionLog;
  private readonly maxRequestHeaders: number;
  private readonly tooManyHeaders: Refusal;
  private readonly admission: PeerAdmission;
  private readonly forwarding: InboundForwarding;
  /** The request path, built once from the deps. */
  private readonly chain: FilterChain<InboundContext>;
  /** Draining: a first identity arriving now must not start the listener. */
  private draining = false;
  /** The drain deadline passed: close destroys the app pool instead of waiting for its requests. */
  private cutRequests = false;

  constructor(private readonly deps: InboundDeps) {
    this.maxRequestHeaders = deps.config.maxRequestHeaders ?? DEFAULT_MAX_REQUEST_HEADERS;
    this.tooManyHeaders = tooManyHeadersRefusal(this.maxRequestHeaders);
    this.log = new DecisionLog('inbound', deps.metrics, deps.audit, deps.denials);
    this.refusals = new AggregatedAudit(deps.audit);
    this.app = new Pool(deps.config.app, { connections: APP_POOL_CONNECTIONS, pipelining: 1, keepAliveTimeout: 30_000 });
    // `inbound.limits.body_progress_timeout` from the config; `requestLimits` (tests) overrides.
    const limits = { ...DEFAULT_REQUEST_LIMITS, bodyProgressTimeoutMs: deps.config.limits.bodyProgressTimeoutMs, ...deps.requestLimits };
    this.admission = new PeerAdmission(APP_POOL_CONNECTIONS, limits);
    this.forwarding = {
      requestTimeoutMs: deps.config.requestTimeoutMs,
      bodyProgressTimeoutMs: limits.bodyProgressTimeoutMs,
      servername: new URL(deps.config.app).hostname || 'app',
    };
    this.now = deps.now ?? Date.now;
    const router = new InboundRouter(this.app, this.admission, this.log, deps.metrics, deps.logger);
    this.chain = inboundChain(deps, this.admission, router);
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
    for (const socket of this.connections) {
      const connection = socket[kConnection];
      if (connection) out.push({ peer: connection.peer, ...(connection.attestation ? { attestation: connection.attestation } : {}) });
    }
    return out;
  }

  /** Installs a new identity: the first call starts listening, later ones swap the context. */
  async applyIdentity(material: TlsMaterial): Promise<void> {
    const previous = this.material;
    this.material = material;
    if (this.server) {
      this.server.setSecureContext(serverContextOptions(material));
      if (previous && previous.caPem !== material.caPem) this.recheckPeers(material);
      return;
    }
    if (this.draining) return;
    const limits = this.deps.config.limits;
    const handler = (req: IncomingMessage, res: ServerResponse) => this.onRequest(req, res);
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

  /**
   * The bundles changed (a federation removed, a CA revoked): open connections whose peer was
   * verified to an authority the bundles no longer hold are refused from their next request on,
   * as a new handshake would be. Runs on bundle changes only, never per request.
   */
  private recheckPeers(material: TlsMaterial): void {
    for (const socket of this.connections) {
      const connection = socket[kConnection];
      if (!connection || connection.trustWithdrawn || stillAnchored(connection.peer, material.bundles)) continue;
      connection.trustWithdrawn = true;
      this.deps.logger.warn({ peer: connection.peer.id, remote: socket.remoteAddress }, 'inbound peer no longer trusted: the bundles no longer hold the authority its certificate chains to');
    }
  }

  private onSecureConnection(socket: PeeredSocket): void {
    const material = this.material!;
    try {
      const peer = verifyClientPeer(socket, material.bundles, this.now());
      socket[kConnection] = newConnection(peer);
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
    const id = socket[kConnection].peer.id;
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
      const slots = socket[kConnection]?.slots;
      if (slots) this.admission.detach(slots);
    });
    armIdle(socket, limits.idleTimeoutMs, { listener: 'inbound', metrics: this.deps.metrics });
  }

  /** Makes the request's context and runs the chain; a bug fails this request, never the sidecar. */
  private onRequest(req: IncomingMessage, res: ServerResponse): void {
    const socket = req.socket as PeeredSocket;
    let ctx: InboundContext;
    try {
      const conn = socket[kConnection];
      // First, so that every record of this request carries its id; its refusal comes after the peer checks.
      const screen = screenInboundHeaders(req.rawHeaders, this.maxRequestHeaders, this.tooManyHeaders, conn ? this.leadHeaders(conn, socket) : NO_LEAD);
      ctx = new InboundContext(req, res, socket, screen, this.forwarding);
    } catch (err) {
      this.deps.logger.error({ err: (err as Error)?.stack ?? String(err) }, 'inbound request handler failed');
      sendJsonError(res, 500, INTERNAL_ERROR_BODY);
      this.log.record(performance.now(), 'error', 'internal_error', 500, req.method, pathOnly(req.url), socket?.[kConnection]?.peer.id, undefined, undefined);
      return;
    }
    this.chain.run(ctx);
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

  /**
   * Closes every open connection whose peer the new revocation state revokes (kill switch:
   * in-flight responses are cut; a reconnecting peer gets 403 "Agent revoked" and is closed again).
   * Returns how many were closed.
   */
  closeRevoked(state: RevocationState): number {
    let closed = 0;
    for (const s of this.connections) {
      const peer = s[kConnection]?.peer;
      if (peer && state.isRevoked(peer.id)) {
        s.destroy();
        this.connections.delete(s);
        closed++;
      }
    }
    return closed;
  }

  /** Stops accepting; resolves once the requests in progress are answered (see ListenerDrain). */
  drain(): Promise<void> {
    this.draining = true;
    return listenerDrain(this.server)?.begin() ?? Promise.resolve();
  }

  /** Cuts the connections the drain left open; returns how many requests were cut. */
  cutDrain(): number {
    this.cutRequests = true;
    return listenerDrain(this.server)?.cut() ?? 0;
  }

  async close(): Promise<void> {
    this.refusals.close();
    if (this.server) await closeServer(this.server);
    await (this.cutRequests ? this.app.destroy() : this.app.close()).catch(() => undefined);
  }
}
