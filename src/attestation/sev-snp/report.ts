/**
 * AMD SEV-SNP ATTESTATION_REPORT decoding (SEV-SNP ABI spec, "ATTESTATION_REPORT Structure").
 *
 * Pure: bytes in, a typed structure out. Only report versions 2, 3 and 5 are accepted; every
 * must-be-zero region of those layouts is checked so that a report we do not fully understand
 * is refused instead of half-read. No signature check here (see verify.ts).
 */
import { AttestationError } from '../types.js';

export const SNP_REPORT_SIZE = 0x4a0; // 1184
/** The signature covers bytes 0x000..0x29F. */
export const SNP_SIGNED_LENGTH = 0x2a0;
export const SNP_SUPPORTED_VERSIONS: readonly number[] = [2, 3, 5];
/** SIGNATURE_ALGO 1 = ECDSA P-384 with SHA-384 (the only algorithm the ABI defines). */
export const SNP_SIG_ALGO_ECDSA_P384_SHA384 = 1;

export type SnpSigningKey = 'vcek' | 'vlek';

export interface SnpFirmwareVersion {
  major: number;
  minor: number;
  build: number;
}

export interface SnpCpuid {
  /** Combined extended family + family, e.g. 0x19 (Milan/Genoa), 0x1A (Turin). */
  family: number;
  /** Combined extended model + model, e.g. 0x01 (Milan), 0x11 (Genoa). */
  model: number;
  stepping: number;
}

export interface SnpReport {
  version: number;
  guestSvn: number;
  policy: bigint;
  familyId: Uint8Array;
  imageId: Uint8Array;
  vmpl: number;
  signatureAlgo: number;
  /** TCB_VERSION fields are kept as their 8 raw bytes: the layout depends on the product (tcb.ts). */
  currentTcb: Uint8Array;
  platformInfo: bigint;
  authorKeyEn: boolean;
  maskChipKey: boolean;
  signingKey: SnpSigningKey;
  reportData: Uint8Array;
  measurement: Uint8Array;
  hostData: Uint8Array;
  idKeyDigest: Uint8Array;
  authorKeyDigest: Uint8Array;
  reportId: Uint8Array;
  reportIdMa: Uint8Array;
  reportedTcb: Uint8Array;
  /** Report version 3 and later only. */
  cpuid?: SnpCpuid;
  chipId: Uint8Array;
  committedTcb: Uint8Array;
  current: SnpFirmwareVersion;
  committed: SnpFirmwareVersion;
  launchTcb: Uint8Array;
  /** Report version 5 and later only. */
  launchMitVector?: bigint;
  currentMitVector?: bigint;
  /** Bytes 0x000..0x29F, the data the signature covers. */
  signedBytes: Uint8Array;
  /** r || s, 48 bytes each, big-endian: the IEEE P1363 form node:crypto verifies. */
  signatureP1363: Uint8Array;
}

/** Named field regions (offset, length) of the signed part; tests and describe output use them. */
export const SNP_FIELDS = {
  version: [0x000, 4],
  guest_svn: [0x004, 4],
  policy: [0x008, 8],
  family_id: [0x010, 16],
  image_id: [0x020, 16],
  vmpl: [0x030, 4],
  signature_algo: [0x034, 4],
  current_tcb: [0x038, 8],
  platform_info: [0x040, 8],
  flags: [0x048, 4],
  report_data: [0x050, 64],
  measurement: [0x090, 48],
  host_data: [0x0c0, 32],
  id_key_digest: [0x0e0, 48],
  author_key_digest: [0x110, 48],
  report_id: [0x140, 32],
  report_id_ma: [0x160, 32],
  reported_tcb: [0x180, 8],
  cpuid: [0x188, 3], // v3+
  chip_id: [0x1a0, 64],
  committed_tcb: [0x1e0, 8],
  current_version: [0x1e8, 3],
  committed_version: [0x1ec, 3],
  launch_tcb: [0x1f0, 8],
  launch_mit_vector: [0x1f8, 8], // v5+
  current_mit_vector: [0x200, 8], // v5+
} as const satisfies Record<string, readonly [number, number]>;

const SIG_OFFSET = SNP_SIGNED_LENGTH;
const SIG_COMPONENT = 72; // R and S are 72-byte little-endian fields; P-384 uses the low 48

export function parseSnpReport(bytes: Uint8Array): SnpReport {
  if (!(bytes instanceof Uint8Array)) {
    throw new AttestationError('evidence_malformed', 'SEV-SNP report must be bytes');
  }
  if (bytes.byteLength !== SNP_REPORT_SIZE) {
    throw new AttestationError(
      'evidence_malformed',
      `SEV-SNP report must be exactly ${SNP_REPORT_SIZE} bytes, got ${bytes.byteLength}`,
    );
  }
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const version = b.readUInt32LE(0x00);
  if (!SNP_SUPPORTED_VERSIONS.includes(version)) {
    throw new AttestationError(
      'evidence_unsupported',
      `SEV-SNP report version ${version} is not supported (supported: ${SNP_SUPPORTED_VERSIONS.join(', ')})`,
    );
  }
  const signatureAlgo = b.readUInt32LE(0x34);
  if (signatureAlgo !== SNP_SIG_ALGO_ECDSA_P384_SHA384) {
    throw new AttestationError(
      'evidence_unsupported',
      `SEV-SNP signature algorithm ${signatureAlgo} is not supported (only 1 = ECDSA P-384/SHA-384)`,
    );
  }

  const flags = b.readUInt32LE(0x48);
  if (flags >>> 5 !== 0) malformed(`flags 0x${flags.toString(16)} has reserved bits set`);
  const signingKeyCode = (flags >>> 2) & 7;
  let signingKey: SnpSigningKey;
  if (signingKeyCode === 0) signingKey = 'vcek';
  else if (signingKeyCode === 1) signingKey = 'vlek';
  else if (signingKeyCode === 7) {
    throw new AttestationError('evidence_unsupported', 'SEV-SNP report is unsigned (SIGNING_KEY = none)');
  } else malformed(`SIGNING_KEY ${signingKeyCode} is reserved`);

  mustBeZero(b, 0x4c, 0x50, 'reserved 0x4C');
  if (version < 3) mustBeZero(b, 0x188, 0x1a0, 'reserved 0x188 (CPUID fields are v3+)');
  else mustBeZero(b, 0x18b, 0x1a0, 'reserved 0x18B');
  mustBeZero(b, 0x1eb, 0x1ec, 'reserved 0x1EB');
  mustBeZero(b, 0x1ef, 0x1f0, 'reserved 0x1EF');
  mustBeZero(b, version >= 5 ? 0x208 : 0x1f8, SIG_OFFSET, 'reserved tail of the signed region');
  mustBeZero(b, SIG_OFFSET + 2 * SIG_COMPONENT, SNP_REPORT_SIZE, 'reserved tail of the signature');

  const slice = (off: number, len: number) => new Uint8Array(b.subarray(off, off + len));
  const firmwareVersion = (off: number): SnpFirmwareVersion => ({ build: b[off]!, minor: b[off + 1]!, major: b[off + 2]! });

  const report: SnpReport = {
    version,
    guestSvn: b.readUInt32LE(0x04),
    policy: b.readBigUInt64LE(0x08),
    familyId: slice(0x10, 16),
    imageId: slice(0x20, 16),
    vmpl: b.readUInt32LE(0x30),
    signatureAlgo,
    currentTcb: slice(0x38, 8),
    platformInfo: b.readBigUInt64LE(0x40),
    authorKeyEn: (flags & 1) !== 0,
    maskChipKey: (flags & 2) !== 0,
    signingKey: signingKey!,
    reportData: slice(0x50, 64),
    measurement: slice(0x90, 48),
    hostData: slice(0xc0, 32),
    idKeyDigest: slice(0xe0, 48),
    authorKeyDigest: slice(0x110, 48),
    reportId: slice(0x140, 32),
    reportIdMa: slice(0x160, 32),
    reportedTcb: slice(0x180, 8),
    chipId: slice(0x1a0, 64),
    committedTcb: slice(0x1e0, 8),
    current: firmwareVersion(0x1e8),
    committed: firmwareVersion(0x1ec),
    launchTcb: slice(0x1f0, 8),
    signedBytes: slice(0, SNP_SIGNED_LENGTH),
    signatureP1363: new Uint8Array(96),
  };
  if (version >= 3) report.cpuid = { family: b[0x188]!, model: b[0x189]!, stepping: b[0x18a]! };
  if (version >= 5) {
    report.launchMitVector = b.readBigUInt64LE(0x1f8);
    report.currentMitVector = b.readBigUInt64LE(0x200);
  }
  report.signatureP1363.set(littleToBig48(b, SIG_OFFSET, 'R'), 0);
  report.signatureP1363.set(littleToBig48(b, SIG_OFFSET + SIG_COMPONENT, 'S'), 48);
  return report;
}

/** A 72-byte little-endian signature component as 48 big-endian bytes (upper 24 must be zero). */
function littleToBig48(b: Buffer, off: number, name: string): Uint8Array {
  mustBeZero(b, off + 48, off + SIG_COMPONENT, `signature ${name} upper bytes`);
  const out = new Uint8Array(48);
  for (let i = 0; i < 48; i++) out[i] = b[off + 47 - i]!;
  return out;
}

function mustBeZero(b: Buffer, from: number, to: number, what: string): void {
  for (let i = from; i < to; i++) {
    if (b[i] !== 0) malformed(`${what} must be zero (non-zero byte at 0x${i.toString(16)})`);
  }
}

function malformed(message: string): never {
  throw new AttestationError('evidence_malformed', `SEV-SNP report: ${message}`);
}

/** A u64 as 16 lower-case hex digits (most significant first), the notation AMD tools print. */
export function u64Hex(value: bigint): string {
  return value.toString(16).padStart(16, '0');
}
