/**
 * The `/status` snapshot (what the status page renders): our identity with its rotation and
 * expiry times, trust bundles, routes, peers with their verified claims, recent denials,
 * budgets and revocations. Built on demand from the sidecar's parts; never holds key material.
 */
import type { AddressInfo } from 'node:net';
import type { SidecarConfig } from './config/types.js';
import type { CompiledPolicy } from './policy/types.js';
import type { IdentityState, SourceHealth } from './spiffe/source.js';
import type { VerifiedPeer } from './spiffe/tls.js';
import type { AttestationSession } from './proxy/attestation-gate.js';
import type { RecentDenial } from './proxy/decision-log.js';
import type { BudgetStatus } from './budget/ledger.js';

/** The parts the snapshot reads, each through the little it needs; absent parts show as null. */
export interface StatusParts {
  config: SidecarConfig;
  now: () => number;
  identity: { readonly state: IdentityState | undefined; sourceHealth(): SourceHealth | undefined };
  policy: { current(): CompiledPolicy | undefined } | undefined;
  inbound: { sessions(): { peer: VerifiedPeer; attestation?: AttestationSession }[]; address(): AddressInfo | undefined } | undefined;
  outbound: { address(): AddressInfo | undefined; stoppedReason(): string | undefined } | undefined;
  denials: { list(): RecentDenial[] };
  budgets(): BudgetStatus[];
  revocations(): unknown;
  /** The audit chain's head (seq and hash of the last record): an anchor for `audit verify --expect-*`. */
  audit: { head(): { seq: number; hash: string } } | undefined;
}

export function buildStatus(parts: StatusParts): Record<string, unknown> {
  const { config } = parts;
  const now = parts.now();
  const state = parts.identity.state;
  const policy = parts.policy?.current();
  const outboundStopped = parts.outbound?.stoppedReason();
  const leaf = state?.svid.certificates[0];
  const notBefore = state?.svid.notBefore.getTime();
  const notAfter = state?.svid.notAfter.getTime();
  return {
    server_time: new Date(now).toISOString(),
    name: config.name,
    spiffe_id: state?.svid.id.toString() ?? null,
    svid:
      state && leaf && notBefore !== undefined && notAfter !== undefined
        ? {
            serial: leaf.serialNumber,
            not_before: new Date(notBefore).toISOString(),
            not_after: new Date(notAfter).toISOString(),
            // SPIRE (and the dev issuer) rotate at half of the lifetime.
            rotates_at: new Date(notBefore + (notAfter - notBefore) / 2).toISOString(),
            seconds_to_expiry: Math.max(0, Math.round((notAfter - now) / 1000)),
            generation: state.generation,
          }
        : null,
    trust_domains: state ? state.bundles.trustDomains().map((t) => t.name) : [],
    bundles: state
      ? state.bundles.bundles().map((b) => ({
          trust_domain: b.trustDomain.name,
          authorities: b.authorities.map((c) => ({ subject: c.subject.replace(/\n/g, ', '), sha256: c.fingerprint256, not_after: new Date(c.validTo).toISOString() })),
        }))
      : [],
    identity_source: { kind: config.identity.source, ...(parts.identity.sourceHealth() ?? {}) },
    routes: (config.outbound?.routes ?? []).map((r) => ({
      name: r.name,
      upstream: r.upstream,
      tls: r.tls,
      ...(r.serverId ? { server_id: r.serverId } : {}),
      ...(r.serverTrustDomain ? { server_trust_domain: r.serverTrustDomain } : {}),
      ...(r.metering ? { metering: { provider: r.metering.provider } } : {}),
      ...(r.injectHeaders.length ? { injects_headers: r.injectHeaders.map((h) => h.name) } : {}),
      ...(r.allowBrowserRequests ? { allow_browser_requests: true } : {}),
    })),
    inbound: config.inbound
      ? {
          listen: parts.inbound?.address() ?? null,
          app: config.inbound.app,
          actions: config.inbound.actions.length,
          peers: (parts.inbound?.sessions() ?? []).map(({ peer, attestation }) => ({
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
    outbound: config.outbound
      ? {
          listen: parts.outbound?.address() ?? null,
          caller_auth: config.outbound.callerTokenFile !== undefined,
          stopped: outboundStopped !== undefined,
          ...(outboundStopped ? { stopped_reason: outboundStopped } : {}),
        }
      : null,
    policy: policy
      ? { version: policy.version, file: policy.file, agents: policy.agents.map((a) => a.name), loaded_at: policy.loadedAt.toISOString() }
      : null,
    recent_denials: parts.denials.list(),
    budgets: parts.budgets(),
    revocations: parts.revocations(),
    audit: parts.audit ? { target: config.log.audit, ...parts.audit.head() } : null,
  };
}
