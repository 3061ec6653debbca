/** DEVELOPMENT ONLY: the dev issuer's options, its registration entries and the X.509-SVID response it serves. */
import { randomUUID } from 'node:crypto';
import type * as grpc from '@grpc/grpc-js';
import { SidecarError } from '../errors.js';
import { parseSpiffeId, parseTrustDomain, type SpiffeId, type TrustDomain } from '../spiffe/id.js';
import type { DevCa, DevChainMode } from './ca.js';
import type { IssuedSvid } from './ca-keys.js';
import type { AnyStream } from './issuer-util.js';
import type { Logger } from '../lib/log.js';
import type { X509SvidResponse } from '../spiffe/workload-api/proto.js';

export interface DevIssuerOptions {
  trustDomain: string;
  /** Folder for the per-workload sockets (created 0700 when missing). */
  socketDir: string;
  /** X.509-SVID TTL (SPIRE server default_x509_svid_ttl); default 60. */
  svidTtlSeconds?: number;
  /** JWT-SVID TTL (SPIRE server default_jwt_svid_ttl); default 300. */
  jwtSvidTtlSeconds?: number;
  /** How often SVIDs are checked for rotation (SPIRE agent sync_interval); default 1000. */
  syncIntervalMs?: number;
  /** +/-10 % jitter on the half-life rotation point, as SPIRE; default true. */
  rotationJitter?: boolean;
  /** Reuse an existing CA (e.g. across an issuer restart); default: a fresh one. */
  ca?: DevCa;
  /** Chain of the fresh CA: 'leaf-only' (default, like SPIRE) or 'intermediate' (SPIRE with an UpstreamAuthority). */
  chain?: DevChainMode;
  logger?: Logger;
}

/** One registration entry's fields (as `spire-server entry create` takes them). */
export interface EntryOptions {
  hint?: string;
  /** Default: a random UUID, as SPIRE. Several SVIDs are served in ascending entry ID order. */
  entryId?: string;
  /** Trust domains whose bundles this entry's workload receives (SPIRE `-federatesWith`); default none. */
  federatesWith?: string[];
  /** Per-entry TTLs (SPIRE `-x509SVIDTTL`, `-jwtSVIDTTL`); default the issuer's. */
  x509SvidTtlSeconds?: number;
  jwtSvidTtlSeconds?: number;
}

export interface RegisterWorkloadOptions extends EntryOptions {
  /** More entries served on the same socket (several SVIDs per workload). */
  extraIdentities?: (EntryOptions & { spiffeId: string })[];
}

export interface RegisteredWorkload {
  socketPath: string;
  endpoint: string;
}

export interface Identity {
  id: SpiffeId;
  hint: string;
  entryId: string;
  /** Whole seconds, like SPIRE's entry created_at (used to break duplicate-hint ties). */
  createdAtSec: number;
  federatesWith: TrustDomain[];
  x509SvidTtlSeconds: number | undefined;
  jwtSvidTtlSeconds: number | undefined;
}

export interface WorkloadEntry {
  /** Served identities: ascending entry ID, duplicate hints removed (as SPIRE). */
  identities: Identity[];
  socketPath: string;
  server: grpc.Server;
  /** Settles once the socket is bound. */
  ready: Promise<void>;
  registered: boolean;
  svids: { issued: IssuedSvid[]; epoch: number; identities: Identity[] } | undefined;
  issuing: { promise: Promise<IssuedSvid[]>; epoch: number; identities: Identity[] } | undefined;
  x509Streams: Set<AnyStream>;
  /** Count of pushes to x509Streams (orders a stream's first message against concurrent pushes). */
  x509Pushes: number;
  bundleStreams: Set<AnyStream>;
  jwtBundleStreams: Set<AnyStream>;
}

function invalid(message: string): SidecarError {
  return new SidecarError('dev_issuer_invalid', message);
}

function ttlOption(v: number | undefined, what: string): number | undefined {
  if (v === undefined) return undefined;
  if (!Number.isFinite(v) || v < 1) throw invalid(`${what} must be >= 1`);
  return v;
}

/** Validates one entry's options against the issuer's trust domain. */
export function makeIdentity(spiffeId: string, opts: EntryOptions, own: TrustDomain, createdAtSec: number): Identity {
  const id = parseSpiffeId(spiffeId);
  if (!id.memberOf(own)) throw invalid(`${id.toString()} is not in trust domain ${own.name}`);
  const entryId = opts.entryId ?? randomUUID();
  if (!entryId || entryId.length > 255) throw invalid('entryId must be 1 to 255 characters');
  const federatesWith = (opts.federatesWith ?? []).map((td) => parseTrustDomain(td));
  if (federatesWith.some((td) => td.equals(own))) throw invalid('an entry cannot federate with its own trust domain');
  return {
    id,
    hint: opts.hint ?? '',
    entryId,
    createdAtSec,
    federatesWith,
    x509SvidTtlSeconds: ttlOption(opts.x509SvidTtlSeconds, 'x509SvidTtlSeconds'),
    jwtSvidTtlSeconds: ttlOption(opts.jwtSvidTtlSeconds, 'jwtSvidTtlSeconds'),
  };
}

/**
 * What SPIRE's Workload API serves from matching entries: ascending entry ID; of entries sharing
 * a hint only the oldest stays (created_at, then the lower entry ID). Returns kept and dropped.
 */
export function servedIdentities(all: readonly Identity[]): { kept: Identity[]; dropped: Identity[] } {
  const byHint = new Map<string, Identity>();
  const dropped: Identity[] = [];
  for (const ident of all) {
    if (!ident.hint) continue;
    const other = byHint.get(ident.hint);
    if (!other) {
      byHint.set(ident.hint, ident);
      continue;
    }
    const identFirst = ident.createdAtSec !== other.createdAtSec ? ident.createdAtSec < other.createdAtSec : ident.entryId < other.entryId;
    byHint.set(ident.hint, identFirst ? ident : other);
    dropped.push(identFirst ? other : ident);
  }
  const kept = all.filter((i) => !dropped.includes(i)).sort((a, b) => (a.entryId < b.entryId ? -1 : a.entryId > b.entryId ? 1 : 0));
  return { kept, dropped };
}

/**
 * The validated, served entries of the workload `key` (primary ID) for a (re-)registration.
 * Entry IDs are unique across the issuer, as SPIRE's; a re-registered entry keeps its created_at.
 */
export function workloadIdentities(
  key: string,
  opts: RegisterWorkloadOptions,
  own: TrustDomain,
  workloads: ReadonlyMap<string, WorkloadEntry>,
): { kept: Identity[]; dropped: Identity[] } {
  const now = Math.floor(Date.now() / 1000);
  const previous = new Map((workloads.get(key)?.identities ?? []).map((i) => [i.entryId, i.createdAtSec]));
  const specs = [{ ...opts, spiffeId: key }, ...(opts.extraIdentities ?? [])];
  const taken = new Set([...workloads].filter(([k]) => k !== key).flatMap(([, w]) => w.identities.map((i) => i.entryId)));
  const seen = new Set<string>();
  const all = specs.map((spec) => {
    const ident = makeIdentity(spec.spiffeId, spec, own, now);
    if (taken.has(ident.entryId) || seen.has(ident.entryId)) throw invalid(`entry ID ${ident.entryId} is already in use`);
    seen.add(ident.entryId);
    ident.createdAtSec = previous.get(ident.entryId) ?? now;
    return ident;
  });
  return servedIdentities(all);
}

/** Trust domains (`spiffe://td`) the workload's entries federate with, in first-seen order. */
export function federatedTrustDomains(identities: readonly Identity[]): string[] {
  return [...new Set(identities.flatMap((i) => i.federatesWith.map((td) => td.idString())))];
}

/** FetchX509SVID's message: one SVID per identity (same order), the bundle, the entries' federated bundles. */
export function x509SvidResponse(identities: readonly Identity[], issued: readonly IssuedSvid[], bundle: Buffer, federated: Record<string, Buffer>): X509SvidResponse {
  return {
    svids: issued.map((svid, i) => ({
      spiffe_id: identities[i]!.id.toString(),
      x509_svid: svid.certChainDer,
      x509_svid_key: svid.keyDer,
      bundle,
      hint: identities[i]!.hint,
    })),
    crl: [],
    federated_bundles: federated,
  };
}
