/**
 * Identity sources: where the proxy gets its own X.509-SVID and the trust bundles it verifies
 * peers with. Implementations: the Workload API (workload-api/source.ts), PEM files
 * (files-source.ts) and, in development, the embedded dev issuer via the Workload API.
 */
import type { X509Svid } from './svid.js';
import type { BundleSet } from './bundle/bundle-set.js';
import { SidecarError } from '../errors.js';
import type { Logger } from '../lib/log.js';

export interface IdentityState {
  readonly svid: X509Svid;
  /** Own trust domain + federated ones. */
  readonly bundles: BundleSet;
  /** +1 per change. */
  readonly generation: number;
}

export interface SourceHealth {
  connected: boolean;
  lastError?: string;
  lastUpdate?: Date;
  /**
   * An error that waiting or retrying cannot fix (a configuration mistake: wrong socket, files
   * that do not make an identity). Readiness reports it until a good identity replaces it.
   */
  unrecoverableError?: string;
}

export interface X509Source {
  /** Synchronous and cheap; undefined before the first SVID. */
  current(): IdentityState | undefined;
  /** Called on every change (rotation, bundle change); returns an unsubscribe function. */
  subscribe(listener: (state: IdentityState) => void): () => void;
  /** Resolves with the first state; rejects with SidecarError reason `svid_timeout`. */
  waitReady(timeoutMs: number): Promise<IdentityState>;
  health(): SourceHealth;
  close(): Promise<void>;
}

/** Same SVID (leaf + chain bytes, hint) and same bundles: nothing for subscribers to do. */
export function sameIdentity(a: { svid: X509Svid; bundles: BundleSet }, b: { svid: X509Svid; bundles: BundleSet }): boolean {
  const ca = a.svid.certificates;
  const cb = b.svid.certificates;
  if (ca.length !== cb.length || a.svid.hint !== b.svid.hint) return false;
  for (let i = 0; i < ca.length; i++) if (!ca[i]!.raw.equals(cb[i]!.raw)) return false;
  return a.bundles.equals(b.bundles);
}

/**
 * Shared state keeping for sources: generation counter, listeners, waitReady, health.
 * Subclasses call `publish()` with each parsed candidate and `fail()` with each error.
 */
export abstract class BaseX509Source implements X509Source {
  private state: IdentityState | undefined;
  private readonly listeners = new Set<(state: IdentityState) => void>();
  private readonly waiters = new Set<{ ready: (state: IdentityState) => void; abort: (error: Error) => void }>();
  protected connected = false;
  protected lastError: string | undefined;
  protected lastUpdate: Date | undefined;
  protected unrecoverable: string | undefined;
  protected readonly logger: Logger | undefined;

  protected constructor(logger?: Logger) {
    this.logger = logger;
  }

  current(): IdentityState | undefined {
    return this.state;
  }

  subscribe(listener: (state: IdentityState) => void): () => void {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }

  waitReady(timeoutMs: number): Promise<IdentityState> {
    if (this.state) return Promise.resolve(this.state);
    return new Promise((resolve, reject) => {
      const waiter = {
        ready: (state: IdentityState): void => {
          clearTimeout(timer);
          this.waiters.delete(waiter);
          resolve(state);
        },
        abort: (error: Error): void => {
          clearTimeout(timer);
          this.waiters.delete(waiter);
          reject(error);
        },
      };
      const timer = setTimeout(() => {
        const why = this.lastError ? ` (last error: ${this.lastError})` : '';
        waiter.abort(new SidecarError('svid_timeout', `no X.509-SVID within ${timeoutMs} ms${why}`));
      }, timeoutMs);
      this.waiters.add(waiter);
    });
  }

  health(): SourceHealth {
    return {
      connected: this.connected,
      ...(this.lastError !== undefined ? { lastError: this.lastError } : {}),
      ...(this.lastUpdate !== undefined ? { lastUpdate: this.lastUpdate } : {}),
      ...(this.unrecoverable !== undefined ? { unrecoverableError: this.unrecoverable } : {}),
    };
  }

  abstract close(): Promise<void>;

  /** Accepts a freshly parsed identity; emits a new generation only if it differs. Returns whether it did. */
  protected publish(next: { svid: X509Svid; bundles: BundleSet }): boolean {
    this.lastUpdate = new Date();
    this.lastError = undefined;
    this.unrecoverable = undefined;
    const prev = this.state;
    if (prev && sameIdentity(prev, next)) return false;
    const state: IdentityState = Object.freeze({
      svid: next.svid,
      bundles: next.bundles,
      generation: (prev?.generation ?? 0) + 1,
    });
    this.state = state;
    this.logger?.info(
      { spiffeId: state.svid.id.toString(), serial: state.svid.certificates[0]?.serialNumber, notAfter: state.svid.notAfter.toISOString(), generation: state.generation },
      'identity updated',
    );
    for (const w of [...this.waiters]) w.ready(state);
    for (const l of [...this.listeners]) {
      try {
        l(state);
      } catch (err) {
        this.logger?.error({ err: (err as Error)?.message }, 'identity listener threw');
      }
    }
    return true;
  }

  /** Records an error; the previous good state is kept. */
  protected fail(err: unknown, unrecoverable = false): void {
    this.lastError = err instanceof Error ? err.message : String(err);
    if (unrecoverable) this.unrecoverable = this.lastError;
  }

  /** On close: drops listeners and rejects pending waitReady() calls. */
  protected clearListeners(): void {
    this.listeners.clear();
    for (const w of [...this.waiters]) w.abort(new SidecarError('source_closed', 'identity source closed before an SVID arrived'));
  }
}
