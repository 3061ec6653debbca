/**
 * The `sim` TEE: a software stand-in for development and tests. A local ECDSA P-256 key signs a
 * binary report carrying the same kinds of claims a hardware TEE reports. It proves nothing
 * about hardware: a policy accepts it only when it names `tee_type: sim`.
 *
 * Layout (big-endian), 272 bytes signed + 64-byte P-256 signature (r||s):
 *   0   magic "ASIM"            4
 *   4   version u16 (1)         2
 *   6   flags u16 (bit0 debug)  2
 *   8   guest_svn u32           4
 *   12  reserved                4
 *   16  tcb u64                 8
 *   24  issued_at_ms u64        8
 *   32  measurement             48
 *   80  chip_id                 64
 *   144 report_data             64
 *   208 host_data               64
 *   272 signature               64
 */
import { createHash, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';
import { AttestationError, hex } from '../types.js';

export const SIM_REPORT_SIZE = 336;
/** Largest time a Date can hold (ECMAScript: 8.64e15 ms after the epoch). */
const MAX_DATE_MS = 8_640_000_000_000_000n;
const SIGNED = 272;
export const SIM_MAGIC = 0x4153494d; // "ASIM"

export interface SimReportFields {
  measurement: Uint8Array; // 48 bytes
  guestSvn: number;
  debug: boolean;
  tcb: bigint;
  chipId: Uint8Array; // 64 bytes
  reportData: Uint8Array; // 64 bytes
  hostData?: Uint8Array; // up to 64 bytes
  issuedAtMs: number;
}

export interface SimClaims {
  type: 'sim';
  version: number;
  measurement: string;
  guest_svn: number;
  debug: boolean;
  tcb: string;
  chip_id: string;
  report_data: string;
  host_data: string;
  issued_at: string;
  signer_spki_sha256: string;
}

function put(buf: Buffer, at: number, bytes: Uint8Array, size: number, name: string): void {
  if (bytes.length > size) throw new RangeError(`sim report: ${name} is ${bytes.length} bytes, at most ${size}`);
  buf.set(bytes, at);
}

/** Builds and signs a sim report with `key` (P-256 private key). */
export function signSimReport(fields: SimReportFields, key: KeyObject): Buffer {
  const buf = Buffer.alloc(SIM_REPORT_SIZE);
  buf.writeUInt32BE(SIM_MAGIC, 0);
  buf.writeUInt16BE(1, 4);
  buf.writeUInt16BE(fields.debug ? 1 : 0, 6);
  buf.writeUInt32BE(fields.guestSvn >>> 0, 8);
  buf.writeBigUInt64BE(fields.tcb, 16);
  buf.writeBigUInt64BE(BigInt(Math.floor(fields.issuedAtMs)), 24);
  put(buf, 32, fields.measurement, 48, 'measurement');
  put(buf, 80, fields.chipId, 64, 'chip_id');
  put(buf, 144, fields.reportData, 64, 'report_data');
  if (fields.hostData) put(buf, 208, fields.hostData, 64, 'host_data');
  const sig = sign('sha256', buf.subarray(0, SIGNED), { key, dsaEncoding: 'ieee-p1363' });
  buf.set(sig, SIGNED);
  return buf;
}

/** Decodes without verifying (for inspect-evidence). */
export function describeSimReport(bytes: Uint8Array): Omit<SimClaims, 'signer_spki_sha256'> {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (b.length !== SIM_REPORT_SIZE) {
    throw new AttestationError('evidence_malformed', `sim report is ${b.length} bytes, expected ${SIM_REPORT_SIZE}`);
  }
  if (b.readUInt32BE(0) !== SIM_MAGIC) throw new AttestationError('evidence_malformed', 'sim report: bad magic');
  const version = b.readUInt16BE(4);
  if (version !== 1) throw new AttestationError('evidence_unsupported', `sim report version ${version} is not supported`);
  const flags = b.readUInt16BE(6);
  if (flags & ~1) throw new AttestationError('evidence_malformed', `sim report: unknown flag bits 0x${flags.toString(16)}`);
  const issuedAtMs = b.readBigUInt64BE(24);
  if (issuedAtMs > MAX_DATE_MS) throw new AttestationError('evidence_malformed', `sim report: issued_at_ms ${issuedAtMs} is not a representable time`);
  return {
    type: 'sim',
    version,
    measurement: hex(b.subarray(32, 80)),
    guest_svn: b.readUInt32BE(8),
    debug: (flags & 1) === 1,
    tcb: b.readBigUInt64BE(16).toString(16).padStart(16, '0'),
    chip_id: hex(b.subarray(80, 144)),
    report_data: hex(b.subarray(144, 208)),
    host_data: hex(b.subarray(208, 272)),
    issued_at: new Date(Number(issuedAtMs)).toISOString(),
  };
}

/**
 * Verifies a sim report against the trusted sim signing keys. Pure: `now` only bounds the
 * report's timestamp (a report from the future is refused).
 */
export function verifySimReport(bytes: Uint8Array, refs: { keys: readonly KeyObject[] }, now: Date): SimClaims {
  const claims = describeSimReport(bytes);
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (refs.keys.length === 0) throw new AttestationError('collateral_missing', 'no trusted sim signing key configured');
  const signed = b.subarray(0, SIGNED);
  const sig = b.subarray(SIGNED);
  const signer = refs.keys.find((key) => verify('sha256', signed, { key, dsaEncoding: 'ieee-p1363' }, sig));
  if (!signer) throw new AttestationError('signature_invalid', 'sim report signature does not verify with any trusted sim key');
  if (Date.parse(claims.issued_at) > now.getTime() + 60_000) {
    throw new AttestationError('evidence_malformed', `sim report issued in the future (${claims.issued_at})`);
  }
  const spki = signer.export({ type: 'spki', format: 'der' });
  return { ...claims, signer_spki_sha256: sha256Hex(spki) };
}

function sha256Hex(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** A fresh in-memory sim signing key pair (development only). */
export function generateSimKey(): { privateKey: KeyObject; publicKey: KeyObject } {
  return generateKeyPairSync('ec', { namedCurve: 'P-256' });
}
