/**
 * TPM 2.0 constants (Part 2: TPM_ALG_ID, TPM_ECC_CURVE, TPM_ST, TPM_CC, handles) limited to
 * what the quote verifier and attester use.
 */

export const TPM_GENERATED_VALUE = 0xff544347;
export const TPM_ST_ATTEST_QUOTE = 0x8018;
export const TPM_ST_NO_SESSIONS = 0x8001;
export const TPM_ST_SESSIONS = 0x8002;

export const TPM_ALG = {
  RSA: 0x0001,
  SHA1: 0x0004,
  HMAC: 0x0005,
  KEYEDHASH: 0x0008,
  SHA256: 0x000b,
  SHA384: 0x000c,
  SHA512: 0x000d,
  NULL: 0x0010,
  RSASSA: 0x0014,
  RSAES: 0x0015,
  RSAPSS: 0x0016,
  OAEP: 0x0017,
  ECDSA: 0x0018,
  ECDAA: 0x001a,
  ECC: 0x0023,
  SYMCIPHER: 0x0025,
} as const;

export const TPM_ECC_CURVE = { NIST_P256: 0x0003, NIST_P384: 0x0004 } as const;

/** TPMA_OBJECT bits an attestation key must (or should) carry. */
export const TPMA_OBJECT = {
  fixedTPM: 1 << 1,
  fixedParent: 1 << 4,
  sensitiveDataOrigin: 1 << 5,
  userWithAuth: 1 << 6,
  noDA: 1 << 10,
  restricted: 1 << 16,
  decrypt: 1 << 17,
  sign: 1 << 18,
} as const;

export const TPM_CC = {
  Startup: 0x00000144,
  CreatePrimary: 0x00000131,
  Quote: 0x00000158,
  PCR_Read: 0x0000017e,
  ReadPublic: 0x00000173,
  FlushContext: 0x00000165,
} as const;

export const TPM_RH = { OWNER: 0x40000001, ENDORSEMENT: 0x4000000b } as const;
export const TPM_RS_PW = 0x40000009;
export const TPM_SU_CLEAR = 0x0000;

export type PcrBank = 'sha1' | 'sha256' | 'sha384';
export type HashName = PcrBank | 'sha512';

const HASHES: Record<number, { name: HashName; size: number }> = {
  [TPM_ALG.SHA1]: { name: 'sha1', size: 20 },
  [TPM_ALG.SHA256]: { name: 'sha256', size: 32 },
  [TPM_ALG.SHA384]: { name: 'sha384', size: 48 },
  [TPM_ALG.SHA512]: { name: 'sha512', size: 64 },
};

/** node:crypto name and digest size of a TPM hash algorithm, or undefined when unknown. */
export function hashInfo(alg: number): { name: HashName; size: number } | undefined {
  return HASHES[alg];
}

export function hashAlgId(name: HashName): number {
  switch (name) {
    case 'sha1':
      return TPM_ALG.SHA1;
    case 'sha256':
      return TPM_ALG.SHA256;
    case 'sha384':
      return TPM_ALG.SHA384;
    case 'sha512':
      return TPM_ALG.SHA512;
  }
}

export function digestSize(name: HashName): number {
  return HASHES[hashAlgId(name)]!.size;
}

/** Short readable name of an algorithm id for messages and claims ("0x0042" when unknown). */
export function algName(alg: number): string {
  for (const [k, v] of Object.entries(TPM_ALG)) if (v === alg) return k.toLowerCase();
  return `0x${alg.toString(16).padStart(4, '0')}`;
}
