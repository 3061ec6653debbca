/**
 * Caller authentication (only with `caller_token_file`): every request must carry the caller
 * token as its proxy password, so that no other process in the pod can borrow the agent's
 * identity.
 */
import type { Refusal } from '../../../reasons.js';
import type { RequestFilter } from '../../chain.js';
import type { OutboundRequest } from '../context.js';

/** What the filter needs of CallerTokenCheck: undefined when the value carries the token, else the refusal. */
export interface CallerToken {
  check(proxyAuthorization: string | undefined): Refusal | undefined;
}

export function callerAuthFilter(token: CallerToken): RequestFilter<OutboundRequest> {
  return {
    name: 'caller-auth',
    onRequest: (ctx) => token.check(ctx.req.headers['proxy-authorization']),
  };
}
