/**
 * Reads one agent entry (an `agent_policy:` mapping or an item of `agents:`) from YAML.
 * Every problem is collected on the reader; a partially invalid agent returns undefined.
 */
import { isMap, isScalar, isSeq, type Node } from 'yaml';
import type { Field, YamlReader } from '../lib/yaml-reader.js';
import { checkDuration } from '../lib/values.js';
import { checkWorkloadSpiffeId } from '../spiffe/id-check.js';
import { readPcrs } from '../lib/fields.js';
import { KIND_NAMES, kindNamed } from '../attestation/kinds.js';
import type { AccessControlEntry, CompiledAgent } from './types.js';
import type { AttestationRequirements, TeeType } from '../attestation/requirements.js';
import { parseClaim } from './claims.js';
import type { PolicyBudget } from '../budget/period.js';


/** CompiledAgent plus its budget (an obligation of its allows). */
export interface PolicyAgent extends CompiledAgent {
  readonly budget?: PolicyBudget;
}

/** An agent with the source nodes needed for cross-agent checks (unique names and IDs). */
export interface ReadAgent {
  agent: PolicyAgent;
  nameField: Field;
  idNodes: { id: string; field: Field }[];
}

const AGENT_KEYS = [
  'name',
  'description',
  'spiffe_id',
  'spiffe_ids',
  'allowed_actions',
  'attestation_requirements',
  'access_control',
  'budget',
] as const;

const ATTESTATION_KEYS = [
  'tee_type',
  'runtime_environment',
  'expected_mrenclave',
  'expected_measurement',
  'minimum_security_version',
  'minimum_tcb',
  'require_runtime_debug_disabled',
  'allowed_chip_ids',
  'pcrs',
  'freshness',
  'max_evidence_age',
  'reference_values',
] as const;

/** The TEE types a policy may name: the evidence kinds, whose formats the requirements are checked against. */
export const TEE_TYPES: readonly TeeType[] = KIND_NAMES;
/** TPM PCR digests: SHA-1, SHA-256, SHA-384, SHA-512. */

export function readAgent(reader: YamlReader, field: Field): ReadAgent | undefined {
  const before = reader.problems.length;
  const m = reader.map(field, AGENT_KEYS);
  if (!m) return undefined;

  const nameField = m.require('name');
  const name = nameField && reader.string(nameField);
  if (m.get('description')) reader.string(m.get('description')!, { allowEmpty: true });

  const idNodes = readSpiffeIds(reader, m.get('spiffe_id'), m.get('spiffe_ids'), m.node, m.path);

  const actionsField = m.get('allowed_actions');
  const allowedActions = new Set<string>();
  if (actionsField) {
    for (const item of reader.list(actionsField) ?? []) {
      const action = reader.string(item);
      if (action === undefined) continue;
      if (action.includes('*')) reader.reportField(item, 'wildcards are not supported; list each action explicitly');
      else if (/[\s\x00-\x1f\x7f]/.test(action)) reader.reportField(item, 'an action name must not contain spaces or control characters');
      else if (allowedActions.has(action)) reader.reportField(item, `duplicate action '${action}'`);
      else allowedActions.add(action);
    }
  }

  const attestationField = m.get('attestation_requirements');
  const attestation = attestationField && readAttestation(reader, attestationField, allowedActions);
  const accessField = m.get('access_control');
  const accessControl = accessField ? readAccessControl(reader, accessField) : [];
  const budgetField = m.get('budget');
  const budget = budgetField && readBudget(reader, budgetField);

  if (reader.problems.length !== before || name === undefined) return undefined;
  const { line, col } = reader.position(m.node);
  const agent: PolicyAgent = Object.freeze({
    name,
    spiffeIds: Object.freeze(idNodes.map((i) => i.id)),
    allowedActions,
    ...(attestation ? { attestation: Object.freeze(attestation) } : {}),
    accessControl: Object.freeze(accessControl.map((e) => Object.freeze({ ...e, claim: Object.freeze(e.claim) }))),
    ...(budget ? { budget: Object.freeze(budget) } : {}),
    position: { file: reader.file, line, column: col },
  });
  return { agent, nameField: nameField!, idNodes };
}

function readSpiffeIds(
  reader: YamlReader,
  single: Field | undefined,
  many: Field | undefined,
  mapNode: Node,
  path: string,
): { id: string; field: Field }[] {
  if (single && many) {
    reader.report(many.keyNode, many.path, "use either 'spiffe_id' or 'spiffe_ids', not both");
    return [];
  }
  if (!single && !many) {
    reader.report(mapNode, path, "missing required key 'spiffe_id' (or 'spiffe_ids')");
    return [];
  }
  let fields: Field[] = [single!];
  if (many) {
    const listed = reader.list(many);
    if (listed?.length === 0) reader.reportField(many, 'must list at least one SPIFFE ID');
    fields = listed ?? [];
  }
  const out: { id: string; field: Field }[] = [];
  for (const f of fields) {
    const text = reader.string(f);
    if (text === undefined) continue;
    const checked = checkWorkloadSpiffeId(text);
    if (!checked.ok) reader.reportField(f, checked.error);
    else out.push({ id: checked.value, field: f });
  }
  return out;
}

function readAttestation(reader: YamlReader, field: Field, allowedActions: ReadonlySet<string>): AttestationRequirements | undefined {
  const m = reader.map(field, ATTESTATION_KEYS);
  if (!m) return undefined;
  if (m.node.items.length === 0) {
    reader.reportField(field, 'is empty: remove it, or state what the attestation must show');
    return undefined;
  }
  const req: AttestationRequirements = {};
  const f = (key: string) => m.get(key);

  if (f('tee_type')) req.teeType = reader.oneOf(f('tee_type')!, TEE_TYPES);
  const formats = req.teeType === undefined ? undefined : kindNamed(req.teeType)?.requirements;
  if (f('runtime_environment')) req.runtimeEnvironment = reader.string(f('runtime_environment')!);

  const mr = f('expected_mrenclave');
  const measurement = f('expected_measurement');
  if (mr && measurement) {
    reader.report(measurement.keyNode, measurement.path, "'expected_measurement' is an alias of 'expected_mrenclave'; use one");
  } else if (mr || measurement) {
    const mf = (mr ?? measurement)!;
    const expected = formats?.measurementHexDigits;
    req.expectedMeasurements = readHexList(reader, mf, 'hex measurement', expected ? `${req.teeType} measurement` : undefined, expected);
  }

  if (f('minimum_security_version')) req.minimumSecurityVersion = reader.int(f('minimum_security_version')!, { min: 0 });
  if (f('minimum_tcb')) req.minimumTcb = readMinimumTcb(reader, f('minimum_tcb')!, formats?.tcbComponents);
  if (f('require_runtime_debug_disabled')) {
    req.requireRuntimeDebugDisabled = reader.bool(f('require_runtime_debug_disabled')!);
  }
  if (f('allowed_chip_ids')) {
    const chip = formats?.chipId;
    req.allowedChipIds = readHexList(reader, f('allowed_chip_ids')!, 'hex chip ID', chip?.label, chip?.hexDigits);
  }
  if (f('pcrs')) req.pcrs = readPcrs(reader, f('pcrs')!);
  if (f('freshness')) readFreshness(reader, f('freshness')!, allowedActions, req);
  const age = f('max_evidence_age');
  if (age) {
    const scalar = reader.scalar(age);
    if (scalar) {
      const duration = checkDuration(scalar.value);
      if (duration.ok) req.maxEvidenceAgeSeconds = duration.value / 1000;
      else reader.reportField(age, duration.error);
    }
  }
  if (f('reference_values')) req.referenceValues = reader.string(f('reference_values')!);

  // Drop keys whose value was invalid (already reported), so the object has no `undefined`s.
  for (const k of Object.keys(req) as (keyof AttestationRequirements)[]) if (req[k] === undefined) delete req[k];
  return req;
}

/** One hex string or a list of them; with `digits`, each must have exactly that many. */
function readHexList(
  reader: YamlReader,
  field: Field,
  what: string,
  sizedWhat: string | undefined,
  digits: number | undefined,
): string[] | undefined {
  const fields = isSeq(reader.resolve(field)) ? (reader.list(field) ?? []) : [field];
  if (fields.length === 0) reader.reportField(field, 'must list at least one value');
  const out: string[] = [];
  for (const item of fields) {
    const hex = reader.hex(item, what);
    if (hex === undefined) continue;
    if (digits !== undefined && hex.length !== digits) {
      reader.reportField(item, `a ${sizedWhat} has ${digits} hex digits (${digits / 2} bytes), got ${hex.length}`);
    } else if (out.includes(hex)) {
      reader.reportField(item, 'duplicate value');
    } else {
      out.push(hex);
    }
  }
  return out;
}

/** `components`: the TEE's own TCB component names (each one byte); absent: any names, any size. */
function readMinimumTcb(reader: YamlReader, field: Field, components: readonly string[] | undefined): Record<string, number> | undefined {
  const m = reader.map(field, components ?? null);
  if (!m) return undefined;
  const out: Record<string, number> = Object.create(null);
  for (const key of m.keys()) {
    const f = m.get(key)!;
    if (!/^[a-z][a-z0-9_]*$/.test(key)) {
      reader.report(f.keyNode, f.path, 'a TCB component name is lower-case letters, digits and underscores');
      continue;
    }
    const v = reader.int(f, components ? { min: 0, max: 255 } : { min: 0 });
    if (v !== undefined) out[key] = v;
  }
  if (m.node.items.length === 0) reader.reportField(field, 'must name at least one component');
  return out;
}


/**
 * `freshness: session | per_request`, or `freshness: { per_request: [action, ...] }` naming the
 * actions (from allowed_actions) that need fresh evidence; the others stay in session mode.
 */
function readFreshness(reader: YamlReader, field: Field, allowedActions: ReadonlySet<string>, req: AttestationRequirements): void {
  const node = reader.resolve(field);
  if (node === undefined) return;
  if (isSeq(node)) {
    reader.reportField(field, "must be 'session', 'per_request' or a mapping '{ per_request: [action, ...] }'");
    return;
  }
  if (!isMap(node)) {
    req.freshness = reader.oneOf(field, ['session', 'per_request'] as const);
    return;
  }
  const m = reader.map(field, ['per_request']);
  if (!m) return;
  const listField = m.get('per_request');
  if (!listField) {
    // Unknown keys were reported already; an empty mapping still needs telling.
    if (m.node.items.length === 0) reader.reportField(field, "must name the actions that need fresh evidence: '{ per_request: [action, ...] }'");
    return;
  }
  const items = reader.list(listField);
  if (!items) return;
  if (items.length === 0) {
    reader.reportField(listField, "must list at least one action (or write 'freshness: session')");
    return;
  }
  const actions: string[] = [];
  for (const item of items) {
    const action = reader.string(item);
    if (action === undefined) continue;
    if (!allowedActions.has(action)) reader.reportField(item, `action '${action}' is not in this agent's allowed_actions`);
    else if (actions.includes(action)) reader.reportField(item, `duplicate action '${action}'`);
    else actions.push(action);
  }
  req.perRequestActions = actions;
}

function readAccessControl(reader: YamlReader, field: Field): AccessControlEntry[] {
  const out: AccessControlEntry[] = [];
  for (const item of reader.list(field) ?? []) {
    const m = reader.map(item, ['principal_attestation_claim', 'resource', 'permission']);
    if (!m) continue;
    const claimField = m.require('principal_attestation_claim');
    const resourceField = m.require('resource');
    const permissionField = m.require('permission');
    const text = claimField && reader.string(claimField);
    const resource = resourceField && reader.string(resourceField);
    const permission = permissionField && reader.string(permissionField);
    if (text === undefined) continue;
    const parsed = parseClaim(text);
    if (!parsed.ok) {
      reportInString(reader, claimField!, text, parsed.index, parsed.message);
      continue;
    }
    if (resource !== undefined && permission !== undefined) {
      out.push({ principalAttestationClaim: text, resource, permission, claim: parsed.claim });
    }
  }
  return out;
}

/**
 * Reports at character `index` of a string scalar when the source text maps 1:1 onto the value
 * (plain or quoted without escapes or folding); otherwise at the scalar itself.
 */
function reportInString(reader: YamlReader, field: Field, value: string, index: number, message: string): void {
  const node = reader.resolve(field);
  const range = node?.range;
  // Index 0 (the whole text is wrong): point at the scalar itself, quotes included.
  if (index > 0 && isScalar(node) && range) {
    const quoted = node.type === 'QUOTE_DOUBLE' || node.type === 'QUOTE_SINGLE';
    const sourceLength = range[1] - range[0];
    if ((node.type === 'PLAIN' && sourceLength === value.length) || (quoted && sourceLength === value.length + 2)) {
      reader.reportAt(range[0] + (quoted ? 1 : 0) + index, field.path, message);
      return;
    }
  }
  reader.reportField(field, message);
}

function readBudget(reader: YamlReader, field: Field): PolicyBudget | undefined {
  const m = reader.map(field, ['limit_usd', 'period']);
  if (!m) return undefined;
  const limitField = m.require('limit_usd');
  const limitUsd = limitField && reader.number(limitField, { min: 0 });
  const periodField = m.get('period');
  const period = periodField ? reader.oneOf(periodField, ['total', 'daily', 'monthly'] as const) : 'total';
  if (limitUsd === undefined || period === undefined) return undefined;
  return { limitUsd, period };
}
