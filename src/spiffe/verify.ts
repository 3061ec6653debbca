/**
 * X509-SVID verification of a peer chain (go-spiffe x509svid.Verify semantics), pure; run per TLS
 * handshake, or reused by a caller while its stableUntilMs holds:
 *   - leaf: exactly one URI SAN, a valid SPIFFE ID; not a CA; no keyCertSign / cRLSign
 *   - every presented intermediate: CA with keyCertSign (stricter than Go, which ignores
 *     unused extras: a peer has no reason to send a non-CA certificate)
 *   - a path leaf -> intermediates* -> root where the root is an authority of the bundle of
 *     the LEAF's trust domain, never of another domain
 *   - signatures by node:crypto; issuer/subject/AKI linkage by X509Certificate.checkIssued
 *   - every certificate on the path valid at `now`; pathLen constraints; no unhandled
 *     critical extensions; no MD5/SHA-1 signatures
 *   - URI name constraints (X509-SVID 4.2) of every CA on the path, bundle root included,
 *     hold for the leaf's trust domain (a path that breaks them is not a path)
 */
import { X509Certificate } from 'node:crypto';
import { SidecarError } from '../errors.js';
import { parseSpiffeId, SpiffeId, SpiffeIdError } from './id.js';
import { X509BundleSource } from './bundle/x509-bundle.js';
import { certificateFacts, CertificateFacts, hasKeyUsage, KeyUsageBit } from './x509.js';
import { uriNameConstraintViolation } from './name-constraints.js';

export interface VerifiedX509Svid {
  readonly id: SpiffeId;
  /** leaf .. root (root from the bundle) */
  readonly chain: readonly X509Certificate[];
  /** earliest notAfter along the verified chain */
  readonly notAfter: Date;
  /** SHA-256 of the leaf's DER SubjectPublicKeyInfo */
  readonly spkiSha256: Buffer;
  /**
   * Epoch ms up to which (inclusive) verifying the same chain against the same bundles gives
   * this same result at any time from `now` on: the path's earliest notAfter, or sooner, just
   * before a candidate certificate (a presented one or a bundle authority) becomes valid, since
   * the path search could then find another path. Lets callers reuse a verification.
   */
  readonly stableUntilMs: number;
}

export type SvidVerificationReason =
  | 'svid_chain_empty'
  | 'svid_no_uri_san'
  | 'svid_multiple_uri_san'
  | 'svid_invalid_spiffe_id'
  | 'svid_leaf_is_ca'
  | 'svid_leaf_key_usage'
  | 'svid_intermediate_not_ca'
  | 'svid_no_bundle'
  | 'svid_untrusted'
  | 'svid_expired'
  | 'svid_not_yet_valid'
  | 'svid_name_constraints'
  | 'svid_malformed';

export class SvidVerificationError extends SidecarError {
  declare readonly reason: SvidVerificationReason;
  constructor(reason: SvidVerificationReason, message: string, options?: { cause?: unknown }) {
    super(reason, message, options);
  }
}

/** Longest path tried: leaf + up to 7 intermediates/root. Bounds the search. */
export const MAX_CHAIN_DEPTH = 8;
/** Upper bounds per verification (defend against crafted bags of CAs). */
const MAX_SIGNATURE_CHECKS = 64;
const MAX_LINK_CHECKS = 512;

const WEAK_SIGNATURE_ALGORITHMS = new Set([
  '1.2.840.113549.1.1.4', // md5WithRSAEncryption
  '1.2.840.113549.1.1.5', // sha1WithRSAEncryption
  '1.2.840.10045.4.1', // ecdsa-with-SHA1
  '1.2.840.10040.4.3', // dsa-with-sha1
]);

function fail(reason: SvidVerificationReason, message: string, cause?: unknown): never {
  throw new SvidVerificationError(reason, message, cause === undefined ? undefined : { cause });
}

function factsOf(cert: X509Certificate, what: string): CertificateFacts {
  try {
    return certificateFacts(cert);
  } catch (err) {
    return fail('svid_malformed', `${what}: ${(err as Error).message}`, err);
  }
}

function describe(cert: X509Certificate): string {
  return JSON.stringify(cert.subject.replace(/\n/g, ', '));
}

function checkTime(cert: X509Certificate, facts: CertificateFacts, what: string, nowMs: number): void {
  if (nowMs < facts.notBeforeMs) {
    fail('svid_not_yet_valid', `${what} ${describe(cert)} is not valid before ${new Date(facts.notBeforeMs).toISOString()}`);
  }
  if (nowMs > facts.notAfterMs) {
    fail('svid_expired', `${what} ${describe(cert)} expired at ${new Date(facts.notAfterMs).toISOString()}`);
  }
}

/** Leaf's SPIFFE ID from its single URI SAN. */
function leafId(facts: CertificateFacts): SpiffeId {
  if (facts.uriSans.length === 0) fail('svid_no_uri_san', 'leaf certificate contains no URI SAN');
  if (facts.uriSans.length > 1) fail('svid_multiple_uri_san', `leaf certificate contains more than one URI SAN (${facts.uriSans.length})`);
  try {
    return parseSpiffeId(facts.uriSans[0]!);
  } catch (err) {
    if (err instanceof SpiffeIdError) fail('svid_invalid_spiffe_id', `leaf URI SAN is not a valid SPIFFE ID: ${err.message}`, err);
    throw err;
  }
}

// "issuer signed child" is a pure function of the two DER encodings: remember positive
// results (bounded) so the intermediate -> root check is not redone every handshake.
const verifiedLinks = new Set<string>();
const VERIFIED_LINKS_MAX = 1024;

interface SearchState {
  /** The leaf's SPIFFE ID: name constraints along the path are checked against its host. */
  readonly leafId: SpiffeId;
  signatureChecks: number;
  linkChecks: number;
  /** The first problem met on an otherwise-linked path (reported when no path is fully valid). */
  firstPathError: SvidVerificationError | undefined;
}

function signedBy(child: X509Certificate, issuer: X509Certificate, state: SearchState): boolean {
  if (++state.linkChecks > MAX_LINK_CHECKS) fail('svid_untrusted', `gave up after ${MAX_LINK_CHECKS} issuer checks`);
  if (!child.checkIssued(issuer)) return false; // names, AKI/SKI, issuer KU
  const key = `${child.fingerprint256}|${issuer.fingerprint256}`;
  if (verifiedLinks.has(key)) return true;
  if (++state.signatureChecks > MAX_SIGNATURE_CHECKS) {
    fail('svid_untrusted', `gave up after ${MAX_SIGNATURE_CHECKS} signature checks`);
  }
  let ok: boolean;
  try {
    ok = child.verify(issuer.publicKey);
  } catch {
    ok = false;
  }
  if (ok) {
    if (verifiedLinks.size >= VERIFIED_LINKS_MAX) verifiedLinks.delete(verifiedLinks.values().next().value!);
    verifiedLinks.add(key);
  }
  return ok;
}

/**
 * Constraints on `issuer` as the next certificate of `path`: time, pathLen, critical
 * extensions, URI name constraints on the leaf, weak signature of the certificate it signed.
 * Returns the error instead of throwing so the search can try another path.
 */
function issuerProblem(
  path: readonly X509Certificate[],
  issuer: X509Certificate,
  isRoot: boolean,
  nowMs: number,
  leafSpiffeId: SpiffeId,
): SvidVerificationError | undefined {
  try {
    const child = path[path.length - 1]!;
    if (WEAK_SIGNATURE_ALGORITHMS.has(factsOf(child, 'certificate').signatureAlgorithm)) {
      fail('svid_untrusted', `certificate ${describe(child)} uses a weak (MD5/SHA-1) signature`);
    }
    const facts = factsOf(issuer, isRoot ? 'bundle authority' : 'intermediate certificate');
    checkTime(issuer, facts, isRoot ? 'bundle authority' : 'intermediate certificate', nowMs);
    // Intermediates below this issuer = path length - 1 (the leaf does not count).
    if (facts.pathLength !== undefined && path.length - 1 > facts.pathLength) {
      fail('svid_untrusted', `path length constraint of ${describe(issuer)} (${facts.pathLength}) exceeded`);
    }
    if (!isRoot && facts.unhandledCriticalExtensions.length > 0) {
      fail('svid_untrusted', `intermediate ${describe(issuer)} has unhandled critical extension(s) ${facts.unhandledCriticalDescriptions.join(', ')}`);
    }
    if (facts.uriNameConstraints) {
      const violation = uriNameConstraintViolation(leafSpiffeId.trustDomain.name, facts.uriNameConstraints);
      if (violation) fail('svid_name_constraints', `${leafSpiffeId} is outside the name constraints of ${describe(issuer)}: ${violation}`);
    }
    return undefined;
  } catch (err) {
    if (err instanceof SvidVerificationError) return err;
    throw err;
  }
}

/** Depth-first path search; roots are tried before further intermediates. */
function buildPath(
  path: X509Certificate[],
  intermediates: readonly X509Certificate[],
  roots: readonly X509Certificate[],
  nowMs: number,
  state: SearchState,
): X509Certificate[] | undefined {
  const current = path[path.length - 1]!;
  for (const root of roots) {
    if (!signedBy(current, root, state)) continue;
    const problem = issuerProblem(path, root, true, nowMs, state.leafId);
    if (!problem) return [...path, root];
    state.firstPathError ??= problem;
  }
  if (path.length >= MAX_CHAIN_DEPTH - 1) return undefined; // room for one more cert: a root
  for (const next of intermediates) {
    if (path.some((c) => c.fingerprint256 === next.fingerprint256)) continue; // no loops
    if (!signedBy(current, next, state)) continue;
    const problem = issuerProblem(path, next, false, nowMs, state.leafId);
    if (problem) {
      state.firstPathError ??= problem;
      continue;
    }
    const found = buildPath([...path, next], intermediates, roots, nowMs, state);
    if (found) return found;
  }
  return undefined;
}

/**
 * Verify a peer's X509-SVID chain (leaf first, then intermediates in any order) against the
 * bundle of the leaf's own trust domain, at time `now`. Throws SvidVerificationError.
 */
export function verifyX509Svid(certs: readonly X509Certificate[], bundles: X509BundleSource, now: Date): VerifiedX509Svid {
  if (!certs || certs.length === 0) fail('svid_chain_empty', 'empty certificate chain');
  if (!bundles) fail('svid_no_bundle', 'no bundle source');
  const nowMs = now.getTime();
  if (Number.isNaN(nowMs)) fail('svid_malformed', 'verification time is not a valid date');

  const leaf = certs[0]!;
  const leafFacts = factsOf(leaf, 'leaf certificate');
  const id = leafId(leafFacts);
  if (leafFacts.isCa) fail('svid_leaf_is_ca', `leaf certificate ${id} has the CA flag set`);
  if (hasKeyUsage(leafFacts, KeyUsageBit.keyCertSign)) fail('svid_leaf_key_usage', `leaf certificate ${id} has keyCertSign key usage`);
  if (hasKeyUsage(leafFacts, KeyUsageBit.cRLSign)) fail('svid_leaf_key_usage', `leaf certificate ${id} has cRLSign key usage`);
  if (leafFacts.unhandledCriticalExtensions.length > 0) {
    fail('svid_malformed', `leaf certificate ${id} has unhandled critical extension(s) ${leafFacts.unhandledCriticalDescriptions.join(', ')}`);
  }

  const intermediates = certs.slice(1);
  intermediates.forEach((cert, i) => {
    const facts = factsOf(cert, `intermediate certificate ${i + 1}`);
    if (!facts.isCa) fail('svid_intermediate_not_ca', `intermediate certificate ${i + 1} ${describe(cert)} is not a CA`);
    if (!hasKeyUsage(facts, KeyUsageBit.keyCertSign)) {
      fail('svid_intermediate_not_ca', `intermediate certificate ${i + 1} ${describe(cert)} lacks keyCertSign key usage`);
    }
  });

  const bundle = bundles.getX509Bundle(id.trustDomain);
  if (!bundle) fail('svid_no_bundle', `no X.509 bundle for trust domain "${id.trustDomain.name}"`);
  // A bundle source must answer for the domain asked; refuse anything else outright.
  if (!bundle.trustDomain.equals(id.trustDomain)) {
    fail('svid_no_bundle', `bundle source returned trust domain "${bundle.trustDomain.name}" for "${id.trustDomain.name}"`);
  }

  checkTime(leaf, leafFacts, 'leaf certificate', nowMs);

  const state: SearchState = { leafId: id, signatureChecks: 0, linkChecks: 0, firstPathError: undefined };
  const chain = buildPath([leaf], intermediates, bundle.authorities, nowMs, state);
  if (!chain) {
    if (state.firstPathError) throw state.firstPathError;
    fail('svid_untrusted', `leaf certificate ${id} does not chain to the X.509 bundle of trust domain "${id.trustDomain.name}"`);
  }

  let notAfterMs = Infinity;
  for (const c of chain) notAfterMs = Math.min(notAfterMs, certificateFacts(c).notAfterMs);
  // Every candidate that failed failed for good until one of them becomes valid; the path
  // found stays valid until its earliest notAfter.
  let stableUntilMs = notAfterMs;
  for (const c of [...intermediates, ...bundle.authorities]) {
    let notBeforeMs: number;
    try {
      notBeforeMs = certificateFacts(c).notBeforeMs;
    } catch {
      continue; // a malformed candidate never becomes part of a path
    }
    if (notBeforeMs > nowMs) stableUntilMs = Math.min(stableUntilMs, notBeforeMs - 1);
  }
  return Object.freeze({
    id,
    chain: Object.freeze(chain),
    notAfter: new Date(notAfterMs),
    spkiSha256: Buffer.from(leafFacts.spkiSha256),
    stableUntilMs,
  });
}
