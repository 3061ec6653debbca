import { SidecarError } from '../../src/errors.js';

/**
 * The reason code of the typed error (AttestationError, ConfigError, ...) `fn` throws, or 'ok'.
 * Anything untyped (a TypeError: a bug) propagates and fails the test.
 */
export function reasonOf(fn: () => unknown): string {
  try {
    fn();
    return 'ok';
  } catch (err) {
    if (err instanceof SidecarError) return err.reason;
    throw err;
  }
}
