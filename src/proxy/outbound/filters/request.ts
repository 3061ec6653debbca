/**
 * The filters that judge the request itself, before any identity is involved: its header count,
 * the route it names, whether a browser sent it, and its path.
 */
import { refusal, refuse } from '../../../reasons.js';
import { canonicalRequestPath } from '../../../policy/actions.js';
import type { RequestFilter } from '../../chain.js';
import { isBrowserRequest } from '../../headers.js';
import { tooManyHeadersRefusal } from '../../request-headers.js';
import type { RouteRuntime } from '../../outbound-routes.js';
import { resolveTarget, type OutboundRequest } from '../context.js';

/** What we add must fit under the peer's limit, and an app must never lose the identity fields. */
export function headerCountFilter(maxFields: number): RequestFilter<OutboundRequest> {
  const tooMany = tooManyHeadersRefusal(maxFields);
  const maxRaw = 2 * maxFields;
  return {
    name: 'header-count',
    onRequest: (ctx) => (ctx.req.rawHeaders.length > maxRaw ? tooMany : undefined),
  };
}

/** The route the request names by its absolute-form URL or its Host; `routes` is keyed by lower-case name. */
export function routeFilter(routes: ReadonlyMap<string, RouteRuntime>): RequestFilter<OutboundRequest> {
  return {
    name: 'route',
    onRequest(ctx) {
      if (!resolveTarget(ctx)) return refusal('no_route_named');
      const route = routes.get(ctx.routeName!);
      if (route === undefined) return refuse('unknown_route', `Unknown route '${ctx.routeName}'`);
      ctx.route = route;
      ctx.routeName = route.config.name;
      return undefined;
    },
  };
}

/** A web page must never use the agent's identity (unless the route allows browsers). */
export const browserGuardFilter: RequestFilter<OutboundRequest> = {
  name: 'browser-guard',
  onRequest: (ctx) => (!ctx.route!.config.allowBrowserRequests && isBrowserRequest(ctx.req.headers) ? refusal('browser_request') : undefined),
};

/** The upstream URL's base path is a boundary: no dot segment or encoded separator may climb out of it. */
export const canonicalPathFilter: RequestFilter<OutboundRequest> = {
  name: 'canonical-path',
  onRequest(ctx) {
    const canonical = canonicalRequestPath(ctx.path);
    return canonical.ok ? undefined : refuse('path_not_canonical', `Malformed request path: ${canonical.error}`);
  },
};
