/** DEVELOPMENT ONLY: the dev issuer's options, its per-workload state and the X.509-SVID response it serves. */
import type * as grpc from '@grpc/grpc-js';
import type { SpiffeId } from '../spiffe/id.js';
import type { DevCa, DevChainMode } from './ca.js';
import type { IssuedSvid } from './ca-keys.js';
import type { AnyStream } from './issuer-util.js';
import type { Logger } from '../lib/log.js';
import type { X509SvidResponse } from '../spiffe/workload-api/proto.js';

export interface DevIssuerOptions {
  trustDomain: string;
  /** Folder for the per-workload sockets (created 0700 when missing). */
  socketDir: string;
  svidTtlSeconds?: number;
  /** Reuse an existing CA (e.g. across an issuer restart); default: a fresh one. */
  ca?: DevCa;
  /** Chain of the fresh CA: 'leaf-only' (default, like SPIRE) or 'intermediate' (SPIRE with an UpstreamAuthority). */
  chain?: DevChainMode;
  logger?: Logger;
}

export interface RegisterWorkloadOptions {
  hint?: string;
  /** More identities served on the same socket, after the primary one (several SVIDs per workload). */
  extraIdentities?: { spiffeId: string; hint?: string }[];
}

export interface RegisteredWorkload {
  socketPath: string;
  endpoint: string;
}

export interface Identity {
  id: SpiffeId;
  hint: string;
}

export interface WorkloadEntry {
  identities: Identity[];
  socketPath: string;
  server: grpc.Server;
  /** Settles once the socket is bound. */
  ready: Promise<void>;
  registered: boolean;
  svids: { issued: IssuedSvid[]; issuedAtMs: number; caGeneration: number } | undefined;
  issuing: { promise: Promise<IssuedSvid[]>; generation: number } | undefined;
  rotationTimer: NodeJS.Timeout | undefined;
  x509Streams: Set<AnyStream>;
  /** Count of pushes to x509Streams (orders a stream's first message against concurrent pushes). */
  x509Pushes: number;
  bundleStreams: Set<AnyStream>;
  jwtBundleStreams: Set<AnyStream>;
}

/** FetchX509SVID's message: one SVID per identity (same order), the bundle, federated bundles. */
export function x509SvidResponse(identities: readonly Identity[], issued: readonly IssuedSvid[], bundle: Buffer, federated: ReadonlyMap<string, Buffer>): X509SvidResponse {
  return {
    svids: issued.map((svid, i) => ({
      spiffe_id: identities[i]!.id.toString(),
      x509_svid: svid.certChainDer,
      x509_svid_key: svid.keyDer,
      bundle,
      hint: identities[i]!.hint,
    })),
    crl: [],
    federated_bundles: Object.fromEntries(federated),
  };
}
