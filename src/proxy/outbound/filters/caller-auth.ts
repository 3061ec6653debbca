/**
 * Caller authentication (only with `caller_token_file`): every request must carry the caller
 * token as its proxy password, so that no other process in the pod can borrow the agent's
 * identity.
 */
import { REASONS, refuse, type Refusal } from '../../../reasons.js';
import type { RequestFilter } from '../../chain.js';
import type { CallerCheck } from '../../caller-auth.js';
import type { OutboundRequest } from '../context.js';

/** What the filter needs of CallerTokenCheck. */
export interface CallerToken {
  check(proxyAuthorization: string | undefined): CallerCheck;
  readonly unavailableReason: string;
}

const UNAUTHENTICATED: Refusal = refuse('caller_unauthenticated', REASONS.caller_unauthenticated.message, { 'proxy-authenticate': 'Basic realm="attest-sidecar"' });

export function callerAuthFilter(token: CallerToken): RequestFilter<OutboundRequest> {
  return {
    name: 'caller-auth',
    onRequest(ctx) {
      const verdict = token.check(ctx.req.headers['proxy-authorization']);
      if (verdict === 'ok') return undefined;
      if (verdict === 'unavailable') return refuse('caller_token_unavailable', `Caller token unavailable: ${token.unavailableReason}`);
      return UNAUTHENTICATED;
    },
  };
}
