/**
 * The evidence kinds this sidecar knows: the one list. The evidence type union (and a policy's
 * `tee_type`), the envelope's part table, the verifier dispatch, `inspect-evidence` and
 * `verify-evidence`, the config reader, the verifier setup and the policy's requirement formats
 * all derive from it.
 *
 * Adding a TEE type is its folder plus one line here. The folder's `kind.ts` exports one
 * `EvidenceKind` (kind.ts) declaring: its envelope parts; optionally its trust section (the keys
 * it reads under `attestation.verifier` and how they load), its attester (keys under
 * `attestation.attester`), a pure `verify` (a kind without one is carried but refused with
 * evidence_unsupported), `fetchMissingCollateral` for collateral fetched in the background,
 * `describe`/`describeParts`/`sniff` for the CLI, `offline` for `verify-evidence`, and the
 * formats of its `attestation_requirements`. test/attestation/kinds.test.ts checks the new kind
 * against the envelope, the CLI and the config reader (give it a sample for its sniff).
 *
 * The order is the order in which operators see the names (policy and config messages).
 */
import { azSnpVtpmKind } from './az-snp-vtpm/kind.js';
import type { AttesterSection, EvidenceKind, PartTable, TrustSection } from './kind.js';
import { sevSnpKind } from './sev-snp/kind.js';
import { sgxKind } from './sgx/kind.js';
import { simKind } from './sim/kind.js';
import { tdxKind } from './tdx/kind.js';
import { tpmKind } from './tpm/kind.js';

export const KINDS = [sevSnpKind, tdxKind, sgxKind, tpmKind, azSnpVtpmKind, simKind] as const;

type Kind = (typeof KINDS)[number];
export type EvidenceType = Kind['name'];

type UnionToIntersection<U> = (U extends unknown ? (x: U) => void : never) extends (x: infer I) => void ? I : never;
type TrustOf<K> = K extends EvidenceKind<string, infer T, object, { type: string }> ? T : never;
type TrustConfigOf<K> = K extends EvidenceKind<string, object, infer C, { type: string }> ? C : never;
type AttesterConfigOf<K> = K extends EvidenceKind<string, object, object, infer A> ? A : never;

/** Trust material of every kind, as one object (kinds that share material share its fields). */
export type VerifierTrust = Partial<UnionToIntersection<TrustOf<Kind>>>;
/** The trust fields of `attestation.verifier`, as every kind reads them. */
export type KindsVerifierConfig = UnionToIntersection<TrustConfigOf<Kind>>;
/** `attestation.attester`: one of the kinds that can produce evidence. */
export type AttesterConfig = AttesterConfigOf<Kind>;

/** The list, widened for code that handles any kind. */
export type AnyKind = EvidenceKind<string, object, object, { type: string }>;
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const ALL = KINDS as readonly EvidenceKind<string, any, any, any>[] as readonly AnyKind[];

const BY_NAME: ReadonlyMap<string, AnyKind> = new Map(ALL.map((k) => [k.name, k]));

export const KIND_NAMES: readonly EvidenceType[] = KINDS.map((k) => k.name);

/** The kind named `name` (a peer's or an operator's text: a Map, never a prototype lookup). */
export function kindNamed(name: string): AnyKind | undefined {
  return BY_NAME.get(name);
}

export function allKinds(): readonly AnyKind[] {
  return ALL;
}

/** Envelope parts per evidence type. */
export const PARTS: ReadonlyMap<string, PartTable> = new Map(ALL.map((k) => [k.name, k.parts]));

/** The trust sections, each once (kinds may share one), in list order. */
export const TRUST_SECTIONS: readonly TrustSection[] = [...new Set(ALL.flatMap((k) => (k.trust ? [k.trust] : [])))];

/** The kinds this sidecar can produce evidence of, by name. */
export const ATTESTERS: ReadonlyMap<string, AttesterSection> = new Map(ALL.flatMap((k) => (k.attester ? [[k.name, k.attester] as const] : [])));
