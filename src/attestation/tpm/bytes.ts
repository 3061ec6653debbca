/**
 * Bounds-checked big-endian reader/writer for TPM 2.0 structures (TPM 2.0 Part 2 uses
 * network byte order everywhere). Every read failure is an `evidence_malformed`
 * AttestationError naming the field and the byte offset, so a truncated quote tells the
 * operator exactly where it ends.
 */
import { AttestationError } from '../types.js';

export class TpmReader {
  private pos = 0;
  private readonly view: DataView;

  /** `what` names the whole structure in error messages (e.g. "TPMS_ATTEST"). */
  constructor(
    readonly bytes: Uint8Array,
    readonly what: string,
  ) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  get offset(): number {
    return this.pos;
  }

  get remaining(): number {
    return this.bytes.length - this.pos;
  }

  private need(n: number, field: string): number {
    if (n < 0 || this.pos + n > this.bytes.length) {
      throw new AttestationError(
        'evidence_malformed',
        `${this.what}: truncated at ${field} (offset ${this.pos}, need ${n} bytes, have ${this.remaining})`,
      );
    }
    const at = this.pos;
    this.pos += n;
    return at;
  }

  u8(field: string): number {
    return this.view.getUint8(this.need(1, field));
  }

  u16(field: string): number {
    return this.view.getUint16(this.need(2, field));
  }

  u32(field: string): number {
    return this.view.getUint32(this.need(4, field));
  }

  u64(field: string): bigint {
    return this.view.getBigUint64(this.need(8, field));
  }

  /** Raw bytes (a copy, so callers can keep them after the input is reused). */
  take(n: number, field: string): Uint8Array {
    const at = this.need(n, field);
    return this.bytes.slice(at, at + n);
  }

  /** A TPM2B_*: u16 size then that many bytes; `max` rejects oversized buffers. */
  tpm2b(field: string, max = 0xffff): Uint8Array {
    const sizeAt = this.pos;
    const size = this.u16(`${field}.size`);
    if (size > max) {
      throw new AttestationError(
        'evidence_malformed',
        `${this.what}: ${field} size ${size} exceeds ${max} (offset ${sizeAt})`,
      );
    }
    return this.take(size, field);
  }

  /** Fails when bytes are left over: a structure must be consumed exactly. */
  end(): void {
    if (this.remaining !== 0) {
      throw new AttestationError(
        'evidence_malformed',
        `${this.what}: ${this.remaining} trailing bytes at offset ${this.pos}`,
      );
    }
  }

  fail(field: string, at: number, message: string): never {
    throw new AttestationError('evidence_malformed', `${this.what}: ${field} ${message} (offset ${at})`);
  }
}

/** Growable big-endian writer used to marshal TPM commands and structures. */
export class TpmWriter {
  private buf = Buffer.alloc(256);
  private len = 0;

  private room(n: number): void {
    if (this.len + n <= this.buf.length) return;
    const next = Buffer.alloc(Math.max(this.buf.length * 2, this.len + n));
    this.buf.copy(next, 0, 0, this.len);
    this.buf = next;
  }

  u8(v: number): this {
    this.room(1);
    this.buf.writeUInt8(v, this.len);
    this.len += 1;
    return this;
  }

  u16(v: number): this {
    this.room(2);
    this.buf.writeUInt16BE(v, this.len);
    this.len += 2;
    return this;
  }

  u32(v: number): this {
    this.room(4);
    this.buf.writeUInt32BE(v >>> 0, this.len);
    this.len += 4;
    return this;
  }

  u64(v: bigint): this {
    this.room(8);
    this.buf.writeBigUInt64BE(v, this.len);
    this.len += 8;
    return this;
  }

  bytes(b: Uint8Array): this {
    this.room(b.length);
    this.buf.set(b, this.len);
    this.len += b.length;
    return this;
  }

  /** TPM2B_*: u16 size prefix then the bytes. */
  tpm2b(b: Uint8Array): this {
    if (b.length > 0xffff) throw new RangeError(`TPM2B too large (${b.length} bytes)`);
    return this.u16(b.length).bytes(b);
  }

  get length(): number {
    return this.len;
  }

  finish(): Buffer {
    return Buffer.from(this.buf.subarray(0, this.len));
  }
}
