/**
 * TPM_RC decoding (Part 2, 6.6): format-0 (VER1 errors, warnings) and format-1 codes
 * (with the handle / session / parameter they refer to) turned into readable errors.
 */
import { SidecarError } from '../../errors.js';

const FMT0: Record<number, string> = {
  0x100: 'INITIALIZE', 0x101: 'FAILURE', 0x103: 'SEQUENCE', 0x10b: 'PRIVATE', 0x119: 'HMAC', 0x120: 'DISABLED',
  0x121: 'EXCLUSIVE', 0x124: 'AUTH_TYPE', 0x125: 'AUTH_MISSING', 0x126: 'POLICY', 0x127: 'PCR', 0x128: 'PCR_CHANGED',
  0x12d: 'UPGRADE', 0x12e: 'TOO_MANY_CONTEXTS', 0x12f: 'AUTH_UNAVAILABLE', 0x130: 'REBOOT', 0x131: 'UNBALANCED',
  0x142: 'COMMAND_SIZE', 0x143: 'COMMAND_CODE', 0x144: 'AUTHSIZE', 0x145: 'AUTH_CONTEXT', 0x146: 'NV_RANGE',
  0x147: 'NV_SIZE', 0x148: 'NV_LOCKED', 0x149: 'NV_AUTHORIZATION', 0x14a: 'NV_UNINITIALIZED', 0x14b: 'NV_SPACE',
  0x14c: 'NV_DEFINED', 0x150: 'BAD_CONTEXT', 0x151: 'CPHASH', 0x152: 'PARENT', 0x153: 'NEEDS_TEST',
  0x154: 'NO_RESULT', 0x155: 'SENSITIVE',
  // warnings (0x900 | n)
  0x901: 'CONTEXT_GAP', 0x902: 'OBJECT_MEMORY', 0x903: 'SESSION_MEMORY', 0x904: 'MEMORY', 0x905: 'SESSION_HANDLES',
  0x906: 'OBJECT_HANDLES', 0x907: 'LOCALITY', 0x908: 'YIELDED', 0x909: 'CANCELED', 0x90a: 'TESTING',
  0x910: 'REFERENCE_H0', 0x920: 'NV_RATE', 0x921: 'LOCKOUT', 0x922: 'RETRY', 0x923: 'NV_UNAVAILABLE',
};

const FMT1: Record<number, string> = {
  0x01: 'ASYMMETRIC', 0x02: 'ATTRIBUTES', 0x03: 'HASH', 0x04: 'VALUE', 0x05: 'HIERARCHY', 0x07: 'KEY_SIZE',
  0x08: 'MGF', 0x09: 'MODE', 0x0a: 'TYPE', 0x0b: 'HANDLE', 0x0c: 'KDF', 0x0d: 'RANGE', 0x0e: 'AUTH_FAIL',
  0x0f: 'NONCE', 0x10: 'PP', 0x12: 'SCHEME', 0x15: 'SIZE', 0x16: 'SYMMETRIC', 0x17: 'TAG', 0x18: 'SELECTOR',
  0x1a: 'INSUFFICIENT', 0x1b: 'SIGNATURE', 0x1c: 'KEY', 0x1d: 'POLICY_FAIL', 0x1f: 'INTEGRITY', 0x20: 'TICKET',
  0x21: 'RESERVED_BITS', 0x22: 'BAD_AUTH', 0x23: 'EXPIRED', 0x24: 'POLICY_CC', 0x25: 'BINDING', 0x26: 'CURVE',
  0x27: 'ECC_POINT',
};

export const TPM_RC_INITIALIZE = 0x100;
export const TPM_RC_RETRY = 0x922;

/** Decoded response code: a TPM_RC_* name and, for format 1, what it refers to. */
export function describeRc(rc: number): { name: string; detail: string } {
  const hexRc = `0x${rc.toString(16).padStart(3, '0')}`;
  if (rc >>> 16 !== 0) return { name: `TSS layer ${rc >>> 16} code ${rc & 0xffff}`, detail: hexRc };
  if (rc & 0x80) {
    const name = `TPM_RC_${FMT1[rc & 0x3f] ?? `FMT1_0x${(rc & 0x3f).toString(16)}`}`;
    const n = (rc >> 8) & 0xf;
    let where: string;
    if (rc & 0x40) where = `parameter ${n}`;
    else if (rc & 0x800) where = `session ${n & 0x7}`;
    else where = n === 0 ? 'no specific handle' : `handle ${n & 0x7}`;
    return { name, detail: `${where} (${hexRc})` };
  }
  if (rc & 0x400) return { name: `TPM_RC vendor-specific ${hexRc}`, detail: hexRc };
  if (rc & 0x100) return { name: `TPM_RC_${FMT0[rc & 0xfff] ?? `0x${(rc & 0xfff).toString(16)}`}`, detail: hexRc };
  return { name: `TPM 1.2 response code`, detail: hexRc };
}

/** A TPM command returned a non-success response code. */
export class TpmCommandError extends SidecarError {
  readonly rc: number;
  readonly rcName: string;
  readonly command: string;

  constructor(command: string, rc: number) {
    const { name, detail } = describeRc(rc);
    super('tpm_command_failed', `TPM2_${command} failed: ${name} (${detail})`);
    this.rc = rc;
    this.rcName = name;
    this.command = command;
  }
}

/** The TPM could not be reached or answered with bytes that are not a TPM response. */
export class TpmTransportError extends SidecarError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('tpm_transport_failed', message, options);
  }
}
