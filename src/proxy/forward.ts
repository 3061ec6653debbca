/**
 * Streams one HTTP request to the next hop through an undici Pool and the response back,
 * with backpressure both ways. Shared by the inbound (to the app) and outbound (to the peer
 * sidecar) directions so both have the same semantics and error mapping.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Writable, pipeline, type Transform } from 'node:stream';
import type { Dispatcher } from 'undici';
import { forwardResponseHeaders } from './headers.js';

export interface ForwardOptions {
  /** Origin-form path with query, e.g. `/agents?x=1`. */
  path: string;
  headers: string[];
  headersTimeoutMs: number;
  bodyTimeoutMs: number;
  /** TLS server name for the connection (see RouteRuntime.servername); default: from Host. */
  servername?: string;
  /** Send this (buffered) body instead of streaming the request (used for replays). */
  body?: Buffer | null;
  /**
   * Looks at the upstream status and headers before anything is sent downstream; returning
   * true swallows that response (its body is drained) and resolves with it instead.
   */
  intercept?: (statusCode: number, headers: Record<string, string | string[] | undefined>) => boolean;
  /**
   * Rewrites the response on its way down (usage metering, secret scrubbing): given the status
   * and the filtered headers, returns the headers to send and a Transform the body passes
   * through; undefined streams the body unchanged.
   */
  transformResponse?: (
    statusCode: number,
    headers: Record<string, string | string[]>,
  ) => { headers: Record<string, string | string[]>; body: Transform } | undefined;
}

/** An upstream response the caller chose to handle itself (see ForwardOptions.intercept). */
export interface Intercepted {
  intercepted: true;
  status: number;
  headers: Record<string, string | string[] | undefined>;
}

export interface UpstreamFailure {
  status: 502 | 503 | 504;
  reason: string;
  message: string;
}

/** True when the request has a body to stream (RFC 9112 §6.3). */
export function hasRequestBody(req: IncomingMessage): boolean {
  const len = req.headers['content-length'];
  if (len !== undefined) return len !== '0';
  return req.headers['transfer-encoding'] !== undefined;
}

/**
 * undici's request options plus `servername`, which its Request reads (its own DNS interceptor
 * sets it) but its types leave out.
 */
type StreamOptions = Dispatcher.RequestOptions & { servername: string | undefined };

/** What a forwarded exchange ended with (see forwardRequest). */
export type ForwardResult = number | UpstreamFailure | Intercepted;

/**
 * Forwards and resolves with the upstream status, or with an UpstreamFailure when nothing was
 * sent to the client yet (the caller answers with a JSON error). When the failure happens after
 * the response started, the client connection is destroyed (a truncated body must not look whole).
 */
export function forwardRequest(dispatcher: Dispatcher, req: IncomingMessage, res: ServerResponse, opts: ForwardOptions): Promise<ForwardResult> {
  return new Promise((resolve) => forwardRequestThen(dispatcher, req, res, opts, resolve));
}

/**
 * forwardRequest with a completion callback instead of a promise: the plain request paths use
 * it so that a request allocates no promise chain of its own. `done` is called exactly once.
 */
export function forwardRequestThen(
  dispatcher: Dispatcher,
  req: IncomingMessage,
  res: ServerResponse,
  opts: ForwardOptions,
  done: (result: ForwardResult) => void,
): void {
  let status = 0;
  let intercepted: Intercepted | undefined;
  const body = opts.body !== undefined ? opts.body : hasRequestBody(req) ? req : null;
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
  dispatcher.stream(
    request,
    ({ statusCode, headers }) => {
      status = statusCode;
      const h = headers as Record<string, string | string[] | undefined>;
      if (opts.intercept?.(statusCode, h)) {
        intercepted = { intercepted: true, status: statusCode, headers: h };
        return new Writable({ write: (_chunk, _enc, cb) => cb() });
      }
      const filtered = forwardResponseHeaders(h);
      const rewrite = opts.transformResponse?.(statusCode, filtered);
      if (!rewrite) {
        res.writeHead(statusCode, filtered);
        return res;
      }
      res.writeHead(statusCode, rewrite.headers);
      // Errors on either side tear down both; undici sees the transform fail or finish.
      pipeline(rewrite.body, res, () => undefined);
      return rewrite.body;
    },
    (err) => {
      if (!err) {
        done(intercepted ?? status);
      } else if (res.headersSent) {
        res.destroy();
        done(status || 502);
      } else {
        done(classifyUpstreamError(err));
      }
    },
  );
  // The client went away while its body streams: abandon the upstream exchange too.
  if (body && !Buffer.isBuffer(body)) {
    res.once('close', () => {
      if (!res.writableFinished) body.destroy();
    });
  }
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

/** Maps a transport error to a status and a stable reason code. */
export function classifyUpstreamError(err: unknown): UpstreamFailure {
  const e = err as { code?: string; reason?: string; message?: string; cause?: { code?: string } } | undefined;
  const code = e?.code ?? '';
  const msg = e?.message ?? String(err);
  if (e && typeof e.reason === 'string' && code === 'ERR_SPIFFE_PEER') {
    return { status: 502, reason: `upstream_${e.reason}`, message: `Upstream identity rejected: ${msg}` };
  }
  switch (code) {
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
    return { status: 502, reason: 'upstream_tls_error', message: `Upstream TLS failure: ${msg}` };
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
