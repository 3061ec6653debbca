/** Capped exponential backoff with jitter, for reconnecting Workload API streams. */
export interface BackoffOptions {
  initialMs?: number;
  maxMs?: number;
}

export class Backoff {
  private readonly initialMs: number;
  private readonly maxMs: number;
  private attempt = 0;

  constructor(opts: BackoffOptions = {}) {
    this.initialMs = Math.max(1, opts.initialMs ?? 100);
    this.maxMs = Math.max(this.initialMs, opts.maxMs ?? 5000);
  }

  /** Next delay: initial * 2^n capped at max, then jittered to [50%, 100%] so clients spread out. */
  next(): number {
    const exp = Math.min(this.maxMs, this.initialMs * 2 ** Math.min(this.attempt, 30));
    this.attempt++;
    return Math.round(exp / 2 + Math.random() * (exp / 2));
  }

  reset(): void {
    this.attempt = 0;
  }
}
