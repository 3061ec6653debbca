/**
 * Detached signatures of reference-value files (`<file>.sig`).
 *
 * The `.sig` file is base64 (whitespace and line breaks allowed, as `openssl base64` writes
 * it) of an ECDSA signature over the exact bytes of the file: DER (what `openssl dgst -sign`
 * produces) or raw r||s. The hash is fixed by the key's curve: SHA-256 for P-256, SHA-384 for
 * P-384, so a signature can never be checked with a weaker hash than its key was meant for.
 * node:crypto (OpenSSL) does the verification.
 */
import { createPublicKey, verify, type KeyObject } from 'node:crypto';
import { ConfigError, errorMessage } from '../errors.js';

/** Upper bound of a `.sig` file: a base64 P-384 DER signature is ~140 bytes. */
export const MAX_SIGNATURE_FILE_BYTES = 4096;

interface CurveParams {
  hash: 'sha256' | 'sha384';
  /** Bytes of one of r, s in the raw (IEEE P1363) encoding. */
  size: number;
}

const CURVES: Readonly<Record<string, CurveParams>> = {
  prime256v1: { hash: 'sha256', size: 32 },
  secp384r1: { hash: 'sha384', size: 48 },
};

/** The hash and size for a signing key, or undefined when the key is not an EC P-256/P-384 public key. */
function curveOf(key: KeyObject): CurveParams | undefined {
  if (key.type !== 'public' || key.asymmetricKeyType !== 'ec') return undefined;
  const curve = key.asymmetricKeyDetails?.namedCurve;
  return curve ? CURVES[curve] : undefined;
}

/** Throws ConfigError unless every key is an EC P-256 or P-384 public key. */
export function checkSigningKeys(keys: readonly KeyObject[]): void {
  keys.forEach((key, i) => {
    if (!curveOf(key)) {
      const what = key.type !== 'public' ? `a ${key.type} key` : `${key.asymmetricKeyType} ${key.asymmetricKeyDetails?.namedCurve ?? ''}`.trim();
      throw new ConfigError(`reference-value signing key [${i}] must be an EC P-256 or P-384 public key, got ${what}`, {
        key: 'reference_values.keys',
      });
    }
  });
}

/** Every `-----BEGIN PUBLIC KEY-----` block of a PEM text, as checked signing keys. */
export function parseSigningKeysPem(pem: string, source: string): KeyObject[] {
  const blocks = pem.match(/-----BEGIN PUBLIC KEY-----[\s\S]*?-----END PUBLIC KEY-----/g) ?? [];
  if (blocks.length === 0) throw new ConfigError('contains no PEM public key (-----BEGIN PUBLIC KEY-----)', { file: source });
  const keys = blocks.map((block, i) => {
    try {
      return createPublicKey({ key: block, format: 'pem' });
    } catch (err) {
      throw new ConfigError(`public key [${i}] cannot be read: ${errorMessage(err)}`, { file: source });
    }
  });
  checkSigningKeys(keys);
  return keys;
}

/** The signature bytes of a `.sig` file, or an error message. Strict base64: no other characters. */
export function decodeSignatureFile(sigFile: Uint8Array): { ok: true; signature: Buffer } | { ok: false; message: string } {
  if (sigFile.byteLength > MAX_SIGNATURE_FILE_BYTES) {
    return { ok: false, message: `is ${sigFile.byteLength} bytes, over ${MAX_SIGNATURE_FILE_BYTES}: not a signature` };
  }
  const text = Buffer.from(sigFile).toString('latin1').replace(/\s+/g, '');
  if (text.length === 0) return { ok: false, message: 'is empty' };
  if (text.length % 4 !== 0 || !/^[A-Za-z0-9+/]+={0,2}$/.test(text)) {
    return { ok: false, message: 'is not base64 (expected base64 of a DER or raw r||s ECDSA signature)' };
  }
  return { ok: true, signature: Buffer.from(text, 'base64') };
}

/**
 * Whether `signature` is a valid ECDSA signature over `data` by one of `keys`. Keys other than
 * EC P-256/P-384 never verify. The raw encoding is tried only when the length fits the curve.
 */
export function verifyEcdsaSignature(data: Uint8Array, signature: Uint8Array, keys: readonly KeyObject[]): boolean {
  for (const key of keys) {
    const curve = curveOf(key);
    if (!curve) continue;
    const encodings: ('der' | 'ieee-p1363')[] = signature.byteLength === 2 * curve.size ? ['ieee-p1363', 'der'] : ['der'];
    for (const dsaEncoding of encodings) {
      try {
        if (verify(curve.hash, data, { key, dsaEncoding }, signature)) return true;
      } catch {
        // Malformed DER makes OpenSSL throw on some versions: that is simply "does not verify".
      }
    }
  }
  return false;
}
