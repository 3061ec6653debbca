/**
 * Peer authorizers in the style of go-spiffe's `tlsconfig.Authorizer`: once a peer's X509-SVID
 * has verified (tls.ts), an authorizer decides whether this listener or route accepts that
 * identity. Each is a pure function of the verified peer, built once (per route, per listener)
 * and composed with `authorizeAll`; it returns undefined to accept or a refusal naming why.
 *
 * A refusal's reason code and message are the caller's vocabulary: an outbound route refuses a
 * server (`server_id_mismatch`), the admin API a caller (`admin_not_listed`). Each authorizer
 * takes an optional `refuse` that words its refusal; without it the generic codes below apply.
 * The reason type follows the wording, so a check whose refusals are reported (spiffeServerCheck)
 * accepts only authorizers worded with catalogue codes.
 */

/** The verified identity an authorizer decides on (a `VerifiedPeer` is one). */
export interface PeerIdentity {
  /** The peer's SPIFFE ID, canonical (as verification produced it). */
  readonly id: string;
  /** The trust domain name of `id`. */
  readonly trustDomain: string;
}

/** `R`: the reason codes an authorizer may refuse with (the catalogue's, where a refusal is reported). */
export interface AuthorizationRefusal<R extends string = string> {
  /** snake_case reason code (audit, metrics, the caller's error). */
  readonly reason: R;
  readonly message: string;
}

/** Undefined: authorized. */
export type Authorizer<R extends string = string> = (peer: PeerIdentity) => AuthorizationRefusal<R> | undefined;

/** Words the refusal of one authorizer for its caller. */
export type RefusalWording<R extends string = string> = (peer: PeerIdentity) => AuthorizationRefusal<R>;

/** Any verified peer (go-spiffe AuthorizeAny): the SVID verification is the whole check. */
export function authorizeAny(): Authorizer<never> {
  return ANY;
}

const ANY: Authorizer<never> = () => undefined;

/** Exactly the SPIFFE ID `id`. */
export function authorizeID(id: string): Authorizer<'peer_id_not_authorized'>;
export function authorizeID<R extends string>(id: string, refuse: RefusalWording<R>): Authorizer<R>;
export function authorizeID(id: string, refuse: RefusalWording = (peer) => idRefusal(peer, id)): Authorizer {
  return (peer) => (peer.id === id ? undefined : refuse(peer));
}

/**
 * One of `ids`. A function is asked on every decision, so the set may change while the
 * authorizer is in use (the policy's `admins` after a reload).
 */
export function authorizeOneOf(ids: AuthorizedIds): Authorizer<'peer_id_not_authorized'>;
export function authorizeOneOf<R extends string>(ids: AuthorizedIds, refuse: RefusalWording<R>): Authorizer<R>;
export function authorizeOneOf(ids: AuthorizedIds, refuse: RefusalWording = (peer) => idRefusal(peer, 'one of the authorized IDs')): Authorizer {
  if (typeof ids === 'function') return (peer) => (ids().has(peer.id) ? undefined : refuse(peer));
  const allowed: ReadonlySet<string> = new Set(ids);
  return (peer) => (allowed.has(peer.id) ? undefined : refuse(peer));
}

/** A fixed list of SPIFFE IDs (copied when the authorizer is built), or the live set. */
export type AuthorizedIds = Iterable<string> | (() => ReadonlySet<string>);

/** Any SPIFFE ID of the trust domain `trustDomain` (its name, e.g. `example.org`). */
export function authorizeMemberOf(trustDomain: string): Authorizer<'peer_trust_domain_not_authorized'>;
export function authorizeMemberOf<R extends string>(trustDomain: string, refuse: RefusalWording<R>): Authorizer<R>;
export function authorizeMemberOf(
  trustDomain: string,
  refuse: RefusalWording = (peer) => ({ reason: 'peer_trust_domain_not_authorized', message: `${peer.id} is not in trust domain ${trustDomain}` }),
): Authorizer {
  return (peer) => (peer.trustDomain === trustDomain ? undefined : refuse(peer));
}

/** A peer `isRevoked` does not name (the kill switch's current state, asked on every decision). */
export function authorizeNotRevoked(isRevoked: (spiffeId: string) => boolean): Authorizer<'peer_revoked'>;
export function authorizeNotRevoked<R extends string>(isRevoked: (spiffeId: string) => boolean, refuse: RefusalWording<R>): Authorizer<R>;
export function authorizeNotRevoked(
  isRevoked: (spiffeId: string) => boolean,
  refuse: RefusalWording = (peer) => ({ reason: 'peer_revoked', message: `${peer.id} is revoked` }),
): Authorizer {
  return (peer) => (isRevoked(peer.id) ? refuse(peer) : undefined);
}

/**
 * Every one of `authorizers`, in order; the first refusal is the answer. Falsy entries are
 * dropped, so a check a route does not configure costs nothing.
 */
export function authorizeAll<R extends string>(...authorizers: readonly (Authorizer<R> | undefined | false)[]): Authorizer<R> {
  const list = authorizers.filter((a): a is Authorizer<R> => typeof a === 'function');
  if (list.length === 0) return ANY;
  if (list.length === 1) return list[0]!;
  return (peer) => {
    for (const authorize of list) {
      const refusal = authorize(peer);
      if (refusal) return refusal;
    }
    return undefined;
  };
}

/**
 * The identity of a SPIFFE ID that verification already produced (canonical), for callers that
 * kept only the ID string. Not a parser: unverified text must go through spiffe/id.ts.
 */
export function verifiedIdentity(id: string): PeerIdentity {
  const scheme = 'spiffe://';
  const slash = id.indexOf('/', scheme.length);
  return { id, trustDomain: id.startsWith(scheme) ? id.slice(scheme.length, slash < 0 ? undefined : slash) : '' };
}

function idRefusal(peer: PeerIdentity, expected: string): AuthorizationRefusal<'peer_id_not_authorized'> {
  return { reason: 'peer_id_not_authorized', message: `unexpected ID ${peer.id} (expected ${expected})` };
}
