/**
 * TPM 2.0 quote structures (Part 2): TPMS_ATTEST with TPMS_QUOTE_INFO, TPMT_SIGNATURE and
 * TPML_PCR_SELECTION. Pure functions over bytes; every parse error is `evidence_malformed`
 * naming the field and offset.
 */
import { AttestationError } from '../types.js';
import { TpmReader, TpmWriter } from './bytes.js';
import {
  algName,
  hashAlgId,
  hashInfo,
  TPM_ALG,
  TPM_GENERATED_VALUE,
  TPM_ST_ATTEST_QUOTE,
  type HashName,
  type PcrBank,
} from './constants.js';

/** Upper bounds that keep a hostile peer from making us parse megabytes. */
export const MAX_ATTEST_BYTES = 2048;
export const MAX_SIGNATURE_BYTES = 1024;
const MAX_PCR_SELECTIONS = 16;
const MAX_SELECT_BYTES = 8; // 64 PCRs; real TPMs have 24

export interface PcrSelection {
  /** TPM_ALG_ID of the bank */
  readonly hashAlg: number;
  /** selected PCR indices, ascending */
  readonly indices: number[];
  /** sizeofSelect as encoded (bytes of the bitmap) */
  readonly sizeofSelect: number;
}

export interface ClockInfo {
  readonly clock: bigint;
  readonly resetCount: number;
  readonly restartCount: number;
  readonly safe: boolean;
}

export interface TpmsAttestQuote {
  readonly magic: number;
  readonly type: number;
  readonly qualifiedSigner: Uint8Array;
  readonly extraData: Uint8Array;
  readonly clockInfo: ClockInfo;
  readonly firmwareVersion: bigint;
  readonly pcrSelections: PcrSelection[];
  readonly pcrDigest: Uint8Array;
}

export type SigAlg = 'rsassa' | 'rsapss' | 'ecdsa';

export type TpmtSignature =
  | { readonly sigAlg: 'rsassa' | 'rsapss'; readonly hash: HashName; readonly sig: Uint8Array }
  | { readonly sigAlg: 'ecdsa'; readonly hash: HashName; readonly r: Uint8Array; readonly s: Uint8Array };

export function readPcrSelection(r: TpmReader, field = 'pcrSelect'): PcrSelection[] {
  const countAt = r.offset;
  const count = r.u32(`${field}.count`);
  if (count > MAX_PCR_SELECTIONS) r.fail(`${field}.count`, countAt, `${count} exceeds ${MAX_PCR_SELECTIONS}`);
  const out: PcrSelection[] = [];
  for (let i = 0; i < count; i++) {
    const hashAlg = r.u16(`${field}[${i}].hash`);
    const sizeAt = r.offset;
    const sizeofSelect = r.u8(`${field}[${i}].sizeofSelect`);
    if (sizeofSelect > MAX_SELECT_BYTES) {
      r.fail(`${field}[${i}].sizeofSelect`, sizeAt, `${sizeofSelect} exceeds ${MAX_SELECT_BYTES}`);
    }
    const bitmap = r.take(sizeofSelect, `${field}[${i}].pcrSelect`);
    const indices: number[] = [];
    for (let byte = 0; byte < bitmap.length; byte++) {
      for (let bit = 0; bit < 8; bit++) if (bitmap[byte]! & (1 << bit)) indices.push(byte * 8 + bit);
    }
    out.push({ hashAlg, indices, sizeofSelect });
  }
  return out;
}

/** TPML_PCR_SELECTION with one bank; sizeofSelect is at least 3 (24 PCRs), as TPMs expect. */
export function writePcrSelection(w: TpmWriter, banks: { alg: PcrBank; indices: readonly number[] }[]): void {
  w.u32(banks.length);
  for (const bank of banks) {
    const max = bank.indices.reduce((m, i) => Math.max(m, i), -1);
    const size = Math.max(3, Math.floor(max / 8) + 1);
    const bitmap = new Uint8Array(size);
    for (const i of bank.indices) {
      if (!Number.isInteger(i) || i < 0 || i >= MAX_SELECT_BYTES * 8) throw new RangeError(`bad PCR index ${i}`);
      bitmap[i >> 3]! |= 1 << (i & 7);
    }
    w.u16(hashAlgId(bank.alg)).u8(size).bytes(bitmap);
  }
}

/** Parses a TPMS_ATTEST that must be a quote (magic TPM_GENERATED_VALUE, type ATTEST_QUOTE). */
export function parseTpmsAttest(bytes: Uint8Array): TpmsAttestQuote {
  if (bytes.length > MAX_ATTEST_BYTES) {
    throw new AttestationError('evidence_malformed', `TPMS_ATTEST: ${bytes.length} bytes exceeds ${MAX_ATTEST_BYTES}`);
  }
  const r = new TpmReader(bytes, 'TPMS_ATTEST');
  const magic = r.u32('magic');
  if (magic !== TPM_GENERATED_VALUE) {
    r.fail('magic', 0, `0x${magic.toString(16)} is not TPM_GENERATED_VALUE 0xff544347`);
  }
  const type = r.u16('type');
  if (type !== TPM_ST_ATTEST_QUOTE) r.fail('type', 4, `0x${type.toString(16)} is not TPM_ST_ATTEST_QUOTE 0x8018`);
  const qualifiedSigner = r.tpm2b('qualifiedSigner', 2 + 64);
  const extraData = r.tpm2b('extraData', 66); // TPM2B_DATA holds up to sizeof(TPMT_HA)
  const clock = r.u64('clockInfo.clock');
  const resetCount = r.u32('clockInfo.resetCount');
  const restartCount = r.u32('clockInfo.restartCount');
  const safeAt = r.offset;
  const safeByte = r.u8('clockInfo.safe');
  if (safeByte > 1) r.fail('clockInfo.safe', safeAt, `${safeByte} is not a TPMI_YES_NO`);
  const firmwareVersion = r.u64('firmwareVersion');
  const pcrSelections = readPcrSelection(r, 'attested.quote.pcrSelect');
  const pcrDigest = r.tpm2b('attested.quote.pcrDigest', 64);
  r.end();
  return {
    magic,
    type,
    qualifiedSigner,
    extraData,
    clockInfo: { clock, resetCount, restartCount, safe: safeByte === 1 },
    firmwareVersion,
    pcrSelections,
    pcrDigest,
  };
}

function readHash(r: TpmReader, field: string): HashName {
  const at = r.offset;
  const alg = r.u16(field);
  const info = hashInfo(alg);
  if (!info || info.name === 'sha512') {
    throw new AttestationError('evidence_unsupported', `TPMT_SIGNATURE: ${field} ${algName(alg)} unsupported (offset ${at})`);
  }
  return info.name;
}

/** Parses a TPMT_SIGNATURE (RSASSA, RSAPSS or ECDSA with SHA-1/256/384). */
export function parseTpmtSignature(bytes: Uint8Array): TpmtSignature {
  if (bytes.length > MAX_SIGNATURE_BYTES) {
    throw new AttestationError('evidence_malformed', `TPMT_SIGNATURE: ${bytes.length} bytes exceeds ${MAX_SIGNATURE_BYTES}`);
  }
  const r = new TpmReader(bytes, 'TPMT_SIGNATURE');
  const sigAlg = r.u16('sigAlg');
  let out: TpmtSignature;
  switch (sigAlg) {
    case TPM_ALG.RSASSA:
    case TPM_ALG.RSAPSS: {
      const hash = readHash(r, 'hash');
      const sig = r.tpm2b('sig', 512);
      out = { sigAlg: sigAlg === TPM_ALG.RSASSA ? 'rsassa' : 'rsapss', hash, sig };
      break;
    }
    case TPM_ALG.ECDSA: {
      const hash = readHash(r, 'hash');
      const sigR = r.tpm2b('signatureR', 66);
      const sigS = r.tpm2b('signatureS', 66);
      out = { sigAlg: 'ecdsa', hash, r: sigR, s: sigS };
      break;
    }
    default:
      throw new AttestationError(
        'evidence_unsupported',
        `TPMT_SIGNATURE: sigAlg ${algName(sigAlg)} unsupported (offset 0)`,
      );
  }
  r.end();
  return out;
}

/** Marshals a TPMT_SIGNATURE (used to hand our quotes to tpm2_checkquote and in tests). */
export function encodeTpmtSignature(sig: TpmtSignature): Buffer {
  const w = new TpmWriter();
  if (sig.sigAlg === 'ecdsa') {
    w.u16(TPM_ALG.ECDSA).u16(hashAlgId(sig.hash)).tpm2b(sig.r).tpm2b(sig.s);
  } else {
    w.u16(sig.sigAlg === 'rsassa' ? TPM_ALG.RSASSA : TPM_ALG.RSAPSS).u16(hashAlgId(sig.hash)).tpm2b(sig.sig);
  }
  return w.finish();
}

/**
 * A raw signature (as Azure hands out: RSASSA bytes without the TPMT_SIGNATURE wrapper)
 * plus its declared scheme. ECDSA raw signatures are r||s, each half the length.
 */
export function rawSignature(bytes: Uint8Array, scheme: { sigAlg: SigAlg; hashAlg: PcrBank }): TpmtSignature {
  if (bytes.length === 0 || bytes.length > 512) {
    throw new AttestationError('evidence_malformed', `raw signature: bad length ${bytes.length}`);
  }
  if (scheme.sigAlg === 'ecdsa') {
    if (bytes.length % 2 !== 0) throw new AttestationError('evidence_malformed', 'raw ECDSA signature: odd length');
    const half = bytes.length / 2;
    return { sigAlg: 'ecdsa', hash: scheme.hashAlg, r: bytes.slice(0, half), s: bytes.slice(half) };
  }
  return { sigAlg: scheme.sigAlg, hash: scheme.hashAlg, sig: bytes.slice() };
}
