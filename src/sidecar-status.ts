/**
 * The `/status` snapshot (what the status page renders): our identity with its rotation and
 * expiry times, trust bundles, routes, peers with their verified claims, recent denials,
 * budgets and revocations. Built on demand from the sidecar's parts; never holds key material.
 */
import type { AddressInfo } from 'node:net';
import type { SidecarConfig } from './config/types.js';
import type { CompiledPolicy } from './policy/types.js';
import type { IdentityState } from './spiffe/source.js';
import type { VerifiedPeer } from './spiffe/tls.js';
import type { AttestationSession } from './proxy/attestation-gate.js';
import type { RecentDenial } from './proxy/decision-log.js';
import type { BudgetStatus } from './budget/ledger.js';

export interface StatusSources {
  config: SidecarConfig;
  state: IdentityState | undefined;
  now: number;
  policy: CompiledPolicy | undefined;
  identitySource: Record<string, unknown> | undefined;
  sessions: { peer: VerifiedPeer; attestation?: AttestationSession }[];
  inboundAddress: AddressInfo | undefined;
  outboundAddress: AddressInfo | undefined;
  outboundStopped: string | undefined;
  denials: RecentDenial[];
  budgets: BudgetStatus[];
  revocations: unknown;
  /** The audit chain's head (seq and hash of the last record): an anchor for `audit verify --expect-*`. */
  audit: { target: string; seq: number; hash: string } | undefined;
}

export function buildStatus(src: StatusSources): Record<string, unknown> {
  const { config, state, now, policy } = src;
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
    identity_source: { kind: config.identity.source, ...(src.identitySource ?? {}) },
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
          listen: src.inboundAddress ?? null,
          app: config.inbound.app,
          actions: config.inbound.actions.length,
          peers: src.sessions.map(({ peer, attestation }) => ({
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
          listen: src.outboundAddress ?? null,
          caller_auth: config.outbound.callerTokenFile !== undefined,
          stopped: src.outboundStopped !== undefined,
          ...(src.outboundStopped ? { stopped_reason: src.outboundStopped } : {}),
        }
      : null,
    policy: policy
      ? { version: policy.version, file: policy.file, agents: policy.agents.map((a) => a.name), loaded_at: policy.loadedAt.toISOString() }
      : null,
    recent_denials: src.denials,
    budgets: src.budgets,
    revocations: src.revocations,
    audit: src.audit ?? null,
  };
}
