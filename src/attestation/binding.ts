/**
 * Binding evidence to an SVID key.
 *
 * The TEE's user-data field (SNP REPORT_DATA, TDX REPORTDATA: 64 bytes; TPM extraData: 32
 * bytes here, because a TPM's qualifyingData may not exceed its largest digest) carries
 *
 *     H( label || u32be(len(spki)) || spki || u32be(len(nonce)) || nonce )
 *
 * with H = SHA-512 for the 64-byte fields and SHA-256 for TPMs, `spki` the DER
 * SubjectPublicKeyInfo of the SVID the evidence travels with, and `nonce` the verifier's
 * challenge (empty in session mode). The versioned label keeps these digests from ever
 * colliding with another protocol's use of the same field.
 */
import { createHash } from 'node:crypto';
import { AttestationError } from './types.js';

export const BINDING_LABEL = 'attest-sidecar/evidence-binding/v1';
const LABEL = Buffer.from(`${BINDING_LABEL}\0`, 'ascii');

export type BindingSize = 64 | 32;

function lengthPrefixed(bytes: Uint8Array): Buffer[] {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(bytes.length);
  return [len, Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)];
}

/** The user data to put in (and expect from) the TEE field of the given size. */
export function bindingUserData(spki: Uint8Array, nonce: Uint8Array = new Uint8Array(0), size: BindingSize = 64): Buffer {
  const h = createHash(size === 64 ? 'sha512' : 'sha256');
  h.update(LABEL);
  for (const part of [...lengthPrefixed(spki), ...lengthPrefixed(nonce)]) h.update(part);
  return h.digest();
}

/** Refuses evidence whose user-data field (hex) is not the binding this verification expects. */
export function expectBinding(actualHex: string, expected: Buffer): void {
  if (actualHex !== expected.toString('hex')) {
    throw new AttestationError(
      'binding_mismatch',
      'the evidence is not bound to the SVID key of this connection (or to the nonce this sidecar issued)',
    );
  }
}
