/**
 * Reference values: the measurements, TCB minimums, chip IDs, PCRs and TPM AK pins an
 * environment accepts, kept out of the policy in one YAML file per environment. A policy names
 * them with `attestation_requirements.reference_values: prod`.
 *
 * File format (one document):
 *
 *   reference_values:
 *     name: prod                       # must equal the environment name the file is configured under
 *     expires: 2027-06-30T00:00:00Z    # required, RFC 3339 with zone; at/after it the values are refused
 *     measurements: ["<96 hex>", ...]  # accepted launch measurements (SNP/TDX); [] only with `pcrs`
 *     minimum_security_version: 2      # optional
 *     minimum_tcb: { bootloader: 3, tee: 0, snp: 8, microcode: 115 }   # optional
 *     allowed_chip_ids: ["<128 hex>"]  # optional
 *     pcrs: { 0: "<hex>", 7: "<hex>" } # optional (TPM): index 0-23 -> SHA-1/256/384/512 digest
 *     tpm_ak_spki_sha256: ["<64 hex>"] # optional: SHA-256 of pinned TPM AK SPKI DER (anti-relay)
 *
 * Signing: `<file>.sig` next to it holds base64 of an ECDSA signature (DER or raw r||s) over the
 * exact file bytes, SHA-256 with P-256 or SHA-384 with P-384 keys, e.g.
 *   openssl dgst -sha256 -sign key.pem prod.yaml | openssl base64 > prod.yaml.sig
 * When signing is required an unsigned file is refused; a present signature must always verify.
 * Write the `.sig` and the file close together (or swap a ConfigMap): a reload in between sees a
 * mismatch, keeps the last good values and retries on the next change.
 */
import { EventEmitter } from 'node:events';
import { readFileSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { createHash, type KeyObject } from 'node:crypto';
import { ConfigError, errorMessage } from '../errors.js';
import { watchFiles, type FileWatch } from '../lib/file-watch.js';
import { formatProblem } from '../lib/yaml-reader.js';
import type { AttestationRequirements } from './requirements.js';
import { MAX_SIGNATURE_FILE_BYTES, checkSigningKeys } from './reference-values-signature.js';
import {
  MAX_REFERENCE_FILE_BYTES,
  ReferenceValuesError,
  parseReferenceValues,
  sha256Prefix,
  type ReferenceValues,
  type ReferenceValuesReason,
} from './reference-values-parse.js';
import type { Logger } from '../lib/log.js';

/** Requirements after merging reference values; `tpmAkSpkiSha256` awaits a field in AttestationRequirements. */
export type AppraisalRequirements = AttestationRequirements & { tpmAkSpkiSha256?: string[] };

const conflict = (rv: ReferenceValues, key: string, message: string): ReferenceValuesError =>
  new ReferenceValuesError('reference_values_conflict', [{ file: rv.file, line: 0, column: 0, key, message }]);

/**
 * Merges a policy's requirements with the named reference values: the stricter/explicit wins.
 * Measurements: the policy's expected list if given, else the reference list. Minimums: the
 * higher. Chip IDs and AK pins: the intersection when both name some. PCRs: the union; the
 * same index with different digests is a conflict (ReferenceValuesError, reason
 * reference_values_conflict), as is an empty chip-ID intersection.
 */
export function applyReferenceValues(req: AttestationRequirements, rv: ReferenceValues): AppraisalRequirements {
  if (req.referenceValues !== undefined && req.referenceValues !== rv.name) {
    throw conflict(rv, 'reference_values.name', `the policy names reference values '${req.referenceValues}', not '${rv.name}'`);
  }
  const out: AppraisalRequirements = { ...req };
  if (req.expectedMeasurements === undefined && rv.measurements.length > 0) out.expectedMeasurements = [...rv.measurements];
  if (rv.minimumSecurityVersion !== undefined) {
    out.minimumSecurityVersion = Math.max(req.minimumSecurityVersion ?? 0, rv.minimumSecurityVersion);
  }
  if (rv.minimumTcb !== undefined) {
    const tcb: Record<string, number> = Object.assign(Object.create(null), req.minimumTcb);
    for (const [component, min] of Object.entries(rv.minimumTcb)) tcb[component] = Math.max(Object.hasOwn(tcb, component) ? tcb[component]! : 0, min);
    out.minimumTcb = tcb;
  }
  if (rv.allowedChipIds !== undefined) {
    const chips = req.allowedChipIds === undefined ? [...rv.allowedChipIds] : req.allowedChipIds.filter((c) => rv.allowedChipIds!.includes(c));
    if (chips.length === 0) throw conflict(rv, 'reference_values.allowed_chip_ids', 'no chip ID is allowed by both the policy and the reference values');
    out.allowedChipIds = chips;
  }
  if (rv.pcrs !== undefined) {
    const pcrs: Record<string, string> = Object.assign(Object.create(null), req.pcrs);
    for (const [index, digest] of Object.entries(rv.pcrs)) {
      const mine = Object.hasOwn(pcrs, index) ? pcrs[index] : undefined;
      if (mine !== undefined && mine.toLowerCase() !== digest) {
        throw conflict(rv, `reference_values.pcrs.${index}`, `PCR ${index} is ${digest} here but ${mine} in the policy`);
      }
      pcrs[index] = digest;
    }
    out.pcrs = pcrs;
  }
  if (rv.tpmAkSpkiSha256 !== undefined) out.tpmAkSpkiSha256 = [...rv.tpmAkSpkiSha256];
  return out;
}

export interface ReferenceValueStoreOptions {
  /** Environment name -> file path. */
  files: Record<string, string>;
  keys: KeyObject[];
  requireSignature: boolean;
  logger?: Logger;
  /** Clock in ms since the epoch; default Date.now. */
  now?: () => number;
  /** Quiet period after a file event before re-reading; default 100 ms. */
  debounceMs?: number;
}

interface Entry {
  values: ReferenceValues;
  /** Hash of file + signature bytes: an unchanged pair is not re-verified. */
  fingerprint: string;
}

export interface ReferenceValueStore {
  on(event: 'reload', listener: (name: string) => void): this;
  on(event: 'error', listener: (err: ReferenceValuesError) => void): this;
  once(event: 'reload', listener: (name: string) => void): this;
  once(event: 'error', listener: (err: ReferenceValuesError) => void): this;
}

/** All configured environments, hot reloaded; a bad replacement keeps the last good values. */
export class ReferenceValueStore extends EventEmitter {
  private readonly files: ReadonlyMap<string, string>;
  private readonly keys: KeyObject[];
  private readonly requireSignature: boolean;
  private readonly logger: Logger | undefined;
  private readonly now: () => number;
  private readonly entries = new Map<string, Entry>();
  /** Last rejected fingerprint per name, so one broken edit is logged once, not on every event. */
  private readonly rejected = new Map<string, string>();
  private readonly expiredLogged = new Set<string>();
  private combinedVersion = '';
  private watch: FileWatch | undefined;

  private constructor(opts: ReferenceValueStoreOptions) {
    super();
    this.files = new Map(Object.entries(opts.files).map(([name, file]) => [name, resolve(file)]));
    this.keys = [...opts.keys];
    this.requireSignature = opts.requireSignature;
    this.logger = opts.logger;
    this.now = opts.now ?? Date.now;
  }

  /** Loads every file now; throws (ConfigError / ReferenceValuesError) if any is missing, invalid, unsigned, badly signed or expired. */
  static async open(opts: ReferenceValueStoreOptions): Promise<ReferenceValueStore> {
    checkSigningKeys(opts.keys);
    if (opts.requireSignature && opts.keys.length === 0) {
      throw new ConfigError('signed reference values are required but no signing keys are configured', { key: 'reference_values.keys' });
    }
    for (const name of Object.keys(opts.files)) {
      if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(name)) throw new ConfigError(`invalid environment name '${name}'`, { key: 'reference_values.files' });
    }
    const store = new ReferenceValueStore(opts);
    for (const [name, file] of store.files) {
      const read = readPair(name, file);
      const values = store.parse(name, file, read);
      store.entries.set(name, { values, fingerprint: read.fingerprint });
      store.logger?.info({ name, file, version: values.version, signed: values.signed, expires: values.expiresAt.toISOString() }, 'reference values loaded');
    }
    store.updateVersion();
    const watched = [...store.files.values()].flatMap((f) => [f, `${f}.sig`]);
    store.watch = watchFiles(watched, () => store.reload(), {
      debounceMs: opts.debounceMs ?? 100,
      onError: (err) => store.logger?.error({ err: errorMessage(err) }, 'reference values watch failed; keeping current values'),
    });
    return store;
  }

  /** The values of `name`; undefined when unknown OR expired at now() (fail closed). */
  get(name: string): ReferenceValues | undefined {
    const entry = this.entries.get(name);
    if (!entry) return undefined;
    if (this.now() >= entry.values.expiresAt.getTime()) {
      if (!this.expiredLogged.has(entry.fingerprint)) {
        this.expiredLogged.add(entry.fingerprint);
        this.logger?.error(
          { reason: 'reference_values_expired', name, file: entry.values.file, expires: entry.values.expiresAt.toISOString() },
          `reference values '${name}' expired at ${entry.values.expiresAt.toISOString()}; refusing them until a renewed file is loaded`,
        );
      }
      return undefined;
    }
    return entry.values;
  }

  /** Like get(), but throws a ReferenceValuesError saying why nothing is available. */
  require(name: string): ReferenceValues {
    const values = this.get(name);
    if (values) return values;
    const entry = this.entries.get(name);
    if (!entry) {
      throw new ReferenceValuesError('reference_values_invalid', [
        { file: '<config>', line: 0, column: 0, message: `no reference values named '${name}' are configured` },
      ]);
    }
    throw new ReferenceValuesError('reference_values_expired', [
      { file: entry.values.file, line: 0, column: 0, message: `expired at ${entry.values.expiresAt.toISOString()}` },
    ]);
  }

  /** Configured environment names. */
  names(): string[] {
    return [...this.files.keys()];
  }

  /** Combined version of all loaded files, changes on every reload */
  version(): string {
    return this.combinedVersion;
  }

  /** Re-reads every file now; returns true when any changed, valid file was swapped in. */
  reload(): boolean {
    let changed = false;
    for (const [name, file] of this.files) {
      const current = this.entries.get(name)!;
      let read: FilePair;
      try {
        read = readPair(name, file);
      } catch (err) {
        this.reject(name, file, current.values, err);
        continue;
      }
      if (read.fingerprint === current.fingerprint) {
        this.rejected.delete(name); // back to the good pair: a later identical bad edit is reported again
        continue;
      }
      if (read.fingerprint === this.rejected.get(name)) continue;
      let values: ReferenceValues;
      try {
        values = this.parse(name, file, read);
      } catch (err) {
        this.rejected.set(name, read.fingerprint);
        this.reject(name, file, current.values, err);
        continue;
      }
      this.rejected.delete(name);
      this.entries.set(name, { values, fingerprint: read.fingerprint });
      changed = true;
      this.logger?.info({ name, file, version: values.version, previous: current.values.version, signed: values.signed }, 'reference values reloaded');
      this.updateVersion();
      this.emit('reload', name);
    }
    return changed;
  }

  close(): void {
    this.watch?.close();
    this.watch = undefined;
  }

  private parse(name: string, file: string, read: FilePair): ReferenceValues {
    return parseReferenceValues(read.bytes, file, {
      ...(read.signature ? { signature: read.signature } : {}),
      keys: this.keys,
      requireSignature: this.requireSignature,
      now: new Date(this.now()),
      name,
    });
  }

  private reject(name: string, file: string, kept: ReferenceValues, err: unknown): void {
    const error =
      err instanceof ReferenceValuesError
        ? err
        : new ReferenceValuesError('reference_values_invalid', [{ file, line: 0, column: 0, message: errorMessage(err) }]);
    for (const p of error.problems) {
      this.logger?.error(
        { reason: error.reason, name, file: p.file, line: p.line, column: p.column, key: p.key, version: kept.version },
        `reference values reload rejected, keeping version ${kept.version}: ${formatProblem(p)}`,
      );
    }
    // An 'error' event without a listener would throw; a bad edit must not crash the sidecar.
    if (this.listenerCount('error') > 0) this.emit('error', error);
  }

  private updateVersion(): void {
    const parts = [...this.entries].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([n, e]) => `${n}=${e.fingerprint}\n`);
    this.combinedVersion = sha256Prefix(Buffer.from(parts.join(''), 'utf8'));
  }
}

interface FilePair {
  bytes: Buffer;
  signature: Buffer | undefined;
  fingerprint: string;
}

/** Reads a file and its optional `.sig`; size-capped; throws ReferenceValuesError when unreadable. */
function readPair(name: string, file: string): FilePair {
  const bytes = readCapped(file, MAX_REFERENCE_FILE_BYTES, name, 'reference_values_invalid')!;
  const signature = readCapped(`${file}.sig`, MAX_SIGNATURE_FILE_BYTES, name, 'reference_values_bad_signature', true);
  const hash = createHash('sha256').update(bytes).update(signature ? `\0sig:${signature.toString('latin1')}` : '\0unsigned');
  return { bytes, signature, fingerprint: hash.digest('hex') };
}

function readCapped(file: string, max: number, name: string, reason: ReferenceValuesReason, optional = false): Buffer | undefined {
  const fail = (message: string) => new ReferenceValuesError(reason, [{ file, line: 0, column: 0, message }]);
  try {
    // Size first, so a huge file is refused without being read into memory.
    const size = statSync(file).size;
    if (size > max) throw fail(`is ${size} bytes, over the ${max}-byte limit`);
    return readFileSync(file);
  } catch (err) {
    if (err instanceof ReferenceValuesError) throw err;
    if (optional && (err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw fail(`cannot read reference values '${name}': ${errorMessage(err)}`);
  }
}
