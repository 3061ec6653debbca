/**
 * Workload API endpoint addresses (SPIFFE Workload Endpoint spec): `unix:///abs/path.sock`
 * (no authority) or `tcp://IP:port` (IP literal and port, nothing else). Anything else is a
 * configuration error, reported clearly rather than guessed at.
 */
import net from 'node:net';
import { SidecarError } from '../../errors.js';

export const SPIFFE_ENDPOINT_ENV = 'SPIFFE_ENDPOINT_SOCKET';

export type WorkloadEndpoint =
  | { readonly kind: 'unix'; readonly uri: string; readonly path: string; readonly grpcTarget: string }
  | { readonly kind: 'tcp'; readonly uri: string; readonly host: string; readonly port: number; readonly grpcTarget: string };

function invalid(uri: string, why: string): SidecarError {
  return new SidecarError('workload_endpoint_invalid', `invalid Workload API endpoint ${JSON.stringify(uri)}: ${why}`);
}

/** Parses and validates an endpoint URI; throws SidecarError `workload_endpoint_invalid`. */
export function parseWorkloadEndpoint(uri: string): WorkloadEndpoint {
  if (typeof uri !== 'string' || uri.length === 0) throw invalid(String(uri), 'empty');
  if (/[\s\0]/.test(uri)) throw invalid(uri, 'must not contain whitespace or NUL');
  let u: URL;
  try {
    u = new URL(uri);
  } catch {
    throw invalid(uri, 'not a URI');
  }
  if (u.username || u.password) throw invalid(uri, 'must not include user info');
  if (u.search || uri.includes('?')) throw invalid(uri, 'must not include a query');
  if (u.hash || uri.includes('#')) throw invalid(uri, 'must not include a fragment');

  if (u.protocol === 'unix:') {
    // `unix:/p` and `unix:///p` both parse to an empty host; `unix://host/p` has an authority.
    if (u.host !== '') throw invalid(uri, 'unix: URI must not include an authority (use unix:///absolute/path)');
    if (!u.pathname.startsWith('/')) throw invalid(uri, 'unix: URI must name an absolute path');
    let path: string;
    try {
      path = decodeURIComponent(u.pathname);
    } catch {
      throw invalid(uri, 'bad percent-encoding in path');
    }
    if (path === '/' || path.endsWith('/')) throw invalid(uri, 'unix: URI must name a socket file');
    if (path.includes('\0')) throw invalid(uri, 'path must not contain NUL');
    return { kind: 'unix', uri, path, grpcTarget: `unix://${path}` };
  }

  if (u.protocol === 'tcp:') {
    if (u.pathname !== '') throw invalid(uri, 'tcp: URI must not include a path');
    const host = u.hostname.startsWith('[') && u.hostname.endsWith(']') ? u.hostname.slice(1, -1) : u.hostname;
    if (host === '') throw invalid(uri, 'tcp: URI must include a host');
    const family = net.isIP(host);
    if (family === 0) throw invalid(uri, 'tcp: host must be an IP address');
    if (u.port === '') throw invalid(uri, 'tcp: URI must include a port');
    const port = Number(u.port);
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw invalid(uri, 'tcp: port out of range');
    const grpcTarget = family === 6 ? `ipv6:[${host}]:${port}` : `ipv4:${host}:${port}`;
    return { kind: 'tcp', uri, host, port, grpcTarget };
  }

  throw invalid(uri, 'scheme must be unix or tcp');
}

/** The configured endpoint, else $SPIFFE_ENDPOINT_SOCKET; throws when neither is set. */
export function resolveWorkloadEndpoint(configured?: string, env: NodeJS.ProcessEnv = process.env): WorkloadEndpoint {
  const uri = configured && configured.length > 0 ? configured : env[SPIFFE_ENDPOINT_ENV];
  if (!uri) {
    throw new SidecarError(
      'workload_endpoint_missing',
      `no Workload API endpoint configured and ${SPIFFE_ENDPOINT_ENV} is not set`,
    );
  }
  return parseWorkloadEndpoint(uri);
}
