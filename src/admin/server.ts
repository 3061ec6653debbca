/**
 * Admin listener (loopback by default): / (status page), /healthz (process alive), /readyz (can
 * serve traffic), /metrics (Prometheus exposition), /status (JSON snapshot), and the /v1 admin
 * API (kill switch; mutations authenticated, see api.ts). An optional second listener speaks
 * mTLS with the pod's SVID, for remote admins whose SPIFFE ID the policy lists under `admins`.
 */
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import https from 'node:https';
import { isIP } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { AdminApi } from './api.js';
import { serverContextOptions, stillAnchored, verifyClientPeer, type TlsMaterial, type VerifiedPeer } from '../spiffe/tls.js';
import { authorizeAny, type AuthorizationRefusal, type Authorizer } from '../spiffe/authorize.js';
import type { AddressInfo } from 'node:net';
import type { AuditSink } from '../audit/record.js';
import type { Logger } from '../lib/log.js';
import { AggregatedAudit } from '../audit/aggregate.js';
import { handshakeFailureReason } from '../spiffe/handshake-reasons.js';
import { SidecarError } from '../errors.js';
import { REASONS, type ReasonCode } from '../reasons.js';
import { READ_METHODS, adminRefusal, methodNotAllowed, sendJson, sendRefusal } from './json.js';
import { closeServer, listen, throttledListenerErrorLog } from '../lib/net.js';
import { listenerDrain } from '../lib/listener-drain.js';
import { ADMIN_LIMITS, armIdle, guardListener, serverLimitOptions, type ListenerMetrics } from '../lib/listener-limits.js';
import type { ReadinessCheck } from '../lib/readiness.js';
import type { Registry } from 'prom-client';
import { PROBES, type ProbeDeps } from './probes.js';
import { STATUS_PAGE_CSP, STATUS_PAGE_HTML } from './status-page.js';

/** What the admin server needs of the metrics: the registry it serves and its refusal counter. */
export interface AdminMetrics extends ListenerMetrics {
  readonly registry: Registry;
}

export interface AdminDeps {
  listen: { host: string; port: number };
  metrics: AdminMetrics;
  readiness: () => Record<string, ReadinessCheck>;
  status: () => unknown;
  logger: Logger;
  /** Where refused connections are audited (aggregated); absent: counted only. */
  audit?: AuditSink;
  api?: AdminApi;
  /** The mTLS admin listener's address (absent: none). */
  mtlsListen?: { host: string; port: number };
  /** Host names (besides IP literals and localhost) the plain admin listener answers to. */
  allowedHosts?: readonly string[];
}

/** True for a Host header naming an IP literal, localhost, or an allowed name (any port). */
export function hostAllowed(host: string | undefined, allowed: readonly string[] = []): boolean {
  if (!host) return false;
  let name = host.toLowerCase();
  if (name.startsWith('[')) return name.includes(']'); // IPv6 literal
  const colon = name.lastIndexOf(':');
  if (colon !== -1) name = name.slice(0, colon);
  if (name.endsWith('.')) name = name.slice(0, -1);
  return name === 'localhost' || isIP(name) !== 0 || allowed.includes(name);
}

/**
 * Who may connect to the mTLS admin listener: any peer whose SVID verifies. The status, health
 * and metrics reads are open to them; each mutation checks the policy's `admins` (auth.ts), which
 * a reload may change while a connection stays open.
 */
const ADMIN_MTLS_PEERS: Authorizer<ReasonCode> = authorizeAny();

const kAdminPeer = Symbol('attest-sidecar.admin-peer');
const PEER_UNVERIFIED = adminRefusal('peer_unverified', REASONS.peer_unverified.message);
const INTERNAL_ERROR = adminRefusal('internal_error', REASONS.internal_error.message);
type AdminSocket = TLSSocket & { [kAdminPeer]?: string };

export class AdminServer {
  private server: http.Server | undefined;
  private mtlsServer: https.Server | undefined;
  private material: TlsMaterial | undefined;
  /** Open mTLS admin connections whose peer was accepted, with that peer (re-checked when the bundles change). */
  private readonly mtlsSockets = new Map<AdminSocket, VerifiedPeer>();
  private readonly refusals: AggregatedAudit | undefined;

  private readonly probeDeps: ProbeDeps;
  /** Draining: a first identity arriving now must not start the mTLS listener. */
  private draining = false;

  constructor(private readonly deps: AdminDeps) {
    this.probeDeps = { readiness: deps.readiness, registry: deps.metrics.registry };
    this.refusals = deps.audit ? new AggregatedAudit(deps.audit) : undefined;
  }

  address(): AddressInfo | undefined {
    const a = this.server?.address();
    return a && typeof a === 'object' ? a : undefined;
  }

  mtlsAddress(): AddressInfo | undefined {
    const a = this.mtlsServer?.address();
    return a && typeof a === 'object' ? a : undefined;
  }

  async start(): Promise<void> {
    const server = http.createServer(serverLimitOptions(ADMIN_LIMITS, false), (req, res) => this.guarded(req, res, undefined));
    guardListener(server, { listener: 'admin', limits: ADMIN_LIMITS, metrics: this.deps.metrics, ...(this.refusals ? { audit: this.refusals } : {}) }, { tls: false });
    this.server = server;
    await listen(server, this.deps.listen, throttledListenerErrorLog(this.deps.logger, 'admin'));
    this.deps.logger.info({ address: this.address() }, 'admin listening');
  }

  /** The mTLS admin listener starts with the first SVID and follows rotations. */
  async applyIdentity(material: TlsMaterial): Promise<void> {
    const previous = this.material;
    this.material = material;
    if (!this.deps.mtlsListen) return;
    if (this.draining && !this.mtlsServer) return;
    if (this.mtlsServer) {
      this.mtlsServer.setSecureContext(serverContextOptions(material));
      if (previous && previous.caPem !== material.caPem) this.recheckPeers(material);
      return;
    }
    const server = https.createServer({ ...serverContextOptions(material), ...serverLimitOptions(ADMIN_LIMITS, true) }, (req, res) => {
      const peer = (req.socket as AdminSocket)[kAdminPeer];
      if (!peer) {
        sendRefusal(res, PEER_UNVERIFIED);
        return;
      }
      this.guarded(req, res, peer);
    });
    server.prependListener('secureConnection', (socket: TLSSocket) => {
      let refusal: AuthorizationRefusal<ReasonCode> | undefined;
      let peer: VerifiedPeer | undefined;
      try {
        peer = verifyClientPeer(socket, this.material!.bundles, Date.now());
        refusal = ADMIN_MTLS_PEERS(peer);
        if (!refusal) (socket as AdminSocket)[kAdminPeer] = peer.id;
      } catch (err) {
        refusal = { reason: err instanceof SidecarError ? err.reason : 'svid_malformed', message: (err as Error).message };
      }
      if (refusal) {
        // Audited in aggregate: a flood of bad peers must not become a log line per connection.
        this.deps.metrics.connectionRefused('admin_mtls', refusal.reason);
        this.refusals?.note('peer_rejected', refusal.reason, `admin mTLS: ${refusal.message}`, undefined, socket.remoteAddress);
        this.deps.logger.debug({ err: refusal.message, remote: socket.remoteAddress }, 'admin mTLS peer rejected');
        socket.destroy();
        return;
      }
      this.mtlsSockets.set(socket as AdminSocket, peer!);
      socket.once('close', () => this.mtlsSockets.delete(socket as AdminSocket));
      armIdle(socket, ADMIN_LIMITS.idleTimeoutMs, { listener: 'admin_mtls', metrics: this.deps.metrics });
    });
    guardListener(server, { listener: 'admin_mtls', limits: ADMIN_LIMITS, metrics: this.deps.metrics, ...(this.refusals ? { audit: this.refusals } : {}) }, { tls: true });
    server.on('tlsClientError', (err: Error & { code?: string }, socket: TLSSocket) => {
      const { reason, detail } = handshakeFailureReason(err, socket);
      this.deps.metrics.connectionRefused('admin_mtls', reason);
      this.refusals?.note('peer_rejected', reason, `admin mTLS: ${detail}`, undefined, socket?.remoteAddress);
      this.deps.logger.debug({ err: err.message }, 'admin mTLS handshake failed');
    });
    this.mtlsServer = server;
    await listen(server, this.deps.mtlsListen, throttledListenerErrorLog(this.deps.logger, 'admin_mtls'));
    this.deps.logger.info({ address: this.mtlsAddress() }, 'admin mTLS listening');
  }

  /** The bundles changed (a federation removed, a CA revoked): admin peers that no longer verify are disconnected. */
  private recheckPeers(material: TlsMaterial): void {
    for (const [socket, peer] of this.mtlsSockets) {
      if (stillAnchored(peer, material.bundles)) continue;
      delete socket[kAdminPeer];
      this.mtlsSockets.delete(socket);
      this.deps.metrics.connectionRefused('admin_mtls', 'peer_trust_withdrawn');
      this.refusals?.note('peer_rejected', 'peer_trust_withdrawn', `admin mTLS: ${peer.id} chains to an authority the bundles no longer hold`, undefined, socket.remoteAddress);
      socket.destroy();
    }
  }

  private guarded(req: IncomingMessage, res: ServerResponse, peer: string | undefined): void {
    this.handle(req, res, peer).catch((err: unknown) => {
      this.deps.logger.error({ err: (err as Error).message }, 'admin request failed');
      if (!res.headersSent) sendRefusal(res, INTERNAL_ERROR);
      else res.destroy();
    });
  }

  private async handle(req: IncomingMessage, res: ServerResponse, peer: string | undefined): Promise<void> {
    const path = (req.url ?? '/').split('?')[0]!;
    if (peer === undefined && !hostAllowed(req.headers.host, this.deps.allowedHosts)) {
      // DNS rebinding: a web page whose name now resolves to 127.0.0.1 must not read the status
      // page or drive the API from the operator's browser. Direct access uses an IP or localhost.
      sendRefusal(res, adminRefusal('admin_host_not_allowed', `Host '${String(req.headers.host ?? '').slice(0, 100)}' not allowed: use an IP address or localhost, or list the name in admin.allowed_hosts`));
      return;
    }
    const api = this.deps.api;
    if (api?.owns(path)) {
      await api.handle(req, res, path, peer);
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      sendRefusal(res, methodNotAllowed(req.method, READ_METHODS));
      return;
    }
    const probe = PROBES.get(path);
    if (probe) {
      await probe(req, res, this.probeDeps);
      return;
    }
    switch (path) {
      case '/':
        res.writeHead(200, {
          'content-type': 'text/html; charset=utf-8',
          'content-security-policy': STATUS_PAGE_CSP,
          'cache-control': 'no-store',
          'x-content-type-options': 'nosniff',
          'referrer-policy': 'no-referrer',
        });
        res.end(req.method === 'HEAD' ? undefined : STATUS_PAGE_HTML);
        return;
      case '/status':
        sendJson(res, 200, this.deps.status());
        return;
      default:
        sendRefusal(res, adminRefusal('admin_endpoint_unknown', `No admin endpoint ${path}`));
    }
  }

  /** Stops accepting on both listeners; resolves once their requests in progress are answered. */
  async drain(): Promise<void> {
    this.draining = true;
    await Promise.all([listenerDrain(this.server)?.begin(), listenerDrain(this.mtlsServer)?.begin()]);
  }

  /** Cuts the connections the drain left open; returns how many requests were cut. */
  cutDrain(): number {
    return (listenerDrain(this.server)?.cut() ?? 0) + (listenerDrain(this.mtlsServer)?.cut() ?? 0);
  }

  async close(): Promise<void> {
    this.refusals?.close();
    await Promise.all([this.server && closeServer(this.server), this.mtlsServer && closeServer(this.mtlsServer)]);
  }
}
