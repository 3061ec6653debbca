/**
 * Sidecar config file (YAML, snake_case keys) -> validated SidecarConfig with defaults
 * applied and every path absolute. All problems are reported at once, each naming
 * file:line:column and the key path (e.g. `outbound.routes[0].server_id`).
 */
import { basename, dirname, resolve } from 'node:path';
import type { Node } from 'yaml';
import { errorMessage } from '../errors.js';
import { actionPathError } from '../policy/actions.js';
import { readDuration, readListen, readPath, readUrl } from '../lib/fields.js';
import { readOutbound, OUTBOUND_DEFAULTS } from './outbound.js';
import { readAdmin, readBudgetStore, readDrainTimeout, readHealth, readRevocations, readStateDir, OPERATIONS_DEFAULTS } from './operations.js';
import { readIdentity } from './identity.js';
import { readAttestation } from './attestation.js';
import { REQUEST_HEADERS_SETTING } from '../lib/header-limits.js';
import { readLimits } from './limits.js';
import type { InboundConfig, LogConfig, SidecarConfig } from './types.js';
import type { ActionMappingConfig } from '../policy/actions.js';
import { isEmptyDocument, ProblemsError, YamlReader, type Field, type Problem } from '../lib/yaml-reader.js';
import { readYamlFileText, YamlFileTooLargeError } from '../lib/yaml-limits.js';

export const DEFAULTS = Object.freeze({
  outboundListen: OUTBOUND_DEFAULTS.listen,
  inboundListen: '0.0.0.0:15443',
  app: 'http://127.0.0.1:8080',
  adminListen: OPERATIONS_DEFAULTS.adminListen,
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

const TOP_KEYS = ['name', 'identity', 'outbound', 'inbound', 'policy', 'admin', 'health', 'drain_timeout', 'log', 'attestation', 'state_dir', 'revocations', 'budget'];
const LOG_LEVELS: readonly LogConfig['level'][] = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'];
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
  const outbound = outboundField && readOutbound(reader, outboundField, baseDir);
  const inboundField = top.get('inbound');
  const inbound = inboundField && readInbound(reader, inboundField);
  const policyField = top.get('policy');
  const policy = policyField && readPath(reader, policyField, baseDir);
  if (inboundField && !policyField) {
    reader.report(inboundField.keyNode, 'policy', "is required when 'inbound' is configured: the policy decides every inbound request");
  }
  const adminField = top.get('admin');
  const admin = readAdmin(reader, adminField, baseDir);
  const health = readHealth(reader, top.get('health'), env);
  const drainTimeoutMs = readDrainTimeout(reader, top.get('drain_timeout'));
  const stateDir = readStateDir(reader, top.get('state_dir'), baseDir, name ?? (inline ? 'default' : basename(file).replace(/\.(ya?ml|json)$/i, '')), env);
  const revocations = readRevocations(reader, top.get('revocations'), baseDir);
  const budget = readBudgetStore(reader, top.get('budget'), baseDir);
  const log = readLog(reader, top.get('log'), baseDir);
  const attestationField = top.get('attestation');
  const attestation = attestationField && readAttestation(reader, attestationField, baseDir);

  if (!reader.ok || !identity || !log || !admin || !health || drainTimeoutMs === undefined || !stateDir || !revocations || !budget) throw new ConfigFileError(reader.problems);
  for (const w of reader.warnings) options.onWarning?.(w);
  return {
    file: inline ? file : resolve(file),
    ...(name !== undefined ? { name } : {}),
    identity,
    ...(outbound ? { outbound } : {}),
    ...(inbound ? { inbound } : {}),
    ...(policy ? { policy } : {}),
    admin,
    ...(health.listen ? { health } : {}),
    drainTimeoutMs,
    log,
    ...(attestation ? { attestation } : {}),
    stateDir,
    revocations,
    budget,
  };
}

export function loadConfigFile(path: string, env?: NodeJS.ProcessEnv, options?: ParseConfigOptions): SidecarConfig {
  let text: string;
  try {
    text = readYamlFileText(path);
  } catch (err) {
    const message = err instanceof YamlFileTooLargeError ? err.message : `cannot read config file: ${errorMessage(err)}`;
    throw new ConfigFileError([{ file: path, line: 0, column: 0, message }]);
  }
  return parseConfig(text, path, env, options);
}

function readInbound(reader: YamlReader, field: Field): InboundConfig | undefined {
  const m = reader.map(field, ['listen', 'app', 'actions', 'request_timeout', 'max_request_headers', 'limits']);
  if (!m) return undefined;
  const listen = readListen(reader, m.get('listen'), DEFAULTS.inboundListen);
  const appField = m.get('app');
  // Plain HTTP to the app in the same pod. Over https, undici would check the app's certificate
  // against the Host header the remote caller chose, and there is no app CA setting.
  const app = appField ? readUrl(reader, appField, ['http:']) : DEFAULTS.app;
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
  const maxField = m.get('max_request_headers');
  const maxRequestHeaders = maxField && reader.int(maxField, REQUEST_HEADERS_SETTING);
  const limits = readLimits(reader, m.get('limits'), 'inbound');
  if (!listen || !app || !requestTimeoutMs || !limits || (maxField && maxRequestHeaders === undefined)) return undefined;
  // Absent max_request_headers: the listener's default (DEFAULT_MAX_REQUEST_HEADERS).
  return { listen, app, actions, requestTimeoutMs, limits, ...(maxRequestHeaders ? { maxRequestHeaders } : {}) };
}

function readActionMapping(reader: YamlReader, field: Field): ActionMappingConfig | undefined {
  const m = reader.map(field, ['method', 'path', 'action', 'resource', 'permission', 'cost_usd']);
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
  const costField = m.get('cost_usd');
  const costUsd = costField && reader.number(costField, { min: 0, max: 1e6 });
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
    ...(costUsd !== undefined ? { costUsd } : {}),
  };
}

function readLog(reader: YamlReader, field: Field | undefined, baseDir: string): LogConfig | undefined {
  const m = field && reader.map(field, ['level', 'audit']);
  if (field && !m) return undefined;
  const levelField = m?.get('level');
  const level = levelField ? reader.oneOf(levelField, LOG_LEVELS) : DEFAULTS.logLevel;
  const auditField = m?.get('audit');
  let audit: string | undefined = DEFAULTS.audit;
  if (auditField) {
    const auditPath = reader.string(auditField);
    audit = auditPath === undefined || auditPath === 'stdout' ? auditPath : readPath(reader, auditField, baseDir);
  }
  if (!level || !audit) return undefined;
  return { level, audit };
}
