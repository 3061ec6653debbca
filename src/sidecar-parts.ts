/**
 * Builders for the sidecar's serving parts: the data plane (attestation gate, inbound listener,
 * outbound proxy) and the admin server. Each takes the shared parts it needs and answers the
 * policy questions its part asks (whose budget, who is an admin) from the live policy.
 */
import type { SidecarConfig } from './config/types.js';
import type { AuditSink } from './audit/record.js';
import type { Logger } from './lib/log.js';
import type { SidecarMetrics } from './admin/metrics.js';
import type { OperationsMetrics } from './admin/operations-metrics.js';
import { AdminServer } from './admin/server.js';
import { HealthServer } from './admin/health.js';
import { type ReadinessCheck } from './lib/readiness.js';
import { AdminApi } from './admin/api.js';
import { AdminAuthenticator } from './admin/auth.js';
import { InboundListener } from './proxy/inbound/listener.js';
import { OutboundProxy } from './proxy/outbound/proxy.js';
import { AttestationGate } from './proxy/attestation-gate.js';
import { SpendGate } from './proxy/spend.js';
import type { RecentDenials } from './proxy/decision-log.js';
import type { RequestLimits } from './proxy/peer-admission.js';
import type { PolicyWatcher } from './policy/watch.js';
import type { PolicyAgent } from './policy/read-agent.js';
import type { Attester } from './attestation/attester.js';
import { createAttester, type VerifierSetup } from './attestation/setup.js';
import type { RevocationStore } from './revocation/store.js';
import type { BudgetLedger } from './budget/ledger.js';

/** What every serving part shares. */
export interface SharedParts {
  config: SidecarConfig;
  logger: Logger;
  now: () => number;
  metrics: SidecarMetrics;
  operationsMetrics: OperationsMetrics;
  audit: AuditSink;
  policy: PolicyWatcher | undefined;
  revocations: RevocationStore;
  ledger: BudgetLedger;
  denials: RecentDenials;
}

export interface DataPlane {
  gate: AttestationGate | undefined;
  inbound: InboundListener | undefined;
  outbound: OutboundProxy | undefined;
}

/** The listeners the config asks for; neither listens yet. */
export function buildDataPlane(
  parts: SharedParts,
  verifier: VerifierSetup | undefined,
  opts: { attester?: Attester | undefined; requestLimits?: Partial<RequestLimits> | undefined },
): DataPlane {
  const { config, policy, now } = parts;
  const spend = new SpendGate(parts.ledger, parts.operationsMetrics, parts.audit, parts.logger);
  const revocations = () => parts.revocations.current();
  const shared = { metrics: parts.metrics, audit: parts.audit, logger: parts.logger, now, revocations, spend, denials: parts.denials };
  const limits = opts.requestLimits ? { requestLimits: opts.requestLimits } : {};
  const gate = config.inbound && verifier ? new AttestationGate(verifier.trust, now, parts.metrics, config.attestation?.verifier?.cacheSize, verifier.referenceValues) : undefined;
  const inbound = config.inbound
    ? new InboundListener({ ...shared, ...limits, config: config.inbound, policy: () => policy?.current(), ...(gate ? { attestation: gate } : {}) })
    : undefined;
  const attester = opts.attester ?? createAttester(config);
  // Our own spend is charged to the agent the policy names for our SPIFFE ID.
  const ownBudget = (ownId: string) => {
    const agent = policy?.current()?.agentsBySpiffeId.get(ownId) as PolicyAgent | undefined;
    return agent?.budget ? { agent: agent.name, budget: agent.budget } : undefined;
  };
  const outbound = config.outbound
    ? new OutboundProxy({ ...shared, ...limits, config: config.outbound, operationsMetrics: parts.operationsMetrics, ownBudget, ...(attester ? { attester } : {}) })
    : undefined;
  return { gate, inbound, outbound };
}

/** The admin server with its API (undefined without `admin:`); it does not listen yet. */
export function buildAdmin(
  parts: SharedParts,
  adminToken: string | undefined,
  views: { readiness: () => Record<string, ReadinessCheck>; status: () => unknown },
): AdminServer | undefined {
  const { config, logger, audit, policy } = parts;
  if (!config.admin) return undefined;
  const admins = () => policy?.current()?.admins ?? new Set<string>();
  const auth = new AdminAuthenticator({ ...(adminToken ? { token: adminToken } : {}), admins, logger });
  const api = new AdminApi({ auth, revocations: parts.revocations, operationsMetrics: parts.operationsMetrics, audit, logger });
  return new AdminServer({
    listen: config.admin.listen,
    ...(config.admin.mtlsListen ? { mtlsListen: config.admin.mtlsListen } : {}),
    ...(config.admin.allowedHosts ? { allowedHosts: config.admin.allowedHosts } : {}),
    metrics: parts.metrics,
    logger,
    audit,
    ...views,
    api,
  });
}

/** The health listener (undefined without `health.listen`); it does not listen yet. */
export function buildHealth(parts: SharedParts, readiness: () => Record<string, ReadinessCheck>): HealthServer | undefined {
  const listen = parts.config.health?.listen;
  return listen ? new HealthServer({ listen, metrics: parts.metrics, readiness, logger: parts.logger, audit: parts.audit }) : undefined;
}
