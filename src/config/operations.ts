/**
 * Operational sections of the sidecar config: `admin:` (listeners and mutation auth),
 * `health:` (the probe listener), `drain_timeout:`, `state_dir:`, `revocations:` and `budget:`
 * (where spend is kept).
 */
import { isIP } from 'node:net';
import { homedir } from 'node:os';
import path from 'node:path';
import { readDuration, readListen, readParsedUrl, readPath } from '../lib/fields.js';
import type { AdminConfig, BudgetStoreConfig, HealthConfig, RevocationsConfig } from './types.js';
import type { Field, YamlReader } from '../lib/yaml-reader.js';

export const OPERATIONS_DEFAULTS = Object.freeze({
  adminListen: '127.0.0.1:15000',
  stateDir: '/var/lib/attest-sidecar',
  redisKeyPrefix: 'attest-sidecar:budget:',
  redisTimeoutMs: 500,
  /** The health listener's port when it defaults to the pod IP. */
  healthPort: 15021,
  drainTimeoutMs: 25_000,
});

/** Longest drain_timeout: a drain is a bounded wait, and kubelet's grace period ends it anyway. */
const MAX_DRAIN_TIMEOUT_MS = 3_600_000;

/**
 * `health: { listen: HOST:PORT | off }`. Absent: in Kubernetes (KUBERNETES_SERVICE_HOST set)
 * with POD_IP set, `${POD_IP}:15021`; else no health listener. `{}` means the same default.
 * Returns undefined when invalid (reported), else the config (`listen` absent: no listener).
 */
export function readHealth(reader: YamlReader, field: Field | undefined, env: NodeJS.ProcessEnv): HealthConfig | undefined {
  const m = field && reader.map(field, ['listen']);
  if (field && !m) return undefined;
  const listenField = m?.get('listen');
  if (listenField) {
    const scalar = reader.scalar(listenField);
    if (scalar === undefined) return undefined;
    // YAML reads a bare `off` as the boolean false.
    if (scalar.value === 'off' || scalar.value === false) return {};
    const listen = readListen(reader, listenField, '');
    return listen ? { listen } : undefined;
  }
  return defaultHealth(reader, env);
}

function defaultHealth(reader: YamlReader, env: NodeJS.ProcessEnv): HealthConfig | undefined {
  const podIp = env.POD_IP?.trim();
  if (!env.KUBERNETES_SERVICE_HOST || !podIp) return {};
  const family = isIP(podIp);
  if (family === 0) {
    reader.problems.push({ file: reader.file, line: 0, column: 0, message: `POD_IP '${podIp.slice(0, 100)}' is not an IP address (the health listener listens on it by default); fix the env or set health.listen` });
    return undefined;
  }
  return { listen: { host: podIp, port: OPERATIONS_DEFAULTS.healthPort } };
}

/** `drain_timeout` (default 25s): how long SIGTERM lets requests in progress finish. */
export function readDrainTimeout(reader: YamlReader, field: Field | undefined): number | undefined {
  const ms = readDuration(reader, field, OPERATIONS_DEFAULTS.drainTimeoutMs);
  if (ms !== undefined && ms > MAX_DRAIN_TIMEOUT_MS) {
    reader.reportField(field!, `must be at most 1h (kubelet ends the pod after its terminationGracePeriodSeconds anyway)`);
    return undefined;
  }
  return ms;
}

export function readAdmin(reader: YamlReader, field: Field | undefined, baseDir: string): AdminConfig | undefined {
  const m = field && reader.map(field, ['listen', 'token_file', 'mtls_listen', 'allowed_hosts']);
  if (field && !m) return undefined;
  const listen = readListen(reader, m?.get('listen'), OPERATIONS_DEFAULTS.adminListen);
  const tokenField = m?.get('token_file');
  const tokenFile = tokenField && readPath(reader, tokenField, baseDir);
  const mtlsField = m?.get('mtls_listen');
  const mtlsListen = mtlsField && readListen(reader, mtlsField, '');
  const hostsField = m?.get('allowed_hosts');
  const allowedHosts = hostsField ? reader.stringList(hostsField)?.map((h) => h.toLowerCase()) : undefined;
  if (!listen || (tokenField && !tokenFile) || (mtlsField && !mtlsListen) || (hostsField && !allowedHosts)) return undefined;
  return {
    listen,
    ...(tokenFile ? { tokenFile } : {}),
    ...(mtlsListen ? { mtlsListen } : {}),
    ...(allowedHosts?.length ? { allowedHosts } : {}),
  };
}

/**
 * Where state directories go when the config names none: $ATTEST_SIDECAR_STATE_DIR; else
 * /var/lib/attest-sidecar for root; else $XDG_STATE_HOME/attest-sidecar (an absolute one),
 * else ~/.local/state/attest-sidecar, so that an unprivileged user can start a sidecar.
 */
export function defaultStateRoot(env: NodeJS.ProcessEnv, uid: number | undefined = process.getuid?.(), home: () => string = homedir): string {
  if (env.ATTEST_SIDECAR_STATE_DIR) return path.resolve(env.ATTEST_SIDECAR_STATE_DIR);
  if (uid === 0) return OPERATIONS_DEFAULTS.stateDir;
  const xdg = env.XDG_STATE_HOME;
  if (xdg && path.isAbsolute(xdg)) return path.join(xdg, 'attest-sidecar');
  return path.join(home(), '.local', 'state', 'attest-sidecar');
}

/**
 * `state_dir`, default `<defaultStateRoot>/<name>` (`name`, else the config file's base name):
 * two sidecars on one host never share a ledger or a revocation list by accident.
 */
export function readStateDir(reader: YamlReader, field: Field | undefined, baseDir: string, label: string, env: NodeJS.ProcessEnv): string | undefined {
  if (field) return readPath(reader, field, baseDir);
  const safe = label.replace(/[^A-Za-z0-9._-]/g, '_').replace(/^\.+/, '_') || 'default';
  return path.join(defaultStateRoot(env), safe);
}

export function readRevocations(reader: YamlReader, field: Field | undefined, baseDir: string): RevocationsConfig | undefined {
  const m = field && reader.map(field, ['shared_files']);
  if (field && !m) return undefined;
  const filesField = m?.get('shared_files');
  const sharedFiles: string[] = [];
  for (const item of (filesField && reader.list(filesField)) ?? []) {
    const filePath = readPath(reader, item, baseDir);
    if (filePath) sharedFiles.push(filePath);
  }
  return { sharedFiles };
}

export function readBudgetStore(reader: YamlReader, field: Field | undefined, baseDir: string): BudgetStoreConfig | undefined {
  const m = field && reader.map(field, ['store', 'redis']);
  if (field && !m) return undefined;
  const storeField = m?.get('store');
  const store = storeField ? reader.oneOf(storeField, ['file', 'redis'] as const) : 'file';
  const redisField = m?.get('redis');
  if (store === 'file') {
    if (redisField) reader.reportField(redisField, "is used only with 'store: redis'");
    return { store };
  }
  if (store !== 'redis') return undefined;
  if (!redisField) {
    reader.report(m!.node, field!.path, "'store: redis' needs 'redis: { url: redis://host:6379 }'");
    return undefined;
  }
  const r = reader.map(redisField, ['url', 'key_prefix', 'timeout', 'password_file']);
  if (!r) return undefined;
  const urlField = r.require('url');
  const url = urlField && readRedisUrl(reader, urlField);
  const prefixField = r.get('key_prefix');
  const keyPrefix = prefixField ? reader.string(prefixField) : OPERATIONS_DEFAULTS.redisKeyPrefix;
  const timeoutMs = readDuration(reader, r.get('timeout'), OPERATIONS_DEFAULTS.redisTimeoutMs);
  const passwordField = r.get('password_file');
  const passwordFile = passwordField ? readPath(reader, passwordField, baseDir) : undefined;
  if (passwordField && url && new URL(url).password !== '') {
    reader.reportField(passwordField, 'the url already carries a password: keep it in one place (password_file, so that it stays out of the config)');
    return undefined;
  }
  if (!url || keyPrefix === undefined || !timeoutMs || (passwordField && passwordFile === undefined)) return undefined;
  return { store, url, keyPrefix, timeoutMs, ...(passwordFile !== undefined ? { passwordFile } : {}) };
}

/** redis:// or rediss://; credentials and a database path are allowed (the store redacts them in logs). */
function readRedisUrl(reader: YamlReader, field: Field): string | undefined {
  const parsed = readParsedUrl(reader, field);
  if (!parsed) return undefined;
  if (parsed.url.protocol !== 'redis:' && parsed.url.protocol !== 'rediss:') {
    reader.reportField(field, `must be a redis:// or rediss:// URL, got '${parsed.text}'`);
    return undefined;
  }
  return parsed.text;
}
