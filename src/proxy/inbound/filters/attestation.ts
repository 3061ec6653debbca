/**
 * The attestation gate, for allowed requests whose agent must attest: the peer's evidence (or
 * its reference to evidence already verified on this connection) must satisfy the agent's
 * requirements. Absent when no gate is configured (the policy filter refuses such agents).
 */
import type { RequestFilter } from '../../chain.js';
import { isGateRefusal, type AttestationGate } from '../../attestation-gate.js';
import type { InboundContext } from '../context.js';

export function attestationFilter(gate: AttestationGate): RequestFilter<InboundContext> {
  return {
    name: 'attestation',
    onRequest(ctx) {
      const route = ctx.route!;
      const requirements = route.attestation;
      if (requirements === undefined) return undefined;
      const conn = ctx.conn!;
      const peer = conn.peer;
      const session = (conn.attestation ??= { spki: peer.spki, spkiSha256Hex: peer.spkiSha256Hex, notAfterMs: peer.notAfterMs });
      const result = gate.check(ctx.req, session, requirements, ctx.policy!.version, route.mapping!.action);
      return isGateRefusal(result) ? result : undefined;
    },
  };
}
