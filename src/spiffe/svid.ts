/**
 * Our own X509-SVIDs (as received from the Workload API): parse + validate with go-spiffe's
 * x509svid.Parse / ParseRaw rules, in go-spiffe's order:
 *   1. leaf has exactly one URI SAN, a valid SPIFFE ID, with a non-root path
 *   2. leaf is not a CA
 *   3. leaf KU has digitalSignature, and neither keyCertSign nor cRLSign
 *   4. every further certificate is a CA with keyCertSign
 *   5. the private key matches the leaf's public key (SPKI DER compared)
 * Time validity is NOT checked here (go-spiffe doesn't either); callers look at notAfter.
 */
import { createPublicKey, KeyObject, X509Certificate } from 'node:crypto';
import { SidecarError } from '../errors.js';
import { parseSpiffeId, SpiffeId, SpiffeIdError } from './id.js';
import {
  certificateFacts,
  certsToPem,
  hasKeyUsage,
  KeyUsageBit,
  parseCertificatesDer,
  parseCertificatesPem,
  parsePrivateKeyDer,
  parsePrivateKeyPem,
  privateKeyToPkcs8Pem,
  publicKeySpkiDer,
} from './x509.js';

export interface X509Svid {
  readonly id: SpiffeId;
  /** leaf first, then intermediates */
  readonly certificates: readonly X509Certificate[];
  readonly privateKey: KeyObject;
  /** '' when none */
  readonly hint: string;
  /** of the leaf */
  readonly notBefore: Date;
  readonly notAfter: Date;
}

export type X509SvidErrorReason =
  | 'svid_cert_parse_failed'
  | 'svid_key_parse_failed'
  | 'svid_no_certificates'
  | 'svid_no_private_key'
  | 'svid_no_uri_san'
  | 'svid_multiple_uri_san'
  | 'svid_invalid_spiffe_id'
  | 'svid_root_path_id'
  | 'svid_leaf_is_ca'
  | 'svid_leaf_key_usage'
  | 'svid_intermediate_not_ca'
  | 'svid_intermediate_key_usage'
  | 'svid_unsupported_key'
  | 'svid_key_mismatch';

export class X509SvidError extends SidecarError {
  declare readonly reason: X509SvidErrorReason;
  constructor(reason: X509SvidErrorReason, message: string, options?: { cause?: unknown }) {
    super(reason, `x509svid: ${message}`, options);
  }
}

/** go-spiffe x509svid.Parse: PEM certificates (leaf first) + PEM private key. */
export function parseX509Svid(certsPem: string | Uint8Array, keyPem: string | Uint8Array, hint = ''): X509Svid {
  let certs: X509Certificate[];
  try {
    certs = parseCertificatesPem(certsPem);
  } catch (err) {
    throw new X509SvidError('svid_cert_parse_failed', `cannot parse PEM encoded certificate: ${(err as Error).message}`, { cause: err });
  }
  let key: KeyObject | undefined;
  try {
    key = parsePrivateKeyPem(keyPem);
  } catch (err) {
    throw new X509SvidError('svid_key_parse_failed', `cannot parse PEM encoded private key: ${(err as Error).message}`, { cause: err });
  }
  return newSvid(certs, key, hint);
}

/** go-spiffe x509svid.ParseRaw: concatenated DER chain + PKCS#8 DER key (the Workload API form). */
export function parseX509SvidRaw(certsDer: Uint8Array, keyDer: Uint8Array, hint = ''): X509Svid {
  let certs: X509Certificate[];
  try {
    certs = parseCertificatesDer(certsDer);
  } catch (err) {
    throw new X509SvidError('svid_cert_parse_failed', `cannot parse DER encoded certificate: ${(err as Error).message}`, { cause: err });
  }
  let key: KeyObject;
  try {
    key = parsePrivateKeyDer(keyDer, 'pkcs8');
  } catch (err) {
    throw new X509SvidError('svid_key_parse_failed', `cannot parse DER encoded private key: ${(err as Error).message}`, { cause: err });
  }
  return newSvid(certs, key, hint);
}

/** Leaf-first PEM chain, for tls.createSecureContext({ cert }). */
export function svidChainPem(svid: X509Svid): string {
  return certsToPem(svid.certificates);
}

/** PKCS#8 PEM of the SVID key, for tls.createSecureContext({ key }). Keep it in memory only. */
export function svidKeyPem(svid: X509Svid): string {
  return privateKeyToPkcs8Pem(svid.privateKey);
}

function newSvid(certs: X509Certificate[], key: KeyObject | undefined, hint: string): X509Svid {
  const id = validateCertificates(certs);
  const leaf = certs[0]!;
  validatePrivateKey(key, leaf);
  return Object.freeze({
    id,
    certificates: Object.freeze([...certs]),
    privateKey: key,
    hint,
    notBefore: new Date(certificateFacts(leaf).notBeforeMs),
    notAfter: new Date(certificateFacts(leaf).notAfterMs),
  });
}

function certFail(reason: X509SvidErrorReason, message: string, cause?: unknown): never {
  throw new X509SvidError(reason, `certificate validation failed: ${message}`, cause === undefined ? undefined : { cause });
}

function validateCertificates(certs: X509Certificate[]): SpiffeId {
  if (certs.length === 0) certFail('svid_no_certificates', 'no certificates found');
  const leaf = certs[0]!;
  const id = leafSpiffeId(leaf);
  if (id.path === '') certFail('svid_root_path_id', `leaf certificate SPIFFE ID must have a non-root path (got "${id}")`);

  const facts = certificateFacts(leaf);
  if (facts.isCa) certFail('svid_leaf_is_ca', 'leaf certificate must not have CA flag set to true');
  if (!hasKeyUsage(facts, KeyUsageBit.digitalSignature)) {
    certFail('svid_leaf_key_usage', "leaf certificate must have 'digitalSignature' set as key usage");
  }
  if (hasKeyUsage(facts, KeyUsageBit.keyCertSign)) {
    certFail('svid_leaf_key_usage', "leaf certificate must not have 'keyCertSign' set as key usage");
  }
  if (hasKeyUsage(facts, KeyUsageBit.cRLSign)) {
    certFail('svid_leaf_key_usage', "leaf certificate must not have 'cRLSign' set as key usage");
  }

  for (let i = 1; i < certs.length; i++) {
    const facts = certificateFacts(certs[i]!);
    if (!facts.isCa) certFail('svid_intermediate_not_ca', `signing certificate must have CA flag set to true (certificate ${i})`);
    if (!hasKeyUsage(facts, KeyUsageBit.keyCertSign)) {
      certFail('svid_intermediate_key_usage', `signing certificate must have 'keyCertSign' set as key usage (certificate ${i})`);
    }
  }
  return id;
}

function leafSpiffeId(leaf: X509Certificate): SpiffeId {
  const uris = certificateFacts(leaf).uriSans;
  const prefix = 'cannot get leaf certificate SPIFFE ID: ';
  if (uris.length === 0) certFail('svid_no_uri_san', `${prefix}certificate contains no URI SAN`);
  if (uris.length > 1) certFail('svid_multiple_uri_san', `${prefix}certificate contains more than one URI SAN`);
  try {
    return parseSpiffeId(uris[0]!);
  } catch (err) {
    if (err instanceof SpiffeIdError) certFail('svid_invalid_spiffe_id', prefix + err.message, err);
    throw err;
  }
}

const SUPPORTED_EC_CURVES = new Set(['prime256v1', 'secp384r1']);

function validatePrivateKey(key: KeyObject | undefined, leaf: X509Certificate): asserts key is KeyObject {
  const prefix = 'private key validation failed: ';
  if (!key) throw new X509SvidError('svid_no_private_key', `${prefix}no private key found`);
  const type = key.asymmetricKeyType;
  const supported =
    type === 'rsa' ||
    type === 'ed25519' ||
    (type === 'ec' && SUPPORTED_EC_CURVES.has(key.asymmetricKeyDetails?.namedCurve ?? ''));
  if (!supported) {
    const detail = type === 'ec' ? `ec ${key.asymmetricKeyDetails?.namedCurve ?? '?'}` : String(type);
    throw new X509SvidError('svid_unsupported_key', `${prefix}unsupported private key type ${detail} (want RSA, EC P-256/P-384 or Ed25519)`);
  }
  let leafSpki: Buffer;
  try {
    leafSpki = publicKeySpkiDer(leaf.publicKey);
  } catch (err) {
    throw new X509SvidError('svid_cert_parse_failed', `${prefix}cannot read leaf public key: ${(err as Error).message}`, { cause: err });
  }
  if (!publicKeySpkiDer(createPublicKey(key)).equals(leafSpki)) {
    throw new X509SvidError('svid_key_mismatch', `${prefix}leaf certificate does not match private key`);
  }
}
