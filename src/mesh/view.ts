/**
 * What the dev command's banner shows of a running mesh, whichever way it runs (in process on
 * the embedded issuer, or as processes on SPIRE).
 */
import type { AddressInfo } from 'node:net';

export interface MeshSidecarView {
  name: string;
  /** The SPIFFE ID of the SVID it holds, or null before the first one. */
  spiffeId: string | null;
  inbound?: { address: AddressInfo; app: string };
  outbound?: AddressInfo;
  admin?: AddressInfo;
  /** Its process, when it runs as one. */
  pid?: number;
}

export interface MeshSpireView {
  binDir: string;
  dir: string;
  serverSocket: string;
  workloadSocket: string;
  serverPid: number | undefined;
  agentPid: number | undefined;
  entries: { name: string; entryId: string; spiffeId: string; selector: string; x509SvidTtlSeconds: number }[];
}

export interface MeshView {
  trustDomain: string;
  stateDir: string;
  app: AddressInfo | undefined;
  /** In the mesh file's order. */
  sidecars: MeshSidecarView[];
  /** What earlier runs left in force (carriedOverState). */
  carriedOver: string[];
  spire?: MeshSpireView;
}
