import { AttestationError } from '../../src/attestation/types.js';

/** The reason code of the AttestationError `fn` throws, or 'ok'; anything else thrown propagates (fails the test). */
export function reasonOf(fn: () => unknown): string {
  try {
    fn();
    return 'ok';
  } catch (err) {
    if (err instanceof AttestationError) return err.reason;
    throw err;
  }
}
