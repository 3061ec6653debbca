/**
 * Sidecar config file (YAML, snake_case keys) -> validated SidecarConfig with defaults
 * applied and every path absolute. All problems are reported at once, each naming
 * file:line:column and the key path (e.g. `outbound.routes[0].server_id`).
 */
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import type { Node } from 'yaml';
import { errorMessage } from '../errors.js';
import { actionPathError } from '../policy/actions.js';
import { readDuration, readListen, readPath, readUrl } from './fields.js';
import { readIdentity } from './identity.js';
import { readAttestation } from './attestation.js';
import type {
  ActionMappingConfig,
  AdminConfig,
  InboundConfig,
  LogConfig,
  OutboundConfig,
  OutboundRouteConfig,
  SidecarConfig,
} from './types.js';
import { checkTrustDomain, checkWorkloadSpiffeId, isLoopbackHost } from './values.js';
import { isEmptyDocument, ProblemsError, YamlReader, type Field, type Problem } from './yaml-reader.js';

export type { Problem } from './yaml-reader.js';

export const DEFAULTS = Object.freeze({
  outboundListen: '127.0.0.1:15001',
  inboundListen: '0.0.0.0:15443',
  app: 'http://127.0.0.1:8080',
  adminListen: '127.0.0.1:15000',
  connectTimeoutMs: 5_000,
  requestTimeoutMs: 30_000,
  logLevel: 'info' as LogConfig['level'],
  audit: 'stdout',
});

/** The config file is invalid; `problems` lists every problem. Reason `config_invalid`. */
export class ConfigFileError extends ProblemsError {
  constructor(problems: readonly Problem[]) {
    super(problems, 'config_invalid');
  }
}

const TOP_KEYS = ['name', 'identity', 'outbound', 'inbound', 'policy', 'admin', 'log', 'attestation'];
const LOG_LEVELS: readonly LogConfig['level'][] = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'];
/** A route name is one lower-case DNS label: it appears in URLs and metrics labels. */
const ROUTE_NAME = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
const METHOD = /^[A-Za-z]+$/;

/**
 * Parses config text. `file` names the source in messages and anchors relative paths
 * (pass '<inline>' to resolve against the working directory). `env` supplies
 * SPIFFE_ENDPOINT_SOCKET.
 */
export interface ParseConfigOptions {
  /** Called once per warning (e.g. an ignored key) when the config is valid; log these. */
  onWarning?: (warning: Problem) => void;
}

export function parseConfig(
  text: string,
  file: string,
  env: NodeJS.ProcessEnv = process.env,
  options: ParseConfigOptions = {},
): SidecarConfig {
  const inline = file === '<inline>';
  const baseDir = inline ? process.cwd() : dirname(resolve(file));
  const { reader, documents } = YamlReader.parse(text, file);
  const docs = documents.filter((d) => !isEmptyDocument(d));
  if (docs.length > 1) reader.report(docs[1]!.contents as Node, undefined, 'a config file holds one YAML document');
  const doc = docs[0];
  if (!doc) {
    if (reader.ok) reader.problems.push({ file, line: 0, column: 0, message: "is empty (at least 'identity:' is required)" });
    throw new ConfigFileError(reader.problems);
  }
  reader.useDocument(doc);
  const top = reader.map({ path: '', node: doc.contents as Node }, TOP_KEYS);
  if (!top) throw new ConfigFileError(reader.problems);

  const nameField = top.get('name');
  const name = nameField && reader.string(nameField);
  const identityField = top.require('identity');
  const identity = identityField && readIdentity(reader, identityField, baseDir, env);
  const outboundField = top.get('outbound');
  const outbound = outboundField && readOutbound(reader, outboundField);
  const inboundField = top.get('inbound');
  const inbound = inboundField && readInbound(reader, inboundField);
  const policyField = top.get('policy');
  const policy = policyField && readPath(reader, policyField, baseDir);
  if (inboundField && !policyField) {
    reader.report(inboundField.keyNode, 'policy', "is required when 'inbound' is configured: the policy decides every inbound request");
  }
  const adminField = top.get('admin');
  const admin = readAdmin(reader, adminField);
  const log = readLog(reader, top.get('log'), baseDir);
  const attestationField = top.get('attestation');
  const attestation = attestationField && readAttestation(reader, attestationField, baseDir);

  if (!reader.ok || !identity || !log || !admin) throw new ConfigFileError(reader.problems);
  for (const w of reader.warnings) options.onWarning?.(w);
  return {
    file: inline ? file : resolve(file),
    ...(name !== undefined ? { name } : {}),
    identity,
    ...(outbound ? { outbound } : {}),
    ...(inbound ? { inbound } : {}),
    ...(policy ? { policy } : {}),
    admin,
    log,
    ...(attestation ? { attestation } : {}),
  };
}

export function loadConfigFile(path: string, env?: NodeJS.ProcessEnv, options?: ParseConfigOptions): SidecarConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigFileError([{ file: path, line: 0, column: 0, message: `cannot read config file: ${errorMessage(err)}` }]);
  }
  return parseConfig(text, path, env, options);
}

function readOutbound(reader: YamlReader, field: Field): OutboundConfig | undefined {
  const m = reader.map(field, ['listen', 'allow_non_loopback', 'routes']);
  if (!m) return undefined;
  const listenField = m.get('listen');
  const listen = readListen(reader, listenField, DEFAULTS.outboundListen);
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
    const route = readRoute(reader, item);
    if (!route) continue;
    const line = names.get(route.name);
    if (line !== undefined) reader.reportField(item, `duplicate route name '${route.name}' (first at line ${line})`);
    else names.set(route.name, reader.position(item.node).line);
    routes.push(route);
  }
  if (!listen || allowNonLoopback === undefined) return undefined;
  return { listen, allowNonLoopback, routes };
}

function readRoute(reader: YamlReader, field: Field): OutboundRouteConfig | undefined {
  const m = reader.map(field, ['name', 'upstream', 'server_id', 'server_trust_domain', 'connect_timeout', 'request_timeout']);
  if (!m) return undefined;
  const nameField = m.require('name');
  let name = nameField && reader.string(nameField);
  if (name !== undefined && !ROUTE_NAME.test(name)) {
    reader.reportField(nameField!, `'${name}' is not a valid route name (lower-case letters, digits and '-', like a DNS label)`);
    name = undefined;
  }
  const upstreamField = m.require('upstream');
  const upstream = upstreamField && readUrl(reader, upstreamField, ['https:'], { allowPath: true });

  const idField = m.get('server_id');
  const tdField = m.get('server_trust_domain');
  let serverId: string | undefined;
  let serverTrustDomain: string | undefined;
  if (idField && tdField) {
    reader.report(tdField.keyNode, tdField.path, "set exactly one of 'server_id' and 'server_trust_domain', not both");
  } else if (!idField && !tdField) {
    reader.report(m.node, field.path, "needs 'server_id' (the peer's SPIFFE ID) or 'server_trust_domain' to authenticate the upstream");
  } else if (idField) {
    const s = reader.string(idField);
    const id = s === undefined ? undefined : checkWorkloadSpiffeId(s);
    if (id && !id.ok) reader.reportField(idField, id.error);
    serverId = id?.ok ? id.value : undefined;
  } else {
    const s = reader.string(tdField!);
    const td = s === undefined ? undefined : checkTrustDomain(s);
    if (td && !td.ok) reader.reportField(tdField!, td.error);
    serverTrustDomain = td?.ok ? td.value : undefined;
  }
  const connectTimeoutMs = readDuration(reader, m.get('connect_timeout'), DEFAULTS.connectTimeoutMs);
  const requestTimeoutMs = readDuration(reader, m.get('request_timeout'), DEFAULTS.requestTimeoutMs);
  if (!name || !upstream || (!serverId && !serverTrustDomain) || !connectTimeoutMs || !requestTimeoutMs) return undefined;
  return {
    name,
    upstream,
    ...(serverId ? { serverId } : { serverTrustDomain }),
    connectTimeoutMs,
    requestTimeoutMs,
  };
}

function readInbound(reader: YamlReader, field: Field): InboundConfig | undefined {
  const m = reader.map(field, ['listen', 'app', 'actions', 'request_timeout']);
  if (!m) return undefined;
  const listen = readListen(reader, m.get('listen'), DEFAULTS.inboundListen);
  const appField = m.get('app');
  const app = appField ? readUrl(reader, appField, ['http:', 'https:']) : DEFAULTS.app;
  const requestTimeoutMs = readDuration(reader, m.get('request_timeout'), DEFAULTS.requestTimeoutMs);
  const actions: ActionMappingConfig[] = [];
  const seen = new Map<string, number>();
  const actionsField = m.get('actions');
  for (const item of (actionsField && reader.list(actionsField)) ?? []) {
    const mapping = readActionMapping(reader, item);
    if (!mapping) continue;
    const key = `${mapping.method} ${mapping.path}`;
    const line = seen.get(key);
    if (line !== undefined) {
      reader.reportField(item, `${key} is already mapped at line ${line}; this entry could never match`);
    } else {
      seen.set(key, reader.position(item.node).line);
    }
    actions.push(mapping);
  }
  if (!listen || !app || !requestTimeoutMs) return undefined;
  return { listen, app, actions, requestTimeoutMs };
}

function readActionMapping(reader: YamlReader, field: Field): ActionMappingConfig | undefined {
  const m = reader.map(field, ['method', 'path', 'action', 'resource', 'permission']);
  if (!m) return undefined;
  const methodField = m.require('method');
  let method = methodField && reader.string(methodField);
  if (method !== undefined && method !== '*' && !METHOD.test(method)) {
    reader.reportField(methodField!, `'${method}' is not an HTTP method (or '*' for any)`);
    method = undefined;
  }
  const pathField = m.require('path');
  let path = pathField && reader.string(pathField);
  const pathError = path === undefined ? undefined : actionPathError(path);
  if (pathError) {
    reader.reportField(pathField!, `'${path}': ${pathError}`);
    path = undefined;
  }
  const actionField = m.require('action');
  let action = actionField && reader.string(actionField);
  if (action !== undefined && /[\s\x00-\x1f\x7f]/.test(action)) {
    reader.reportField(actionField!, 'an action name must not contain spaces or control characters');
    action = undefined;
  }
  const resource = m.get('resource') && reader.string(m.get('resource')!);
  const permission = m.get('permission') && reader.string(m.get('permission')!);
  if ((m.get('resource') === undefined) !== (m.get('permission') === undefined)) {
    const present = m.get('resource') ?? m.get('permission')!;
    reader.reportField(present, "'resource' and 'permission' go together: a mapping names both (access_control grants a permission on a resource) or neither");
  }
  if (method === undefined || path === undefined || action === undefined) return undefined;
  return {
    method: method === '*' ? '*' : method.toUpperCase(),
    path,
    action,
    ...(resource !== undefined ? { resource } : {}),
    ...(permission !== undefined ? { permission } : {}),
  };
}

function readAdmin(reader: YamlReader, field: Field | undefined): AdminConfig | undefined {
  const m = field && reader.map(field, ['listen']);
  if (field && !m) return undefined;
  const listen = readListen(reader, m?.get('listen'), DEFAULTS.adminListen);
  return listen && { listen };
}

function readLog(reader: YamlReader, field: Field | undefined, baseDir: string): LogConfig | undefined {
  const m = field && reader.map(field, ['level', 'audit']);
  if (field && !m) return undefined;
  const levelField = m?.get('level');
  const level = levelField ? reader.oneOf(levelField, LOG_LEVELS) : DEFAULTS.logLevel;
  const auditField = m?.get('audit');
  let audit: string | undefined = DEFAULTS.audit;
  if (auditField) {
    const s = reader.string(auditField);
    audit = s === undefined || s === 'stdout' ? s : readPath(reader, auditField, baseDir);
  }
  if (!level || !audit) return undefined;
  return { level, audit };
}
