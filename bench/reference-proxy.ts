/**
 * The bare reference pair: the least a Node mTLS proxy pair can do, to measure what the
 * sidecar's SPIFFE checks, policy, audit and metrics add on top. No policy, no SPIFFE ID checks
 * (OpenSSL still verifies the chain against the CA), headers passed through.
 *
 *   outbound: plain HTTP on loopback -> route by Host -> undici Pool with a TLS client cert
 *   inbound:  HTTPS with requestCert/rejectUnauthorized -> undici Pool -> app
 *
 * Usage: node dist/bench/reference-proxy.js --mode outbound|inbound --port N --upstream URL
 *        [--route NAME] --cert FILE --key FILE --ca FILE
 * Pool settings mirror src/proxy (256 connections, no pipelining) so the comparison is fair.
 */
import { readFileSync } from 'node:fs';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import https from 'node:https';
import tls from 'node:tls';
import { parseArgs } from 'node:util';
import { Pool, type Dispatcher } from 'undici';

const { values } = parseArgs({
  options: {
    mode: { type: 'string' },
    port: { type: 'string' },
    upstream: { type: 'string' },
    route: { type: 'string', default: 'app' },
    cert: { type: 'string' },
    key: { type: 'string' },
    ca: { type: 'string' },
  },
  strict: true,
});

function fail(msg: string): never {
  process.stderr.write(`reference-proxy: ${msg}\n`);
  process.exit(2);
}

const mode = values.mode;
if (mode !== 'outbound' && mode !== 'inbound') fail('--mode outbound|inbound is required');
const port = Number(values.port);
if (!Number.isInteger(port) || port <= 0 || port > 65535) fail('--port N is required');
if (!values.upstream || !values.cert || !values.key || !values.ca) fail('--upstream, --cert, --key and --ca are required');

const cert = readFileSync(values.cert, 'utf8');
const key = readFileSync(values.key, 'utf8');
const ca = readFileSync(values.ca, 'utf8');
const upstream = new URL(values.upstream).origin;
const routeHost = values.route.toLowerCase();

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'upgrade', 'trailer', 'host']);

function poolFor(): Pool {
  const base = { connections: 256, pipelining: 1, keepAliveTimeout: 30_000 };
  if (mode === 'inbound') return new Pool(upstream, base);
  // Built once: every connection reuses this context (like the sidecar's TLS material).
  const secureContext = tls.createSecureContext({ cert, key, ca, minVersion: 'TLSv1.2' });
  return new Pool(upstream, {
    ...base,
    connect: {
      secureContext,
      rejectUnauthorized: true,
      // The chain is verified by OpenSSL; SVIDs carry no DNS names, and SPIFFE ID checks are
      // exactly what this reference leaves out.
      checkServerIdentity: () => undefined,
    } as Pool.Options['connect'],
  });
}

const pool = poolFor();

function requestHeaders(req: IncomingMessage): string[] {
  const out: string[] = [];
  const raw = req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) {
    if (!HOP_BY_HOP.has(raw[i]!.toLowerCase())) out.push(raw[i]!, raw[i + 1]!);
  }
  return out;
}

function responseHeaders(headers: Record<string, string | string[] | undefined>): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [k, v] of Object.entries(headers)) {
    if (v !== undefined && !HOP_BY_HOP.has(k)) out[k] = v;
  }
  return out;
}

function sendError(res: ServerResponse, status: number, message: string): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = JSON.stringify({ error: message });
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

function onRequest(req: IncomingMessage, res: ServerResponse): void {
  if (mode === 'outbound') {
    const host = (req.headers.host ?? '').replace(/:\d+$/, '').toLowerCase();
    if (host !== routeHost) return sendError(res, 404, `no route for host '${host}'`);
  }
  const body = req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined ? req : null;
  pool
    .stream(
      { path: req.url ?? '/', method: req.method as Dispatcher.HttpMethod, headers: requestHeaders(req), body },
      ({ statusCode, headers }) => {
        res.writeHead(statusCode, responseHeaders(headers as Record<string, string | string[] | undefined>));
        return res;
      },
    )
    .catch((err: Error) => sendError(res, 502, `upstream error: ${err.message}`));
}

const server =
  mode === 'inbound'
    ? https.createServer({ cert, key, ca, requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.2', keepAliveTimeout: 60_000 }, onRequest)
    : http.createServer({ keepAliveTimeout: 60_000 }, onRequest);

server.listen(port, '127.0.0.1');
const stop = () => {
  server.close();
  pool.close().finally(() => process.exit(0));
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
