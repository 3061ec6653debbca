/**
 * The `outbound:` section: the loopback listener and its routes. A route is either a SPIFFE
 * peer (mTLS with our SVID, server checked by SPIFFE ID) or a public API (`tls: web`), optionally
 * with secret headers injected from files and metered token usage charged to our budget.
 */
import { isLoopbackHost } from '../lib/values.js';
import { checkTrustDomain, checkWorkloadSpiffeId } from '../spiffe/id-check.js';
import { readDuration, readListen, readPath, readUrl } from '../lib/fields.js';
import type { InjectedHeaderConfig, MeteringConfig, OutboundConfig, OutboundRouteConfig } from './types.js';
import type { Field, YamlReader } from '../lib/yaml-reader.js';
import { REQUEST_HEADERS_SETTING } from '../lib/header-limits.js';
import { readLimits } from './limits.js';

export const OUTBOUND_DEFAULTS = Object.freeze({
  listen: '127.0.0.1:15001',
  connectTimeoutMs: 5_000,
  requestTimeoutMs: 30_000,
  reserveUsd: 0.05,
});

/** A route name is one lower-case DNS label: it appears in URLs and metrics labels. */
const ROUTE_NAME = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9a-z-]+$/;
/** Headers whose meaning belongs to the proxy or the transport, never to an injected secret. */
const NOT_INJECTABLE = new Set(['host', 'connection', 'content-length', 'transfer-encoding', 'te', 'upgrade', 'keep-alive', 'proxy-connection', 'trailer']);
const PROVIDERS: readonly MeteringConfig['provider'][] = ['openai', 'anthropic', 'gemini'];

export function readOutbound(reader: YamlReader, field: Field, baseDir: string): OutboundConfig | undefined {
  const m = reader.map(field, ['listen', 'allow_non_loopback', 'routes', 'caller_token_file', 'max_request_headers', 'limits']);
  if (!m) return undefined;
  const listenField = m.get('listen');
  const listen = readListen(reader, listenField, OUTBOUND_DEFAULTS.listen);
  const allowField = m.get('allow_non_loopback');
  const allowNonLoopback = allowField ? reader.bool(allowField) : false;
  if (listen && allowNonLoopback === false && !isLoopbackHost(listen.host)) {
    reader.reportField(
      listenField!,
      `'${listen.host}' is not a loopback address. The outbound proxy presents this workload's SPIFFE identity ` +
        'on every request it forwards, so anything else that can reach it (another host, another pod, a web page ' +
        "via a browser) could act as this agent. Listen on 127.0.0.1, or set 'allow_non_loopback: true' if that is intended.",
    );
  }
  const routes: OutboundRouteConfig[] = [];
  const names = new Map<string, number>();
  const routesField = m.get('routes');
  for (const item of (routesField && reader.list(routesField)) ?? []) {
    const route = readRoute(reader, item, baseDir);
    if (!route) continue;
    const line = names.get(route.name);
    if (line !== undefined) reader.reportField(item, `duplicate route name '${route.name}' (first at line ${line})`);
    else names.set(route.name, reader.position(item.node).line);
    routes.push(route);
  }
  const tokenField = m.get('caller_token_file');
  const callerTokenFile = tokenField && readPath(reader, tokenField, baseDir);
  const maxField = m.get('max_request_headers');
  const maxRequestHeaders = maxField && reader.int(maxField, REQUEST_HEADERS_SETTING);
  const limits = readLimits(reader, m.get('limits'), 'outbound');
  if (!listen || allowNonLoopback === undefined || !limits || (tokenField && !callerTokenFile) || (maxField && maxRequestHeaders === undefined)) return undefined;
  // Absent max_request_headers: the proxy's default (DEFAULT_OUTBOUND_MAX_REQUEST_HEADERS).
  return { listen, allowNonLoopback, routes, limits, ...(callerTokenFile ? { callerTokenFile } : {}), ...(maxRequestHeaders ? { maxRequestHeaders } : {}) };
}

const ROUTE_KEYS = [
  'name',
  'upstream',
  'tls',
  'server_id',
  'server_trust_domain',
  'ca_file',
  'connect_timeout',
  'request_timeout',
  'inject_headers',
  'metering',
  'allow_browser_requests',
];

function readRoute(reader: YamlReader, field: Field, baseDir: string): OutboundRouteConfig | undefined {
  const m = reader.map(field, ROUTE_KEYS);
  if (!m) return undefined;
  const before = reader.problems.length;
  const nameField = m.require('name');
  let name = nameField && reader.string(nameField);
  if (name !== undefined && !ROUTE_NAME.test(name)) {
    reader.reportField(nameField!, `'${name}' is not a valid route name (lower-case letters, digits and '-', like a DNS label)`);
    name = undefined;
  }
  const upstreamField = m.require('upstream');
  const upstream = upstreamField && readUrl(reader, upstreamField, ['https:'], { allowPath: true });

  const tlsField = m.get('tls');
  const tls = tlsField ? reader.oneOf(tlsField, ['spiffe', 'web'] as const) : 'spiffe';
  const idField = m.get('server_id');
  const tdField = m.get('server_trust_domain');
  const caField = m.get('ca_file');
  let serverId: string | undefined;
  let serverTrustDomain: string | undefined;
  let caFile: string | undefined;
  if (tls === 'web') {
    for (const f of [idField, tdField]) {
      if (f) reader.reportField(f, "is for 'tls: spiffe' routes; a 'tls: web' route authenticates the server by its DNS name");
    }
    caFile = caField && readPath(reader, caField, baseDir);
  } else if (tls === 'spiffe') {
    if (caField) reader.reportField(caField, "is for 'tls: web' routes; SPIFFE routes trust the bundles from the identity source");
    if (idField && tdField) {
      reader.report(tdField.keyNode, tdField.path, "set exactly one of 'server_id' and 'server_trust_domain', not both");
    } else if (!idField && !tdField) {
      reader.report(
        m.node,
        field.path,
        "needs 'server_id' (the peer's SPIFFE ID) or 'server_trust_domain' to authenticate the upstream (or 'tls: web' for a public API)",
      );
    } else if (idField) {
      const idText = reader.string(idField);
      const id = idText === undefined ? undefined : checkWorkloadSpiffeId(idText);
      if (id && !id.ok) reader.reportField(idField, id.error);
      serverId = id?.ok ? id.value : undefined;
    } else {
      const trustDomainText = reader.string(tdField!);
      const td = trustDomainText === undefined ? undefined : checkTrustDomain(trustDomainText);
      if (td && !td.ok) reader.reportField(tdField!, td.error);
      serverTrustDomain = td?.ok ? td.value : undefined;
    }
  }
  const connectTimeoutMs = readDuration(reader, m.get('connect_timeout'), OUTBOUND_DEFAULTS.connectTimeoutMs);
  const requestTimeoutMs = readDuration(reader, m.get('request_timeout'), OUTBOUND_DEFAULTS.requestTimeoutMs);
  const injectField = m.get('inject_headers');
  const injectHeaders = injectField ? readInjectHeaders(reader, injectField, baseDir) : [];
  const meteringField = m.get('metering');
  const metering = meteringField && readMetering(reader, meteringField);
  const browserField = m.get('allow_browser_requests');
  const allowBrowserRequests = browserField ? reader.bool(browserField) : false;

  if (reader.problems.length !== before || !name || !upstream || !tls || !connectTimeoutMs || !requestTimeoutMs) return undefined;
  return {
    name,
    upstream,
    tls,
    ...(serverId ? { serverId } : {}),
    ...(serverTrustDomain ? { serverTrustDomain } : {}),
    ...(caFile ? { caFile } : {}),
    connectTimeoutMs,
    requestTimeoutMs,
    injectHeaders: injectHeaders ?? [],
    ...(metering ? { metering } : {}),
    ...(allowBrowserRequests ? { allowBrowserRequests } : {}),
  };
}

/** `inject_headers: { x-api-key: { file: /run/secrets/key, prefix: "Bearer " } }` */
function readInjectHeaders(reader: YamlReader, field: Field, baseDir: string): InjectedHeaderConfig[] | undefined {
  const m = reader.map(field, null);
  if (!m) return undefined;
  const out: InjectedHeaderConfig[] = [];
  for (const key of m.keys()) {
    const f = m.get(key)!;
    const name = key.toLowerCase();
    if (!HEADER_NAME.test(name)) {
      reader.report(f.keyNode, f.path, `'${key}' is not a valid HTTP header name`);
      continue;
    }
    if (NOT_INJECTABLE.has(name)) {
      reader.report(f.keyNode, f.path, `'${key}' is managed by the proxy and cannot be injected`);
      continue;
    }
    const v = reader.map(f, ['file', 'prefix']);
    if (!v) continue;
    const fileField = v.require('file');
    const file = fileField && readPath(reader, fileField, baseDir);
    const prefixField = v.get('prefix');
    const prefix = prefixField ? reader.string(prefixField, { allowEmpty: true }) : '';
    if (prefix !== undefined && /[\r\n\0]/.test(prefix)) reader.reportField(prefixField!, 'must not contain CR, LF or NUL');
    if (file && prefix !== undefined) out.push({ name, file, prefix });
  }
  return out;
}

function readMetering(reader: YamlReader, field: Field): MeteringConfig | undefined {
  const m = reader.map(field, ['provider', 'input_usd_per_million', 'output_usd_per_million', 'reserve_usd']);
  if (!m) return undefined;
  const providerField = m.require('provider');
  const provider = providerField && reader.oneOf(providerField, PROVIDERS);
  const inField = m.require('input_usd_per_million');
  const outField = m.require('output_usd_per_million');
  const inputUsdPerMillion = inField && reader.number(inField, { min: 0, max: 1e6 });
  const outputUsdPerMillion = outField && reader.number(outField, { min: 0, max: 1e6 });
  const reserveField = m.get('reserve_usd');
  const reserveUsd = reserveField ? reader.number(reserveField, { min: 0, max: 1e6 }) : OUTBOUND_DEFAULTS.reserveUsd;
  if (!provider || inputUsdPerMillion === undefined || outputUsdPerMillion === undefined || reserveUsd === undefined) return undefined;
  return { provider, inputUsdPerMillion, outputUsdPerMillion, reserveUsd };
}
