/**
 * Azure confidential-VM HCL report (the "IGVM attestation report" the paravisor writes to vTPM
 * NV index 0x01400001). Little-endian throughout:
 *
 *   0x000  attestation header, 32 bytes: signature u32 "HCLA" (0x414c4348), version u32,
 *          report_size u32 (= 32 + 1184 + data_size), request_type u32, status u32, reserved[12]
 *   0x020  the SEV-SNP ATTESTATION_REPORT, 1184 bytes
 *   0x4c0  runtime-data header, 20 bytes: data_size u32 (= 20 + runtime_data_size), version u32,
 *          report_type u32 (2 = SEV-SNP), hash_type u32 (1/2/3 = SHA-256/384/512),
 *          runtime_data_size u32
 *   0x4d4  runtime data: UTF-8 JSON {"keys":[{kid:"HCLAkPub",...},{kid:"HCLEkPub",...}],
 *          "vm-configuration":{...}, "user-data":"<hex>"}; the NV buffer is zero-padded after it
 *
 * Nothing but the SNP report is signed: the runtime data is trusted only because the SNP
 * REPORT_DATA carries its hash (checked in verify.ts), and the header fields only tell us where
 * things are. Pure functions over bytes; errors are AttestationErrors naming offset and field.
 */
import { createPublicKey, type KeyObject } from 'node:crypto';
import { SNP_REPORT_SIZE } from '../sev-snp/report.js';
import { parseStrictJson } from '../../lib/strict-json.js';
import { AttestationError } from '../types.js';

export const HCL_SIGNATURE = 0x414c4348; // "HCLA" read little-endian
export const HCL_HEADER_SIZE = 32;
export const HCL_SNP_REPORT_OFFSET = HCL_HEADER_SIZE; // 0x20
export const HCL_RUNTIME_HEADER_OFFSET = HCL_SNP_REPORT_OFFSET + SNP_REPORT_SIZE; // 0x4c0
export const HCL_RUNTIME_HEADER_SIZE = 20;
export const HCL_RUNTIME_DATA_OFFSET = HCL_RUNTIME_HEADER_OFFSET + HCL_RUNTIME_HEADER_SIZE; // 0x4d4
/** Header versions seen on Azure (1: Milan-era paravisor, 2: current). */
export const HCL_SUPPORTED_VERSIONS: readonly number[] = [1, 2];
export const HCL_RUNTIME_DATA_VERSION = 1;
export const HCL_REPORT_TYPE_SNP = 2;
/** The NV buffer is 2600 bytes today; anything far beyond is not an HCL report. */
export const MAX_HCL_REPORT_BYTES = 8192;

const REPORT_TYPE_NAMES: Record<number, string> = { 0: 'invalid', 1: 'reserved', 2: 'SEV-SNP', 3: 'VBS (TVM)', 4: 'TDX' };

export type HclHashType = 'sha256' | 'sha384' | 'sha512';
const HASH_TYPES: Record<number, HclHashType> = { 1: 'sha256', 2: 'sha384', 3: 'sha512' };
export const HCL_HASH_SIZE: Record<HclHashType, number> = { sha256: 32, sha384: 48, sha512: 64 };

export interface HclHeader {
  version: number;
  reportSize: number;
  requestType: number;
  status: number;
}

export interface HclRuntimeHeader {
  dataSize: number;
  version: number;
  reportType: number;
  runtimeDataSize: number;
}

/** The HCL report cut into its parts, runtime data still as bytes (not yet parsed or trusted). */
export interface HclLayout {
  header: HclHeader;
  runtimeHeader: HclRuntimeHeader;
  hashType: HclHashType;
  snpReport: Buffer;
  runtimeData: Buffer;
}

export interface HclReport extends HclLayout {
  runtimeJson: unknown;
}

const malformed = (msg: string): never => {
  throw new AttestationError('evidence_malformed', `HCL report: ${msg}`);
};

/**
 * Checks the HCL structure and slices it (no JSON parsing): the verifier must check the runtime
 * data's digest against the signed SNP report before it interprets any of it.
 */
export function parseHclLayout(bytes: Uint8Array): HclLayout {
  if (!(bytes instanceof Uint8Array)) malformed('expected bytes');
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (b.length > MAX_HCL_REPORT_BYTES) malformed(`${b.length} bytes exceeds ${MAX_HCL_REPORT_BYTES}`);
  if (b.length < HCL_RUNTIME_DATA_OFFSET) {
    malformed(`truncated: ${b.length} bytes, the header, SNP report and runtime-data header need ${HCL_RUNTIME_DATA_OFFSET}`);
  }
  const signature = b.readUInt32LE(0);
  if (signature !== HCL_SIGNATURE) malformed(`signature at offset 0 is 0x${signature.toString(16)}, not "HCLA" (0x414c4348)`);
  const header: HclHeader = {
    version: b.readUInt32LE(4),
    reportSize: b.readUInt32LE(8),
    requestType: b.readUInt32LE(12),
    status: b.readUInt32LE(16),
  };
  if (!HCL_SUPPORTED_VERSIONS.includes(header.version)) {
    throw new AttestationError('evidence_unsupported', `HCL report: header version ${header.version} (offset 4) is not 1 or 2`);
  }

  const at = HCL_RUNTIME_HEADER_OFFSET;
  const runtimeHeader: HclRuntimeHeader = {
    dataSize: b.readUInt32LE(at),
    version: b.readUInt32LE(at + 4),
    reportType: b.readUInt32LE(at + 8),
    runtimeDataSize: b.readUInt32LE(at + 16),
  };
  const hashTypeId = b.readUInt32LE(at + 12);
  if (runtimeHeader.reportType !== HCL_REPORT_TYPE_SNP) {
    const name = REPORT_TYPE_NAMES[runtimeHeader.reportType] ?? 'unknown';
    throw new AttestationError(
      'evidence_unsupported',
      `HCL report: report_type ${runtimeHeader.reportType} (${name}) at offset ${at + 8} is not SEV-SNP (2)`,
    );
  }
  if (runtimeHeader.version !== HCL_RUNTIME_DATA_VERSION) {
    throw new AttestationError(
      'evidence_unsupported',
      `HCL report: runtime-data version ${runtimeHeader.version} at offset ${at + 4} is not ${HCL_RUNTIME_DATA_VERSION}`,
    );
  }
  const hashType = HASH_TYPES[hashTypeId];
  if (!hashType) {
    throw new AttestationError('evidence_unsupported', `HCL report: hash_type ${hashTypeId} at offset ${at + 12} is not 1/2/3 (SHA-256/384/512)`);
  }
  const size = runtimeHeader.runtimeDataSize;
  if (runtimeHeader.dataSize !== HCL_RUNTIME_HEADER_SIZE + size) {
    malformed(`data_size ${runtimeHeader.dataSize} at offset ${at} is not 20 + runtime_data_size ${size}`);
  }
  if (header.reportSize !== HCL_RUNTIME_HEADER_OFFSET + runtimeHeader.dataSize) {
    malformed(`report_size ${header.reportSize} at offset 8 is not ${HCL_RUNTIME_HEADER_OFFSET} + data_size ${runtimeHeader.dataSize}`);
  }
  if (HCL_RUNTIME_DATA_OFFSET + size > b.length) {
    malformed(`truncated: runtime_data_size ${size} at offset ${at + 16} runs to ${HCL_RUNTIME_DATA_OFFSET + size}, past the end (${b.length} bytes)`);
  }
  return {
    header,
    runtimeHeader,
    hashType,
    // Copies: callers may keep them after the input buffer is reused.
    snpReport: Buffer.from(b.subarray(HCL_SNP_REPORT_OFFSET, HCL_RUNTIME_HEADER_OFFSET)),
    runtimeData: Buffer.from(b.subarray(HCL_RUNTIME_DATA_OFFSET, HCL_RUNTIME_DATA_OFFSET + size)),
  };
}

/** Parses the runtime data as a UTF-8 JSON object. */
export function parseRuntimeJson(runtimeData: Uint8Array): Record<string, unknown> {
  let doc: unknown;
  try {
    doc = parseStrictJson(new TextDecoder('utf-8', { fatal: true }).decode(runtimeData));
  } catch (err) {
    throw new AttestationError(
      'evidence_malformed',
      `HCL runtime data (offset ${HCL_RUNTIME_DATA_OFFSET}) is not UTF-8 JSON: ${(err as Error).message}`,
      { cause: err },
    );
  }
  if (!doc || typeof doc !== 'object' || Array.isArray(doc)) {
    throw new AttestationError('evidence_malformed', 'HCL runtime data is not a JSON object');
  }
  return doc as Record<string, unknown>;
}

/** Layout plus the runtime JSON, for callers that only decode (describe, tests). */
export function parseHclReport(bytes: Uint8Array): HclReport {
  const layout = parseHclLayout(bytes);
  return { ...layout, runtimeJson: parseRuntimeJson(layout.runtimeData) };
}

/**
 * The vTPM attestation key: the runtime JSON's `keys[]` entry with kid "HCLAkPub" (an RSA JWK
 * on Azure). Missing, duplicated or unimportable -> evidence_malformed.
 */
export function hclAkPub(runtimeJson: unknown): KeyObject {
  const keys = (runtimeJson as { keys?: unknown } | null)?.keys;
  if (!Array.isArray(keys)) throw new AttestationError('evidence_malformed', 'no HCLAkPub in runtime data (no keys[] array)');
  const found = keys.filter((k): k is Record<string, unknown> => !!k && typeof k === 'object' && (k as { kid?: unknown }).kid === 'HCLAkPub');
  if (found.length === 0) throw new AttestationError('evidence_malformed', 'no HCLAkPub in runtime data');
  if (found.length > 1) throw new AttestationError('evidence_malformed', 'runtime data holds more than one HCLAkPub');
  const jwk = found[0]!;
  if (jwk.kty !== 'RSA' && jwk.kty !== 'EC') {
    throw new AttestationError('evidence_malformed', `HCLAkPub: kty ${JSON.stringify(jwk.kty)} is not RSA or EC`);
  }
  // Public members only: a JWK carrying private material is not an AK description.
  const pub = jwk.kty === 'RSA' ? { kty: jwk.kty, n: jwk.n, e: jwk.e } : { kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y };
  let key: KeyObject;
  try {
    key = createPublicKey({ key: pub as never, format: 'jwk' });
  } catch (err) {
    throw new AttestationError('evidence_malformed', `HCLAkPub is not a usable public key: ${(err as Error).message}`, { cause: err });
  }
  const bits = key.asymmetricKeyDetails?.modulusLength;
  if (key.asymmetricKeyType === 'rsa' && (bits === undefined || bits < 2048)) {
    throw new AttestationError('evidence_unsupported', `HCLAkPub: RSA-${bits} is below 2048 bits`);
  }
  return key;
}
