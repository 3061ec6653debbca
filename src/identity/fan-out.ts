/**
 * Identity fan-out: every SVID or bundle change from the identity source becomes TLS material
 * once and is installed into each consumer (outbound proxy, inbound listener, admin mTLS) in
 * registration order. Installs are serialised: a consumer sees generations in order and never
 * two installs at once, even when the source rotates while a listener is still binding.
 */
import { errorMessage } from '../errors.js';
import type { Logger } from '../lib/log.js';
import type { IdentityState, SourceHealth, X509Source } from '../spiffe/source.js';
import { buildTlsMaterial, type TlsMaterial } from '../spiffe/tls.js';
import type { ReadinessCheck } from '../lib/readiness.js';

/** A part that serves with our identity; a rejection keeps the previous identity everywhere after it. */
export interface IdentityConsumer {
  applyIdentity(material: TlsMaterial): void | Promise<void>;
}

/** The counters the fan-out moves (SidecarMetrics has them). */
export interface IdentityMetrics {
  readonly rotations: { inc(): void };
  readonly bundleUpdates: { inc(): void };
}

export interface IdentityFanOutDeps {
  metrics: IdentityMetrics;
  logger: Pick<Logger, 'info' | 'error'>;
  /** Clock (epoch ms) for the expiry check. */
  now: () => number;
  /** Turns a state into TLS material; tests substitute a cheap one. */
  build?: (state: IdentityState) => TlsMaterial;
}

export class IdentityFanOut {
  private readonly consumers: IdentityConsumer[] = [];
  private readonly build: (state: IdentityState) => TlsMaterial;
  private source: X509Source | undefined;
  private unsubscribe: (() => void) | undefined;
  private latest: IdentityState | undefined;
  private installed: TlsMaterial | undefined;
  private applying: Promise<void> = Promise.resolve();
  private stopped = false;
  private firstError: unknown;

  constructor(private readonly deps: IdentityFanOutDeps) {
    this.build = deps.build ?? buildTlsMaterial;
  }

  /** Adds a consumer; it receives every identity installed after this call. */
  register(consumer: IdentityConsumer | undefined): void {
    if (consumer) this.consumers.push(consumer);
  }

  /** The newest state offered (installed or being installed). */
  get state(): IdentityState | undefined {
    return this.latest;
  }

  /** The TLS material of the last install that got as far as the consumers. */
  get material(): TlsMaterial | undefined {
    return this.installed;
  }

  /** Why the first install failed, if it did (e.g. the inbound port is taken). */
  get firstInstallError(): unknown {
    return this.firstError;
  }

  /** The health of the source followed (undefined before follow()). */
  sourceHealth(): SourceHealth | undefined {
    return this.source?.health();
  }

  /** Installs the source's current identity, then every change it reports until close(). */
  follow(source: X509Source): void {
    this.source = source;
    this.unsubscribe = source.subscribe((state) => this.offer(state));
    const first = source.current();
    if (first) this.offer(first);
  }

  /** Queues `state` for install behind any install in progress; repeats and offers after close() are ignored. */
  offer(state: IdentityState): void {
    if (this.stopped || state === this.latest) return;
    const previous = this.latest;
    this.latest = state;
    this.applying = this.applying.then(() => this.install(state, previous));
  }

  /** Resolves once the newest state offered has been installed in every consumer (or failed). */
  settled(): Promise<void> {
    return this.applying;
  }

  /** Stops following the source; installs already queued finish. */
  close(): void {
    this.stopped = true;
    this.unsubscribe?.();
    this.unsubscribe = undefined;
  }

  /** svid, bundle and (when the source reports one) identity_source, as /readyz shows them. */
  readinessChecks(): [string, () => ReadinessCheck | undefined][] {
    return [
      ['svid', () => svidCheck(this.latest, this.deps.now(), this.source?.health().lastError)],
      ['bundle', () => bundleCheck(this.latest)],
      ['identity_source', () => sourceCheck(this.source?.health())],
    ];
  }

  private async install(state: IdentityState, previous: IdentityState | undefined): Promise<void> {
    try {
      const material = this.build(state);
      const serial = state.svid.certificates[0]!.serialNumber;
      if (previous && previous.svid.certificates[0]!.serialNumber !== serial) this.deps.metrics.rotations.inc();
      if (previous && !previous.bundles.equals(state.bundles)) this.deps.metrics.bundleUpdates.inc();
      this.installed = material;
      for (const consumer of this.consumers) await consumer.applyIdentity(material);
      this.deps.logger.info(
        { spiffe_id: material.ownId, serial, not_after: state.svid.notAfter.toISOString(), generation: state.generation },
        previous ? 'identity updated' : 'identity installed',
      );
    } catch (err) {
      if (!previous) this.firstError = err;
      this.deps.logger.error({ err: errorMessage(err) }, 'failed to install identity; keeping the previous one');
    }
  }
}

/** Not ready without an unexpired SVID; the source's last error says why none came (e.g. the agent's "no identity issued"). */
export function svidCheck(state: IdentityState | undefined, now: number, sourceError?: string): ReadinessCheck {
  const why = sourceError ? ` (identity source: ${sourceError})` : '';
  if (!state) return { ok: false, detail: `no SVID received yet${why}` };
  if (now >= state.svid.notAfter.getTime()) return { ok: false, detail: `SVID expired at ${state.svid.notAfter.toISOString()}${why}` };
  return { ok: true, detail: state.svid.id.toString() };
}

export function bundleCheck(state: IdentityState | undefined): ReadinessCheck {
  const td = state?.svid.id.trustDomain;
  return td && state.bundles.getX509Bundle(td) ? { ok: true, detail: `trust domain ${td.name}` } : { ok: false, detail: 'no trust bundle for our own trust domain' };
}

/** Present only for an error retrying cannot fix: a healthy or merely waiting source adds no check. */
export function sourceCheck(health: SourceHealth | undefined): ReadinessCheck | undefined {
  return health?.unrecoverableError ? { ok: false, detail: health.unrecoverableError } : undefined;
}
