/**
 * Prometheus metrics of one sidecar (its own Registry, so several sidecars can share a process:
 * the dev mesh does). Label children are cached: the hot path does a Map lookup and an add.
 */
import client from 'prom-client';

export type Direction = 'inbound' | 'outbound';

export interface MetricsGauges {
  /** Seconds until the current SVID expires; undefined without an SVID. */
  svidSecondsToExpiry(): number | undefined;
  /** Number of open inbound (mTLS) connections. */
  inboundConnections(): number;
}

export class SidecarMetrics {
  readonly registry: client.Registry;
  private readonly requests: client.Counter<'direction' | 'decision' | 'reason'>;
  private readonly latency: client.Histogram<'direction' | 'decision'>;
  private readonly handshakeFailures: client.Counter<'direction' | 'reason'>;
  private readonly upstreamErrors: client.Counter<'direction' | 'reason'>;
  readonly rotations: client.Counter<string>;
  readonly bundleUpdates: client.Counter<string>;
  private readonly policyReloads: client.Counter<'result'>;
  private readonly requestChildren = new Map<string, client.Counter.Internal>();
  private readonly latencyChildren = new Map<string, client.Histogram.Internal<'direction' | 'decision'>>();

  constructor(gauges: MetricsGauges, defaultLabels: Record<string, string> = {}) {
    const registry = new client.Registry();
    registry.setDefaultLabels(defaultLabels);
    this.registry = registry;
    this.requests = new client.Counter({
      name: 'attest_sidecar_requests_total',
      help: 'Requests handled, by direction, decision (allow|deny|error) and reason code.',
      labelNames: ['direction', 'decision', 'reason'],
      registers: [registry],
    });
    this.latency = new client.Histogram({
      name: 'attest_sidecar_request_duration_seconds',
      help: 'Time from request received to response headers sent, by direction and decision.',
      labelNames: ['direction', 'decision'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10],
      registers: [registry],
    });
    this.handshakeFailures = new client.Counter({
      name: 'attest_sidecar_peer_rejections_total',
      help: 'mTLS peers rejected after the handshake by SPIFFE verification, by reason code.',
      labelNames: ['direction', 'reason'],
      registers: [registry],
    });
    this.upstreamErrors = new client.Counter({
      name: 'attest_sidecar_upstream_errors_total',
      help: 'Failures reaching the next hop, by reason code.',
      labelNames: ['direction', 'reason'],
      registers: [registry],
    });
    this.rotations = new client.Counter({
      name: 'attest_sidecar_svid_rotations_total',
      help: 'SVID changes received from the identity source.',
      registers: [registry],
    });
    this.bundleUpdates = new client.Counter({
      name: 'attest_sidecar_bundle_updates_total',
      help: 'Trust bundle changes received from the identity source.',
      registers: [registry],
    });
    this.policyReloads = new client.Counter({
      name: 'attest_sidecar_policy_reloads_total',
      help: 'Policy reloads, by result (success|failure). A failure keeps the last good policy.',
      labelNames: ['result'],
      registers: [registry],
    });
    new client.Gauge({
      name: 'attest_sidecar_svid_expiry_seconds',
      help: 'Seconds until the current X509-SVID expires (absent without an SVID).',
      registers: [registry],
      collect() {
        const s = gauges.svidSecondsToExpiry();
        if (s === undefined) this.reset();
        else this.set(s);
      },
    });
    new client.Gauge({
      name: 'attest_sidecar_inbound_connections',
      help: 'Open inbound mTLS connections.',
      registers: [registry],
      collect() {
        this.set(gauges.inboundConnections());
      },
    });
    client.collectDefaultMetrics({ register: registry, prefix: 'attest_sidecar_' });
  }

  /** Counts one finished request and its latency (seconds). */
  request(direction: Direction, decision: 'allow' | 'deny' | 'error', reason: string, seconds: number): void {
    const key = `${direction}|${decision}|${reason}`;
    let counter = this.requestChildren.get(key);
    if (!counter) {
      counter = this.requests.labels(direction, decision, reason);
      this.requestChildren.set(key, counter);
    }
    counter.inc();
    const lkey = `${direction}|${decision}`;
    let hist = this.latencyChildren.get(lkey);
    if (!hist) {
      hist = this.latency.labels(direction, decision);
      this.latencyChildren.set(lkey, hist);
    }
    hist.observe(seconds);
  }

  peerRejected(direction: Direction, reason: string): void {
    this.handshakeFailures.labels(direction, reason).inc();
  }

  upstreamError(direction: Direction, reason: string): void {
    this.upstreamErrors.labels(direction, reason).inc();
  }

  policyReload(ok: boolean): void {
    this.policyReloads.labels(ok ? 'success' : 'failure').inc();
  }
}
