/**
 * The composition root of one sidecar: build the parts (policy, verifier, operator state,
 * metrics, audit, listeners), start them (admin and outbound listen at once, the identity
 * source feeds the listeners), and close them in reverse order. Behaviour lives in the parts;
 * tests and the dev mesh assemble the same pieces through SidecarOptions.
 */
import type { SidecarConfig } from './config/types.js';
import { errorMessage } from './errors.js';
import { createLogger } from './log.js';
import { JsonLinesAuditSink } from './audit/sink.js';
import { type AuditSink } from './audit/record.js';
import { type Logger } from './lib/log.js';
import { SidecarMetrics } from './admin/metrics.js';
import { OperationsMetrics } from './admin/operations-metrics.js';
import type { AdminServer } from './admin/server.js';
import { revocationsJson } from './admin/api.js';
import type { InboundListener } from './proxy/inbound/listener.js';
import type { OutboundProxy } from './proxy/outbound/proxy.js';
import type { AttestationGate } from './proxy/attestation-gate.js';
import { RecentDenials } from './proxy/decision-log.js';
import type { RequestLimits } from './proxy/peer-admission.js';
import { PolicyWatcher } from './policy/watch.js';
import type { X509Source } from './spiffe/source.js';
import type { Attester } from './attestation/attester.js';
import type { VerifierTrust } from './attestation/kinds.js';
import { setupVerifier, type VerifierSetup } from './attestation/setup.js';
import type { RevocationStore } from './revocation/store.js';
import { enforceRevocations, revocationCounts } from './revocation/enforce.js';
import { BudgetLedger } from './budget/ledger.js';
import { IdentityFanOut } from './identity/fan-out.js';
import { openIdentitySource } from './identity/sources.js';
import { Disposer } from './lib/disposer.js';
import { Readiness, listeningCheck, type ReadinessCheck } from './lib/readiness.js';
import { compileHttpParserEagerly } from './undici/http-parser.js';
import { buildStatus, type StatusParts } from './sidecar-status.js';
import { budgetGauge, budgetRows, openOperations, type OperationsParts } from './sidecar-operations.js';
import { buildAdmin, buildDataPlane, buildHealth } from './sidecar-parts.js';
import { drainListeners, reloadAll, type Drainable, type DrainResult, type ReloadOutcome } from './sidecar-lifecycle.js';
import type { HealthServer } from './admin/health.js';
import type { ReferenceValueStore } from './attestation/reference-values.js';
import { OPERATIONS_DEFAULTS } from './config/operations.js';
import { isListenError, listenError, unwritableFileError } from './startup-errors.js';

export interface SidecarOptions {
  config: SidecarConfig;
  /** Use this identity source instead of the one the config names (dev mesh, tests). */
  source?: X509Source;
  logger?: Logger;
  audit?: AuditSink;
  /** Clock (epoch ms) for SVID expiry checks; tests pass a fake. */
  now?: () => number;
  /** Evidence producer / trust overriding `attestation:` in the config (dev mesh, tests). */
  attester?: Attester;
  attestationTrust?: VerifierTrust;
  /** Data-plane request limits (per-peer app share, body-progress timeout); defaults DEFAULT_REQUEST_LIMITS. */
  requestLimits?: Partial<RequestLimits>;
}

function openAuditSink(config: SidecarConfig, onError: (err: Error) => void): JsonLinesAuditSink {
  try {
    return new JsonLinesAuditSink(config.log.audit, config.name, { onError });
  } catch (err) {
    throw unwritableFileError('audit_file_unwritable', 'audit file', config.log.audit, err);
  }
}

export class Sidecar {
  readonly config: SidecarConfig;
  readonly logger: Logger;
  readonly metrics: SidecarMetrics;
  readonly audit: AuditSink;
  readonly inbound: InboundListener | undefined;
  readonly outbound: OutboundProxy | undefined;
  readonly admin: AdminServer | undefined;
  /** The probe listener (`health.listen`), for kubelet and Prometheus. */
  readonly health: HealthServer | undefined;
  readonly operationsMetrics: OperationsMetrics;
  readonly revocations: RevocationStore;
  readonly ledger: BudgetLedger;
  /** The admin bearer token file (when configured). */
  readonly adminTokenFile: string | undefined;
  readonly denials = new RecentDenials(50);
  private readonly identity: IdentityFanOut;
  private readonly gate: AttestationGate | undefined;
  private readonly checks = new Readiness();
  private readonly statusParts: StatusParts;
  private readonly referenceValues: ReferenceValueStore | undefined;
  private readonly policy: PolicyWatcher | undefined;
  private source: X509Source | undefined;
  /** Set when SIGTERM starts the drain: /readyz fails from then on. */
  private drainStarted: Promise<DrainResult> | undefined;

  /**
   * Starts the sidecar. Admin and outbound listen at once (outbound answers 503 until an SVID
   * arrives); inbound listens once the first SVID is held. Resolves when the first identity is
   * installed, or after the startup timeout (then readiness stays false until one arrives).
   * A failure closes whatever had been opened, newest first.
   */
  static async start(options: SidecarOptions): Promise<Sidecar> {
    const config = options.config;
    // One logger for every part, the policy watcher included: a rejected policy reload must
    // reach the log under `attest-sidecar run` too, not only a metric.
    const logger = options.logger ?? createLogger({ level: config.log.level, ...(config.name ? { name: config.name } : {}) });
    // The proxies parse HTTP with undici's WebAssembly parser: compiled now, not under load.
    if (config.inbound || config.outbound) compileHttpParserEagerly();
    const parts = new Disposer((err) => logger.error({ err: errorMessage(err) }, 'a part of the sidecar failed to close'));
    const sidecar = await parts.step(async () => {
      // An unreadable or invalid policy at start is fatal: never serve without one.
      const policy = config.policy ? parts.add(await PolicyWatcher.open(config.policy, { logger }), (p) => p.close()) : undefined;
      const trust = options.attestationTrust;
      const verifier = config.inbound ? parts.add(trust ? { trust, close: () => undefined } : await setupVerifier(config, logger), (v) => v.close()) : undefined;
      const operations = await openOperations(config, logger, parts);
      return new Sidecar({ ...options, logger }, parts, policy, verifier, operations);
    });
    await parts.step(() => sidecar.startParts(options.source));
    return sidecar;
  }

  private constructor(opts: SidecarOptions & { logger: Logger }, private readonly parts: Disposer, policy: PolicyWatcher | undefined, verifier: VerifierSetup | undefined, operations: OperationsParts) {
    const { config, logger } = opts;
    const now = opts.now ?? Date.now;
    this.config = config;
    this.logger = logger;
    this.policy = policy;
    this.referenceValues = verifier?.referenceValues;
    // A failed audit trail takes the sidecar out of readiness: decisions must stay accountable.
    const onError = (err: Error) => logger.error({ err: err.message, target: config.log.audit }, 'audit trail write failed; sidecar marked not ready');
    this.audit = parts.add(opts.audit ?? openAuditSink(config, onError), (audit) => audit.flush());
    this.metrics = new SidecarMetrics(
      {
        svidSecondsToExpiry: () => (this.identity.material ? (this.identity.material.notAfterMs - now()) / 1000 : undefined),
        attestationCache: () => (this.gate ? { ...this.gate.cache.stats, size: this.gate.cache.size } : undefined),
        inboundConnections: () => this.inbound?.openConnections() ?? 0,
      },
      config.name ? { sidecar: config.name } : {},
    );
    policy?.countReloads(this.metrics);
    this.revocations = operations.revocations;
    this.ledger = new BudgetLedger(operations.budgetStore, now);
    this.operationsMetrics = new OperationsMetrics(this.metrics.registry, { revocations: () => revocationCounts(this.revocations.current()), budgets: budgetGauge(this.ledger, policy) });
    const shared = { config, logger, now, metrics: this.metrics, operationsMetrics: this.operationsMetrics, audit: this.audit, policy, revocations: this.revocations, ledger: this.ledger, denials: this.denials };
    ({ gate: this.gate, inbound: this.inbound, outbound: this.outbound } = buildDataPlane(shared, verifier, opts));
    this.adminTokenFile = config.admin?.tokenFile;
    this.admin = buildAdmin(shared, operations.adminToken, { readiness: () => this.readiness(), status: () => this.status() });
    this.health = buildHealth(shared, () => this.readiness());
    // Closed after the other listeners (parts close newest first): probes answer until the end.
    if (this.health) parts.defer(() => this.health!.close());
    parts.defer(() => Promise.allSettled([this.inbound?.close(), this.outbound?.close(), this.admin?.close()]));
    enforceRevocations(this.revocations, { inbound: this.inbound, outbound: this.outbound, metrics: this.operationsMetrics, audit: this.audit, logger });

    // Outbound first: it only swaps contexts, while inbound and admin mTLS may have to bind.
    this.identity = new IdentityFanOut({ metrics: this.metrics, logger, now });
    for (const consumer of [this.outbound, this.inbound, this.admin]) this.identity.register(consumer);

    this.checks.register('draining', () => (this.drainStarted ? { ok: false, detail: 'draining: shutting down, finishing requests in progress' } : undefined));
    this.checks.registerAll(this.identity.readinessChecks());
    if (policy) this.checks.register('policy', () => policy.readiness());
    const sink = this.audit instanceof JsonLinesAuditSink ? this.audit : undefined;
    if (sink) this.checks.register('audit', () => sink.readiness());
    if (this.inbound) this.checks.register('inbound_listener', listeningCheck(this.inbound));
    if (this.outbound) this.checks.register('outbound_listener', listeningCheck(this.outbound));

    const budgets = () => budgetRows(this.ledger, policy);
    const revocations = () => revocationsJson(this.revocations.current());
    this.statusParts = { config, now, identity: this.identity, policy, inbound: this.inbound, outbound: this.outbound, denials: this.denials, audit: sink, budgets, revocations };
  }

  private async startParts(source: X509Source | undefined): Promise<void> {
    const { admin, outbound, inbound, identity, health } = this.config;
    if (health?.listen) await this.health!.start().catch((err: unknown) => Promise.reject(listenError('health listener', health.listen!, err)));
    if (admin) await this.admin!.start().catch((err: unknown) => Promise.reject(listenError('admin listener', admin.listen, err)));
    if (outbound) await this.outbound!.start().catch((err: unknown) => Promise.reject(listenError('outbound listener', outbound.listen, err)));
    const opened = source
      ? this.parts.add(source, (s) => s.close())
      : await openIdentitySource(identity, { logger: this.logger, defer: (close) => this.parts.defer(close) });
    this.parts.defer(() => this.identity.close());
    this.source = opened;
    this.identity.follow(opened);
    try {
      await opened.waitReady(identity.startupTimeoutMs);
      await this.identity.settled();
    } catch (err) {
      this.logger.error({ err: errorMessage(err) }, 'no SVID within the startup timeout; not ready, still waiting');
    }
    // The inbound listener binds with the first identity: a port it cannot have stops the start.
    const installError = this.identity.firstInstallError;
    if (inbound && isListenError(installError)) throw listenError('inbound listener', inbound.listen, installError);
  }

  /** Replaces the trust anchors inbound evidence is verified with; cached verdicts are dropped. */
  setAttestationTrust(trust: VerifierTrust): void {
    this.gate?.setTrust(trust);
    this.gate?.cache.clear();
  }

  /** Resolves once the current identity has been installed in every listener. */
  settled(): Promise<void> {
    return this.identity.settled();
  }

  readiness(): Record<string, ReadinessCheck> {
    return this.checks.report();
  }

  status(): Record<string, unknown> {
    return buildStatus(this.statusParts);
  }

  /**
   * SIGTERM: marks the sidecar not ready (`draining`), stops accepting on the inbound, outbound
   * and admin listeners, lets requests in progress finish up to `timeoutMs` (default
   * `drain_timeout`) and cuts the rest. The health listener keeps answering; `close` follows.
   */
  drain(timeoutMs: number = this.config.drainTimeoutMs ?? OPERATIONS_DEFAULTS.drainTimeoutMs): Promise<DrainResult> {
    if (this.drainStarted) return this.drainStarted;
    const listeners = [this.inbound, this.outbound, this.admin].filter((l): l is NonNullable<typeof l> & Drainable => l !== undefined);
    const requests = this.inbound || this.outbound ? 'requests in progress' : 'admin requests';
    this.logger.info({ drain_timeout_ms: timeoutMs }, `draining: not ready, not accepting; ${requests} get up to ${timeoutMs} ms`);
    this.drainStarted = drainListeners(listeners, timeoutMs).then((result) => {
      if (result.timedOut) this.logger.warn({ reason: 'drain_timeout', cut: result.cut }, `drain timeout: cut ${result.cut} request(s) still in progress`);
      else this.logger.info({ reason: 'drained' }, 'drained: every request in progress finished');
      return result;
    });
    return this.drainStarted;
  }

  /** SIGHUP: re-reads the policy, secrets, revocation lists, reference values and identity files. */
  reload(): Promise<ReloadOutcome[]> {
    return reloadAll({ policy: this.policy, outbound: this.outbound, revocations: this.revocations, referenceValues: this.referenceValues, source: this.source }, this.logger, this.audit);
  }

  /** Closes every part, newest first; a part that fails to close is logged and the rest still close. */
  async close(): Promise<void> {
    await this.parts.close().catch(() => undefined);
  }
}
