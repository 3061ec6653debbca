/**
 * One outbound request on its way through the filter chain: what the filters found out so far.
 * Every field is present from construction, so all requests share one object shape.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TlsMaterial } from '../../spiffe/tls.js';
import type { PolicyBudget } from '../../budget/period.js';
import type { RouteRuntime } from '../outbound-routes.js';

/** A metered request's charge to our budget, settled when its response was metered. */
export interface Reservation {
  readonly agent: string;
  readonly budget: PolicyBudget;
  readonly key: string;
}

export class OutboundRequest {
  /** The route the request names (route resolution). */
  route: RouteRuntime | undefined = undefined;
  /** Route name for the audit: the configured name, or the unknown host the agent named. */
  routeName: string | undefined = undefined;
  /** Origin-form path with query, as the agent sent it. */
  path = '';
  /**
   * The path as audited: recorded once the request is headed upstream (credentials and on);
   * the refusals before name no path.
   */
  auditPath: string | undefined = undefined;
  /** The identity generation the request leaves with (identity ready). */
  material: TlsMaterial | undefined = undefined;
  /** The route's credential header pairs (credentials). */
  injected: readonly string[] | undefined = undefined;
  /** The budget charge of a metered route (metering). */
  reservation: Reservation | undefined = undefined;

  constructor(
    readonly req: IncomingMessage,
    readonly res: ServerResponse,
    /** `performance.now()` on arrival. */
    readonly start: number,
    /** The request id this side forwards and audits. */
    readonly requestId: string,
  ) {}
}

/**
 * Route name (lower-case host without port) and origin-form path of a proxied request, written
 * into `ctx`; false when the request names no route.
 */
export function resolveTarget(ctx: OutboundRequest): boolean {
  const req = ctx.req;
  const url = req.url ?? '';
  if (url.startsWith('/')) {
    const host = req.headers.host;
    if (!host) return false;
    ctx.routeName = stripPort(host).toLowerCase();
    ctx.path = url;
    return true;
  }
  // Absolute form (RFC 9112 §3.2.2). Only http: the sidecar itself provides the TLS. The path
  // is passed on byte for byte (no URL normalisation here): the inbound side judges it.
  if (url.length < 8 || url.slice(0, 7).toLowerCase() !== 'http://') return false;
  let end = 7;
  while (end < url.length && url[end] !== '/' && url[end] !== '?' && url[end] !== '#') end++;
  const authority = url.slice(7, end);
  if (!authority || authority.includes('@') || url.includes('#')) return false;
  const rest = url.slice(end);
  ctx.routeName = stripPort(authority).toLowerCase();
  ctx.path = rest.startsWith('/') ? rest : `/${rest}`;
  return true;
}

function stripPort(host: string): string {
  if (host.startsWith('[')) {
    const end = host.indexOf(']');
    return end === -1 ? host : host.slice(1, end);
  }
  const colon = host.indexOf(':');
  return colon === -1 ? host : host.slice(0, colon);
}
