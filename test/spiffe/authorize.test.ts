import t from 'tap';
import {
  authorizeAll,
  authorizeAny,
  authorizeID,
  authorizeMemberOf,
  authorizeNotRevoked,
  authorizeOneOf,
  verifiedIdentity,
  type Authorizer,
  type PeerIdentity,
} from '../../src/spiffe/authorize.js';
import { routeServerAuthorizer, spiffeServerCheck } from '../../src/spiffe/tls.js';

const ALICE: PeerIdentity = { id: 'spiffe://example.org/ns/a/sa/alice', trustDomain: 'example.org' };
const BOB: PeerIdentity = { id: 'spiffe://example.org/ns/a/sa/bob', trustDomain: 'example.org' };
const MALLORY: PeerIdentity = { id: 'spiffe://evil.test/mallory', trustDomain: 'evil.test' };

const revoked = new Set([BOB.id]);
const isRevoked = (id: string) => revoked.has(id);

/** [name, authorizer, peer, expected reason (undefined: authorized)] */
const CASES: [string, Authorizer, PeerIdentity, string | undefined][] = [
  ['any: a member', authorizeAny(), ALICE, undefined],
  ['any: another trust domain', authorizeAny(), MALLORY, undefined],
  ['id: the ID', authorizeID(ALICE.id), ALICE, undefined],
  ['id: another ID of the domain', authorizeID(ALICE.id), BOB, 'peer_id_not_authorized'],
  ['id: another domain', authorizeID(ALICE.id), MALLORY, 'peer_id_not_authorized'],
  ['id: a prefix is not the ID', authorizeID('spiffe://example.org/ns/a/sa/ali'), ALICE, 'peer_id_not_authorized'],
  ['one of: listed', authorizeOneOf([ALICE.id, BOB.id]), BOB, undefined],
  ['one of: not listed', authorizeOneOf([ALICE.id]), BOB, 'peer_id_not_authorized'],
  ['one of: empty list', authorizeOneOf([]), ALICE, 'peer_id_not_authorized'],
  ['one of: a live set', authorizeOneOf(() => new Set([ALICE.id])), ALICE, undefined],
  ['member of: the domain', authorizeMemberOf('example.org'), ALICE, undefined],
  ['member of: another domain', authorizeMemberOf('example.org'), MALLORY, 'peer_trust_domain_not_authorized'],
  ['member of: a suffix is not the domain', authorizeMemberOf('test'), MALLORY, 'peer_trust_domain_not_authorized'],
  ['not revoked: not revoked', authorizeNotRevoked(isRevoked), ALICE, undefined],
  ['not revoked: revoked', authorizeNotRevoked(isRevoked), BOB, 'peer_revoked'],
  ['all: nothing is any', authorizeAll(), MALLORY, undefined],
  ['all: falsy entries dropped', authorizeAll(undefined, false, authorizeMemberOf('example.org')), MALLORY, 'peer_trust_domain_not_authorized'],
  ['all: every one passes', authorizeAll(authorizeMemberOf('example.org'), authorizeNotRevoked(isRevoked)), ALICE, undefined],
  ['all: the first refusal wins', authorizeAll(authorizeMemberOf('example.org'), authorizeID(ALICE.id)), MALLORY, 'peer_trust_domain_not_authorized'],
  ['all: a later refusal', authorizeAll(authorizeMemberOf('example.org'), authorizeNotRevoked(isRevoked)), BOB, 'peer_revoked'],
];

t.test('authorizers, one row each', async (t) => {
  for (const [name, authorize, peer, reason] of CASES) {
    const refusal = authorize(peer);
    t.equal(refusal?.reason, reason, name);
    if (refusal) t.match(refusal.message, peer.id, `${name}: the message names the peer`);
  }
});

t.test('a refusal is worded by the caller', async (t) => {
  const authorize = authorizeID(ALICE.id, (peer) => ({ reason: 'admin_not_listed', message: `${peer.id} is no admin` }));
  t.strictSame(authorize(BOB), { reason: 'admin_not_listed', message: `${BOB.id} is no admin` });
  t.equal(authorize(ALICE), undefined);
});

t.test('one of: a live set is asked on every decision', async (t) => {
  let admins = new Set<string>();
  const authorize = authorizeOneOf(() => admins);
  t.equal(authorize(ALICE)?.reason, 'peer_id_not_authorized');
  admins = new Set([ALICE.id]);
  t.equal(authorize(ALICE), undefined);
});

t.test('one of: a list is copied when built', async (t) => {
  const ids = [ALICE.id];
  const authorize = authorizeOneOf(ids);
  ids.push(BOB.id);
  t.equal(authorize(BOB)?.reason, 'peer_id_not_authorized');
});

t.test('not revoked: the revocation state is asked on every decision', async (t) => {
  const authorize = authorizeNotRevoked(isRevoked);
  revoked.add(ALICE.id);
  t.teardown(() => revoked.delete(ALICE.id));
  t.equal(authorize(ALICE)?.reason, 'peer_revoked');
});

/** [name, expectation, revocation wired, peer, reason, message] */
const ROUTE_CASES: [string, { serverId?: string; serverTrustDomain?: string }, boolean, PeerIdentity, string | undefined, string | undefined][] = [
  ['server ID matches', { serverId: ALICE.id }, true, ALICE, undefined, undefined],
  ['server ID differs', { serverId: ALICE.id }, true, BOB, 'server_id_mismatch', `server is ${BOB.id}, route expects ${ALICE.id}`],
  ['trust domain matches', { serverTrustDomain: 'example.org' }, true, ALICE, undefined, undefined],
  ['trust domain differs', { serverTrustDomain: 'example.org' }, true, MALLORY, 'server_trust_domain_mismatch', `server ${MALLORY.id} is not in trust domain example.org`],
  ['revoked server', { serverTrustDomain: 'example.org' }, true, BOB, 'upstream_revoked', `server ${BOB.id} is revoked`],
  ['revocation not wired', { serverTrustDomain: 'example.org' }, false, BOB, undefined, undefined],
  ['ID checked before revocation', { serverId: ALICE.id }, true, BOB, 'server_id_mismatch', `server is ${BOB.id}, route expects ${ALICE.id}`],
];

t.test("an outbound route's server authorizer keeps the route pool's codes and messages", async (t) => {
  for (const [name, expect, wired, peer, reason, message] of ROUTE_CASES) {
    const refusal = routeServerAuthorizer(expect, wired ? isRevoked : undefined)(peer);
    t.equal(refusal?.reason, reason, name);
    t.equal(refusal?.message, message, `${name}: message`);
  }
});

t.test('a reported check takes only authorizers worded with catalogue codes (checked by the compiler)', async (t) => {
  const bundles = undefined as never;
  t.type(spiffeServerCheck(routeServerAuthorizer({ serverId: ALICE.id }, isRevoked), bundles), 'function');
  t.type(spiffeServerCheck(authorizeAny(), bundles), 'function');
  // @ts-expect-error peer_id_not_authorized is a generic default, not a code the sidecar reports
  t.type(spiffeServerCheck(authorizeID(ALICE.id), bundles), 'function');
});

t.test('verifiedIdentity splits a verified ID', async (t) => {
  t.strictSame(verifiedIdentity(ALICE.id), ALICE);
  t.strictSame(verifiedIdentity('spiffe://example.org'), { id: 'spiffe://example.org', trustDomain: 'example.org' });
  t.strictSame(verifiedIdentity(''), { id: '', trustDomain: '' });
});
