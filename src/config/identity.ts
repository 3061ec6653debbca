/** The `identity:` section of the sidecar config: where the workload's SVIDs come from. */
import { isIP } from 'node:net';
import { isAbsolute, resolve } from 'node:path';
import { readDuration, readPath } from '../lib/fields.js';
import type { IdentitySourceConfig } from './types.js';
import type { ValueResult } from '../lib/values.js';
import { checkTrustDomain, checkWorkloadSpiffeId } from '../spiffe/id-check.js';
import type { Field, YamlReader } from '../lib/yaml-reader.js';

export const DEFAULT_STARTUP_TIMEOUT_MS = 30_000;
export const DEFAULT_DEV_SVID_TTL_SECONDS = 60;

type Source = IdentitySourceConfig['source'];
const SOURCES: readonly Source[] = ['workload-api', 'files', 'dev'];
const KEYS_BY_SOURCE: Record<Source, readonly string[]> = {
  'workload-api': ['source', 'socket', 'hint', 'startup_timeout'],
  files: ['source', 'cert', 'key', 'bundle', 'federated', 'startup_timeout'],
  dev: ['source', 'spiffe_id', 'svid_ttl', 'startup_timeout'],
};
const ALL_KEYS = [...new Set(Object.values(KEYS_BY_SOURCE).flat())];

export function readIdentity(
  reader: YamlReader,
  field: Field,
  baseDir: string,
  env: NodeJS.ProcessEnv,
): IdentitySourceConfig | undefined {
  const m = reader.map(field, ALL_KEYS);
  if (!m) return undefined;
  const sourceField = m.require('source');
  const source = sourceField && reader.oneOf(sourceField, SOURCES);
  if (!source) return undefined;

  // Keys of another source (the documented example lists them all) are ignored, with a warning.
  for (const key of m.keys()) {
    if (KEYS_BY_SOURCE[source].includes(key)) continue;
    const owner = SOURCES.find((s) => KEYS_BY_SOURCE[s].includes(key));
    const f = m.get(key)!;
    reader.warn(f.keyNode, f.path, `ignored: '${key}' is used only with source '${owner}', not '${source}'`);
  }

  if (source === 'workload-api') {
    const socketField = m.get('socket');
    let socket: string | undefined;
    if (socketField) {
      const socketPath = reader.string(socketField);
      const normalised = socketPath === undefined ? undefined : normaliseSocket(socketPath, baseDir);
      if (normalised && !normalised.ok) reader.reportField(socketField, normalised.error);
      socket = normalised?.ok ? normalised.value : undefined;
    } else if (env.SPIFFE_ENDPOINT_SOCKET) {
      const normalised = normaliseSocket(env.SPIFFE_ENDPOINT_SOCKET, undefined);
      if (!normalised.ok) reader.report(m.node, m.child('socket'), `from SPIFFE_ENDPOINT_SOCKET: ${normalised.error}`);
      socket = normalised.ok ? normalised.value : undefined;
    } else {
      reader.report(m.node, m.child('socket'), "is required for source 'workload-api' (or set SPIFFE_ENDPOINT_SOCKET)");
    }
    const hint = m.get('hint') && reader.string(m.get('hint')!);
    const startupTimeoutMs = readDuration(reader, m.get('startup_timeout'), DEFAULT_STARTUP_TIMEOUT_MS);
    if (socket === undefined || startupTimeoutMs === undefined) return undefined;
    return { source, socket, ...(hint !== undefined ? { hint } : {}), startupTimeoutMs };
  }

  if (source === 'files') {
    const paths: Record<'cert' | 'key' | 'bundle', string | undefined> = { cert: undefined, key: undefined, bundle: undefined };
    for (const key of ['cert', 'key', 'bundle'] as const) {
      const f = m.get(key);
      if (f) paths[key] = readPath(reader, f, baseDir);
      else reader.report(m.node, m.child(key), "is required for source 'files'");
    }
    const federated = readFederated(reader, m.get('federated'), baseDir);
    const startupTimeoutMs = readDuration(reader, m.get('startup_timeout'), DEFAULT_STARTUP_TIMEOUT_MS);
    if (!paths.cert || !paths.key || !paths.bundle || !federated || startupTimeoutMs === undefined) return undefined;
    return { source, cert: paths.cert, key: paths.key, bundle: paths.bundle, federated, startupTimeoutMs };
  }

  const idField = m.get('spiffe_id');
  let spiffeId: string | undefined;
  if (!idField) reader.report(m.node, m.child('spiffe_id'), "is required for source 'dev'");
  else {
    const idText = reader.string(idField);
    const id = idText === undefined ? undefined : checkWorkloadSpiffeId(idText);
    if (id && !id.ok) reader.reportField(idField, id.error);
    spiffeId = id?.ok ? id.value : undefined;
  }
  const ttlMs = readDuration(reader, m.get('svid_ttl'), DEFAULT_DEV_SVID_TTL_SECONDS * 1000);
  if (ttlMs !== undefined && ttlMs < 1000) reader.reportField(m.get('svid_ttl')!, 'must be at least 1s');
  const startupTimeoutMs = readDuration(reader, m.get('startup_timeout'), DEFAULT_STARTUP_TIMEOUT_MS);
  if (spiffeId === undefined || ttlMs === undefined || ttlMs < 1000 || startupTimeoutMs === undefined) return undefined;
  return { source, spiffeId, svidTtlSeconds: Math.round(ttlMs / 1000), startupTimeoutMs };
}

function readFederated(reader: YamlReader, field: Field | undefined, baseDir: string): Record<string, string> | undefined {
  if (!field) return {};
  const m = reader.map(field, null);
  if (!m) return undefined;
  // Keyed by trust domain names from the file: a null prototype, so 'constructor' is just a name.
  const out: Record<string, string> = Object.create(null);
  let ok = true;
  for (const key of m.keys()) {
    const f = m.get(key)!;
    const td = checkTrustDomain(key);
    const path = readPath(reader, f, baseDir);
    const twice = td.ok && Object.hasOwn(out, td.value);
    if (!td.ok) reader.report(f.keyNode, f.path, td.error);
    else if (twice) reader.report(f.keyNode, f.path, `trust domain '${td.value}' is listed twice`);
    if (!td.ok || path === undefined || twice) ok = false;
    else out[td.value] = path;
  }
  return ok ? out : undefined;
}

/**
 * Workload API endpoint as a URI (SPIFFE Workload Endpoint spec): `unix:///abs/path` or
 * `tcp://IP:port`. Also accepts `unix:/abs/path` and a bare path (relative paths resolve
 * against `baseDir`; none is given for the environment variable, which must be absolute).
 */
export function normaliseSocket(value: string, baseDir: string | undefined): ValueResult<string> {
  if (value.startsWith('unix:')) {
    const rest = value.slice('unix:'.length);
    const path = rest.startsWith('///') ? rest.slice(2) : rest.startsWith('//') ? undefined : rest;
    if (path === undefined) return { ok: false, error: `'${value}' has an authority; write unix:///absolute/path.sock` };
    if (!path.startsWith('/')) return { ok: false, error: `'${value}': the socket path must be absolute (unix:///path.sock)` };
    if (/[?#]/.test(path)) return { ok: false, error: `'${value}' must not contain a query or fragment` };
    return { ok: true, value: `unix://${path}` };
  }
  if (value.startsWith('tcp:')) {
    let url: URL;
    try {
      url = new URL(value);
    } catch {
      return { ok: false, error: `'${value}' is not a valid tcp://IP:port URI` };
    }
    const host = url.hostname.replace(/^\[|\]$/g, '');
    const exact = `tcp://${url.hostname}:${url.port}`;
    if (isIP(host) === 0 || url.port === '' || value !== exact) {
      return { ok: false, error: `'${value}' must be exactly tcp://IP:port (an IP address, a port, nothing else)` };
    }
    return { ok: true, value };
  }
  if (/^[a-z][a-z0-9+.-]*:/i.test(value)) {
    return { ok: false, error: `unsupported socket scheme in '${value}' (use unix:///path.sock or tcp://IP:port)` };
  }
  if (isAbsolute(value)) return { ok: true, value: `unix://${value}` };
  if (baseDir === undefined) return { ok: false, error: `'${value}' must be a unix:///absolute/path URI` };
  return { ok: true, value: `unix://${resolve(baseDir, value)}` };
}
