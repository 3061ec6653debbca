/**
 * Connection-level bounds shared by every HTTP(S) listener of the sidecar: request-header and
 * idle timeouts, a total connection cap, and answers to bytes that are not a request. What a
 * listener closes is counted (`attest_sidecar_connections_refused_total{direction,reason}`) and,
 * where it is a refusal rather than ordinary connection life, audited in aggregate.
 *
 * Idle is "no request in progress": a fresh connection that has sent nothing (closed after the
 * idle or the headers timeout, whichever is shorter: node's header deadline runs from accept)
 * and a kept-alive one between requests (node's keepAliveTimeout). A request whose headers are
 * not complete in time gets 408 (node's headersTimeout). A request in progress is bounded by
 * the forwarding timeouts.
 */
import type http from 'node:http';
import type { Socket } from 'node:net';
import { ListenerDrain } from './listener-drain.js';
import { refusal, type FixedReasonCode, type ReasonCode, type Refusal } from '../reasons.js';

export type ListenerName = 'inbound' | 'outbound' | 'admin' | 'admin_mtls' | 'health';

export interface ListenerLimits {
  /** Time from a request's first byte to the end of its headers; over it: 408 and close. */
  headersTimeoutMs: number;
  /** A connection with no request in progress (fresh, or kept alive between requests) is closed after this. */
  idleTimeoutMs: number;
  /** A request body that delivers no byte for this long is answered 408 (enforced while forwarding). */
  bodyProgressTimeoutMs: number;
  /** Inbound: TLS handshake (client hello to finished) bound. Outbound (plain HTTP): unused. */
  handshakeTimeoutMs: number;
  /** Open connections the listener holds; more are closed at once (reason `connection_limit`). */
  maxConnections: number;
  /** Inbound: verified connections per peer SPIFFE ID (reason `peer_connection_limit`). 0: no per-peer cap. */
  maxConnectionsPerPeer: number;
}

export const INBOUND_LIMIT_DEFAULTS: Readonly<ListenerLimits> = Object.freeze({
  headersTimeoutMs: 10_000,
  idleTimeoutMs: 60_000,
  bodyProgressTimeoutMs: 30_000,
  handshakeTimeoutMs: 10_000,
  maxConnections: 1024,
  maxConnectionsPerPeer: 256,
});

/** Outbound callers are local processes without an identity: a total cap only. */
export const OUTBOUND_LIMIT_DEFAULTS: Readonly<ListenerLimits> = Object.freeze({
  headersTimeoutMs: 10_000,
  idleTimeoutMs: 60_000,
  bodyProgressTimeoutMs: 30_000,
  handshakeTimeoutMs: 0,
  maxConnections: 512,
  maxConnectionsPerPeer: 0,
});

/** Fixed limits of the admin listeners (loopback status, health, metrics; optional mTLS). */
export const ADMIN_LIMITS: Readonly<ListenerLimits> = Object.freeze({
  headersTimeoutMs: 10_000,
  idleTimeoutMs: 30_000,
  bodyProgressTimeoutMs: 30_000,
  handshakeTimeoutMs: 10_000,
  maxConnections: 64,
  maxConnectionsPerPeer: 0,
});

/** What the guard counts: connections it closes, by listener and reason. */
export interface ListenerMetrics {
  connectionRefused(listener: ListenerName, reason: ReasonCode): void;
}

/** Where the guard audits refusals (the aggregated audit: one record per reason and interval). */
export interface ListenerAudit {
  note(type: 'connection_refused', reason: ReasonCode, detail: string, peer?: string, remote?: string): void;
}

export interface ListenerGuardDeps {
  listener: ListenerName;
  limits: ListenerLimits;
  metrics: ListenerMetrics;
  /** Where refusals are audited (aggregated); absent: counted only. */
  audit?: ListenerAudit;
}

/** Options for http(s).createServer: header and keep-alive timeouts, and the TLS handshake bound. */
export function serverLimitOptions(limits: ListenerLimits, tls: boolean): http.ServerOptions & { handshakeTimeout?: number } {
  return {
    headersTimeout: limits.headersTimeoutMs,
    // The whole-request timeout stays off: bodies and responses may legitimately stream for long;
    // a stalled body is bounded by the body progress timeout while it is forwarded.
    requestTimeout: 0,
    keepAliveTimeout: limits.idleTimeoutMs,
    // node checks header deadlines on this interval (default 30 s): a quarter of the timeout
    // keeps the bound within 25% of what is configured, for one cheap timer per listener
    // (2.5 s with the default; an idle sidecar wakes up rarely).
    connectionsCheckingInterval: Math.max(100, Math.min(5_000, Math.floor(limits.headersTimeoutMs / 4))),
    ...(tls ? { handshakeTimeout: limits.handshakeTimeoutMs } : {}),
  };
}

const kIdleArmed = Symbol('attest-sidecar.idle-armed');
const kSecure = Symbol('attest-sidecar.tls-established');
const kInFlight = Symbol('attest-sidecar.requests-in-flight');
type GuardedSocket = Socket & { [kIdleArmed]?: boolean; [kSecure]?: boolean; [kInFlight]?: number };

/**
 * Requests one connection may have in progress at once (HTTP/1.1 pipelining). node parses and
 * dispatches every pipelined request it has read while earlier answers are still pending, so
 * without a cap one connection could hold any number of forwarded requests. Over the cap the
 * connection is closed: answers are ordered, so no refusal can be sent in the excess's place.
 */
export const MAX_PIPELINED_REQUESTS = 16;

/** A refusal of bytes that never became a request, and its raw HTTP answer (built once). */
interface RawAnswer {
  readonly refusal: Refusal;
  readonly raw: string;
}

function rawAnswer(code: FixedReasonCode, statusText: string): RawAnswer {
  const r = refusal(code);
  return { refusal: r, raw: `HTTP/1.1 ${r.status} ${statusText}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(r.body)}\r\nconnection: close\r\n\r\n${r.body}` };
}

/** JSON answers to bytes that never became a request, by node's error code (node's own would be plain text). */
const ANSWERS = new Map<string, RawAnswer>([
  ['ERR_HTTP_REQUEST_TIMEOUT', rawAnswer('headers_timeout', 'Request Timeout')],
  ['HPE_HEADER_OVERFLOW', rawAnswer('headers_too_large', 'Request Header Fields Too Large')],
  ['HPE_CHUNK_EXTENSIONS_OVERFLOW', rawAnswer('chunk_extensions_too_large', 'Payload Too Large')],
]);
const MALFORMED = rawAnswer('malformed_request', 'Bad Request');

/** How long a refused connection may take to read our answer before it is cut. */
const REFUSAL_LINGER_MS = 5_000;

/**
 * Writes a final answer on a socket node no longer manages (CONNECT, Upgrade, parse errors) and
 * closes it. The socket gets an error listener first: a client that resets the connection
 * before, while or after the answer is written must not become an unhandled 'error' event.
 */
export function answerAndClose(socket: Socket, answer: string): void {
  socket.on('error', ignore);
  if (socket.destroyed) return;
  socket.setTimeout(REFUSAL_LINGER_MS, () => socket.destroy());
  // Read and drop what the client still sends, so its close is seen and its FIN answered.
  socket.resume();
  if (socket.writable) socket.end(answer);
  else socket.destroy();
}

function ignore(): void {}

/** Socket errors that only mean the client went away: nothing to answer, count or audit. */
const CLIENT_GONE = new Set(['ECONNRESET', 'EPIPE', 'ECONNABORTED', 'ETIMEDOUT', 'ERR_STREAM_DESTROYED']);

/**
 * Applies the limits to `server` (created with serverLimitOptions): total connection cap, the
 * idle bound before a connection's first request, and JSON answers to malformed requests.
 * Plain HTTP listeners arm the idle bound on accept; TLS listeners call `armIdle` once the
 * handshake is done (the handshake has its own timeout).
 */
export function guardListener(server: http.Server, deps: ListenerGuardDeps, opts: { tls: boolean }): void {
  const { listener, limits, metrics, audit } = deps;
  server.maxConnections = limits.maxConnections;
  server.on('drop', (data?: { remoteAddress?: string }) => {
    metrics.connectionRefused(listener, 'connection_limit');
    audit?.note('connection_refused', 'connection_limit', `${listener} listener holds its maximum of ${limits.maxConnections} connections`, undefined, data?.remoteAddress);
  });
  if (!opts.tls) server.on('connection', (socket: Socket) => armIdle(socket, limits.idleTimeoutMs, deps));
  else server.prependListener('secureConnection', (socket: Socket) => ((socket as GuardedSocket)[kSecure] = true));
  limitPipelining(server, deps, new ListenerDrain(server, opts.tls, (socket) => (socket as GuardedSocket)[kInFlight] ?? 0));
  server.on('clientError', (err: Error & { code?: string }, socket: Socket) => {
    // https forwards TLS handshake failures here too: those are the listener's tlsClientError
    // handler's to count; there is no HTTP to answer on a connection without TLS.
    if ((opts.tls && !(socket as GuardedSocket)[kSecure]) || (err.code !== undefined && CLIENT_GONE.has(err.code))) {
      socket.destroy();
      return;
    }
    // node's header deadline also runs from accept: a connection that never sent a byte is
    // idle, not slow, and is closed without an answer (as the idle bound would).
    if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT' && socket.bytesRead === 0) {
      metrics.connectionRefused(listener, 'idle_timeout');
      socket.destroy();
      return;
    }
    const answer = ANSWERS.get(err.code ?? '') ?? MALFORMED;
    const reason = answer.refusal.reason;
    metrics.connectionRefused(listener, reason);
    audit?.note('connection_refused', reason, `${listener} listener: ${answer.refusal.error}`, undefined, socket.remoteAddress);
    // A response already started on this connection cannot be followed by another one.
    const started = (socket as Socket & { _httpMessage?: unknown })._httpMessage !== undefined && (socket as Socket & { _httpMessage?: unknown })._httpMessage !== null;
    if (started) socket.destroy();
    else answerAndClose(socket, answer.raw);
  });
}

type RequestListener = (req: http.IncomingMessage, res: http.ServerResponse) => void;

/**
 * Wraps the server's request handlers (registered before guardListener) so that each request
 * first disarms the idle bound, counts against MAX_PIPELINED_REQUESTS and is known to the
 * listener's drain. Requests node still
 * parses from bytes read before the close are dropped unhandled.
 */
function limitPipelining(server: http.Server, deps: ListenerGuardDeps, drain: ListenerDrain): void {
  const { listener, metrics, audit } = deps;
  for (const event of ['request', 'checkContinue'] as const) {
    const handlers = server.listeners(event) as RequestListener[];
    if (event === 'checkContinue' && handlers.length === 0) continue;
    server.removeAllListeners(event);
    server.on(event, (req: http.IncomingMessage, res: http.ServerResponse) => {
      const socket = req.socket as GuardedSocket;
      if (socket.destroyed) return;
      disarmIdle(socket);
      const inFlight = (socket[kInFlight] ?? 0) + 1;
      if (inFlight > MAX_PIPELINED_REQUESTS) {
        metrics.connectionRefused(listener, 'pipeline_limit');
        audit?.note('connection_refused', 'pipeline_limit', `${listener} listener: more than ${MAX_PIPELINED_REQUESTS} pipelined requests in progress on one connection`, undefined, socket.remoteAddress);
        socket.destroy();
        return;
      }
      socket[kInFlight] = inFlight;
      drain.admit(res);
      res.once('close', () => {
        const left = (socket[kInFlight] ?? 1) - 1;
        socket[kInFlight] = left;
        drain.release(res, socket, left);
      });
      for (const handler of handlers) handler.call(server, req, res);
    });
  }
}

/** Closes `socket` when it completes no request headers within the idle timeout. */
export function armIdle(socket: Socket, idleTimeoutMs: number, deps: Pick<ListenerGuardDeps, 'listener' | 'metrics'>): void {
  const guarded = socket as GuardedSocket;
  guarded[kIdleArmed] = true;
  guarded.setTimeout(idleTimeoutMs);
  guarded.once('timeout', () => {
    // node's own timeout handler (no server 'timeout' listener) destroys the socket.
    if (guarded[kIdleArmed]) deps.metrics.connectionRefused(deps.listener, 'idle_timeout');
  });
}

function disarmIdle(socket: Socket): void {
  const guarded = socket as GuardedSocket;
  if (guarded[kIdleArmed]) {
    guarded[kIdleArmed] = false;
    guarded.setTimeout(0);
  }
}
