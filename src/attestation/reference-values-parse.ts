/**
 * Parsing and verification of one reference-values file (format: see reference-values.ts).
 * Pure: bytes, signature bytes, keys and a clock in; values or a ReferenceValuesError out.
 *
 * Order matters: the signature is checked over the exact file bytes BEFORE the YAML is parsed,
 * so when signing is required no unauthenticated text reaches the parser.
 */
import { createHash, type KeyObject } from 'node:crypto';
import type { Node } from 'yaml';
import { ProblemsError, YamlReader, isEmptyDocument, type Field, type Problem } from '../lib/yaml-reader.js';
import { decodeSignatureFile, verifyEcdsaSignature } from './reference-values-signature.js';
import { readPcrs } from '../lib/fields.js';

export interface ReferenceValues {
  name: string;
  expiresAt: Date;
  /** Accepted launch measurements (SNP/TDX), lower-case hex; may be empty only when `pcrs` is given. */
  measurements: string[];
  minimumSecurityVersion?: number;
  minimumTcb?: Record<string, number>;
  allowedChipIds?: string[];
  /** TPM: PCR index -> expected digest (lower-case hex). */
  pcrs?: Record<string, string>;
  /** SHA-256 of pinned TPM attestation keys' SPKI DER (anti-relay), lower-case hex. */
  tpmAkSpkiSha256?: string[];
  /** sha256-16 of the file bytes: part of the verdict cache key */
  version: string;
  file: string;
  signed: boolean;
}

export type ReferenceValuesReason =
  | 'reference_values_invalid' // unreadable, not YAML, wrong keys/values, unknown environment
  | 'reference_values_unsigned' // signing is required and there is no `.sig`
  | 'reference_values_bad_signature' // a `.sig` exists and does not verify (never ignored)
  | 'reference_values_expired' // `expires` is at or before now
  | 'reference_values_conflict'; // a policy and its reference values contradict each other

/** A ConfigError (via ProblemsError) listing every problem with file:line:column. */
export class ReferenceValuesError extends ProblemsError {
  declare readonly reason: ReferenceValuesReason;
  constructor(reason: ReferenceValuesReason, problems: readonly Problem[]) {
    super(problems, reason);
  }
}

export interface ParseReferenceValuesOptions {
  /** Contents of the `<file>.sig` file (base64 text), when one exists. */
  signature?: Uint8Array;
  /** EC P-256 / P-384 public keys; a signature by any of them is accepted. */
  keys: KeyObject[];
  requireSignature: boolean;
  now: Date;
  /** The environment this file is configured for; `reference_values.name` must equal it. */
  name?: string;
}

/** Refuses files larger than this before reading them: reference values are a few KiB. */
export const MAX_REFERENCE_FILE_BYTES = 1024 * 1024;

const KEYS = [
  'name',
  'expires',
  'measurements',
  'minimum_security_version',
  'minimum_tcb',
  'allowed_chip_ids',
  'pcrs',
  'tpm_ak_spki_sha256',
] as const;

const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:\d{2})$/;

export function sha256Prefix(bytes: Uint8Array, chars = 16): string {
  return createHash('sha256').update(bytes).digest('hex').slice(0, chars);
}

const fileProblem = (file: string, message: string): Problem => ({ file, line: 0, column: 0, message });

export function parseReferenceValues(text: string | Uint8Array, file: string, opts: ParseReferenceValuesOptions): ReferenceValues {
  const bytes = typeof text === 'string' ? Buffer.from(text, 'utf8') : Buffer.from(text.buffer, text.byteOffset, text.byteLength);
  if (bytes.byteLength > MAX_REFERENCE_FILE_BYTES) {
    throw new ReferenceValuesError('reference_values_invalid', [
      fileProblem(file, `is ${bytes.byteLength} bytes, over the ${MAX_REFERENCE_FILE_BYTES}-byte limit`),
    ]);
  }
  const signed = checkSignature(bytes, file, opts);

  let source: string;
  try {
    source = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new ReferenceValuesError('reference_values_invalid', [fileProblem(file, 'is not valid UTF-8 text')]);
  }
  const { reader, documents } = YamlReader.parse(source, file);
  const docs = documents.filter((d) => !isEmptyDocument(d));
  if (reader.ok && docs.length !== 1) {
    reader.problems.push(fileProblem(file, `must hold exactly one YAML document with 'reference_values:', found ${docs.length}`));
  }
  const doc = docs[0];
  let expires: { at: Date; field: Field } | undefined;
  let values: Omit<ReferenceValues, 'expiresAt' | 'version' | 'file' | 'signed'> | undefined;
  if (doc && docs.length === 1) {
    reader.useDocument(doc);
    const top = reader.map({ path: '', node: doc.contents as Node }, ['reference_values']);
    const rvField = top?.require('reference_values');
    if (rvField) ({ expires, values } = readValues(reader, rvField, opts.name));
  }
  if (!reader.ok || !expires || !values) {
    throw new ReferenceValuesError('reference_values_invalid', reader.problems.length ? reader.problems : [fileProblem(file, 'invalid')]);
  }
  if (opts.now.getTime() >= expires.at.getTime()) {
    const { line, col } = reader.position(expires.field.node);
    throw new ReferenceValuesError('reference_values_expired', [
      {
        file,
        line,
        column: col,
        key: expires.field.path,
        message: `expired at ${expires.at.toISOString()} (now ${opts.now.toISOString()}): these reference values are refused`,
      },
    ]);
  }
  return { ...values, expiresAt: expires.at, version: sha256Prefix(bytes), file, signed };
}

/** Returns whether the file is signed; throws when a required signature is missing or any signature is bad. */
function checkSignature(bytes: Uint8Array, file: string, opts: ParseReferenceValuesOptions): boolean {
  const sigFile = `${file}.sig`;
  if (opts.signature === undefined) {
    if (!opts.requireSignature) return false;
    throw new ReferenceValuesError('reference_values_unsigned', [
      fileProblem(file, `is not signed: ${sigFile} is missing and signed reference values are required`),
    ]);
  }
  const decoded = decodeSignatureFile(opts.signature);
  if (!decoded.ok) throw new ReferenceValuesError('reference_values_bad_signature', [fileProblem(sigFile, decoded.message)]);
  if (opts.keys.length === 0) {
    throw new ReferenceValuesError('reference_values_bad_signature', [
      fileProblem(sigFile, 'exists but no reference-value signing keys are configured to verify it'),
    ]);
  }
  if (!verifyEcdsaSignature(bytes, decoded.signature, opts.keys)) {
    throw new ReferenceValuesError('reference_values_bad_signature', [
      fileProblem(sigFile, `does not verify: not a signature over ${file} by any of the ${opts.keys.length} configured key(s)`),
    ]);
  }
  return true;
}

function readValues(reader: YamlReader, field: Field, expectedName: string | undefined) {
  const m = reader.map(field, KEYS);
  if (!m) return {};
  const f = (key: (typeof KEYS)[number]) => m.get(key);

  const nameField = m.require('name');
  const name = nameField && reader.string(nameField);
  if (nameField && name !== undefined && expectedName !== undefined && name !== expectedName) {
    reader.reportField(nameField, `is '${name}' but this file is configured for environment '${expectedName}'`);
  }

  const expiresField = m.require('expires');
  let expiresAt: Date | undefined;
  const expiresText = expiresField && reader.string(expiresField);
  if (expiresField && expiresText !== undefined) {
    const ms = RFC3339.test(expiresText) ? Date.parse(expiresText) : NaN;
    if (Number.isNaN(ms)) reader.reportField(expiresField, `must be an RFC 3339 time with a zone, e.g. 2027-06-30T00:00:00Z; got '${expiresText}'`);
    else expiresAt = new Date(ms);
  }

  const measurementsField = m.require('measurements');
  const measurements = measurementsField && readHexList(reader, measurementsField, 'launch measurement', 96, true);
  const out: Omit<ReferenceValues, 'expiresAt' | 'version' | 'file' | 'signed'> = { name: name ?? '', measurements: measurements ?? [] };
  if (f('minimum_security_version')) out.minimumSecurityVersion = reader.int(f('minimum_security_version')!, { min: 0 });
  if (f('minimum_tcb')) out.minimumTcb = readTcb(reader, f('minimum_tcb')!);
  if (f('allowed_chip_ids')) out.allowedChipIds = readHexList(reader, f('allowed_chip_ids')!, 'chip ID', 128, false);
  if (f('pcrs')) out.pcrs = readPcrs(reader, f('pcrs')!);
  if (f('tpm_ak_spki_sha256')) out.tpmAkSpkiSha256 = readHexList(reader, f('tpm_ak_spki_sha256')!, 'SHA-256 digest', 64, false);
  if (measurementsField && measurements?.length === 0 && !f('pcrs')) {
    reader.reportField(measurementsField, "is empty: list the accepted launch measurements (only TPM-only files with 'pcrs' may leave it empty)");
  }
  for (const k of Object.keys(out) as (keyof typeof out)[]) if (out[k] === undefined) delete out[k];
  return { values: out, expires: expiresField && expiresAt ? { at: expiresAt, field: expiresField } : undefined };
}

function readHexList(reader: YamlReader, field: Field, what: string, digits: number, allowEmpty: boolean): string[] | undefined {
  const items = reader.list(field);
  if (!items) return undefined;
  if (items.length === 0 && !allowEmpty) reader.reportField(field, 'must list at least one value');
  const out: string[] = [];
  for (const item of items) {
    const hex = reader.hex(item, `hex ${what}`);
    if (hex === undefined) continue;
    if (hex.length !== digits) reader.reportField(item, `a ${what} has ${digits} hex digits (${digits / 2} bytes), got ${hex.length}`);
    else if (out.includes(hex)) reader.reportField(item, 'duplicate value');
    else out.push(hex);
  }
  return out;
}

function readTcb(reader: YamlReader, field: Field): Record<string, number> | undefined {
  const m = reader.map(field, null);
  if (!m) return undefined;
  if (m.node.items.length === 0) reader.reportField(field, 'must name at least one component');
  const out: Record<string, number> = Object.create(null);
  for (const key of m.keys()) {
    const f = m.get(key)!;
    if (!/^[a-z][a-z0-9_]*$/.test(key)) reader.report(f.keyNode, f.path, 'a TCB component name is lower-case letters, digits and underscores');
    const v = reader.int(f, { min: 0 });
    if (v !== undefined) out[key] = v;
  }
  return out;
}

