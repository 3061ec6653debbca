/**
 * Streams one HTTP request to the next hop through an undici Pool and the response back,
 * with backpressure both ways. Shared by the inbound (to the app) and outbound (to the peer
 * sidecar) directions so both have the same semantics and error mapping.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Dispatcher } from 'undici';
import { forwardResponseHeaders } from './headers.js';

export interface ForwardOptions {
  /** Origin-form path with query, e.g. `/agents?x=1`. */
  path: string;
  headers: string[];
  headersTimeoutMs: number;
  bodyTimeoutMs: number;
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
 * Forwards and resolves with the upstream status, or with an UpstreamFailure when nothing was
 * sent to the client yet (the caller answers with a JSON error). When the failure happens after
 * the response started, the client connection is destroyed (a truncated body must not look whole).
 */
export function forwardRequest(
  dispatcher: Dispatcher,
  req: IncomingMessage,
  res: ServerResponse,
  opts: ForwardOptions,
): Promise<number | UpstreamFailure> {
  return new Promise((resolve) => {
    let status = 0;
    const body = hasRequestBody(req) ? req : null;
    dispatcher
      .stream(
        {
          path: opts.path,
          method: req.method as Dispatcher.HttpMethod,
          headers: opts.headers,
          body,
          headersTimeout: opts.headersTimeoutMs,
          bodyTimeout: opts.bodyTimeoutMs,
        },
        ({ statusCode, headers }) => {
          status = statusCode;
          res.writeHead(statusCode, forwardResponseHeaders(headers as Record<string, string | string[] | undefined>));
          return res;
        },
      )
      .then(
        () => resolve(status),
        (err: unknown) => {
          if (res.headersSent) {
            res.destroy();
            resolve(status || 502);
          } else {
            resolve(classifyUpstreamError(err));
          }
        },
      );
    // The client went away: abandon the upstream exchange too.
    res.once('close', () => {
      if (!res.writableFinished && body) body.destroy();
    });
  });
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
