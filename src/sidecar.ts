/**
 * The composition root of one sidecar: identity source -> TLS material -> listeners, plus the
 * policy watcher, metrics, audit and admin. Everything below it is wired through small
 * interfaces so tests and the dev mesh can assemble the same pieces.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { SidecarConfig } from './config/types.js';
import { errorMessage } from './errors.js';
import { createLogger, JsonLinesAuditSink, type AuditSink, type Logger } from './log.js';
import { SidecarMetrics } from './admin/metrics.js';
import { AdminServer, type ReadinessCheck } from './admin/server.js';
import { InboundListener } from './proxy/inbound/listener.js';
import { OutboundProxy } from './proxy/outbound.js';
import { buildTlsMaterial, type TlsMaterial } from './spiffe/tls.js';
import { PolicyWatcher } from './policy/watch.js';
import type { IdentityState, X509Source } from './spiffe/source.js';
import type { DevIssuer } from './dev/issuer.js';
import { AttestationGate } from './proxy/attestation-gate.js';
import type { Attester } from './attestation/attester.js';
import type { VerifierTrust } from './attestation/verifier.js';
import { createAttester, setupVerifier, type VerifierSetup } from './attestation/setup.js';
import { OperationsMetrics } from './admin/ops-metrics.js';
import { AdminApi, revocationsJson } from './admin/api.js';
import { AdminAuthenticator, createAdminTokenFile } from './admin/auth.js';
import { RevocationStore } from './revocation/store.js';
import type { RevocationState } from './revocation/state.js';
import { BudgetLedger } from './budget/ledger.js';
import type { BudgetStore } from './budget/store.js';
import { SpendGate } from './proxy/spend.js';
import { RecentDenials } from './proxy/decision-log.js';
import type { PolicyAgent } from './policy/read-agent.js';
import { buildStatus } from './sidecar-status.js';
import { compileHttpParserEagerly } from './undici/http-parser.js';
import { ensureStateDir, isListenError, listenError } from './startup-errors.js';
import type { RequestLimits } from './proxy/peer-admission.js';

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

export class Sidecar {
  readonly config: SidecarConfig;
  readonly logger: Logger;
  readonly metrics: SidecarMetrics;
  readonly audit: AuditSink;
  readonly inbound: InboundListener | undefined;
  readonly outbound: OutboundProxy | undefined;
  readonly admin: AdminServer | undefined;
  readonly ops: OperationsMetrics;
  readonly revocations: RevocationStore;
  readonly ledger: BudgetLedger;
  /** The admin bearer token file (when configured). */
  readonly adminTokenFile: string | undefined;
  readonly denials = new RecentDenials(50);
  private readonly policy: PolicyWatcher | undefined;
  private readonly gate: AttestationGate | undefined;
  private readonly verifier: VerifierSetup | undefined;
  private source: X509Source | undefined;
  private ownIssuer: DevIssuer | undefined;
  private material: TlsMaterial | undefined;
  private state: IdentityState | undefined;
  private unsubscribe: (() => void) | undefined;
  private applying: Promise<void> = Promise.resolve();
  private readonly now: () => number;
  private closed = false;
  /** Why the first identity could not be installed (e.g. the inbound port is taken). */
  private firstInstallError: unknown;

  private constructor(opts: SidecarOptions, policy: PolicyWatcher | undefined, verifier: VerifierSetup | undefined, ops: OpsParts) {
    const config = opts.config;
    this.config = config;
    this.now = opts.now ?? Date.now;
    this.logger = opts.logger ?? createLogger({ level: config.log.level, ...(config.name ? { name: config.name } : {}) });
    this.audit =
      opts.audit ??
      new JsonLinesAuditSink(config.log.audit, config.name, {
        // A failed audit trail takes the sidecar out of readiness: decisions must stay accountable.
        onError: (err) => this.logger.error({ err: err.message, target: config.log.audit }, 'audit trail write failed; sidecar marked not ready'),
      });
    this.policy = policy;
    this.metrics = new SidecarMetrics(
      {
        svidSecondsToExpiry: () => (this.material ? (this.material.notAfterMs - this.now()) / 1000 : undefined),
        attestationCache: () => (this.gate ? { ...this.gate.cache.stats, size: this.gate.cache.size } : undefined),
        inboundConnections: () => this.inbound?.openConnections() ?? 0,
      },
      config.name ? { sidecar: config.name } : {},
    );
    if (policy) {
      policy.on('reload', () => this.metrics.policyReload(true));
      policy.on('error', () => this.metrics.policyReload(false));
    }
    this.revocations = ops.revocations;
    this.ledger = new BudgetLedger(ops.budgetStore, this.now);
    this.ops = new OperationsMetrics(this.metrics.registry, {
      revocations: () => {
        const st = this.revocations.current();
        let shared = 0;
        for (const e of st.byId.values()) if (e.source === 'shared') shared++;
        return { local: st.size - shared, shared, all: st.all !== undefined };
      },
      budgets: () => this.budgetRows().map((b) => ({ agent: b.agent, period: b.period, spentUsd: b.spent_usd, limitUsd: b.limit_usd })),
    });
    const spend = new SpendGate(this.ledger, this.ops, this.audit, this.logger);
    const revocations = () => this.revocations.current();
    const common = { metrics: this.metrics, audit: this.audit, logger: this.logger, now: this.now, revocations, spend, denials: this.denials };
    this.verifier = verifier;
    if (config.inbound && verifier) {
      this.gate = new AttestationGate(verifier.trust, this.now, this.metrics, config.attestation?.verifier?.cacheSize, verifier.referenceValues);
    }
    this.inbound = config.inbound
      ? new InboundListener({
          ...common,
          config: config.inbound,
          policy: () => this.policy?.current(),
          ...(this.gate ? { attestation: this.gate } : {}),
          ...(opts.requestLimits ? { requestLimits: opts.requestLimits } : {}),
        })
      : undefined;
    const attester = opts.attester ?? createAttester(config);
    this.outbound = config.outbound
      ? new OutboundProxy({
          ...common,
          config: config.outbound,
          ops: this.ops,
          ownBudget: (ownId) => {
            const agent = this.policy?.current()?.agentsBySpiffeId.get(ownId) as PolicyAgent | undefined;
            return agent?.budget ? { agent: agent.name, budget: agent.budget } : undefined;
          },
          ...(attester ? { attester } : {}),
          ...(opts.requestLimits ? { requestLimits: opts.requestLimits } : {}),
        })
      : undefined;
    this.adminTokenFile = config.admin?.tokenFile;
    const auth = new AdminAuthenticator({
      ...(ops.adminToken ? { token: ops.adminToken } : {}),
      admins: () => this.policy?.current()?.admins ?? new Set<string>(),
      logger: this.logger,
    });
    this.admin = config.admin
      ? new AdminServer({
          listen: config.admin.listen,
          ...(config.admin.mtlsListen ? { mtlsListen: config.admin.mtlsListen } : {}),
          ...(config.admin.allowedHosts ? { allowedHosts: config.admin.allowedHosts } : {}),
          metrics: this.metrics,
          logger: this.logger,
          audit: this.audit,
          readiness: () => this.readiness(),
          status: () => this.status(),
          api: new AdminApi({ auth, revocations: this.revocations, ops: this.ops, audit: this.audit, logger: this.logger }),
        })
      : undefined;
    this.revocations.on('change', (state, revokedNow) => this.onRevocations(state, revokedNow));
    this.revocations.on('error', (err) => this.logger.error({ err: err.message, reason: err.reason }, 'revocation list problem'));
  }

  /** A revocation took effect: close what the new state revokes, stop outbound if we are revoked. */
  private onRevocations(state: RevocationState, revokedNow: readonly string[]): void {
    const closed = this.inbound?.closeRevoked(state) ?? 0;
    this.ops.revokedConnectionsClosed(closed);
    this.outbound?.onRevocationChange();
    this.ops.revocationChange(revokedNow.length ? 'revoke' : 'update');
    this.audit.record({
      type: 'revocation',
      decision: revokedNow.length ? 'deny' : 'allow',
      reason: revokedNow.length ? 'revoked' : 'revocations_changed',
      ...(revokedNow.length ? { target: revokedNow.join(' ') } : {}),
      detail: `${state.size} revoked${state.all ? ', kill-all in force' : ''}; ${closed} open connection(s) closed`,
    });
    this.logger.warn({ revoked_now: revokedNow, kill_all: state.all !== undefined, total: state.size, connections_closed: closed }, 'revocations changed');
  }

  private budgetRows() {
    const agents = (this.policy?.current()?.agents ?? []) as readonly PolicyAgent[];
    return this.ledger.snapshot(agents.map((a) => ({ name: a.name, budget: a.budget })));
  }

  /**
   * Starts the sidecar. Admin and outbound listen at once (outbound answers 503 until an SVID
   * arrives); inbound listens once the first SVID is held. Resolves when the first identity is
   * installed, or after the startup timeout (then readiness stays false until one arrives).
   */
  static async start(options: SidecarOptions): Promise<Sidecar> {
    const config = options.config;
    // One logger for everything the sidecar starts, the policy watcher included: a rejected
    // policy reload must reach the log under `attest-sidecar run` too, not only a metric.
    const logger = options.logger ?? createLogger({ level: config.log.level, ...(config.name ? { name: config.name } : {}) });
    const opts: SidecarOptions = { ...options, logger };
    // The proxies parse HTTP with undici's WebAssembly parser: compiled now, not under load.
    if (config.inbound || config.outbound) compileHttpParserEagerly();
    let policy: PolicyWatcher | undefined;
    if (config.policy) {
      // An unreadable or invalid policy at start is fatal: never serve without one.
      policy = await PolicyWatcher.open(config.policy, { logger });
    }
    let verifier: VerifierSetup | undefined;
    try {
      verifier = !config.inbound
        ? undefined
        : opts.attestationTrust
          ? { trust: opts.attestationTrust, close: () => undefined }
          : await setupVerifier(config, logger);
    } catch (err) {
      policy?.close();
      throw err;
    }
    let ops: OpsParts;
    try {
      ops = await openOperations(config, logger);
    } catch (err) {
      policy?.close();
      verifier?.close();
      throw err;
    }
    const sidecar = new Sidecar(opts, policy, verifier, ops);
    try {
      await sidecar.startListeners(opts.source);
    } catch (err) {
      await sidecar.close();
      throw err;
    }
    return sidecar;
  }

  private async startListeners(source: X509Source | undefined): Promise<void> {
    const { admin, outbound, inbound } = this.config;
    if (admin) await this.admin?.start().catch((err: unknown) => Promise.reject(listenError('admin listener', admin.listen, err)));
    if (outbound) await this.outbound?.start().catch((err: unknown) => Promise.reject(listenError('outbound listener', outbound.listen, err)));
    this.source = source ?? (await this.createSource());
    this.unsubscribe = this.source.subscribe((state) => this.onIdentity(state));
    const first = this.source.current();
    if (first) this.onIdentity(first);
    const timeout = this.config.identity.startupTimeoutMs;
    try {
      await this.source.waitReady(timeout);
      await this.applying;
    } catch (err) {
      this.logger.error({ err: errorMessage(err) }, 'no SVID within the startup timeout; not ready, still waiting');
    }
    // The inbound listener binds with the first identity: a port it cannot have stops the start.
    if (inbound && this.firstInstallError) throw listenError('inbound listener', inbound.listen, this.firstInstallError);
  }

  private async createSource(): Promise<X509Source> {
    const id = this.config.identity;
    switch (id.source) {
      // Sources load on demand: a sidecar carries only the code (gRPC, the dev CA) it uses.
      case 'workload-api': {
        const { WorkloadApiX509Source } = await import('./spiffe/workload-api/source.js');
        const s = new WorkloadApiX509Source({ endpoint: id.socket, ...(id.hint ? { hint: id.hint } : {}), logger: this.logger });
        s.start();
        return s;
      }
      case 'files': {
        const { FilesX509Source } = await import('./spiffe/files-source.js');
        const s = new FilesX509Source({ cert: id.cert, key: id.key, bundle: id.bundle, federated: id.federated, logger: this.logger });
        // Files that cannot make an identity are a configuration mistake: refuse to start.
        await s.requireIdentity(id.startupTimeoutMs);
        return s;
      }
      case 'dev': {
        // Development only: a private in-process issuer for this one sidecar.
        const td = id.spiffeId.slice('spiffe://'.length).split('/')[0]!;
        const dir = mkdtempSync(path.join(tmpdir(), 'attest-sidecar-dev-'));
        const [{ DevIssuer }, { WorkloadApiX509Source }] = await Promise.all([import('./dev/issuer.js'), import('./spiffe/workload-api/source.js')]);
        this.ownIssuer = await DevIssuer.start({ trustDomain: td, socketDir: dir, svidTtlSeconds: id.svidTtlSeconds, logger: this.logger });
        const { endpoint } = await this.ownIssuer.registerWorkload(id.spiffeId);
        const s = new WorkloadApiX509Source({ endpoint, logger: this.logger });
        s.start();
        return s;
      }
    }
  }

  /** Serialises identity installs so listeners see generations in order. */
  private onIdentity(state: IdentityState): void {
    if (this.closed || state === this.state) return;
    const previous = this.state;
    this.state = state;
    this.applying = this.applying.then(async () => {
      try {
        const material = buildTlsMaterial(state);
        if (previous && previous.svid.certificates[0]!.serialNumber !== state.svid.certificates[0]!.serialNumber) {
          this.metrics.rotations.inc();
        }
        if (previous && !previous.bundles.equals(state.bundles)) this.metrics.bundleUpdates.inc();
        this.material = material;
        this.outbound?.applyIdentity(material);
        await this.inbound?.applyIdentity(material);
        await this.admin?.applyIdentity(material);
        this.logger.info(
          { spiffe_id: material.ownId, serial: state.svid.certificates[0]!.serialNumber, not_after: state.svid.notAfter.toISOString(), generation: state.generation },
          previous ? 'identity updated' : 'identity installed',
        );
      } catch (err) {
        if (!previous && isListenError(err)) this.firstInstallError = err;
        this.logger.error({ err: errorMessage(err) }, 'failed to install identity; keeping the previous one');
      }
    });
  }

  /** Replaces the trust anchors inbound evidence is verified with; cached verdicts are dropped. */
  setAttestationTrust(trust: VerifierTrust): void {
    this.gate?.setTrust(trust);
    this.gate?.cache.clear();
  }

  /** Resolves once the current identity has been installed in every listener. */
  settled(): Promise<void> {
    return this.applying;
  }

  readiness(): Record<string, ReadinessCheck> {
    const checks: Record<string, ReadinessCheck> = {};
    const state = this.state;
    const now = this.now();
    if (!state) checks.svid = { ok: false, detail: 'no SVID received yet' };
    else if (now >= state.svid.notAfter.getTime()) checks.svid = { ok: false, detail: `SVID expired at ${state.svid.notAfter.toISOString()}` };
    else checks.svid = { ok: true, detail: state.svid.id.toString() };
    const td = state?.svid.id.trustDomain;
    checks.bundle = td && state.bundles.getX509Bundle(td)
      ? { ok: true, detail: `trust domain ${td.name}` }
      : { ok: false, detail: 'no trust bundle for our own trust domain' };
    const unrecoverable = this.source?.health().unrecoverableError;
    if (unrecoverable) checks.identity_source = { ok: false, detail: unrecoverable };
    if (this.policy) {
      const p = this.policy.current();
      checks.policy = p ? { ok: true, detail: `version ${p.version}` } : { ok: false, detail: 'no policy loaded' };
    }
    const sink = this.audit instanceof JsonLinesAuditSink ? this.audit : undefined;
    if (sink) checks.audit = sink.readiness();
    if (this.inbound) checks.inbound_listener = { ok: this.inbound.listening, ...(this.inbound.listening ? {} : { detail: 'not listening' }) };
    if (this.outbound) checks.outbound_listener = { ok: this.outbound.listening, ...(this.outbound.listening ? {} : { detail: 'not listening' }) };
    return checks;
  }

  status(): Record<string, unknown> {
    return buildStatus({
      config: this.config,
      state: this.state,
      now: this.now(),
      policy: this.policy?.current(),
      identitySource: this.source?.health() as Record<string, unknown> | undefined,
      sessions: this.inbound?.sessions() ?? [],
      inboundAddress: this.inbound?.address(),
      outboundAddress: this.outbound?.address(),
      outboundStopped: this.outbound?.stoppedReason(),
      denials: this.denials.list(),
      budgets: this.budgetRows(),
      revocations: revocationsJson(this.revocations.current()),
      audit: this.audit instanceof JsonLinesAuditSink ? { target: this.config.log.audit, ...this.audit.head() } : undefined,
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.unsubscribe?.();
    await Promise.allSettled([this.inbound?.close(), this.outbound?.close(), this.admin?.close()]);
    await Promise.allSettled([this.revocations.close(), this.ledger.store.close()]);
    this.policy?.close();
    this.verifier?.close();
    await this.source?.close();
    await this.ownIssuer?.stop();
    await this.audit.flush();
  }
}


interface OpsParts {
  revocations: RevocationStore;
  budgetStore: BudgetStore;
  adminToken: string | undefined;
}

/**
 * Durable operator state: the state directory (0700), revocations (local + shared lists), the
 * budget store, and the admin token (created when missing). Any of them unreadable is fatal at
 * start: a sidecar must not serve with revocations or spend silently dropped.
 */
async function openOperations(config: SidecarConfig, logger: Logger): Promise<OpsParts> {
  ensureStateDir(config.stateDir);
  const revocations = await RevocationStore.open({
    stateFile: path.join(config.stateDir, 'revocations.json'),
    sharedFiles: config.revocations.sharedFiles,
    logger,
  });
  let budgetStore: BudgetStore;
  try {
    if (config.budget.store === 'redis') {
      const { RedisBudgetStore } = await import('./budget/redis-store.js');
      budgetStore = await RedisBudgetStore.open({ url: config.budget.url, keyPrefix: config.budget.keyPrefix, timeoutMs: config.budget.timeoutMs, logger });
    } else {
      const { FileBudgetStore } = await import('./budget/file-store.js');
      const store = await FileBudgetStore.open(path.join(config.stateDir, 'budget'), { logger });
      if (store.repairedBytes > 0) logger.warn({ bytes: store.repairedBytes }, 'budget journal: torn last record dropped on start');
      budgetStore = store;
    }
  } catch (err) {
    await revocations.close();
    throw err;
  }
  let adminToken: string | undefined;
  try {
    adminToken = config.admin?.tokenFile ? await createAdminTokenFile(config.admin.tokenFile) : undefined;
  } catch (err) {
    await Promise.allSettled([revocations.close(), budgetStore.close()]);
    throw err;
  }
  return { revocations, budgetStore, adminToken };
}
