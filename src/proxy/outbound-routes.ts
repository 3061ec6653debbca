/**
 * One outbound route at run time: its config, the headers it never passes on from the agent,
 * its credential injector, and the connection pool of the current identity generation. A
 * `spiffe` route dials with our SVID and checks the server by SPIFFE ID (and revocation); a
 * `web` route is ordinary server-authenticated TLS to a public API.
 */
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import type { Pool as UndiciPool } from 'undici';
import { Pool, connectorKeepingTlsAlerts } from '../undici/pool.js';
import type { OutboundRouteConfig } from '../config/types.js';
import { SidecarError } from '../errors.js';
import type { Logger } from '../lib/log.js';
import { ATTESTATION_HEADERS } from './attestation-gate.js';
import { CredentialInjector } from './credentials.js';
import type { ForwardDispatcher } from './forward.js';
import { IDENTITY_HEADERS } from './headers.js';
import { H_REQUEST_ID } from './request-headers.js';
import { routeServerAuthorizer, spiffeServerCheck, type TlsMaterial } from '../spiffe/tls.js';

/**
 * The agent may not speak our attestation protocol (nor smuggle headers into it), nor claim an
 * identity in `x-spiffe-id`/XFCC in any `_`/`-` spelling: an upstream that is not a sidecar
 * (go-spiffe, Envoy) may read them. Its request id is replaced by the one the proxy chose (the
 * same when it was well-formed).
 */
export const AGENT_DROP: ReadonlySet<string> = new Set([...ATTESTATION_HEADERS, ...[...IDENTITY_HEADERS].flatMap(underscoreSpellings), H_REQUEST_ID]);

/** `a-b-c` and every spelling with some `-` as `_` (`a_b-c`, ...). */
function underscoreSpellings(name: string): string[] {
  return name.split('-').reduce<string[]>((acc, part) => (acc.length === 0 ? [part] : acc.flatMap((p) => [`${p}-${part}`, `${p}_${part}`])), []);
}

export interface RouteRuntime {
  readonly config: OutboundRouteConfig;
  /** Path prefix of the upstream URL ('' for '/'), prepended to the request path. */
  readonly basePath: string;
  pool: Pool | undefined;
  /** What requests are dispatched on: the pool, or the pool with the attestation handshake composed on it. */
  dispatcher: ForwardDispatcher | undefined;
  /** Id of the evidence the peer behind this route accepted; later requests send only the id. */
  ackedEvidenceId?: string | undefined;
  /** Request headers never passed on from the agent (our protocol, request id, injected credentials). */
  readonly drop: ReadonlySet<string>;
  readonly injector: CredentialInjector | undefined;
  /** PEM roots of a `tls: web` route with `ca_file` (read once at start). */
  readonly webCa: string | undefined;
  /** `tls: web`: ['host', upstream host] replacing the agent's Host. */
  readonly hostHeader: readonly string[] | undefined;
  /**
   * The TLS server name of every request on this route. undici otherwise derives it from each
   * request's Host header (which the agent chooses) and reconnects whenever it changes. A
   * `spiffe` route sends its route name (the peer is authenticated by SPIFFE ID, not by name); a
   * `web` route its upstream's DNS name; undefined for an IP address (no SNI).
   */
  readonly servername: string | undefined;
}

export function buildRouteRuntime(r: OutboundRouteConfig, logger: Logger): RouteRuntime {
  const url = new URL(r.upstream);
  const basePath = url.pathname === '/' ? '' : url.pathname.replace(/\/$/, '');
  const injector = r.injectHeaders.length ? new CredentialInjector(r.injectHeaders, logger, r.name) : undefined;
  const web = r.tls === 'web';
  // A web route's Host (and TLS server name) is the upstream's, not the route name the agent used.
  const drop = injector || web ? new Set([...AGENT_DROP, ...(injector?.names ?? []), ...(web ? ['host'] : [])]) : AGENT_DROP;
  let webCa: string | undefined;
  if (r.caFile) {
    try {
      webCa = readFileSync(r.caFile, 'utf8');
    } catch (err) {
      injector?.close();
      throw new SidecarError('config_invalid', `route '${r.name}': cannot read ca_file ${r.caFile}: ${(err as Error).message}`);
    }
  }
  const servername = web ? (isIP(url.hostname) === 0 ? url.hostname : undefined) : r.name;
  return { config: r, basePath, pool: undefined, dispatcher: undefined, drop, injector, webCa, hostHeader: web ? ['host', url.host] : undefined, servername };
}

export function createRoutePool(runtime: RouteRuntime, material: TlsMaterial, isRevoked: ((spiffeId: string) => boolean) | undefined): Pool {
  const route = runtime.config;
  const origin = new URL(route.upstream);
  if (route.tls === 'web') {
    // A public API: ordinary server authentication by DNS name; our SVID is not presented.
    return new Pool(origin.origin, {
      connections: 64,
      pipelining: 1,
      keepAliveTimeout: 30_000,
      connect: { rejectUnauthorized: true, servername: origin.hostname, timeout: route.connectTimeoutMs, ...(runtime.webCa ? { ca: runtime.webCa } : {}) },
    });
  }
  return new Pool(origin.origin, {
    connections: 256,
    pipelining: 1,
    keepAliveTimeout: 30_000,
    connect: connectorKeepingTlsAlerts({
      secureContext: material.clientContext,
      // Peers refuse resumption (see serverContextOptions); do not offer stale tickets.
      maxCachedSessions: 0,
      rejectUnauthorized: true,
      timeout: route.connectTimeoutMs,
      checkServerIdentity: spiffeServerCheck(
        routeServerAuthorizer(
          { ...(route.serverId ? { serverId: route.serverId } : {}), ...(route.serverTrustDomain ? { serverTrustDomain: route.serverTrustDomain } : {}) },
          isRevoked,
        ),
        material.bundles,
      ),
    }) as UndiciPool.Options['connect'],
  });
}
