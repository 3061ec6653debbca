/**
 * The attestation key (AK) of a quote: turning its given form (KeyObject, TPMT_PUBLIC,
 * PEM SPKI or certificate) into a public key, and deciding whether it is trusted: pinned by
 * TPM Name (`akTrust.names`), vouched for by another root of trust (`akTrust.keys`, bare keys
 * only) or certified by a configured CA (`akTrust.caCerts`).
 *
 * A TPMT_PUBLIC is only as trustworthy as what authenticates it: its attributes (restricted),
 * nameAlg and scheme are plain bytes beside the key, so a key pin does not cover them. A
 * non-restricted key that signs a forged TPMS_ATTEST would pass once its public area claims
 * "restricted". The Name (nameAlg || H_nameAlg(TPMT_PUBLIC)) covers every byte.
 */
import { createHash, createPublicKey, KeyObject, X509Certificate } from 'node:crypto';
import { certificateFacts, hasKeyUsage, KeyUsageBit, parseCertificatesPem } from '../../spiffe/x509.js';
import { AttestationError } from '../types.js';
import { isRestrictedSigningKey, parseTpmtPublic, type TpmPublic } from './public.js';

export interface AkTrust {
  /** trusted AK TPM Names (nameAlg u16 || H_nameAlg(TPMT_PUBLIC)): authenticate the whole public area */
  names?: Uint8Array[];
  /**
   * AK public keys vouched for by another root of trust (the Azure HCL report). Matched only
   * against an AK given as a bare key: never against a TPMT_PUBLIC, whose attributes they do
   * not authenticate.
   */
  keys?: KeyObject[];
  /** X.509 PEMs: an AK certificate must chain to one of these */
  caCerts?: string[];
}

export interface ResolvedAk {
  readonly key: KeyObject;
  /** set when the AK came as a TPMT_PUBLIC: gives the Name and the key's fixed scheme */
  readonly tpmPublic?: TpmPublic;
  /** set when the AK came as a certificate */
  readonly cert?: X509Certificate;
  readonly spkiDer: Buffer;
}

const hexOf = (b: Uint8Array) => Buffer.from(b).toString('hex');

function spkiOf(key: KeyObject): Buffer {
  return key.export({ type: 'spki', format: 'der' });
}

export function spkiSha256(key: KeyObject): string {
  return createHash('sha256').update(spkiOf(key)).digest('hex');
}

/** Every certificate of a PEM text (at least one), parsed strictly: no trailing bytes, well-formed extensions and times. */
function parseCerts(pem: string, what: string): X509Certificate[] {
  let certs: X509Certificate[];
  try {
    certs = parseCertificatesPem(pem);
  } catch (err) {
    throw new AttestationError('evidence_malformed', `${what}: not an X.509 certificate: ${(err as Error).message}`, { cause: err });
  }
  if (certs.length === 0) throw new AttestationError('evidence_malformed', `${what}: no PEM certificate`);
  return certs;
}

export function resolveAk(ak: KeyObject | Uint8Array | string): ResolvedAk {
  if (ak instanceof KeyObject) {
    if (ak.type !== 'public') throw new AttestationError('evidence_malformed', 'AK: expected a public key');
    return { key: ak, spkiDer: spkiOf(ak) };
  }
  if (ak instanceof Uint8Array) {
    const tpmPublic = parseTpmtPublic(ak);
    // A non-restricted key can sign any bytes, including a forged TPMS_ATTEST.
    if (!isRestrictedSigningKey(tpmPublic.objectAttributes)) {
      throw new AttestationError(
        'chain_invalid',
        `AK is not a restricted signing key (objectAttributes 0x${tpmPublic.objectAttributes.toString(16)})`,
      );
    }
    return { key: tpmPublic.key, tpmPublic, spkiDer: spkiOf(tpmPublic.key) };
  }
  if (typeof ak === 'string' && ak.includes('-----BEGIN CERTIFICATE-----')) {
    const certs = parseCerts(ak, 'AK certificate');
    if (certs.length !== 1) throw new AttestationError('evidence_malformed', `AK certificate: ${certs.length} certificates where one was expected`);
    const cert = certs[0]!;
    return { key: cert.publicKey, cert, spkiDer: spkiOf(cert.publicKey) };
  }
  if (typeof ak === 'string') {
    try {
      const key = createPublicKey({ key: ak, format: 'pem' });
      return { key, spkiDer: spkiOf(key) };
    } catch (err) {
      throw new AttestationError('evidence_malformed', 'AK: not a PEM public key or certificate', { cause: err });
    }
  }
  throw new AttestationError('evidence_malformed', 'AK: unsupported form');
}

/** A certificate with a keyUsage extension certifies a signing key only when digitalSignature is set. */
function signingAllowed(cert: X509Certificate): boolean {
  const facts = certificateFacts(cert);
  return facts.keyUsage === undefined || hasKeyUsage(facts, KeyUsageBit.digitalSignature);
}

function checkValidity(cert: X509Certificate, now: Date, what: string): void {
  const { notBeforeMs, notAfterMs } = certificateFacts(cert); // parsed (and cached) by parseCert
  if (!(now.getTime() >= notBeforeMs && now.getTime() <= notAfterMs)) {
    throw new AttestationError('collateral_expired', `${what} ${cert.subject} is not valid at ${now.toISOString()}`);
  }
}

/**
 * Builds leaf -> intermediates -> one of `anchors`, checking each signature (node:crypto),
 * each validity period at `now`, and that every issuer is a CA.
 */
function verifyChain(leaf: X509Certificate, intermediates: X509Certificate[], anchors: X509Certificate[], now: Date): void {
  checkValidity(leaf, now, 'AK certificate');
  let current = leaf;
  const pool = [...intermediates];
  for (let depth = 0; depth < 8; depth++) {
    const anchor = anchors.find((a) => current.checkIssued(a) && current.verify(a.publicKey));
    if (anchor) {
      checkValidity(anchor, now, 'AK CA certificate');
      return;
    }
    const idx = pool.findIndex((c) => c.ca && current.checkIssued(c) && current.verify(c.publicKey));
    if (idx < 0) break;
    const next = pool.splice(idx, 1)[0]!;
    checkValidity(next, now, 'AK intermediate certificate');
    current = next;
  }
  throw new AttestationError('chain_invalid', `AK certificate ${leaf.subject} does not chain to a configured AK CA`);
}

/** Throws chain_invalid / collateral_missing unless the AK is trusted. */
export function checkAkTrust(ak: ResolvedAk, trust: AkTrust, certChain: string[] | undefined, now: Date): void {
  const names = trust.names ?? [];
  const keys = trust.keys ?? [];
  if (ak.tpmPublic) {
    const name = Buffer.from(ak.tpmPublic.name);
    if (names.some((n) => name.equals(n))) return;
  } else if (keys.some((k) => k.type === 'public' && spkiOf(k).equals(ak.spkiDer))) {
    return;
  }
  const cas = trust.caCerts ?? [];
  if (cas.length === 0) {
    if (names.length === 0 && keys.length === 0) throw new AttestationError('collateral_missing', 'no trusted AK names, AK keys or AK CA configured');
    if (ak.tpmPublic) {
      const keyPinned = keys.some((k) => k.type === 'public' && spkiOf(k).equals(ak.spkiDer));
      throw new AttestationError(
        'chain_invalid',
        keyPinned
          ? `AK ${hexOf(ak.tpmPublic.name)} is pinned by key only, which does not authenticate its TPMT_PUBLIC: pin its TPM Name`
          : `AK ${hexOf(ak.tpmPublic.name)} is not one of the trusted AK names`,
      );
    }
    throw new AttestationError(
      'chain_invalid',
      names.length > 0 && keys.length === 0 ? 'AK pinned by TPM Name must come as its TPMT_PUBLIC' : 'AK is not one of the trusted AK keys',
    );
  }
  const chain = (certChain ?? []).flatMap((pem, i) => parseCerts(pem, `AK certificate chain [${i}]`));
  let leaf = ak.cert;
  if (!leaf) {
    leaf = chain.shift();
    if (!leaf) throw new AttestationError('collateral_missing', 'AK CA configured but no AK certificate was given');
  } else if (chain[0]?.raw.equals(leaf.raw)) {
    chain.shift();
  }
  // The certificate must certify the very key of the public area the quote is checked with.
  if (!spkiOf(leaf.publicKey).equals(ak.spkiDer)) {
    throw new AttestationError('chain_invalid', 'AK certificate does not certify the quoting AK');
  }
  if (leaf.ca) throw new AttestationError('chain_invalid', 'AK certificate is a CA certificate, not an AK certificate');
  if (!signingAllowed(leaf)) throw new AttestationError('chain_invalid', 'AK certificate key usage does not include digitalSignature');
  const anchors = cas.flatMap((pem, i) => parseCerts(pem, `AK CA [${i}]`));
  verifyChain(leaf, chain, anchors, now);
}
