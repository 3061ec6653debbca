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
import { InboundListener } from './proxy/inbound.js';
import { OutboundProxy } from './proxy/outbound.js';
import { buildTlsMaterial, type TlsMaterial } from './proxy/tls.js';
import { PolicyWatcher } from './policy/watch.js';
import type { IdentityState, X509Source } from './spiffe/source.js';
import type { DevIssuer } from './dev/issuer.js';
import { AttestationGate } from './proxy/attestation-gate.js';
import type { Attester } from './attestation/attester.js';
import type { VerifierTrust } from './attestation/verifier.js';
import { createAttester, setupVerifier, type VerifierSetup } from './attestation/setup.js';

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
}

export class Sidecar {
  readonly config: SidecarConfig;
  readonly logger: Logger;
  readonly metrics: SidecarMetrics;
  readonly audit: AuditSink;
  readonly inbound: InboundListener | undefined;
  readonly outbound: OutboundProxy | undefined;
  readonly admin: AdminServer | undefined;
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

  private constructor(opts: SidecarOptions, policy: PolicyWatcher | undefined, verifier: VerifierSetup | undefined) {
    const config = opts.config;
    this.config = config;
    this.now = opts.now ?? Date.now;
    this.logger = opts.logger ?? createLogger({ level: config.log.level, ...(config.name ? { name: config.name } : {}) });
    this.audit = opts.audit ?? new JsonLinesAuditSink(config.log.audit, config.name);
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
    const common = { metrics: this.metrics, audit: this.audit, logger: this.logger, now: this.now };
    this.verifier = verifier;
    if (config.inbound && verifier) {
      this.gate = new AttestationGate(verifier.trust, this.now, this.metrics, config.attestation?.verifier?.cacheSize, verifier.referenceValues);
    }
    this.inbound = config.inbound
      ? new InboundListener({ ...common, config: config.inbound, policy: () => this.policy?.current(), ...(this.gate ? { attestation: this.gate } : {}) })
      : undefined;
    const attester = opts.attester ?? createAttester(config);
    this.outbound = config.outbound ? new OutboundProxy({ ...common, config: config.outbound, ...(attester ? { attester } : {}) }) : undefined;
    this.admin = config.admin
      ? new AdminServer({
          listen: config.admin.listen,
          metrics: this.metrics,
          logger: this.logger,
          readiness: () => this.readiness(),
          status: () => this.status(),
        })
      : undefined;
  }

  /**
   * Starts the sidecar. Admin and outbound listen at once (outbound answers 503 until an SVID
   * arrives); inbound listens once the first SVID is held. Resolves when the first identity is
   * installed, or after the startup timeout (then readiness stays false until one arrives).
   */
  static async start(opts: SidecarOptions): Promise<Sidecar> {
    const config = opts.config;
    let policy: PolicyWatcher | undefined;
    if (config.policy) {
      // An unreadable or invalid policy at start is fatal: never serve without one.
      policy = await PolicyWatcher.open(config.policy, opts.logger ? { logger: opts.logger } : {});
    }
    let verifier: VerifierSetup | undefined;
    try {
      verifier = !config.inbound
        ? undefined
        : opts.attestationTrust
          ? { trust: opts.attestationTrust, close: () => undefined }
          : await setupVerifier(config, opts.logger);
    } catch (err) {
      policy?.close();
      throw err;
    }
    const sidecar = new Sidecar(opts, policy, verifier);
    try {
      await sidecar.startListeners(opts.source);
    } catch (err) {
      await sidecar.close();
      throw err;
    }
    return sidecar;
  }

  private async startListeners(source: X509Source | undefined): Promise<void> {
    await this.admin?.start();
    await this.outbound?.start();
    this.source = source ?? (await this.createSource());
    this.unsubscribe = this.source.subscribe((state) => this.onIdentity(state));
    const first = this.source.current();
    if (first) this.onIdentity(first);
    const timeout = 'startupTimeoutMs' in this.config.identity ? this.config.identity.startupTimeoutMs : 30_000;
    try {
      await this.source.waitReady(timeout);
      await this.applying;
    } catch (err) {
      this.logger.error({ err: errorMessage(err) }, 'no SVID within the startup timeout; not ready, still waiting');
    }
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
        await s.start();
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
        this.logger.info(
          { spiffe_id: material.ownId, serial: state.svid.certificates[0]!.serialNumber, not_after: state.svid.notAfter.toISOString(), generation: state.generation },
          previous ? 'identity updated' : 'identity installed',
        );
      } catch (err) {
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
    if (this.policy) {
      const p = this.policy.current();
      checks.policy = p ? { ok: true, detail: `version ${p.version}` } : { ok: false, detail: 'no policy loaded' };
    }
    if (this.inbound) checks.inbound_listener = { ok: this.inbound.listening, ...(this.inbound.listening ? {} : { detail: 'not listening' }) };
    if (this.outbound) checks.outbound_listener = { ok: this.outbound.listening, ...(this.outbound.listening ? {} : { detail: 'not listening' }) };
    return checks;
  }

  status(): Record<string, unknown> {
    const state = this.state;
    const policy = this.policy?.current();
    const leaf = state?.svid.certificates[0];
    return {
      name: this.config.name,
      spiffe_id: state?.svid.id.toString() ?? null,
      svid: state && leaf
        ? {
            serial: leaf.serialNumber,
            not_before: state.svid.notBefore.toISOString(),
            not_after: state.svid.notAfter.toISOString(),
            seconds_to_expiry: Math.max(0, Math.round((state.svid.notAfter.getTime() - this.now()) / 1000)),
            generation: state.generation,
          }
        : null,
      trust_domains: state ? state.bundles.trustDomains().map((t) => t.name) : [],
      identity_source: { kind: this.config.identity.source, ...(this.source ? this.source.health() : {}) },
      routes: (this.config.outbound?.routes ?? []).map((r) => ({
        name: r.name,
        upstream: r.upstream,
        ...(r.serverId ? { server_id: r.serverId } : { server_trust_domain: r.serverTrustDomain }),
      })),
      inbound: this.config.inbound
        ? {
            listen: this.inbound?.address() ?? null,
            app: this.config.inbound.app,
            actions: this.config.inbound.actions.length,
            peers: (this.inbound?.sessions() ?? []).map(({ peer, attestation }) => ({
              spiffe_id: peer.id,
              serial: peer.serial,
              not_after: new Date(peer.notAfterMs).toISOString(),
              ...(attestation?.lastVerdict
                ? {
                    attestation: {
                      type: attestation.lastVerdict.evidenceType,
                      claims: attestation.lastVerdict.claims,
                      verified_at: new Date(attestation.lastVerdict.verifiedAtMs).toISOString(),
                      session_expires_at: new Date(attestation.lastVerdict.expiresAtMs).toISOString(),
                    },
                  }
                : {}),
            })),
          }
        : null,
      outbound: this.config.outbound ? { listen: this.outbound?.address() ?? null } : null,
      policy: policy
        ? { version: policy.version, file: policy.file, agents: policy.agents.map((a) => a.name), loaded_at: policy.loadedAt.toISOString() }
        : null,
    };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.unsubscribe?.();
    await Promise.allSettled([this.inbound?.close(), this.outbound?.close(), this.admin?.close()]);
    this.policy?.close();
    this.verifier?.close();
    await this.source?.close();
    await this.ownIssuer?.stop();
    await this.audit.flush();
  }
}

