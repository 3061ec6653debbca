/**
 * The filters about identities: ours must be valid and not stopped by the kill switch, the
 * upstream's must not be revoked.
 */
import { refusal } from '../../../reasons.js';
import type { RevocationState } from '../../../revocation/state.js';
import type { TlsMaterial } from '../../../spiffe/tls.js';
import type { RequestFilter } from '../../chain.js';
import type { OutboundRequest } from '../context.js';

/** What the identity filters need of the proxy. */
export interface IdentitySource {
  /** The current identity generation, if any. */
  material(): TlsMaterial | undefined;
  now(): number;
  /** Why this side refuses all traffic (kill-all, our own ID revoked); undefined when it serves. */
  stoppedReason(): string | undefined;
}

/** An unexpired SVID is installed and the route has a pool built on it. */
export function identityReadyFilter(identity: IdentitySource): RequestFilter<OutboundRequest> {
  return {
    name: 'identity-ready',
    onRequest(ctx) {
      const material = identity.material();
      if (material === undefined || identity.now() >= material.notAfterMs || ctx.route!.pool === undefined) return refusal('no_svid');
      ctx.material = material;
      return undefined;
    },
  };
}

/** Only with revocations: a kill-all or our own ID revoked stops this side. */
export function killSwitchFilter(identity: IdentitySource): RequestFilter<OutboundRequest> {
  return {
    name: 'kill-switch',
    onRequest: () => (identity.stoppedReason() !== undefined ? refusal('kill_switch') : undefined),
  };
}

/** Only with revocations: a route whose server ID is revoked is refused before dialling. */
export function upstreamRevokedFilter(revocations: () => RevocationState): RequestFilter<OutboundRequest> {
  return {
    name: 'upstream-revoked',
    onRequest(ctx) {
      const serverId = ctx.route!.config.serverId;
      return serverId && revocations().byId.has(serverId) ? refusal('upstream_revoked') : undefined;
    },
  };
}
