/** The peer filters: verified connection, certificate still valid, not revoked. */
import t from 'tap';
import { peerExpiry, peerVerified, revocation } from '../../../src/proxy/inbound/filters/peer.js';
import { RevocationState } from '../../../src/revocation/state.js';
import { NOW, PEER_ID, connection, context, peer, revoked } from './fakes.js';

t.test('peer-verified refuses a request on a connection whose peer was not verified', async (t) => {
  const cases: [string, ReturnType<typeof context>, string | undefined][] = [
    ['verified', context({ conn: connection() }), undefined],
    ['unverified', context(), 'peer_unverified'],
  ];
  for (const [name, ctx, reason] of cases) {
    const out = peerVerified.onRequest(ctx);
    t.equal(out && !(out instanceof Promise) ? out.reason : undefined, reason, name);
  }
  t.match(peerVerified.onRequest(context()), { status: 403, body: '{"error":"Peer identity not verified"}', close: false });
});

t.test('peer-expiry refuses (and closes) once the certificate expired', async (t) => {
  const filter = peerExpiry(() => NOW);
  const cases: [string, number, string | undefined][] = [
    ['valid for an hour', NOW + 3_600_000, undefined],
    ['valid for 1 ms', NOW + 1, undefined],
    ['expires now', NOW, 'svid_expired'],
    ['expired', NOW - 1, 'svid_expired'],
  ];
  for (const [name, notAfterMs, reason] of cases) {
    const out = filter.onRequest(context({ conn: connection(peer(PEER_ID, notAfterMs)) }));
    t.equal(out && !(out instanceof Promise) ? out.reason : undefined, reason, name);
    if (reason) t.match(out, { status: 403, body: '{"error":"Peer SVID expired"}', close: true });
  }
});

t.test('revocation refuses (and closes) a revoked peer', async (t) => {
  const cases: [string, RevocationState, string | undefined][] = [
    ['nothing revoked', RevocationState.empty(), undefined],
    ['another peer revoked', revoked('spiffe://mesh.local/other'), undefined],
    ['this peer revoked', revoked(PEER_ID), 'agent_revoked'],
  ];
  for (const [name, state, reason] of cases) {
    const out = revocation(() => state).onRequest(context({ conn: connection() }));
    t.equal(out && !(out instanceof Promise) ? out.reason : undefined, reason, name);
    if (reason) t.match(out, { status: 403, body: '{"error":"Agent revoked"}', close: true });
  }
});
