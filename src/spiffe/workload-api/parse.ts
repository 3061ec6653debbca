/**
 * Pure conversions of Workload API response messages into SPIFFE types. Each throws a
 * SidecarError (reason `workload_api_bad_response` or the underlying parse reason) so the client
 * can report it and keep the previous good state.
 */
import { SidecarError, errorMessage } from '../../errors.js';
import { parseSpiffeId, parseTrustDomain, type SpiffeId, type TrustDomain } from '../id.js';
import { parseX509SvidRaw, type X509Svid } from '../svid.js';
import { X509Bundle } from '../bundle/x509-bundle.js';
import { JwtBundle } from '../bundle/jwt-bundle.js';
import { BundleSet } from '../bundle/bundle-set.js';
import type { JwtBundlesResponse, X509BundlesResponse, X509SvidResponse } from './proto.js';

/** Everything one FetchX509SVID message says: all SVIDs, the chosen one, and every bundle. */
export interface X509Context {
  /** Every SVID in the message, in message order. */
  readonly svids: readonly X509Svid[];
  /** The one picked by hint (or the first when no hint is configured). */
  readonly svid: X509Svid;
  /** Own trust domain(s) of the SVIDs + federated bundles. */
  readonly bundles: BundleSet;
}

export class WorkloadApiResponseError extends SidecarError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('workload_api_bad_response', `Workload API response rejected: ${message}`, options);
  }
}

function wrap<T>(what: string, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    throw new WorkloadApiResponseError(`${what}: ${errorMessage(err)}`, { cause: err });
  }
}

function bufferOf(v: unknown, what: string): Buffer {
  if (Buffer.isBuffer(v)) return v;
  if (v instanceof Uint8Array) return Buffer.from(v);
  throw new WorkloadApiResponseError(`${what} is not bytes`);
}

/** Trust domain from a map key: a trust domain SPIFFE ID ('spiffe://td'), tolerated as a bare name. */
function trustDomainKey(key: string, what: string): TrustDomain {
  return wrap(`${what} key ${JSON.stringify(key)}`, () => parseTrustDomain(key));
}

/** Parses a FetchX509SVID message. `hint`: pick that SVID; it is an error when none carries it. */
export function parseX509Context(msg: X509SvidResponse, hint?: string): X509Context {
  const rawSvids = msg?.svids ?? [];
  if (rawSvids.length === 0) throw new WorkloadApiResponseError('no SVIDs in response');

  const svids: X509Svid[] = [];
  const bundles = new Map<string, X509Bundle>();
  rawSvids.forEach((raw, i) => {
    const what = `svids[${i}]`;
    const declared: SpiffeId = wrap(`${what}.spiffe_id`, () => parseSpiffeId(raw.spiffe_id));
    const svid = wrap(what, () =>
      parseX509SvidRaw(bufferOf(raw.x509_svid, `${what}.x509_svid`), bufferOf(raw.x509_svid_key, `${what}.x509_svid_key`), raw.hint ?? ''),
    );
    // The declared ID must be the certificate's: a mismatch means a confused or hostile agent.
    if (!svid.id.equals(declared)) {
      throw new WorkloadApiResponseError(`${what}: spiffe_id ${declared.toString()} does not match the certificate's ${svid.id.toString()}`);
    }
    const td = svid.id.trustDomain;
    const bundleDer = bufferOf(raw.bundle, `${what}.bundle`);
    if (bundleDer.length === 0) throw new WorkloadApiResponseError(`${what}: empty trust bundle`);
    const bundle = wrap(`${what}.bundle`, () => X509Bundle.fromDer(td, bundleDer));
    const seen = bundles.get(td.name);
    if (seen && !seen.equals(bundle)) {
      throw new WorkloadApiResponseError(`SVIDs carry different bundles for trust domain ${td.name}`);
    }
    bundles.set(td.name, bundle);
    svids.push(svid);
  });

  for (const [key, der] of Object.entries(msg.federated_bundles ?? {})) {
    const td = trustDomainKey(key, 'federated_bundles');
    // The SVIDs' own bundles are authoritative for their trust domains.
    if (bundles.has(td.name)) continue;
    const b = bufferOf(der, `federated_bundles[${key}]`);
    bundles.set(td.name, wrap(`federated_bundles[${key}]`, () => X509Bundle.fromDer(td, b)));
  }

  let svid: X509Svid | undefined;
  if (hint) {
    svid = svids.find((s) => s.hint === hint);
    if (!svid) {
      const have = svids.map((s) => JSON.stringify(s.hint)).join(', ');
      throw new SidecarError('svid_hint_not_found', `no SVID with hint ${JSON.stringify(hint)} in the response (hints: ${have})`);
    }
  } else {
    svid = svids[0]!;
  }
  return { svids, svid, bundles: new BundleSet([...bundles.values()]) };
}

/** Parses a FetchX509Bundles message. */
export function parseX509Bundles(msg: X509BundlesResponse): BundleSet {
  const entries = Object.entries(msg?.bundles ?? {});
  if (entries.length === 0) throw new WorkloadApiResponseError('no bundles in response');
  const out: X509Bundle[] = [];
  for (const [key, der] of entries) {
    const td = trustDomainKey(key, 'bundles');
    const b = bufferOf(der, `bundles[${key}]`);
    out.push(wrap(`bundles[${key}]`, () => X509Bundle.fromDer(td, b)));
  }
  return new BundleSet(out);
}

/** Parses a FetchJWTBundles message: trust domain name -> JWT bundle. */
export function parseJwtBundles(msg: JwtBundlesResponse): ReadonlyMap<string, JwtBundle> {
  const entries = Object.entries(msg?.bundles ?? {});
  if (entries.length === 0) throw new WorkloadApiResponseError('no bundles in response');
  const out = new Map<string, JwtBundle>();
  for (const [key, jwks] of entries) {
    const td = trustDomainKey(key, 'bundles');
    const b = bufferOf(jwks, `bundles[${key}]`);
    out.set(td.name, wrap(`bundles[${key}]`, () => JwtBundle.fromJwks(td, b.toString('utf8'))));
  }
  return out;
}
