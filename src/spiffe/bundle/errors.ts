import { SidecarError } from '../../errors.js';

export type BundleErrorReason = 'x509_bundle_invalid' | 'jwt_bundle_invalid' | 'spiffe_bundle_invalid' | 'bundle_set_conflict';

/** A trust bundle that cannot be parsed or combined. */
export class BundleError extends SidecarError {
  declare readonly reason: BundleErrorReason;
  constructor(reason: BundleErrorReason, message: string, options?: { cause?: unknown }) {
    super(reason, message, options);
  }
}
