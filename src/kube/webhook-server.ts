/**
 * `attest-sidecar injector`: the mutating admission webhook over HTTPS. POST /mutate answers
 * AdmissionReview v1 (src/kube/admission.ts), GET /healthz answers 200. Bodies are capped,
 * every phase of a request is bounded in time, and the serving certificate is re-read when its
 * files change (cert-manager renews them in place); a bad new pair keeps the previous one.
 */
import { readFileSync } from 'node:fs';
import https from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createSecureContext } from 'node:tls';
import { errorMessage } from '../errors.js';
import { watchFiles, type FileWatch } from '../lib/file-watch.js';
import { closeServer, listen, throttledListenerErrorLog } from '../lib/net.js';
import { parseStrictJson, StrictJsonError } from '../lib/strict-json.js';
import type { Logger } from '../lib/log.js';
import { AdmissionReviewError, answerAdmissionReview } from './admission.js';

/** AdmissionReviews carry one object (the API server caps objects at 3 MiB) plus envelope. */
export const MAX_REVIEW_BYTES = 4 * 1024 * 1024;
/** Kubernetes objects nest about 20 levels; JSON deeper than this is refused. */
const MAX_JSON_DEPTH = 64;
const TIMEOUTS = Object.freeze({ handshakeMs: 10_000, headersMs: 10_000, requestMs: 15_000, keepAliveMs: 30_000 });
const MAX_CONNECTIONS = 1024;

export interface InjectorServerOptions {
  host: string;
  port: number;
  certFile: string;
  keyFile: string;
  image: string;
  logger: Pick<Logger, 'info' | 'warn' | 'error'>;
}

function sendJson(res: ServerResponse, status: number, body: unknown, headers: Readonly<Record<string, string>> = {}): void {
  const text = JSON.stringify(body) + '\n';
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store', ...headers });
  res.end(text);
}

/** `reason` only for a refused review (a catalogue code); routing errors carry just the message. */
function sendError(res: ServerResponse, status: number, error: string, reason: 'admission_review_invalid' | undefined, headers: Readonly<Record<string, string>> = {}): void {
  sendJson(res, status, reason ? { error, reason } : { error }, headers);
}

class BodyTooLarge extends Error {}

/** Reads at most `max` bytes; rejects (and stops reading) as soon as more arrive. */
function readBody(req: IncomingMessage, max: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > max) {
        req.removeAllListeners('data');
        req.pause();
        reject(new BodyTooLarge());
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
    req.on('aborted', () => reject(new Error('request aborted')));
  });
}

function readPair(certFile: string, keyFile: string): { cert: string; key: string } {
  const pair = { cert: readFileSync(certFile, 'utf8'), key: readFileSync(keyFile, 'utf8') };
  createSecureContext(pair); // throws on a mismatched or unparsable pair
  return pair;
}

export class InjectorServer {
  private constructor(
    private readonly server: https.Server,
    private readonly watch: FileWatch,
  ) {}

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  static async start(opts: InjectorServerOptions): Promise<InjectorServer> {
    const { logger } = opts;
    const server = https.createServer({
      ...readPair(opts.certFile, opts.keyFile),
      minVersion: 'TLSv1.2',
      handshakeTimeout: TIMEOUTS.handshakeMs,
      headersTimeout: TIMEOUTS.headersMs,
      requestTimeout: TIMEOUTS.requestMs,
      keepAliveTimeout: TIMEOUTS.keepAliveMs,
      // node checks the header and request deadlines on this interval (default 30 s).
      connectionsCheckingInterval: 2_000,
      maxHeaderSize: 16 * 1024,
    });
    server.maxConnections = MAX_CONNECTIONS;
    server.on('request', (req: IncomingMessage, res: ServerResponse) => {
      handle(req, res, opts).catch((err: unknown) => {
        logger.error({ err: errorMessage(err) }, 'injector: request failed');
        if (!res.headersSent) sendError(res, 500, 'internal error', undefined);
        else res.destroy();
      });
    });
    server.on('tlsClientError', () => undefined); // a failed handshake concerns that client only
    const reload = () => {
      try {
        server.setSecureContext({ ...readPair(opts.certFile, opts.keyFile), minVersion: 'TLSv1.2' });
        logger.info({ cert: opts.certFile }, 'injector: serving certificate reloaded');
      } catch (err) {
        logger.warn({ cert: opts.certFile, err: errorMessage(err) }, 'injector: serving certificate not reloaded, keeping the previous one');
      }
    };
    const watch = watchFiles([opts.certFile, opts.keyFile], reload, {
      debounceMs: 500,
      onError: (err) => logger.warn({ err: err.message }, 'injector: cannot watch the certificate files; restart to pick up a new certificate'),
    });
    try {
      await listen(server, { host: opts.host, port: opts.port }, throttledListenerErrorLog(logger, 'injector'));
    } catch (err) {
      watch.close();
      throw err;
    }
    return new InjectorServer(server, watch);
  }

  async close(): Promise<void> {
    this.watch.close();
    await closeServer(this.server);
  }
}

async function handle(req: IncomingMessage, res: ServerResponse, opts: InjectorServerOptions): Promise<void> {
  const path = (req.url ?? '/').split('?', 1)[0];
  if (path === '/healthz') {
    if (req.method !== 'GET' && req.method !== 'HEAD') return sendError(res, 405, `Method ${req.method} not allowed`, undefined, { allow: 'GET, HEAD' });
    return sendJson(res, 200, { status: 'ok' });
  }
  if (path !== '/mutate') return sendError(res, 404, `No endpoint ${path?.slice(0, 128)}`, undefined);
  if (req.method !== 'POST') return sendError(res, 405, `Method ${req.method} not allowed`, undefined, { allow: 'POST' });
  const type = (req.headers['content-type'] ?? '').split(';', 1)[0]!.trim().toLowerCase();
  if (type !== 'application/json') return sendError(res, 415, 'Content-Type must be application/json', 'admission_review_invalid');
  const declared = Number(req.headers['content-length'] ?? 0);
  const tooLarge = `AdmissionReview over ${MAX_REVIEW_BYTES} bytes`;
  if (declared > MAX_REVIEW_BYTES) return sendError(res, 413, tooLarge, 'admission_review_invalid', { connection: 'close' });
  let text: string;
  try {
    text = await readBody(req, MAX_REVIEW_BYTES);
  } catch (err) {
    if (err instanceof BodyTooLarge) return sendError(res, 413, tooLarge, 'admission_review_invalid', { connection: 'close' });
    throw err;
  }
  try {
    const { answer, outcome, message } = answerAdmissionReview(parseStrictJson(text, MAX_JSON_DEPTH), { image: opts.image });
    if (outcome === 'refused') opts.logger.warn({ uid: answer.response.uid }, message ?? 'injector: pod refused');
    else if (outcome === 'injected') opts.logger.info({ uid: answer.response.uid }, 'injector: pod injected');
    return sendJson(res, 200, answer);
  } catch (err) {
    if (err instanceof StrictJsonError) return sendError(res, 400, `Body is not valid JSON: ${err.message}`, 'admission_review_invalid');
    if (err instanceof AdmissionReviewError) return sendError(res, 400, `Not an AdmissionReview v1 request: ${err.message}`, 'admission_review_invalid');
    throw err;
  }
}
