/**
 * The header screen's verdict. The screen itself runs when the context is made (so that every
 * record of the request, a peer refusal's too, carries its request id); its refusal (431 too
 * many fields, 400 an override field) is answered here, after the peer checks.
 */
import type { RequestFilter } from '../../chain.js';
import type { InboundContext } from '../context.js';

export const headerScreen: RequestFilter<InboundContext> = {
  name: 'header-screen',
  onRequest: (ctx) => (ctx.screen.ok ? undefined : ctx.screen),
};
