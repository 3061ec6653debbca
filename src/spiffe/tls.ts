/**
 * TLS material and SPIFFE peer verification for both directions.
 *
 * Contexts are built once per identity change (rotation or bundle update), never per
 * connection. OpenSSL verifies the chain during the handshake against the union of all trust
 * bundles (so garbage is refused with a TLS alert); then `verifyPeer` applies the SPIFFE rules
 * OpenSSL cannot: the chain must lead to the bundle of the trust domain NAMED IN THE LEAF, the
 * leaf must be a well-formed X509-SVID, and the validity window is checked against our clock.
 */
import { X509Certificate, constants as cryptoConstants } from 'node:crypto';
import tls, { type DetailedPeerCertificate, type PeerCertificate, type SecureContext, type TLSSocket } from 'node:tls';
import { SidecarError } from '../errors.js';
import { parseTrustDomain, type TrustDomain } from './id.js';
import type { ReasonCode } from '../reasons.js';
import type { IdentityState } from './source.js';
import { svidChainPem, svidKeyPem } from './svid.js';
import { verifyX509Svid } from './verify.js';
import { svidExtensionClaims, type ExtensionClaims } from './extensions.js';
import type { X509BundleSource } from './bundle/x509-bundle.js';
import { authorizeAll, authorizeID, authorizeMemberOf, authorizeNotRevoked, type Authorizer } from './authorize.js';

export const MIN_TLS_VERSION = 'TLSv1.2';

/** What the proxy keeps about a verified peer for the life of its connection. */
export interface VerifiedPeer {
  readonly id: string;
  readonly trustDomain: string;
  /** Earliest notAfter along the verified chain, epoch ms: the connection is refused after it. */
  readonly notAfterMs: number;
  /** Hex SHA-256 of the peer's leaf certificate DER (XFCC `Hash`). */
  readonly leafSha256Hex: string;
  readonly serial: string;
  /** DER SubjectPublicKeyInfo of the leaf (what attestation evidence is bound to). */
  readonly spki: Buffer;
  readonly spkiSha256Hex: string;
  /** The leaf's X.509 extensions by OID (what `access_control` claims name); read at handshake time. */
  readonly extensions: ExtensionClaims;
  /** The bundle authority the verified path ended at (set by every verification; see stillAnchored). */
  readonly anchor?: X509Certificate;
}

/** PEM material and prebuilt contexts for one identity generation. */
export interface TlsMaterial {
  readonly generation: number;
  readonly ownId: string;
  readonly notAfterMs: number;
  /** DER SubjectPublicKeyInfo of our SVID: what our evidence is bound to. */
  readonly spki: Buffer;
  readonly certPem: string;
  readonly keyPem: string;
  readonly caPem: string;
  /** Client-side context for outbound connections (our SVID + all bundles). */
  readonly clientContext: SecureContext;
  readonly bundles: X509BundleSource;
}

export function buildTlsMaterial(state: IdentityState): TlsMaterial {
  const certPem = svidChainPem(state.svid);
  const keyPem = svidKeyPem(state.svid);
  const caPem = state.bundles.allAuthoritiesPem();
  const clientContext = tls.createSecureContext({ cert: certPem, key: keyPem, ca: caPem, minVersion: MIN_TLS_VERSION });
  return {
    generation: state.generation,
    ownId: state.svid.id.toString(),
    notAfterMs: state.svid.notAfter.getTime(),
    spki: state.svid.certificates[0]!.publicKey.export({ type: 'spki', format: 'der' }),
    certPem,
    keyPem,
    caPem,
    clientContext,
    bundles: state.bundles,
  };
}

/**
 * Options for `tls.Server#setSecureContext` / `https.createServer` (mTLS, client cert required).
 *
 * Session resumption is off: a resumed session restores only the peer's leaf, not the
 * intermediates it presented, so the SPIFFE path to the leaf's trust domain could not be
 * rebuilt. Every new connection does a full handshake; the SPIFFE verification of a chain seen
 * before is reused while it provably holds (verifyPeerCertificate).
 */
export function serverContextOptions(material: TlsMaterial): tls.SecureContextOptions & tls.TlsOptions {
  return {
    cert: material.certPem,
    key: material.keyPem,
    ca: material.caPem,
    minVersion: MIN_TLS_VERSION,
    requestCert: true,
    rejectUnauthorized: true,
    secureOptions: cryptoConstants.SSL_OP_NO_TICKET,
  };
}

/**
 * Most certificates a peer's chain may have, leaf (and, in Node's detailed chain, the root from
 * our bundle) included: SPIFFE deployments use a leaf and zero to a few intermediates. Longer
 * chains are refused (`svid_chain_too_long`) before any of them is parsed.
 */
export const MAX_PEER_CHAIN_LENGTH = 8;

/**
 * Raw bytes a client's handshake may bring (with the first read of request bytes after it)
 * before the sidecar counts the certificates it presented. Below it, no chain can be long.
 */
const COUNT_CERTIFICATES_ABOVE_BYTES = 16 * 1024;

function chainTooLong(what: string): SidecarError {
  return new SidecarError('svid_chain_too_long', `${what} has more than ${MAX_PEER_CHAIN_LENGTH} certificates`);
}

/**
 * The certificates a client presented, leaf first, in the order sent, from Node's X509Certificate
 * issuer links (which, unlike the detailed chain, include certificates that link to nothing).
 * More than MAX_PEER_CHAIN_LENGTH: refused. Node copies every presented certificate for this and
 * consumes its list of them: the socket's detailed chain is not usable afterwards.
 */
function presentedChain(socket: TLSSocket): X509Certificate[] {
  const chain: X509Certificate[] = [];
  for (let c: X509Certificate | undefined = socket.getPeerX509Certificate(); c !== undefined; c = c.issuerCertificate) {
    if (chain.length === MAX_PEER_CHAIN_LENGTH) throw chainTooLong('the presented certificate list');
    chain.push(c);
  }
  if (chain.length === 0) throw new SidecarError('peer_no_certificate', 'peer presented no certificate');
  return chain;
}

/**
 * SPIFFE verification of a client on a server socket, right after its handshake. An ordinary
 * handshake takes Node's detailed chain (verifyPeerCertificate). One that brought more raw bytes
 * than a short chain needs (Node's wrapped socket count; always, when that is not there) may
 * carry a long list of certificates that link to nothing, which the detailed chain never shows:
 * its presented list is counted and verified instead, so such a list costs one copy by Node
 * and is refused (`svid_chain_too_long`) before anything is parsed.
 */
export function verifyClientPeer(socket: TLSSocket, bundles: X509BundleSource, nowMs: number): VerifiedPeer {
  const rawBytes = (socket as unknown as { _parent?: { bytesRead?: unknown } })._parent?.bytesRead;
  if (typeof rawBytes === 'number' && rawBytes <= COUNT_CERTIFICATES_ABOVE_BYTES) {
    return verifyPeerCertificate(peerCertificate(socket), bundles, nowMs);
  }
  const chain = presentedChain(socket);
  return cachedVerification(chain, chain.map((c) => c.fingerprint256).join(''), bundles, nowMs);
}

/** Node's detailed certificates along the issuer links, leaf first (the root links to itself). */
function detailedChain(cert: PeerCertificate | DetailedPeerCertificate): DetailedPeerCertificate[] {
  const chain: DetailedPeerCertificate[] = [];
  const seen = new Set<object>();
  let cur: DetailedPeerCertificate | undefined = cert as DetailedPeerCertificate;
  while (cur && cur.raw && !seen.has(cur)) {
    if (chain.length === MAX_PEER_CHAIN_LENGTH) throw chainTooLong('the peer certificate chain');
    seen.add(cur);
    chain.push(cur);
    cur = cur.issuerCertificate;
  }
  return chain;
}

/**
 * The certificates the peer presented, leaf first, from Node's detailed peer certificate
 * (which links issuers up to the root OpenSSL used; extra certificates are harmless because
 * `verifyX509Svid` builds its own path to the leaf's trust domain bundle).
 */
export function chainFromDetailed(cert: PeerCertificate | DetailedPeerCertificate): X509Certificate[] {
  return detailedChain(cert).map((c) => new X509Certificate(c.raw));
}

/** The peer's detailed certificate (leaf, with issuers linked). Throws when it presented none. */
export function peerCertificate(socket: TLSSocket): DetailedPeerCertificate {
  const cert = socket.getPeerCertificate(true);
  if (!cert || !cert.raw) throw new SidecarError('peer_no_certificate', 'peer presented no certificate');
  return cert;
}

/** Applies the SPIFFE X509-SVID rules to a presented chain. Throws SidecarError (svid_* reasons). */
export function verifyPeer(chain: readonly X509Certificate[], bundles: X509BundleSource, now: Date): VerifiedPeer {
  return verifyPeerUntil(chain, bundles, now).peer;
}

function verifyPeerUntil(chain: readonly X509Certificate[], bundles: X509BundleSource, now: Date): { peer: VerifiedPeer; stableUntilMs: number } {
  const v = verifyX509Svid(chain, bundles, now);
  const leaf = chain[0]!;
  const peer: VerifiedPeer = Object.freeze({
    id: v.id.toString(),
    trustDomain: v.id.trustDomain.name,
    notAfterMs: v.notAfter.getTime(),
    leafSha256Hex: leaf.fingerprint256.replaceAll(':', '').toLowerCase(),
    serial: leaf.serialNumber,
    spki: leaf.publicKey.export({ type: 'spki', format: 'der' }),
    spkiSha256Hex: v.spkiSha256.toString('hex'),
    extensions: svidExtensionClaims(leaf),
    anchor: v.chain[v.chain.length - 1],
  });
  return { peer, stableUntilMs: v.stableUntilMs };
}

/**
 * Whether `bundles` still hold the authority the peer's chain was verified to (or a re-issue of
 * it: same subject and key). What a bundle change re-checks for open connections: the presented
 * chain was verified at the handshake and does not change, only the trust anchors do. No
 * signature is checked, and the socket's certificate list (which Node may have consumed) is
 * not needed.
 */
export function stillAnchored(peer: VerifiedPeer, bundles: X509BundleSource): boolean {
  const anchor = peer.anchor;
  if (!anchor) return false;
  let trustDomain: TrustDomain;
  try {
    trustDomain = parseTrustDomain(peer.trustDomain);
  } catch {
    return false;
  }
  const authorities = bundles.getX509Bundle(trustDomain)?.authorities ?? [];
  return authorities.some((a) => a.fingerprint256 === anchor.fingerprint256 || (a.subject === anchor.subject && a.publicKey.equals(anchor.publicKey)));
}

/** A successful verification and the times between which it holds (see VerifiedX509Svid.stableUntilMs). */
interface CachedVerification {
  readonly peer: VerifiedPeer;
  readonly fromMs: number;
  readonly untilMs: number;
}

/**
 * Successful verifications by presented chain, per bundle source (a bundle update brings a new
 * source, so its entries go with the old one). Every new connection of a reconnecting peer
 * otherwise re-parses each certificate and re-runs the
 * checks; the TLS handshake itself still verifies the chain every time. Failures are not kept.
 */
const verifiedChains = new WeakMap<X509BundleSource, Map<string, CachedVerification>>();
const MAX_CACHED_CHAINS = 256;

/** The SHA-256 fingerprints of the certificates chainFromDetailed takes; undefined if one lacks it. */
function chainKey(chain: readonly DetailedPeerCertificate[]): string | undefined {
  let key = '';
  for (const c of chain) {
    if (typeof c.fingerprint256 !== 'string' || c.fingerprint256.length !== 95) return undefined;
    key += c.fingerprint256;
  }
  return key || undefined;
}

/**
 * verifyPeer for the certificate a TLS socket reports (`getPeerCertificate(true)`), reusing an
 * earlier verification of the byte-identical chain against the same bundle source while it
 * provably gives the same answer: from the time it was made until its `stableUntilMs`. A
 * clock that went back, a new bundle source or a different chain verifies afresh.
 */
export function verifyPeerCertificate(cert: PeerCertificate | DetailedPeerCertificate, bundles: X509BundleSource, nowMs: number): VerifiedPeer {
  const detailed = detailedChain(cert);
  const key = chainKey(detailed);
  const cached = key === undefined ? undefined : verifiedChains.get(bundles)?.get(key);
  if (cached && nowMs >= cached.fromMs && nowMs <= cached.untilMs) return cached.peer;
  return cachedVerification(detailed.map((c) => new X509Certificate(c.raw)), key, bundles, nowMs);
}

/** verifyPeerUntil through the cache of verifiedChains under `key` (undefined: not cached). */
function cachedVerification(chain: readonly X509Certificate[], key: string | undefined, bundles: X509BundleSource, nowMs: number): VerifiedPeer {
  let byChain = verifiedChains.get(bundles);
  const cached = key === undefined ? undefined : byChain?.get(key);
  if (cached && nowMs >= cached.fromMs && nowMs <= cached.untilMs) return cached.peer;
  const { peer, stableUntilMs } = verifyPeerUntil(chain, bundles, new Date(nowMs));
  if (key !== undefined) {
    if (!byChain) verifiedChains.set(bundles, (byChain = new Map()));
    byChain.delete(key); // re-inserted last: the map's order is its eviction order
    if (byChain.size >= MAX_CACHED_CHAINS) byChain.delete(byChain.keys().next().value!);
    byChain.set(key, { peer, fromMs: nowMs, untilMs: stableUntilMs });
  }
  return peer;
}

/** An outbound server that failed the route's SPIFFE identity check. */
export class PeerIdentityError extends SidecarError {
  readonly code = 'ERR_SPIFFE_PEER';
}

export interface ServerIdentityExpectation {
  serverId?: string;
  serverTrustDomain?: string;
}

/**
 * What an outbound route accepts of its server: the expected server ID or trust domain, and
 * (when the kill switch is wired) not revoked. Built once per route pool.
 */
export function routeServerAuthorizer(
  expect: ServerIdentityExpectation,
  isRevoked?: (spiffeId: string) => boolean,
): Authorizer<'server_id_mismatch' | 'server_trust_domain_mismatch' | 'upstream_revoked'> {
  const { serverId, serverTrustDomain } = expect;
  return authorizeAll(
    serverId !== undefined &&
      authorizeID(serverId, (peer) => ({ reason: 'server_id_mismatch', message: `server is ${peer.id}, route expects ${serverId}` })),
    serverTrustDomain !== undefined &&
      authorizeMemberOf(serverTrustDomain, (peer) => ({
        reason: 'server_trust_domain_mismatch',
        message: `server ${peer.id} is not in trust domain ${serverTrustDomain}`,
      })),
    isRevoked !== undefined && authorizeNotRevoked(isRevoked, (peer) => ({ reason: 'upstream_revoked', message: `server ${peer.id} is revoked` })),
  );
}

/**
 * `checkServerIdentity` for outbound TLS: replaces the hostname check with the SPIFFE check
 * (verification, then `authorize`). Returns an Error to abort the handshake.
 */
export function spiffeServerCheck(authorize: Authorizer<ReasonCode>, bundles: X509BundleSource): (host: string, cert: PeerCertificate) => Error | undefined {
  return (_host, cert) => {
    let peer: VerifiedPeer;
    try {
      peer = verifyPeerCertificate(cert, bundles, Date.now());
    } catch (err) {
      const reason = err instanceof SidecarError ? err.reason : 'svid_malformed';
      return new PeerIdentityError(reason, (err as Error).message);
    }
    const refusal = authorize(peer);
    return refusal && new PeerIdentityError(refusal.reason, refusal.message);
  };
}
