/**
 * The ends of the inbound chain: forwarding an allowed request to the app (its screened headers,
 * identity first) and settling the exchange; answering a refusal; failing a request a bug broke.
 * Every end gives the request's admission turn back, exactly once, and records the outcome once.
 */
import type { Dispatcher } from 'undici';
import type { Logger } from '../../lib/log.js';
import { refusal, type Refusal } from '../../reasons.js';
import type { ChainEnds } from '../chain.js';
import { DecisionLog, pathOnly } from '../decision-log.js';
import { errorBody, forwardRequestThen, sendJsonError, type ForwardResult } from '../forward.js';
import type { PeerAdmission } from '../peer-admission.js';
import type { InboundContext } from './context.js';

const INTERNAL_ERROR = refusal('internal_error');

/** The upstream failure counter (SidecarMetrics has it). */
export interface UpstreamMetrics {
  upstreamError(direction: 'inbound', reason: string): void;
}

export class InboundRouter implements ChainEnds<InboundContext> {
  constructor(
    private readonly app: Dispatcher,
    private readonly admission: PeerAdmission,
    private readonly log: DecisionLog,
    private readonly metrics: UpstreamMetrics,
    private readonly logger: Logger,
  ) {}

  route(ctx: InboundContext): void {
    forwardRequestThen(this.app, ctx.req, ctx.res, ctx, (result) => this.settle(ctx, result));
  }

  refuse(ctx: InboundContext, refusal: Refusal): void {
    this.releaseTurn(ctx);
    if (refusal.close) ctx.res.shouldKeepAlive = false;
    sendJsonError(ctx.res, refusal.status, refusal.body, refusal.headers as Record<string, string> | undefined);
    this.record(ctx, refusal.decision, refusal.reason, refusal.status);
  }

  fail(ctx: InboundContext, err: unknown): void {
    try {
      this.logger.error({ err: (err as Error)?.stack ?? String(err) }, 'inbound request failed');
      this.refuse(ctx, INTERNAL_ERROR);
    } catch {
      // Not even the 500 could be sent: cut the exchange rather than leave the client waiting.
      this.releaseTurn(ctx);
      ctx.res.destroy();
    }
  }

  private settle(ctx: InboundContext, result: ForwardResult): void {
    this.releaseTurn(ctx);
    try {
      if (typeof result === 'number') {
        this.record(ctx, 'allow', 'allowed', result);
      } else if (!('intercepted' in result)) {
        // A stalled request body (408) is the client's doing, not an upstream failure.
        const clientFault = result.status === 408;
        if (!clientFault) this.metrics.upstreamError('inbound', result.reason);
        sendJsonError(ctx.res, result.status, errorBody(result.message));
        this.record(ctx, clientFault ? 'deny' : 'error', result.reason, result.status);
      }
    } catch (err) {
      // A bug after the exchange fails this request, never the process.
      this.fail(ctx, err);
    }
  }

  /** Gives the request's admission turn back if it holds one (a second call does nothing). */
  private releaseTurn(ctx: InboundContext): void {
    if (!ctx.holdsTurn) return;
    ctx.holdsTurn = false;
    this.admission.release(ctx.slots!);
  }

  private record(ctx: InboundContext, decision: 'allow' | 'deny' | 'error', reason: string, status: number): void {
    const req = ctx.req;
    this.log.record(ctx.start, decision, reason, status, req.method, pathOnly(req.url), ctx.conn?.peer.id, undefined, ctx.action, ctx.requestId);
  }
}
