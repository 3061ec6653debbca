/**
 * The shape every evidence kind (one TEE type's folder) exports. The registry (kinds.ts) lists
 * the kinds; the envelope's part table, the verifier dispatch, the CLI, the config reader and the
 * verifier setup all derive from that list, so a new TEE type is its folder plus one line there.
 */
import type { KeyObject } from 'node:crypto';
import type { ParseArgsConfig } from 'node:util';
import type { MapView, YamlReader } from '../lib/yaml-reader.js';
import type { NormalizedClaims } from './appraise.js';
import type { Attester } from './attester.js';
import type { setupVerifier } from './setup.js';

/** One envelope part: its CMW media type, whether it must be present, its size bound. */
export interface PartSpec {
  readonly mediaType: string;
  readonly required: boolean;
  readonly maxBytes: number;
}

export type PartTable = Readonly<Record<string, PartSpec>>;

export interface BindingExpectation {
  /** DER SubjectPublicKeyInfo of the peer's SVID on this very connection. */
  spki: Uint8Array;
  nonce?: Uint8Array;
}

/**
 * Everything a verification reads. `recall` is the caller's memory of earlier verifications
 * (e.g. the last TPM clock per attestation key): read here, never written.
 */
export interface VerifyInput<T> {
  readonly parts: Readonly<Record<string, Buffer>>;
  readonly trust: Readonly<Partial<T>>;
  readonly binding: BindingExpectation;
  readonly now: Date;
  recall(key: string): unknown;
}

/** What a successful verification wants the caller to remember for the next one. */
export interface Remembered {
  readonly key: string;
  readonly value: unknown;
}

export interface KindVerdict {
  /** The verifier's full claims (JSON-friendly), for /status and the audit trail. */
  readonly claims: Readonly<Record<string, unknown>>;
  readonly normalized: NormalizedClaims;
  /** Collateral expiry (e.g. the VCEK's notAfter), epoch ms, when the evidence has one. */
  readonly expiresAtMs?: number;
  readonly remember?: Remembered;
}

/** File access for trust loading; errors name the config file and the key (`what`). */
export interface TrustLoadContext {
  /** The verifier setup's logger, passed on to what loads in the background (the KDS cache). */
  readonly logger?: Parameters<typeof setupVerifier>[1];
  /** PEM texts of a file, or of every *.pem/*.crt/*.cer in a directory. */
  pemSources(location: string, what: string): string[];
  publicKey(file: string, what: string): KeyObject;
}

/**
 * A kind's trust configuration: the keys it reads under `attestation.verifier`, the config
 * fields it reads them into, and how those become trust material at start. Kinds that share
 * material (SEV-SNP anchors for sev-snp and az-snp-vtpm) share the section object.
 */
export interface TrustSection<C extends object = object, T extends object = object> {
  readonly keys: readonly string[];
  /** The config when `attestation.verifier` is absent. */
  readonly defaults: C;
  read(reader: YamlReader, verifier: MapView, baseDir: string): C;
  load(config: C, ctx: TrustLoadContext): T | Promise<T>;
}

/** A kind's attester: its keys under `attestation.attester` (besides `type`) and how to build it. */
export interface AttesterSection<C extends { type: string } = { type: string }> {
  readonly keys: readonly string[];
  /** `type` is the kind's name; undefined when the section has problems (the reader holds them). */
  read(reader: YamlReader, attester: MapView, baseDir: string, type: string): C | undefined;
  create(config: C): Attester;
}

export type CliFlags = Readonly<Record<string, string | boolean | (string | boolean)[] | undefined>>;

/** File access for `verify-evidence`. */
export interface OfflineFiles {
  read(file: string): Buffer;
  /** Binary, or hex text (whitespace ignored). */
  evidence(file: string): Buffer;
  /** PEM texts from a file or every *.pem / *.crt / *.cer file of a directory. */
  pem(fileOrDir: string): string[];
}

/** `verify-evidence` for a kind: its flags, and the verification an operator runs by hand. */
export interface OfflineVerifier {
  readonly options: NonNullable<ParseArgsConfig['options']>;
  /**
   * `usage`: a flag is missing (exit 2); `refused`: cannot verify (exit 1, reason text);
   * otherwise the claims and their normalized view for `--policy`.
   */
  verify(bytes: Buffer, flags: CliFlags, now: Date, files: OfflineFiles):
    | { usage: string }
    | { refused: string; claims: unknown }
    | { claims: Record<string, unknown>; normalized: NormalizedClaims };
  /** What to show of the file when verification failed (null when it cannot be decoded). */
  describeOnFailure?(bytes: Buffer): unknown;
}

/**
 * N: the kind's name; T: the trust material its verifier reads; C: the config fields its trust
 * is read into; A: its attester's config.
 */
export interface EvidenceKind<N extends string = string, T extends object = object, C extends object = object, A extends { type: string } = never> {
  readonly name: N;
  readonly parts: PartTable;
  readonly trust?: TrustSection<C, Partial<T>>;
  readonly attester?: AttesterSection<A>;
  /** Pure; absent: the kind is carried by the envelope but refused (evidence_unsupported). */
  readonly verify?: (input: VerifyInput<T>) => KindVerdict;
  /**
   * After a verification failed for want of collateral: start fetching it in the background
   * (never on the request path), so a later attempt finds it in memory.
   */
  readonly fetchMissingCollateral?: (parts: Readonly<Record<string, Buffer>>, trust: Readonly<Partial<T>>) => void;
  /** `inspect-evidence` of a raw file (decoded, not verified). */
  readonly describe?: (bytes: Buffer) => unknown;
  /** `inspect-evidence` of an envelope: what to show of the kind's parts besides their sizes. */
  readonly describeParts?: (parts: Readonly<Record<string, Buffer>>) => Record<string, unknown>;
  /** Recognises a raw file of this kind for the CLI (size, magic). */
  readonly sniff?: (bytes: Buffer) => boolean;
  readonly offline?: OfflineVerifier;
  /** What a policy's attestation_requirements must look like for this TEE type (checked when it is read). */
  readonly requirements?: RequirementFormats;
}

export interface RequirementFormats {
  /** Launch measurement size in hex digits, where the TEE fixes it. */
  readonly measurementHexDigits?: number;
  /** The TCB components `minimum_tcb` may name, each one byte; absent: any names, any size. */
  readonly tcbComponents?: readonly string[];
  /** `allowed_chip_ids`: what the TEE calls a chip ID and its size in hex digits. */
  readonly chipId?: { readonly label: string; readonly hexDigits: number };
}
