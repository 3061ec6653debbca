/**
 * Prometheus metrics of one sidecar (its own Registry, so several sidecars can share a process:
 * the dev mesh does). Label children are cached: the hot path does a Map lookup and an add.
 */
import client from 'prom-client';

export type Direction = 'inbound' | 'outbound';

export interface AttestationCacheStats {
  hits: number;
  misses: number;
  evictions: number;
  size: number;
}

export interface MetricsGauges {
  /** Verdict cache counters (cumulative) and size; undefined without an attestation gate. */
  attestationCache?(): AttestationCacheStats | undefined;
  /** Seconds until the current SVID expires; undefined without an SVID. */
  svidSecondsToExpiry(): number | undefined;
  /** Number of open inbound (mTLS) connections. */
  inboundConnections(): number;
}

export class SidecarMetrics {
  readonly registry: client.Registry;
  private readonly requests = new RequestStats();
  private readonly handshakeFailures: client.Counter<'direction' | 'reason'>;
  private readonly upstreamErrors: client.Counter<'direction' | 'reason'>;
  private readonly connectionsRefused: client.Counter<'direction' | 'reason'>;
  readonly rotations: client.Counter<string>;
  /** Inbound connections whose peer passed SPIFFE verification (full TLS handshakes). */
  readonly inboundHandshakes: client.Counter<string>;
  readonly bundleUpdates: client.Counter<string>;
  private readonly policyReloads: client.Counter<'result'>;
  private readonly verifications: client.Counter<'type' | 'result'>;
  private readonly verificationLatency: client.Histogram<'type'>;

  constructor(gauges: MetricsGauges, defaultLabels: Record<string, string> = {}) {
    const registry = new client.Registry();
    registry.setDefaultLabels(defaultLabels);
    this.registry = registry;
    // Per-request counting is plain arithmetic (RequestStats); prom-client only formats it at
    // scrape time. (prom-client's own counters hash their label set on every increment.)
    registry.registerMetric(this.requests.counterMetric('attest_sidecar_requests_total', 'Requests handled, by direction, decision (allow|deny|error) and reason code.') as never);
    registry.registerMetric(
      this.requests.histogramMetric('attest_sidecar_request_duration_seconds', 'Time from request received to response headers sent, by direction and decision.') as never,
    );
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
    this.connectionsRefused = new client.Counter({
      name: 'attest_sidecar_connections_refused_total',
      help: 'Client connections a listener refused or closed (caps, timeouts, malformed requests), by listener and reason code.',
      labelNames: ['direction', 'reason'],
      registers: [registry],
    });
    this.inboundHandshakes = new client.Counter({
      name: 'attest_sidecar_inbound_connections_total',
      help: 'Inbound mTLS connections accepted after SPIFFE verification of the peer.',
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
        const seconds = gauges.svidSecondsToExpiry();
        if (seconds === undefined) this.reset();
        else this.set(seconds);
      },
    });
    new client.Gauge({
      // Not `attest_sidecar_inbound_connections`: that is the counter's family name in OpenMetrics.
      name: 'attest_sidecar_inbound_connections_open',
      help: 'Open inbound mTLS connections.',
      registers: [registry],
      collect() {
        this.set(gauges.inboundConnections());
      },
    });
    this.verifications = new client.Counter({
      name: 'attest_sidecar_attestation_verifications_total',
      help: 'Evidence verifications (cold path), by evidence type and result (success or the failure reason code).',
      labelNames: ['type', 'result'],
      registers: [registry],
    });
    this.verificationLatency = new client.Histogram({
      name: 'attest_sidecar_attestation_verification_seconds',
      help: 'Time to decode, verify and appraise one piece of evidence.',
      labelNames: ['type'],
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1],
      registers: [registry],
    });
    const cacheCounter = (name: string, help: string, pick: (stats: AttestationCacheStats) => number) =>
      new client.Counter({
        name,
        help,
        registers: [registry],
        collect() {
          const stats = gauges.attestationCache?.();
          if (!stats) return;
          this.reset();
          this.inc(pick(stats));
        },
      });
    cacheCounter('attest_sidecar_attestation_cache_hits_total', 'Attestation verdict cache hits (requests served without verification).', (s) => s.hits);
    cacheCounter('attest_sidecar_attestation_cache_misses_total', 'Attestation verdict cache misses.', (s) => s.misses);
    cacheCounter('attest_sidecar_attestation_cache_evictions_total', 'Attestation verdicts evicted (expired or over capacity).', (s) => s.evictions);
    new client.Gauge({
      name: 'attest_sidecar_attestation_cache_size',
      help: 'Attestation verdicts currently cached.',
      registers: [registry],
      collect() {
        this.set(gauges.attestationCache?.()?.size ?? 0);
      },
    });
    // The event-loop delay histogram samples every 50 ms instead of prom-client's 10 ms: a 10 ms
    // timer keeps an idle sidecar waking, and stalls worth alerting on are longer than 50 ms.
    // Standard names (process_cpu_seconds_total, nodejs_heap_size_total_bytes, ...): the stock
    // Node.js dashboards and alerts expect them; the `sidecar` default label tells sidecars apart.
    client.collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: 50 });
    // These gauges are sums of the labelled nodejs_active_{handles,requests,resources} and their
    // names clash with them in OpenMetrics (a family `x` and a family `x_total`).
    for (const clash of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) registry.removeSingleMetric(clash);
  }

  /** Counts one finished request and its latency (seconds). Hot path: Map lookups and adds. */
  request(direction: Direction, decision: 'allow' | 'deny' | 'error', reason: string, seconds: number): void {
    this.requests.observe(direction, decision, reason, seconds);
  }

  peerRejected(direction: Direction, reason: string): void {
    this.handshakeFailures.labels(direction, reason).inc();
  }

  /** A listener closed a client connection; `listener` is inbound, outbound, admin, admin_mtls or health. */
  connectionRefused(listener: string, reason: string): void {
    this.connectionsRefused.labels(listener, reason).inc();
  }

  upstreamError(direction: Direction, reason: string): void {
    this.upstreamErrors.labels(direction, reason).inc();
  }

  verification(type: string, result: string, seconds: number): void {
    this.verifications.labels(type, result).inc();
    this.verificationLatency.labels(type).observe(seconds);
  }

  policyReload(ok: boolean): void {
    this.policyReloads.labels(ok ? 'success' : 'failure').inc();
  }
}

const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10];

interface LatencySeries {
  readonly buckets: Float64Array; // per-bucket (not cumulative) counts; last slot = +Inf
  sum: number;
  count: number;
}

/**
 * Request counts and latency histograms as plain numbers, exposed to the registry as custom
 * metrics (objects with name/help/type/get, which prom-client formats like its own).
 */
class RequestStats {
  private readonly counts = new Map<string, Map<string, Map<string, { n: number }>>>();
  private readonly latency = new Map<string, Map<string, LatencySeries>>();

  observe(direction: string, decision: string, reason: string, seconds: number): void {
    let byDecision = this.counts.get(direction);
    if (!byDecision) this.counts.set(direction, (byDecision = new Map()));
    let byReason = byDecision.get(decision);
    if (!byReason) byDecision.set(decision, (byReason = new Map()));
    const counter = byReason.get(reason);
    if (counter) counter.n++;
    else byReason.set(reason, { n: 1 });
    let series = this.latency.get(direction);
    if (!series) this.latency.set(direction, (series = new Map()));
    let histogram = series.get(decision);
    if (!histogram) series.set(decision, (histogram = { buckets: new Float64Array(LATENCY_BUCKETS.length + 1), sum: 0, count: 0 }));
    let i = 0;
    while (i < LATENCY_BUCKETS.length && seconds > LATENCY_BUCKETS[i]!) i++;
    histogram.buckets[i]!++;
    histogram.sum += seconds;
    histogram.count++;
  }

  counterMetric(name: string, help: string) {
    return {
      name,
      help,
      type: 'counter',
      aggregator: 'sum',
      reset: () => this.counts.clear(),
      get: async () => {
        const values: { labels: Record<string, string>; value: number }[] = [];
        for (const [direction, byDecision] of this.counts) {
          for (const [decision, byReason] of byDecision) {
            for (const [reason, c] of byReason) values.push({ labels: { direction, decision, reason }, value: c.n });
          }
        }
        return { name, help, type: 'counter', aggregator: 'sum', values };
      },
    };
  }

  histogramMetric(name: string, help: string) {
    return {
      name,
      help,
      type: 'histogram',
      aggregator: 'sum',
      reset: () => this.latency.clear(),
      get: async () => {
        const values: { labels: Record<string, string | number>; value: number; metricName: string }[] = [];
        for (const [direction, series] of this.latency) {
          for (const [decision, h] of series) {
            let cumulative = 0;
            for (let i = 0; i <= LATENCY_BUCKETS.length; i++) {
              cumulative += h.buckets[i]!;
              const le = i < LATENCY_BUCKETS.length ? LATENCY_BUCKETS[i]! : '+Inf';
              values.push({ labels: { le, direction, decision }, value: cumulative, metricName: `${name}_bucket` });
            }
            values.push({ labels: { direction, decision }, value: h.sum, metricName: `${name}_sum` });
            values.push({ labels: { direction, decision }, value: h.count, metricName: `${name}_count` });
          }
        }
        return { name, help, type: 'histogram', aggregator: 'sum', values };
      },
    };
  }
}
