/**
 * The outbound filter chain, in order, built once from config: a feature the config leaves off
 * is no filter at all.
 */
import type { RevocationState } from '../../../revocation/state.js';
import type { RequestFilter } from '../../chain.js';
import type { RouteRuntime } from '../../outbound-routes.js';
import type { OutboundRequest } from '../context.js';
import { callerAuthFilter, type CallerToken } from './caller-auth.js';
import { identityReadyFilter, killSwitchFilter, upstreamRevokedFilter, type IdentitySource } from './identity.js';
import { browserGuardFilter, canonicalPathFilter, headerCountFilter, routeFilter } from './request.js';
import { credentialsFilter, meteringFilter, type MeteringDeps } from './spend.js';

export interface OutboundFilterConfig extends MeteringDeps {
  /** Present with `caller_token_file`. */
  callerToken: CallerToken | undefined;
  maxRequestHeaders: number;
  routes: ReadonlyMap<string, RouteRuntime>;
  identity: IdentitySource;
  /** Present when the sidecar enforces revocations. */
  revocations: (() => RevocationState) | undefined;
}

export function outboundFilters(config: OutboundFilterConfig): (RequestFilter<OutboundRequest> | undefined)[] {
  const routes = [...config.routes.values()];
  return [
    config.callerToken && callerAuthFilter(config.callerToken),
    headerCountFilter(config.maxRequestHeaders),
    routeFilter(config.routes),
    browserGuardFilter,
    canonicalPathFilter,
    identityReadyFilter(config.identity),
    config.revocations && killSwitchFilter(config.identity),
    config.revocations && upstreamRevokedFilter(config.revocations),
    routes.some((r) => r.injector !== undefined) ? credentialsFilter : undefined,
    routes.some((r) => r.config.metering !== undefined) ? meteringFilter(config) : undefined,
  ];
}
