/**
 * The ends of the outbound chain: the router, which forwards an admitted request on its route's
 * dispatcher (the pool, with the attestation handshake composed on it for SPIFFE routes of an
 * attesting sidecar), and the answers to refused and failed requests.
 */
import type { Logger } from '../../lib/log.js';
import { refusal, type Refusal } from '../../reasons.js';
import type { ChainEnds } from '../chain.js';
import { pathOnly, type DecisionLog } from '../decision-log.js';
import { errorBody, forwardRequestThen, sendJsonError, type ForwardOptions, type ForwardResult } from '../forward.js';
import { forwardRequestHeaders } from '../headers.js';
import { responseTransform, type MeteringMetrics } from '../metering.js';
import { H_REQUEST_ID } from '../request-headers.js';
import type { SpendGate } from '../spend.js';
import type { OutboundRequest } from './context.js';
import type { OutboundMetrics } from './metrics.js';

/** Where outcomes are recorded (the direction's DecisionLog). */
export type OutcomeLog = Pick<DecisionLog, 'record'>;

export interface RouterDeps {
  log: OutcomeLog;
  metrics: Pick<OutboundMetrics, 'upstreamError'>;
  logger: Logger;
  bodyProgressTimeoutMs: number;
  spend: SpendGate | undefined;
  operationsMetrics: MeteringMetrics | undefined;
}

export class OutboundRouter implements ChainEnds<OutboundRequest> {
  constructor(private readonly deps: RouterDeps) {}

  route(ctx: OutboundRequest): void {
    const route = ctx.route!;
    const dispatcher = route.dispatcher;
    // The pool went away (SVID expired) while a filter waited.
    if (dispatcher === undefined) return this.refuse(ctx, refusal('no_svid'));
    ctx.auditPath = ctx.path;
    // Our fields go first (see forwardRequestHeaders): the request id, a web route's Host, the credentials.
    const extra = [H_REQUEST_ID, ctx.requestId];
    if (route.hostHeader !== undefined) extra.push(...route.hostHeader);
    if (ctx.injected !== undefined) extra.push(...ctx.injected);
    const timeoutMs = route.config.requestTimeoutMs;
    const opts: ForwardOptions = {
      path: route.basePath + ctx.path,
      headers: forwardRequestHeaders(ctx.req.rawHeaders, route.drop, extra),
      headersTimeoutMs: timeoutMs,
      bodyTimeoutMs: timeoutMs,
      bodyProgressTimeoutMs: this.deps.bodyProgressTimeoutMs,
      servername: route.servername,
    };
    if (route.injector !== undefined || route.config.metering !== undefined) opts.transformResponse = this.responseControls(ctx);
    forwardRequestThen(dispatcher, ctx.req, ctx.res, opts, (result) => this.settle(ctx, result));
  }

  refuse(ctx: OutboundRequest, refusal: Refusal): void {
    sendJsonError(ctx.res, refusal.status, refusal.body, refusal.headers as Record<string, string> | undefined);
    this.record(ctx, refusal.decision, refusal.reason, refusal.status);
  }

  fail(ctx: OutboundRequest, err: unknown): void {
    this.deps.logger.error({ err: (err as Error)?.stack ?? String(err) }, 'outbound request failed');
    this.refuse(ctx, refusal('internal_error'));
  }

  private settle(ctx: OutboundRequest, result: ForwardResult): void {
    try {
      if (typeof result === 'number') {
        this.record(ctx, 'allow', 'forwarded', result);
        return;
      }
      const decision = result.decision ?? 'error';
      if (decision === 'error') {
        // The agent's doing (a stalled body) is no failure; this side's and the upstream's are logged.
        if (!result.local) this.deps.metrics.upstreamError('outbound', result.reason);
        const fields = { route: ctx.routeName, reason: result.reason, err: result.message };
        if (result.local) this.deps.logger.error(fields, 'attested forwarding failed');
        else this.deps.logger.warn(fields, 'outbound upstream failure');
      }
      sendJsonError(ctx.res, result.status, errorBody(result.message));
      this.record(ctx, decision, result.reason, result.status);
    } catch (err) {
      // A bug after the exchange fails this request, never the process.
      this.fail(ctx, err);
    }
  }

  private record(ctx: OutboundRequest, decision: 'allow' | 'deny' | 'error', reason: string, status: number): void {
    this.deps.log.record(ctx.start, decision, reason, status, ctx.req.method, pathOnly(ctx.auditPath), undefined, ctx.routeName, undefined, ctx.requestId);
  }

  /**
   * The response stage of a route holding a credential or metering usage: the secret is
   * scrubbed from the response, and its metered cost settles the request's reservation (or is
   * counted, without a budget). A request the upstream never answered generated nothing: its
   * reservation is released.
   */
  private responseControls(ctx: OutboundRequest): NonNullable<ForwardOptions['transformResponse']> {
    const route = ctx.route!;
    const metering = route.config.metering;
    const reservation = ctx.reservation;
    const ownId = ctx.material!.ownId;
    const { spend, operationsMetrics } = this.deps;
    let settled = false;
    const settle = (costUsd: number) => {
      if (settled) return;
      settled = true;
      if (metering && reservation) spend!.settle(reservation.agent, reservation.budget, reservation.key, metering.reserveUsd, costUsd, route.config.name);
      else if (metering && costUsd > 0) operationsMetrics?.spent(ownId, 'metered', costUsd);
    };
    const transform = responseTransform({ route: route.config.name, secrets: route.injector?.secretValues(), metering, operationsMetrics, logger: this.deps.logger, onCost: settle });
    let upstreamAnswered = false;
    ctx.res.once('close', () => {
      if (!upstreamAnswered) settle(0);
    });
    return (status, headers) => {
      upstreamAnswered = true;
      return transform(status, headers);
    };
  }
}
