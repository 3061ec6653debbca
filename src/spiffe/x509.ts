/**
 * X.509 helpers over bytes: PEM blocks, concatenated DER, strict certificate / key parsing,
 * and the few extension facts SPIFFE needs (basic key usage, basicConstraints, URI SANs,
 * URI name constraints).
 *
 * Extensions are read with @peculiar/asn1-x509 (pure ASN.1, no WebCrypto); node:crypto
 * does all the cryptography. Node's `X509Certificate.keyUsage` is the EXTENDED key usage,
 * so it is not used here.
 */
import { createHash, createPrivateKey, KeyObject, X509Certificate } from 'node:crypto';
import { AsnConvert } from '@peculiar/asn1-schema';
import {
  BasicConstraints,
  Certificate,
  SubjectAlternativeName,
  id_ce_authorityKeyIdentifier,
  id_ce_basicConstraints,
  id_ce_extKeyUsage,
  id_ce_keyUsage,
  id_ce_nameConstraints,
  id_ce_subjectAltName,
  id_ce_subjectKeyIdentifier,
} from '@peculiar/asn1-x509';
import { SidecarError } from '../errors.js';
import { parseUriNameConstraints, UriNameConstraints } from './name-constraints.js';
import { checkAuthorityKeyIdentifier, checkSubjectAltName, checkSubjectKeyIdentifier, keyUsageBits, readTlv, validityMs } from './x509-strict.js';

import { decodePemBlocks, toPem } from './pem.js';

export type X509ParseErrorKind =
  | 'NO_PEM_BLOCKS'
  | 'MALFORMED_PEM'
  | 'MALFORMED_DER'
  | 'MALFORMED_CERTIFICATE'
  | 'MALFORMED_KEY';

/** Bytes that are not the PEM / DER / certificate / key they claim to be. */
export class X509ParseError extends SidecarError {
  readonly kind: X509ParseErrorKind;
  constructor(kind: X509ParseErrorKind, message: string, options?: { cause?: unknown }) {
    super('x509_malformed', message, options);
    this.kind = kind;
  }
}

// ---------------------------------------------------------------------------------------
// DER

/** Size of the DER TLV starting at `offset`: header + content. Throws MALFORMED_DER. */
function derElementLength(der: Uint8Array, offset: number): number {
  if (offset + 2 > der.length) throw new X509ParseError('MALFORMED_DER', 'truncated DER element');
  if (der[offset] !== 0x30) throw new X509ParseError('MALFORMED_DER', `expected a DER SEQUENCE at byte ${offset}`);
  const first = der[offset + 1]!;
  let header = 2;
  let length: number;
  if (first < 0x80) {
    length = first;
  } else {
    const n = first & 0x7f;
    // 0x80 = indefinite length (BER, not DER); more than 4 length bytes cannot be a certificate.
    if (n === 0 || n > 4) throw new X509ParseError('MALFORMED_DER', 'unsupported DER length encoding');
    if (offset + 2 + n > der.length) throw new X509ParseError('MALFORMED_DER', 'truncated DER length');
    length = 0;
    for (let i = 0; i < n; i++) length = length * 256 + der[offset + 2 + i]!;
    if (length < 0x80 || der[offset + 2] === 0) throw new X509ParseError('MALFORMED_DER', 'non-minimal DER length');
    header += n;
  }
  if (offset + header + length > der.length) throw new X509ParseError('MALFORMED_DER', 'truncated DER element');
  return header + length;
}

/** Split concatenated DER SEQUENCEs (e.g. an SVID chain) by walking their lengths. */
export function splitDerSequences(der: Uint8Array): Buffer[] {
  const out: Buffer[] = [];
  const buf = Buffer.from(der.buffer, der.byteOffset, der.byteLength);
  for (let offset = 0; offset < buf.length; ) {
    const len = derElementLength(buf, offset);
    out.push(buf.subarray(offset, offset + len));
    offset += len;
  }
  return out;
}

/** Exactly one DER SEQUENCE, no trailing bytes (Go's x509 rejects trailing data too). */
function assertSingleDerSequence(der: Uint8Array, what: string): void {
  let len: number;
  try {
    len = derElementLength(der, 0);
  } catch (err) {
    throw new X509ParseError('MALFORMED_DER', `${what}: ${(err as Error).message}`);
  }
  if (len !== der.length) throw new X509ParseError('MALFORMED_DER', `${what}: trailing data after DER element`);
}

// ---------------------------------------------------------------------------------------
// Certificates and keys

/** One DER certificate -> node:crypto X509Certificate (strict: no trailing data, extensions parse). */
export function parseCertificateDer(der: Uint8Array): X509Certificate {
  assertSingleDerSequence(der, 'malformed certificate');
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(Buffer.from(der.buffer, der.byteOffset, der.byteLength));
  } catch (err) {
    throw new X509ParseError('MALFORMED_CERTIFICATE', `malformed certificate: ${(err as Error).message}`, { cause: err });
  }
  certificateFacts(cert); // extensions must parse too; this also warms the cache
  return cert;
}

/** Concatenated DER certificates -> X509Certificate[] (leaf first, as given). */
export function parseCertificatesDer(der: Uint8Array): X509Certificate[] {
  let parts: Buffer[];
  try {
    parts = splitDerSequences(der);
  } catch (err) {
    throw new X509ParseError('MALFORMED_DER', `malformed certificate: ${(err as Error).message}`);
  }
  return parts.map(parseCertificateDer);
}

/**
 * Every CERTIFICATE block of a PEM input. No PEM blocks at all -> NO_PEM_BLOCKS; blocks
 * of other types only -> [] (go-spiffe pemutil semantics).
 */
export function parseCertificatesPem(input: string | Uint8Array): X509Certificate[] {
  const blocks = decodePemBlocks(input);
  if (blocks.length === 0) throw new X509ParseError('NO_PEM_BLOCKS', 'no PEM blocks found');
  return blocks.filter((b) => b.type === 'CERTIFICATE').map((b) => parseCertificateDer(b.bytes));
}

export type PrivateKeyDerFormat = 'pkcs8' | 'sec1' | 'pkcs1';

export function parsePrivateKeyDer(der: Uint8Array, format: PrivateKeyDerFormat = 'pkcs8'): KeyObject {
  assertSingleDerSequence(der, 'malformed private key');
  try {
    return createPrivateKey({ key: Buffer.from(der.buffer, der.byteOffset, der.byteLength), format: 'der', type: format });
  } catch (err) {
    throw new X509ParseError('MALFORMED_KEY', `malformed private key: ${(err as Error).message}`, { cause: err });
  }
}

const KEY_BLOCK_FORMAT = new Map<string, PrivateKeyDerFormat>([
  ['PRIVATE KEY', 'pkcs8'],
  ['EC PRIVATE KEY', 'sec1'],
  ['RSA PRIVATE KEY', 'pkcs1'],
]);

/**
 * The first private-key block (PRIVATE KEY / EC PRIVATE KEY / RSA PRIVATE KEY) of a PEM
 * input; undefined when there are PEM blocks but none is a key. Encrypted keys are refused.
 */
export function parsePrivateKeyPem(input: string | Uint8Array): KeyObject | undefined {
  const blocks = decodePemBlocks(input);
  if (blocks.length === 0) throw new X509ParseError('NO_PEM_BLOCKS', 'no PEM blocks found');
  const block = blocks.find((b) => KEY_BLOCK_FORMAT.has(b.type));
  if (!block) {
    if (blocks.some((b) => b.type === 'ENCRYPTED PRIVATE KEY')) {
      throw new X509ParseError('MALFORMED_KEY', 'encrypted PEM private keys are not supported');
    }
    return undefined;
  }
  if (block.headers.size > 0) throw new X509ParseError('MALFORMED_KEY', 'encrypted PEM private keys are not supported');
  return parsePrivateKeyDer(block.bytes, KEY_BLOCK_FORMAT.get(block.type)!);
}

export function certsToPem(certs: Iterable<X509Certificate>): string {
  let out = '';
  for (const c of certs) out += toPem('CERTIFICATE', c.raw);
  return out;
}

export function privateKeyToPkcs8Pem(key: KeyObject): string {
  return key.export({ type: 'pkcs8', format: 'pem' }) as string;
}

/** DER SubjectPublicKeyInfo of a public (or private: its public half) key. */
export function publicKeySpkiDer(key: KeyObject): Buffer {
  return key.export({ type: 'spki', format: 'der' });
}

/** SHA-256 of the certificate's DER SubjectPublicKeyInfo (for pinning / audit). */
export function spkiSha256(cert: X509Certificate): Buffer {
  return Buffer.from(certificateFacts(cert).spkiSha256);
}

// ---------------------------------------------------------------------------------------
// Extension facts

/** Basic key usage bits (same values as @peculiar/x509 KeyUsageFlags). */
export const KeyUsageBit = {
  digitalSignature: 1,
  nonRepudiation: 2,
  keyEncipherment: 4,
  dataEncipherment: 8,
  keyAgreement: 16,
  keyCertSign: 32,
  cRLSign: 64,
  encipherOnly: 128,
  decipherOnly: 256,
} as const;

export interface CertificateFacts {
  /** basicConstraints present with cA TRUE. */
  readonly isCa: boolean;
  /** basicConstraints pathLenConstraint, when set. */
  readonly pathLength: number | undefined;
  /** Basic key usage bitmask (KeyUsageBit); undefined when the extension is absent. */
  readonly keyUsage: number | undefined;
  /** URI SubjectAltNames, as written. */
  readonly uriSans: readonly string[];
  /** URI-typed nameConstraints subtrees; undefined when the certificate has none. */
  readonly uriNameConstraints: UriNameConstraints | undefined;
  /** OIDs of critical extensions this module does not interpret (a verifier must refuse them). */
  readonly unhandledCriticalExtensions: readonly string[];
  /** The same, one entry per OID, with why it is unhandled when there is more to say (for messages). */
  readonly unhandledCriticalDescriptions: readonly string[];
  /** Outer signatureAlgorithm OID. */
  readonly signatureAlgorithm: string;
  /** Validity bounds in epoch milliseconds (numbers: the cached facts stay immutable). */
  readonly notBeforeMs: number;
  readonly notAfterMs: number;
  /** SHA-256 of the DER SubjectPublicKeyInfo. Shared: do not mutate (spkiSha256() copies). */
  readonly spkiSha256: Buffer;
}

/** Extensions whose meaning the SVID rules cover (or which carry no constraint). */
const HANDLED_EXTENSIONS = new Set<string>([
  id_ce_basicConstraints,
  id_ce_keyUsage,
  id_ce_subjectAltName,
  id_ce_extKeyUsage, // SPIFFE verification does not restrict EKU (like go-spiffe's ExtKeyUsageAny)
  id_ce_subjectKeyIdentifier,
  id_ce_authorityKeyIdentifier,
]);

/**
 * Memoises a pure function of a certificate's DER, per object and per fingerprint: TLS hands
 * out a fresh X509Certificate per handshake for the same peer certificate. Bounded.
 */
export function perCertificate<T>(compute: (cert: X509Certificate) => T, maxEntries = 1024): (cert: X509Certificate) => T {
  const byObject = new WeakMap<X509Certificate, T>();
  const byFingerprint = new Map<string, T>();
  return (cert) => {
    const cached = byObject.get(cert);
    if (cached !== undefined) return cached;
    const fingerprint = cert.fingerprint256;
    let value = byFingerprint.get(fingerprint);
    if (value === undefined) {
      value = compute(cert);
      if (byFingerprint.size >= maxEntries) byFingerprint.delete(byFingerprint.keys().next().value!);
      byFingerprint.set(fingerprint, value);
    }
    byObject.set(cert, value);
    return value;
  };
}

/** Parsed extension facts of a certificate; throws MALFORMED_CERTIFICATE. Cached. */
export const certificateFacts: (cert: X509Certificate) => CertificateFacts = perCertificate((cert) => computeFacts(cert));

function computeFacts(cert: X509Certificate): CertificateFacts {
  let asn: Certificate;
  try {
    asn = AsnConvert.parse(cert.raw, Certificate);
  } catch (err) {
    throw new X509ParseError('MALFORMED_CERTIFICATE', `malformed certificate: ${(err as Error).message}`, { cause: err });
  }
  let isCa = false;
  let pathLength: number | undefined;
  let keyUsage: number | undefined;
  const uriSans: string[] = [];
  let uriNameConstraints: UriNameConstraints | undefined;
  const unhandled: string[] = [];
  const unhandledDescriptions: string[] = [];
  const seen = new Set<string>();
  for (const ext of asn.tbsCertificate.extensions ?? []) {
    if (seen.has(ext.extnID)) {
      throw new X509ParseError('MALFORMED_CERTIFICATE', `malformed certificate: duplicate extension ${ext.extnID}`);
    }
    seen.add(ext.extnID);
    const value = new Uint8Array(ext.extnValue.buffer);
    try {
      switch (ext.extnID) {
        case id_ce_basicConstraints: {
          wholeTlv(value);
          const bc = AsnConvert.parse(ext.extnValue.buffer, BasicConstraints);
          isCa = bc.cA === true;
          pathLength = bc.pathLenConstraint;
          break;
        }
        case id_ce_keyUsage:
          keyUsage = keyUsageBits(value);
          break;
        case id_ce_subjectKeyIdentifier:
          checkSubjectKeyIdentifier(value);
          break;
        case id_ce_authorityKeyIdentifier:
          checkAuthorityKeyIdentifier(value);
          break;
        case id_ce_subjectAltName:
          checkSubjectAltName(value);
          for (const gn of AsnConvert.parse(ext.extnValue.buffer, SubjectAlternativeName)) {
            if (gn.uniformResourceIdentifier !== undefined) uriSans.push(gn.uniformResourceIdentifier);
          }
          break;
        case id_ce_nameConstraints: {
          wholeTlv(value);
          const nc = parseUriNameConstraints(ext.extnValue.buffer);
          uriNameConstraints = nc.constraints;
          // Critical + something we cannot enforce: fail closed. Non-critical: enforce the URI part only.
          if (ext.critical && nc.unsupported) {
            unhandled.push(ext.extnID);
            unhandledDescriptions.push(`${ext.extnID} (nameConstraints: ${nc.unsupported})`);
          }
          break;
        }
        default:
          if (HANDLED_EXTENSIONS.has(ext.extnID)) wholeTlv(value);
          if (ext.critical && !HANDLED_EXTENSIONS.has(ext.extnID)) {
            unhandled.push(ext.extnID);
            unhandledDescriptions.push(ext.extnID);
          }
      }
    } catch (err) {
      throw new X509ParseError('MALFORMED_CERTIFICATE', `malformed certificate: cannot parse extension ${ext.extnID}: ${(err as Error).message}`, {
        cause: err,
      });
    }
  }
  let validity: { notBeforeMs: number; notAfterMs: number };
  try {
    validity = validityMs(cert.raw);
  } catch (err) {
    throw new X509ParseError('MALFORMED_CERTIFICATE', `malformed certificate: ${(err as Error).message}`, { cause: err });
  }
  let spki: Buffer;
  try {
    spki = publicKeySpkiDer(cert.publicKey);
  } catch (err) {
    throw new X509ParseError('MALFORMED_CERTIFICATE', `malformed certificate: unsupported public key: ${(err as Error).message}`, { cause: err });
  }
  return Object.freeze({
    isCa,
    pathLength,
    keyUsage,
    uriSans: Object.freeze(uriSans),
    uriNameConstraints,
    unhandledCriticalExtensions: Object.freeze(unhandled),
    unhandledCriticalDescriptions: Object.freeze(unhandledDescriptions),
    signatureAlgorithm: asn.signatureAlgorithm.algorithm,
    notBeforeMs: validity.notBeforeMs,
    notAfterMs: validity.notAfterMs,
    spkiSha256: createHash('sha256').update(spki).digest(),
  });
}

/** An extension value must be exactly one DER element: the ASN.1 decoder ignores trailing bytes. */
function wholeTlv(value: Uint8Array): void {
  if (readTlv(value, 0, value.length, 'extension value').end !== value.length) throw new Error('trailing data after the extension value');
}

export function hasKeyUsage(facts: CertificateFacts, bit: number): boolean {
  return facts.keyUsage !== undefined && (facts.keyUsage & bit) !== 0;
}
