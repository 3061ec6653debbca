/**
 * Streams one HTTP request to the next hop through an undici Pool and the response back,
 * with backpressure both ways. Shared by the inbound (to the app) and outbound (to the peer
 * sidecar) directions so both have the same semantics and error mapping.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { Writable, pipeline, type Transform } from 'node:stream';
import type { Dispatcher } from 'undici';
import { forwardResponseHeaders, responseHeaderList, responseHeaderObject } from './headers.js';
import { DEFAULT_BODY_PROGRESS_TIMEOUT_MS, RequestBodyTimeoutError, checkBodyProgress, continueRequest, type BodyProgressWatch } from './request-body.js';

export interface ForwardOptions {
  /** Origin-form path with query, e.g. `/agents?x=1`. */
  path: string;
  headers: string[];
  headersTimeoutMs: number;
  bodyTimeoutMs: number;
  /**
   * A streamed request body that brings no byte for this long while the upstream takes it is
   * abandoned: 408 when nothing was answered yet. Default DEFAULT_BODY_PROGRESS_TIMEOUT_MS.
   */
  bodyProgressTimeoutMs?: number;
  /** TLS server name for the connection (see RouteRuntime.servername); default: from Host. */
  servername?: string;
  /**
   * Rewrites the response on its way down (usage metering, secret scrubbing): given the status
   * and the filtered headers, returns the headers to send and a Transform the body passes
   * through; undefined streams the body unchanged.
   */
  transformResponse?: (
    statusCode: number,
    headers: Record<string, string | string[]>,
  ) => { status?: number; headers: Record<string, string | string[]>; body: Transform } | undefined;
}

/** An exchange that ended before anything was sent to the client: the caller answers with a JSON error. */
export interface UpstreamFailure {
  status: number;
  reason: string;
  message: string;
  /** Whose doing: the client's (`deny`: its body stalled) or this side's or the upstream's (`error`, default). */
  decision?: 'deny' | 'error';
  /** Failed on this side of the exchange (attestation, reading a body), not at the upstream. */
  local?: boolean;
}

/**
 * An error a dispatch interceptor (the attestation handshake) ends an exchange with when it,
 * not the upstream, failed it: the exchange ends with `failure` as it stands.
 */
export class ExchangeFailure extends Error {
  constructor(readonly failure: UpstreamFailure) {
    super(failure.message);
  }
}

/** True when the request has a body to stream (RFC 9112 §6.3). */
export function hasRequestBody(req: IncomingMessage): boolean {
  const len = req.headers['content-length'];
  if (len !== undefined) return len !== '0';
  return req.headers['transfer-encoding'] !== undefined;
}

/** What an exchange whose client left before any response records as its status (nginx's 499). */
export const CLIENT_CLOSED_STATUS = 499;

/**
 * undici's request options plus `servername`, which its Request reads (its own DNS interceptor
 * sets it) but its types leave out.
 */
type StreamOptions = Dispatcher.RequestOptions & { servername: string | undefined };

/**
 * What a forwarded exchange ended with: the upstream status, or an UpstreamFailure when nothing
 * was sent to the client yet (the caller answers with a JSON error). When the failure happens
 * after the response started, the client connection is destroyed (a truncated body must not
 * look whole) and the exchange ends with the status relayed.
 */
export type ForwardResult = number | UpstreamFailure;

/** What forwarding needs of a dispatcher: a Pool, or a Pool with interceptors composed on it. */
export type ForwardDispatcher = Pick<Dispatcher, 'dispatch'>;

/**
 * Forwards one request; `done` is called exactly once with the result. A callback, not a
 * promise: a request allocates no promise chain of its own.
 */
export function forwardRequestThen(
  dispatcher: ForwardDispatcher,
  req: IncomingMessage,
  res: ServerResponse,
  opts: ForwardOptions,
  done: (result: ForwardResult) => void,
): void {
  const body = hasRequestBody(req) ? req : null;
  const request: StreamOptions = {
    path: opts.path,
    method: req.method as Dispatcher.HttpMethod,
    headers: opts.headers,
    body,
    headersTimeout: opts.headersTimeoutMs,
    bodyTimeout: opts.bodyTimeoutMs,
    // Always present (undefined: undici derives it from Host), so the options keep one shape.
    servername: opts.servername,
  };
  const handler = new ForwardHandler(res, opts, body, done);
  watchClient(req.socket as ClientSocket | null, handler);
  if (body !== null) {
    continueRequest(res);
    handler.watchBodyProgress(body, opts.bodyProgressTimeoutMs ?? DEFAULT_BODY_PROGRESS_TIMEOUT_MS);
  }
  dispatcher.dispatch(request, handler);
  // The client went away while its body streams: abandon the upstream exchange too.
  if (body !== null) {
    res.once('close', () => {
      if (!res.writableFinished) body.destroy();
    });
  }
}

/**
 * The exchange's undici handler: response headers go from undici's raw list to `writeHead` in
 * one pass, and body chunks straight to the response, pausing undici while the client is slow.
 *
 * This is undici 7's native handler interface (what its own `stream()` and `request()`
 * implement); the newer controller interface is adapted onto it for every request. `stream()`
 * itself would add, per request, an AsyncResource, a header object that is then copied, and
 * the listeners of `finished()` on the response: a share of the proxy's CPU per request that
 * the reference pair pays (see docs/benchmark-history.md).
 */
class ForwardHandler implements Dispatcher.DispatchHandler, BodyProgressWatch {
  private abort: ((err?: Error) => void) | undefined = undefined;
  private resume: (() => void) | undefined = undefined;
  private status = 0;
  /** Where body chunks go: the response or a response transform. */
  private sink: Writable | ServerResponse | undefined = undefined;
  private clientGone = false;
  ended = false;
  /** Body-progress watch of a streamed request body (see checkBodyProgress). */
  bodyTimer: NodeJS.Timeout | undefined = undefined;
  bodyBytesRead = 0;
  private bodyProgressMs = 0;
  /** Links in the client connection's list of exchanges in flight (see watchClient). */
  watchList: ExchangeList | undefined = undefined;
  watchPrev: ForwardHandler | undefined = undefined;
  watchNext: ForwardHandler | undefined = undefined;

  constructor(
    private readonly res: ServerResponse,
    private readonly opts: ForwardOptions,
    private readonly body: IncomingMessage | null,
    private readonly done: (result: ForwardResult) => void,
  ) {}

  onConnect(abort: (err?: Error) => void): void {
    this.abort = abort;
    if (this.clientGone) abort();
  }

  get connected(): boolean {
    return this.abort !== undefined;
  }

  watchBodyProgress(req: IncomingMessage, ms: number): void {
    this.bodyProgressMs = ms;
    this.bodyBytesRead = req.socket?.bytesRead ?? 0;
    this.bodyTimer = setTimeout(checkBodyProgress, ms, this, req);
    this.bodyTimer.unref();
  }

  /** The client stopped sending its body: the upstream exchange is abandoned (onError answers 408). */
  onBodyStalled(): void {
    this.abort?.(new RequestBodyTimeoutError(this.bodyProgressMs));
  }

  /** The client's connection closed: abandon the upstream exchange (see watchClient). */
  onClientClose(): void {
    if (this.ended) return;
    this.clientGone = true;
    this.abort?.();
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void): boolean {
    // 1xx: interim responses are not relayed (the sidecar answers Expect itself: continueRequest).
    if (statusCode < 200) return true;
    this.status = statusCode;
    this.resume = resume;
    const transform = this.opts.transformResponse;
    if (transform === undefined) {
      this.res.writeHead(statusCode, responseHeaderList(rawHeaders));
      this.sink = this.res;
      return true;
    }
    const filtered = forwardResponseHeaders(responseHeaderObject(rawHeaders));
    const rewrite = transform(statusCode, filtered);
    if (!rewrite) {
      this.res.writeHead(statusCode, filtered);
      this.sink = this.res;
      return true;
    }
    // A replaced status (an unscannable body refused) is what the exchange ends with, in the audit too.
    if (rewrite.status !== undefined) this.status = rewrite.status;
    this.res.writeHead(this.status, rewrite.headers);
    // Errors on either side tear down both (and the client's connection, which aborts us).
    pipeline(rewrite.body, this.res, () => undefined);
    this.sink = rewrite.body;
    return true;
  }

  onData(chunk: Buffer): boolean {
    const sink = this.sink;
    if (sink === undefined || sink.write(chunk)) return true;
    if (sink.destroyed) {
      // Nobody left to read: stop (outside undici's parser callback; abort is idempotent).
      queueMicrotask(() => this.abort?.());
      return false;
    }
    // Backpressure: undici stays paused until the client drains (or leaves: watchClient).
    sink.once('drain', this.resume!);
    return false;
  }

  onComplete(): void {
    if (this.ended) return;
    this.settle();
    this.sink?.end();
    this.done(this.status);
  }

  onError(err: Error): void {
    if (this.ended) return;
    this.settle();
    const body = this.body;
    if (body !== null) stopRequestBody(body);
    const sink = this.sink;
    if (sink !== undefined && sink !== this.res) sink.destroy(err);
    if (this.res.headersSent || this.clientGone) {
      // A truncated body must not look whole. A client that left first is no upstream failure:
      // the exchange ends with the status relayed, or nginx's 499 if none was.
      this.res.destroy();
      this.done(this.status || (this.clientGone ? CLIENT_CLOSED_STATUS : 502));
      return;
    }
    // May run inside dispatch() itself (a closed pool): answer after the caller has returned.
    const failure = classifyUpstreamError(err);
    // The rest of a body that stalled or failed may still come: the connection cannot carry another request.
    if (failure.decision === 'deny') this.res.shouldKeepAlive = false;
    queueMicrotask(() => this.done(failure));
  }

  private settle(): void {
    this.ended = true;
    if (this.bodyTimer !== undefined) clearTimeout(this.bodyTimer);
    const list = this.watchList;
    if (list === undefined) return;
    const prev = this.watchPrev;
    const next = this.watchNext;
    if (prev === undefined) list.head = next;
    else prev.watchNext = next;
    if (next !== undefined) next.watchPrev = prev;
    this.watchList = this.watchPrev = this.watchNext = undefined;
  }
}

/**
 * Stops reading a request body the upstream no longer takes, without closing the client's
 * connection, which still gets the error response (what undici's stream() does: see
 * nodejs/node#38505).
 */
function stopRequestBody(req: IncomingMessage): void {
  if (req.destroyed) return;
  (req as { socket: unknown }).socket = null;
  req.destroy();
}

const kExchanges = Symbol('attest-sidecar.exchanges');
/**
 * The exchanges in flight on one client connection, linked through the handlers themselves:
 * joining and leaving allocate nothing. (A Set did: deleting its only entry shrinks its table
 * into a new one, held by a connection that lives for many requests, so it outlived V8's young
 * generation once per request.)
 */
interface ExchangeList {
  head: ForwardHandler | undefined;
}
type ClientSocket = Socket & { [kExchanges]?: ExchangeList };

/**
 * Aborts an exchange whose client connection closes before it ends (a hanging or paused
 * upstream would otherwise hold its connection until the body timeout). One listener per
 * client connection, not per request: a request only joins its connection's list.
 */
function watchClient(socket: ClientSocket | null, handler: ForwardHandler): void {
  if (!socket) return;
  let list = socket[kExchanges];
  if (list === undefined) {
    const exchanges: ExchangeList = (list = socket[kExchanges] = { head: undefined });
    socket.once('close', () => {
      // Unlinked before each is told, so nothing it does on abort can disturb the walk.
      let head = exchanges.head;
      exchanges.head = undefined;
      while (head !== undefined) {
        const next = head.watchNext;
        head.watchList = head.watchPrev = head.watchNext = undefined;
        head.onClientClose();
        head = next;
      }
    });
  }
  const head = list.head;
  handler.watchNext = head;
  if (head !== undefined) head.watchPrev = handler;
  list.head = handler;
  handler.watchList = list;
}

const TLS_TRUST_CODES = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_SIGNATURE_FAILURE',
  'CERT_UNTRUSTED',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

const REQUEST_BODY_TIMEOUT: UpstreamFailure = Object.freeze({ status: 408, reason: 'request_body_timeout', message: 'Request body timeout', decision: 'deny', local: true });

/** Maps a transport error to a status and a stable reason code. */
export function classifyUpstreamError(err: unknown): UpstreamFailure {
  const shape = err as { code?: string; reason?: string; message?: string; cause?: { code?: string } } | undefined;
  if (err instanceof ExchangeFailure) return err.failure;
  const code = shape?.code ?? '';
  const msg = shape?.message ?? String(err);
  if (shape && typeof shape.reason === 'string' && code === 'ERR_SPIFFE_PEER') {
    return { status: 502, reason: `upstream_${shape.reason}`, message: `Upstream identity rejected: ${msg}` };
  }
  switch (code) {
    case 'ERR_REQUEST_BODY_TIMEOUT':
      return REQUEST_BODY_TIMEOUT;
    case 'UND_ERR_CONNECT_TIMEOUT':
      return { status: 504, reason: 'upstream_connect_timeout', message: 'Upstream connect timeout' };
    case 'UND_ERR_HEADERS_TIMEOUT':
    case 'UND_ERR_BODY_TIMEOUT':
      return { status: 504, reason: 'upstream_timeout', message: 'Upstream timeout' };
    case 'ECONNREFUSED':
    case 'ENOTFOUND':
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
    case 'EAI_AGAIN':
      return { status: 503, reason: 'upstream_unavailable', message: `Upstream unavailable (${code})` };
    case 'UND_ERR_CLOSED':
    case 'UND_ERR_DESTROYED':
      return { status: 503, reason: 'upstream_unavailable', message: 'Upstream connection pool closed' };
    case 'UND_ERR_REQ_CONTENT_LENGTH_MISMATCH':
    case 'UND_ERR_ABORTED':
    case 'ECONNRESET':
      return { status: 502, reason: 'upstream_reset', message: `Upstream connection failed (${code})` };
  }
  if (TLS_TRUST_CODES.has(code) || code.startsWith('ERR_SSL') || code.startsWith('ERR_TLS')) {
    // OpenSSL's text for an alert is a whole error-queue line; its name is what an operator needs.
    const alert = /_ALERT_/.test(code) ? /alert ([a-z0-9 ]+?)(?::|$)/m.exec(msg)?.[1] : undefined;
    const why = alert ? `the upstream sent the TLS alert '${alert}'` : msg;
    return { status: 502, reason: 'upstream_tls_error', message: `Upstream TLS failure: ${why}` };
  }
  return { status: 502, reason: 'upstream_error', message: `Upstream error: ${msg}` };
}

/** Writes a JSON error body; a no-op when the response already started. */
export function sendJsonError(
  res: ServerResponse,
  status: number,
  body: string,
  extraHeaders?: Record<string, string>,
): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  // Refused before its body arrived: node would keep the connection to read and drop the rest
  // of that body, holding it for up to idle_timeout however little the client sends. Close.
  if (!res.req.complete && hasRequestBody(res.req)) res.shouldKeepAlive = false;
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
    ...extraHeaders,
  });
  res.end(body);
}

/** `{"error": message}` with proper escaping. */
export function errorBody(message: string): string {
  return JSON.stringify({ error: message });
}
