/**
 * The peer checks every request passes first: the connection's peer was verified at the
 * handshake (and still verifies against the bundles, which may have changed since), its
 * certificate has not expired since, and the kill switch has not revoked it.
 * A revoked or expired peer still completes the handshake so that it can be told why; its
 * connection is closed after that answer (the catalogue marks both codes `close`).
 */
import type { RevocationState } from '../../../revocation/state.js';
import { refusal } from '../../../reasons.js';
import type { RequestFilter } from '../../chain.js';
import type { InboundContext } from '../context.js';

const UNVERIFIED = refusal('peer_unverified');
const WITHDRAWN = refusal('peer_trust_withdrawn');
const EXPIRED = refusal('svid_expired');
const REVOKED = refusal('agent_revoked');

export const peerVerified: RequestFilter<InboundContext> = {
  name: 'peer-verified',
  onRequest: (ctx) => (ctx.conn === undefined ? UNVERIFIED : ctx.conn.trustWithdrawn ? WITHDRAWN : undefined),
};

export function peerExpiry(now: () => number): RequestFilter<InboundContext> {
  return {
    name: 'peer-expiry',
    onRequest: (ctx) => (now() >= ctx.peer.notAfterMs ? EXPIRED : undefined),
  };
}

/** Absent when the listener has no revocation source. */
export function revocation(revocations: () => RevocationState): RequestFilter<InboundContext> {
  return {
    name: 'revocation',
    onRequest: (ctx) => (revocations().isRevoked(ctx.peer.id) ? REVOKED : undefined),
  };
}
