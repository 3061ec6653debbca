/**
 * SPIFFE bundle (SPIFFE Trust Domain and Bundle spec; go-spiffe spiffebundle): a JWKS whose
 * keys have `use` "x509-svid" (exactly one x5c certificate each), "jwt-svid" or "wit-svid"
 * (kid required), plus optional top-level `spiffe_refresh_hint` (seconds) and
 * `spiffe_sequence`. Keys with another `use` are ignored, as go-spiffe does.
 */
import { KeyObject, X509Certificate } from 'node:crypto';
import { TrustDomain } from '../id.js';
import { parseCertificateDer, publicKeySpkiDer } from '../x509.js';
import { BundleError } from './errors.js';
import { isJsonObject, JsonObject, jwkToPublicKey, keysEqual, parseJsonText, publicKeyToJwk } from './jwk.js';
import { JwtBundle } from './jwt-bundle.js';
import { X509Bundle } from './x509-bundle.js';

export const X509_SVID_USE = 'x509-svid';
export const JWT_SVID_USE = 'jwt-svid';
export const WIT_SVID_USE = 'wit-svid';

const STRICT_BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

export interface SpiffeBundleInit {
  x509Authorities?: Iterable<X509Certificate>;
  jwtAuthorities?: Iterable<readonly [string, KeyObject]>;
  witAuthorities?: Iterable<readonly [string, KeyObject]>;
  refreshHintSeconds?: number;
  sequenceNumber?: number;
}

function fail(msg: string, cause?: unknown): never {
  throw new BundleError('spiffe_bundle_invalid', `spiffebundle: ${msg}`, cause === undefined ? undefined : { cause });
}

export class SpiffeBundle {
  readonly trustDomain: TrustDomain;
  readonly x509Authorities: readonly X509Certificate[];
  readonly jwtAuthorities: ReadonlyMap<string, KeyObject>;
  /** Workload Identity Token authorities (kept and round-tripped; not used for X.509). */
  readonly witAuthorities: ReadonlyMap<string, KeyObject>;
  readonly refreshHintSeconds?: number;
  readonly sequenceNumber?: number;

  constructor(td: TrustDomain, init: SpiffeBundleInit = {}) {
    this.trustDomain = td;
    this.x509Authorities = new X509Bundle(td, init.x509Authorities ?? []).authorities;
    this.jwtAuthorities = new Map(init.jwtAuthorities ?? []);
    this.witAuthorities = new Map(init.witAuthorities ?? []);
    if (init.refreshHintSeconds !== undefined) this.refreshHintSeconds = init.refreshHintSeconds;
    if (init.sequenceNumber !== undefined) this.sequenceNumber = init.sequenceNumber;
  }

  static parse(td: TrustDomain, json: string | Uint8Array): SpiffeBundle {
    let doc: unknown;
    try {
      doc = parseJsonText(json);
    } catch (err) {
      fail(`unable to parse JWKS: ${(err as Error).message}`, err);
    }
    if (!isJsonObject(doc)) fail('unable to parse JWKS: not a JSON object');

    const refreshHintSeconds = optionalUint(doc, 'spiffe_refresh_hint');
    const sequenceNumber = optionalUint(doc, 'spiffe_sequence');
    const keys = doc['keys'];
    // The "keys" member MUST be present (an empty list is allowed).
    if (keys === undefined || keys === null) fail('no authorities found');
    if (!Array.isArray(keys)) fail('unable to parse JWKS: "keys" must be an array');

    const x509: X509Certificate[] = [];
    const jwt = new Map<string, KeyObject>();
    const wit = new Map<string, KeyObject>();
    keys.forEach((entry: unknown, i: number) => {
      if (!isJsonObject(entry)) fail(`unable to parse JWKS: key ${i} is not a JSON object`);
      switch (entry['use']) {
        case X509_SVID_USE:
          x509.push(parseX509Entry(entry, i));
          break;
        case JWT_SVID_USE:
          addKeyedAuthority(jwt, entry, i);
          break;
        case WIT_SVID_USE:
          addKeyedAuthority(wit, entry, i);
          break;
        default:
          break; // unknown use: ignored (forward compatible, as go-spiffe)
      }
    });
    const init: SpiffeBundleInit = { x509Authorities: x509, jwtAuthorities: jwt, witAuthorities: wit };
    if (refreshHintSeconds !== undefined) init.refreshHintSeconds = refreshHintSeconds;
    if (sequenceNumber !== undefined) init.sequenceNumber = sequenceNumber;
    return new SpiffeBundle(td, init);
  }

  /** SPIFFE bundle JSON; parse(marshal()) gives an equal bundle. */
  marshal(): string {
    const keys: JsonObject[] = [];
    for (const cert of this.x509Authorities) {
      keys.push({ use: X509_SVID_USE, ...publicKeyToJwk(cert.publicKey), x5c: [cert.raw.toString('base64')] });
    }
    for (const [use, map] of [
      [JWT_SVID_USE, this.jwtAuthorities],
      [WIT_SVID_USE, this.witAuthorities],
    ] as const) {
      for (const kid of [...map.keys()].sort()) keys.push({ use, kid, ...publicKeyToJwk(map.get(kid)!) });
    }
    const doc: JsonObject = { keys };
    if (this.refreshHintSeconds !== undefined) doc['spiffe_refresh_hint'] = this.refreshHintSeconds;
    if (this.sequenceNumber !== undefined) doc['spiffe_sequence'] = this.sequenceNumber;
    return JSON.stringify(doc);
  }

  x509Bundle(): X509Bundle {
    return new X509Bundle(this.trustDomain, this.x509Authorities);
  }

  jwtBundle(): JwtBundle {
    return new JwtBundle(this.trustDomain, this.jwtAuthorities);
  }

  equals(o: SpiffeBundle): boolean {
    return (
      this.x509Bundle().equals(o.x509Bundle()) &&
      keysEqual(this.jwtAuthorities, o.jwtAuthorities) &&
      keysEqual(this.witAuthorities, o.witAuthorities) &&
      this.refreshHintSeconds === o.refreshHintSeconds &&
      this.sequenceNumber === o.sequenceNumber
    );
  }
}

function optionalUint(doc: JsonObject, member: string): number | undefined {
  const v = doc[member];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
    fail(`unable to parse JWKS: "${member}" must be a non-negative integer`);
  }
  return v;
}

function parseX509Entry(entry: JsonObject, i: number): X509Certificate {
  const x5c = entry['x5c'];
  const n = Array.isArray(x5c) ? x5c.length : 0;
  if (!Array.isArray(x5c) || n !== 1) fail(`expected a single certificate in ${X509_SVID_USE} entry ${i}; got ${n}`);
  const b64 = x5c[0];
  if (typeof b64 !== 'string' || !STRICT_BASE64.test(b64) || b64.length % 4 !== 0) {
    fail(`${X509_SVID_USE} entry ${i}: x5c certificate is not base64`);
  }
  let cert: X509Certificate;
  try {
    cert = parseCertificateDer(Buffer.from(b64, 'base64'));
  } catch (err) {
    fail(`${X509_SVID_USE} entry ${i}: ${(err as Error).message}`, err);
  }
  // As go-jose does: the JWK's own key members must describe the certificate's key.
  let jwkKey: KeyObject;
  try {
    jwkKey = jwkToPublicKey(entry);
  } catch (err) {
    fail(`${X509_SVID_USE} entry ${i}: ${(err as Error).message}`, err);
  }
  if (!publicKeySpkiDer(jwkKey).equals(publicKeySpkiDer(cert.publicKey))) {
    fail(`${X509_SVID_USE} entry ${i}: JWK key does not match its x5c certificate`);
  }
  return cert;
}

function addKeyedAuthority(map: Map<string, KeyObject>, entry: JsonObject, i: number): void {
  const kid = entry['kid'];
  if (kid === undefined || kid === '') fail(`error adding authority ${i} of JWKS: keyID cannot be empty`);
  if (typeof kid !== 'string') fail(`error adding authority ${i} of JWKS: keyID must be a string`);
  if (map.has(kid)) fail(`error adding authority ${i} of JWKS: duplicate keyID ${JSON.stringify(kid)}`);
  try {
    map.set(kid, jwkToPublicKey(entry));
  } catch (err) {
    fail(`error adding authority ${i} of JWKS: ${(err as Error).message}`, err);
  }
}
