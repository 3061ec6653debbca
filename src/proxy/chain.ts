/**
 * A request filter chain, in the manner of Envoy's HTTP filter chain and fastify's hooks: the
 * filters of a direction run in a fixed order over one per-request context, each either letting
 * the request continue or answering it with a refusal; the last step is the router.
 *
 * Built once from config: a disabled feature is no filter at all, so it costs nothing. A filter is
 * synchronous unless it must wait (a budget charge, a turn at the app); when every filter
 * continues synchronously the chain allocates nothing beyond the context it is given.
 */
import type { Refusal } from '../reasons.js';

/** `undefined`: continue with the next filter. A refusal: answer with it and stop. */
export type FilterOutcome = Refusal | undefined;

export interface RequestFilter<C> {
  /** Stable name: the chain-order test and the docs' diagram use it. */
  readonly name: string;
  onRequest(ctx: C): FilterOutcome | Promise<FilterOutcome>;
}

/** What happens at the chain's ends. */
export interface ChainEnds<C> {
  /** Every filter continued: forward the request. */
  route(ctx: C): void;
  /** A filter refused: answer, audit, count. */
  refuse(ctx: C, refusal: Refusal): void;
  /**
   * A filter or the router threw (or its promise rejected): a bug fails this request, never the
   * process. Should this throw too, the chain drops that error.
   */
  fail(ctx: C, err: unknown): void;
}

export class FilterChain<C> {
  readonly filters: readonly RequestFilter<C>[];

  /** `filters` may hold `undefined` for features the config leaves off: they are dropped here. */
  constructor(
    filters: readonly (RequestFilter<C> | undefined | false)[],
    private readonly ends: ChainEnds<C>,
  ) {
    this.filters = filters.filter((f): f is RequestFilter<C> => Boolean(f));
  }

  /** The filter names in order. */
  get names(): string[] {
    return this.filters.map((f) => f.name);
  }

  run(ctx: C): void {
    this.resume(ctx, 0);
  }

  private resume(ctx: C, from: number): void {
    const filters = this.filters;
    try {
      for (let i = from; i < filters.length; i++) {
        const out = filters[i]!.onRequest(ctx);
        if (out === undefined) continue;
        if (isPromise(out)) {
          out.then(
            (r) => (r === undefined ? this.resume(ctx, i + 1) : this.settleRefusal(ctx, r)),
            (err: unknown) => this.failSafely(ctx, err),
          );
          return;
        }
        this.ends.refuse(ctx, out);
        return;
      }
      this.ends.route(ctx);
    } catch (err) {
      this.failSafely(ctx, err);
    }
  }

  private settleRefusal(ctx: C, refusal: Refusal): void {
    try {
      this.ends.refuse(ctx, refusal);
    } catch (err) {
      this.failSafely(ctx, err);
    }
  }

  /**
   * `fail` is the last resort: should it throw as well, the error is dropped here rather than
   * escape into node's request event or a promise nobody awaits, either of which ends the process.
   */
  private failSafely(ctx: C, err: unknown): void {
    try {
      this.ends.fail(ctx, err);
    } catch {
      // Nothing is left to answer with; the end's own fallback (if any) has run.
    }
  }
}

function isPromise<T>(v: T | Promise<T>): v is Promise<T> {
  return typeof (v as { then?: unknown }).then === 'function';
}
