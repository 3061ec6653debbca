/**
 * The peer identity's share of the app connections (PeerAdmission): a turn now (two counter
 * compares), or a bounded wait in the identity's queue, refused with 429 when the queue is full
 * or the wait runs out. Only the wait allocates (its promise).
 *
 * From here on the request holds a turn (`ctx.holdsTurn`): the chain's ends give it back exactly
 * once, when the exchange with the app ends or when a later filter refuses or fails.
 */
import type { RequestFilter, FilterOutcome } from '../../chain.js';
import { hasRequestBody } from '../../forward.js';
import { PEER_BUSY, type PeerAdmission } from '../../peer-admission.js';
import type { InboundContext } from '../context.js';

export function admissionFilter(admission: PeerAdmission): RequestFilter<InboundContext> {
  return {
    name: 'admission',
    onRequest(ctx) {
      const conn = ctx.conn!;
      const slots = (conn.slots ??= admission.attach(conn.peer.id));
      ctx.slots = slots;
      if (admission.tryAcquire(slots)) {
        ctx.holdsTurn = true;
        return undefined;
      }
      return new Promise<FilterOutcome>((resolve) => {
        admission.wait(
          slots,
          ctx.res,
          () => {
            ctx.holdsTurn = true;
            resolve(undefined);
          },
          () => {
            // An unread body would have to be drained: close instead.
            if (hasRequestBody(ctx.req)) ctx.res.shouldKeepAlive = false;
            resolve(PEER_BUSY);
          },
        );
      });
    },
  };
}
