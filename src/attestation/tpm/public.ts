/**
 * TPMT_PUBLIC (Part 2, 12.2.4): parse an RSA or ECC public area into a node:crypto
 * KeyObject and compute its Name (nameAlg || H_nameAlg(TPMT_PUBLIC)); build the templates
 * of the attestation keys the attester creates.
 */
import { createHash, createPublicKey, type KeyObject } from 'node:crypto';
import { AttestationError } from '../types.js';
import { TpmReader, TpmWriter } from './bytes.js';
import { algName, hashAlgId, hashInfo, TPM_ALG, TPM_ECC_CURVE, TPMA_OBJECT, type HashName } from './constants.js';
import type { SigAlg } from './structures.js';

export interface TpmPublic {
  /** the TPMT_PUBLIC bytes exactly as parsed (what the Name hashes) */
  readonly bytes: Uint8Array;
  readonly type: 'rsa' | 'ecc';
  readonly nameAlg: HashName;
  readonly objectAttributes: number;
  /** the key's fixed signing scheme, or null when the key accepts any (TPM_ALG_NULL) */
  readonly scheme: { sigAlg: SigAlg | string; hash: HashName | null } | null;
  readonly key: KeyObject;
  /** TPM Name: nameAlg (u16) || H_nameAlg(bytes) */
  readonly name: Uint8Array;
}

const CURVES: Record<number, { crv: 'P-256' | 'P-384'; size: number }> = {
  [TPM_ECC_CURVE.NIST_P256]: { crv: 'P-256', size: 32 },
  [TPM_ECC_CURVE.NIST_P384]: { crv: 'P-384', size: 48 },
};

const b64url = (b: Uint8Array) => Buffer.from(b).toString('base64url');

function stripZeros(b: Uint8Array): Uint8Array {
  let i = 0;
  while (i < b.length - 1 && b[i] === 0) i++;
  return b.subarray(i);
}

function leftPad(b: Uint8Array, size: number, field: string): Uint8Array {
  const v = stripZeros(b);
  if (v.length > size) throw new AttestationError('evidence_malformed', `TPMT_PUBLIC: ${field} longer than ${size} bytes`);
  const out = new Uint8Array(size);
  out.set(v, size - v.length);
  return out;
}

function readSymmetric(r: TpmReader): void {
  const alg = r.u16('parameters.symmetric.algorithm');
  if (alg !== TPM_ALG.NULL) {
    r.u16('parameters.symmetric.keyBits');
    r.u16('parameters.symmetric.mode');
  }
}

function readScheme(r: TpmReader, isEcc: boolean): TpmPublic['scheme'] {
  const alg = r.u16('parameters.scheme.scheme');
  if (alg === TPM_ALG.NULL) return null;
  if (alg === TPM_ALG.RSAES) return { sigAlg: 'rsaes', hash: null }; // TPMS_ENC_SCHEME_RSAES is empty
  const hashAt = r.offset;
  const hashAlg = r.u16('parameters.scheme.hashAlg');
  if (isEcc && alg === TPM_ALG.ECDAA) r.u16('parameters.scheme.count');
  const hash = hashInfo(hashAlg);
  if (!hash && hashAlg !== TPM_ALG.NULL) r.fail('parameters.scheme.hashAlg', hashAt, `unknown ${algName(hashAlg)}`);
  const sigAlg =
    alg === TPM_ALG.RSASSA ? 'rsassa' : alg === TPM_ALG.RSAPSS ? 'rsapss' : alg === TPM_ALG.ECDSA ? 'ecdsa' : algName(alg);
  return { sigAlg, hash: hash?.name ?? null };
}

function importKey(jwk: Record<string, string>): KeyObject {
  try {
    return createPublicKey({ key: jwk, format: 'jwk' });
  } catch (err) {
    throw new AttestationError('evidence_malformed', `TPMT_PUBLIC: key does not import (${(err as Error).message})`, {
      cause: err,
    });
  }
}

/** Reads a TPMT_PUBLIC from the reader's position (embedded use, e.g. in TPM2B_PUBLIC). */
function readTpmtPublic(r: TpmReader): Omit<TpmPublic, 'bytes' | 'name'> {
  const typeAt = r.offset;
  const type = r.u16('type');
  const nameAlgAt = r.offset;
  const nameAlgId = r.u16('nameAlg');
  const nameAlg = hashInfo(nameAlgId);
  if (!nameAlg) {
    throw new AttestationError('evidence_unsupported', `TPMT_PUBLIC: nameAlg ${algName(nameAlgId)} unsupported (offset ${nameAlgAt})`);
  }
  const objectAttributes = r.u32('objectAttributes');
  r.tpm2b('authPolicy', 64);
  if (type === TPM_ALG.RSA) {
    readSymmetric(r);
    const scheme = readScheme(r, false);
    const bitsAt = r.offset;
    const keyBits = r.u16('parameters.keyBits');
    if (keyBits < 1024 || keyBits > 4096) r.fail('parameters.keyBits', bitsAt, `${keyBits} out of range`);
    const exponent = r.u32('parameters.exponent');
    const modulus = r.tpm2b('unique.rsa', 512);
    if (modulus.length * 8 !== keyBits) r.fail('unique.rsa', bitsAt, `is ${modulus.length * 8} bits, keyBits says ${keyBits}`);
    const exponentBytes = Buffer.alloc(4);
    exponentBytes.writeUInt32BE(exponent === 0 ? 65537 : exponent); // 0 means the default exponent 2^16+1
    const key = importKey({ kty: 'RSA', n: b64url(modulus), e: b64url(stripZeros(exponentBytes)) });
    return { type: 'rsa', nameAlg: nameAlg.name, objectAttributes, scheme, key };
  }
  if (type === TPM_ALG.ECC) {
    readSymmetric(r);
    const scheme = readScheme(r, true);
    const curveAt = r.offset;
    const curveId = r.u16('parameters.curveID');
    const kdf = r.u16('parameters.kdf.scheme');
    if (kdf !== TPM_ALG.NULL) r.u16('parameters.kdf.hashAlg');
    const x = r.tpm2b('unique.ecc.x', 66);
    const y = r.tpm2b('unique.ecc.y', 66);
    const curve = CURVES[curveId];
    if (!curve) {
      throw new AttestationError('evidence_unsupported', `TPMT_PUBLIC: curve 0x${curveId.toString(16)} unsupported (offset ${curveAt})`);
    }
    const key = importKey({
      kty: 'EC',
      crv: curve.crv,
      x: b64url(leftPad(x, curve.size, 'unique.ecc.x')),
      y: b64url(leftPad(y, curve.size, 'unique.ecc.y')),
    });
    return { type: 'ecc', nameAlg: nameAlg.name, objectAttributes, scheme, key };
  }
  throw new AttestationError('evidence_unsupported', `TPMT_PUBLIC: type ${algName(type)} unsupported (offset ${typeAt})`);
}

/** TPM Name of a public area: nameAlg || H_nameAlg(TPMT_PUBLIC bytes). */
export function tpmName(nameAlg: HashName, publicArea: Uint8Array): Uint8Array {
  const id = Buffer.alloc(2);
  id.writeUInt16BE(hashAlgId(nameAlg));
  return Buffer.concat([id, createHash(nameAlg).update(publicArea).digest()]);
}

/** Parses a complete TPMT_PUBLIC (no TPM2B size prefix). */
export function parseTpmtPublic(bytes: Uint8Array): TpmPublic {
  const r = new TpmReader(bytes, 'TPMT_PUBLIC');
  const parsed = readTpmtPublic(r);
  r.end();
  const own = bytes.slice();
  return { ...parsed, bytes: own, name: tpmName(parsed.nameAlg, own) };
}

/** True when the attributes make a restricted signing key, the only kind whose quotes mean anything. */
export function isRestrictedSigningKey(objectAttributes: number): boolean {
  const need = TPMA_OBJECT.restricted | TPMA_OBJECT.sign;
  return (objectAttributes & need) === need && (objectAttributes & TPMA_OBJECT.decrypt) === 0;
}

/** objectAttributes of our AKs: fixedTPM|fixedParent|sensitiveDataOrigin|userWithAuth|noDA|restricted|sign. */
export const AK_ATTRIBUTES =
  TPMA_OBJECT.fixedTPM |
  TPMA_OBJECT.fixedParent |
  TPMA_OBJECT.sensitiveDataOrigin |
  TPMA_OBJECT.userWithAuth |
  TPMA_OBJECT.noDA |
  TPMA_OBJECT.restricted |
  TPMA_OBJECT.sign;

export type AkAlgorithm = 'ecc-p256' | 'rsa-2048';

/** TPMT_PUBLIC template of a restricted signing AK (ECDSA-SHA256 on P-256 or RSASSA-SHA256 on RSA-2048). */
export function akTemplate(alg: AkAlgorithm): Buffer {
  const w = new TpmWriter();
  if (alg === 'ecc-p256') {
    w.u16(TPM_ALG.ECC).u16(TPM_ALG.SHA256).u32(AK_ATTRIBUTES).tpm2b(new Uint8Array(0));
    w.u16(TPM_ALG.NULL); // symmetric
    w.u16(TPM_ALG.ECDSA).u16(TPM_ALG.SHA256); // scheme
    w.u16(TPM_ECC_CURVE.NIST_P256);
    w.u16(TPM_ALG.NULL); // kdf
    w.tpm2b(new Uint8Array(0)).tpm2b(new Uint8Array(0)); // unique x, y
  } else {
    w.u16(TPM_ALG.RSA).u16(TPM_ALG.SHA256).u32(AK_ATTRIBUTES).tpm2b(new Uint8Array(0));
    w.u16(TPM_ALG.NULL); // symmetric
    w.u16(TPM_ALG.RSASSA).u16(TPM_ALG.SHA256); // scheme
    w.u16(2048).u32(0); // keyBits, exponent (0 = 65537)
    w.tpm2b(new Uint8Array(0)); // unique
  }
  return w.finish();
}
