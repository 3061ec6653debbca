/** JWT trust bundle of one trust domain: kid -> public key (go-spiffe jwtbundle). */
import { KeyObject } from 'node:crypto';
import { TrustDomain } from '../id.js';
import { BundleError } from './errors.js';
import { isJsonObject, jwkToPublicKey, keysEqual, parseJsonText, publicKeyToJwk } from './jwk.js';

export class JwtBundle {
  readonly trustDomain: TrustDomain;
  readonly authorities: ReadonlyMap<string, KeyObject>;

  constructor(td: TrustDomain, authorities: Iterable<readonly [string, KeyObject]> = []) {
    this.trustDomain = td;
    const map = new Map<string, KeyObject>();
    for (const [kid, key] of authorities) {
      if (kid === '') throw new BundleError('jwt_bundle_invalid', 'jwtbundle: keyID cannot be empty');
      map.set(kid, key);
    }
    this.authorities = map;
  }

  /** A JWKS document `{"keys":[...]}`; every key needs a kid (its `use` is not looked at). */
  static fromJwks(td: TrustDomain, json: string | Uint8Array): JwtBundle {
    const fail = (msg: string, cause?: unknown): never => {
      throw new BundleError('jwt_bundle_invalid', `jwtbundle: ${msg}`, cause === undefined ? undefined : { cause });
    };
    let doc: unknown;
    try {
      doc = parseJsonText(json);
    } catch (err) {
      fail(`unable to parse JWKS: ${(err as Error).message}`, err);
    }
    if (!isJsonObject(doc)) return fail('unable to parse JWKS: not a JSON object');
    const keys = doc['keys'];
    if (!Array.isArray(keys)) return fail('unable to parse JWKS: "keys" must be an array');
    const entries: [string, KeyObject][] = [];
    const kids = new Set<string>();
    keys.forEach((jwk: unknown, i) => {
      if (!isJsonObject(jwk)) fail(`error adding authority ${i} of JWKS: not a JSON object`);
      const kid = (jwk as Record<string, unknown>)['kid'];
      if (kid === undefined || kid === '') fail(`error adding authority ${i} of JWKS: keyID cannot be empty`);
      if (typeof kid !== 'string') fail(`error adding authority ${i} of JWKS: keyID must be a string`);
      if (kids.has(kid as string)) fail(`error adding authority ${i} of JWKS: duplicate keyID ${JSON.stringify(kid)}`);
      kids.add(kid as string);
      try {
        entries.push([kid as string, jwkToPublicKey(jwk as Record<string, unknown>)]);
      } catch (err) {
        fail(`error adding authority ${i} of JWKS: ${(err as Error).message}`, err);
      }
    });
    return new JwtBundle(td, entries);
  }

  findAuthority(kid: string): KeyObject | undefined {
    return this.authorities.get(kid);
  }

  toJwks(): string {
    const keys = [...this.authorities].map(([kid, key]) => ({ ...publicKeyToJwk(key), kid }));
    return JSON.stringify({ keys });
  }

  equals(o: JwtBundle): boolean {
    return this.trustDomain.equals(o.trustDomain) && keysEqual(this.authorities, o.authorities);
  }
}
