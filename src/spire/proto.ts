/**
 * Loads the vendored SPIRE server Entry API (proto/spire/..., spire-api-sdk as SPIRE v1.13.3
 * pins it) with @grpc/proto-loader, the way the Workload API client loads proto/workload.proto,
 * and gives plain TypeScript shapes of the messages the kill switch uses.
 */
import { createRequire } from 'node:module';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { findRepoRoot } from '../spiffe/workload-api/proto.js';

export const ENTRY_SERVICE = 'spire.api.server.entry.v1.Entry';

// ---- message shapes (proto-loader with keepCase, longs as strings, defaults) ----

export interface SpiffeIdMessage {
  trust_domain: string;
  path: string;
}
export interface SelectorMessage {
  type: string;
  value: string;
}
/** spire.api.types.Entry: every field, so that a saved entry re-creates the same registration. */
export interface EntryMessage {
  id: string;
  spiffe_id: SpiffeIdMessage | null;
  parent_id: SpiffeIdMessage | null;
  selectors: SelectorMessage[];
  x509_svid_ttl: number;
  federates_with: string[];
  admin: boolean;
  downstream: boolean;
  /** int64 seconds since the epoch, as a decimal string; "0" = never. */
  expires_at: string;
  dns_names: string[];
  revision_number: string;
  store_svid: boolean;
  jwt_svid_ttl: number;
  hint: string;
  created_at: string;
}
/** spire.api.types.Status: a google.rpc code and message, per entry of a batch call. */
export interface StatusMessage {
  code: number;
  message: string;
}
export interface ListEntriesRequest {
  filter?: { by_spiffe_id?: SpiffeIdMessage };
  page_size?: number;
  page_token?: string;
}
export interface ListEntriesResponse {
  entries: EntryMessage[];
  next_page_token: string;
}
export interface BatchDeleteEntryResponse {
  results: { status: StatusMessage | null; id: string }[];
}
export interface BatchCreateEntryResponse {
  results: { status: StatusMessage | null; entry: EntryMessage | null }[];
}

let cached: grpc.ServiceClientConstructor | undefined;

/** The generated Entry client constructor. */
export function entryService(): grpc.ServiceClientConstructor {
  if (cached) return cached;
  const protoDir = path.join(findRepoRoot(), 'proto');
  // protobufjs ships google/protobuf/wrappers.proto, which entry.proto imports.
  const require = createRequire(import.meta.url);
  const protobufjsDir = path.dirname(require.resolve('protobufjs/package.json'));
  const definition = protoLoader.loadSync(path.join(protoDir, 'spire/api/server/entry/v1/entry.proto'), {
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
    includeDirs: [protoDir, protobufjsDir],
  });
  const ctor = lookup(grpc.loadPackageDefinition(definition), ENTRY_SERVICE);
  if (typeof ctor !== 'function') throw new Error(`${ENTRY_SERVICE} not found in proto/spire`);
  cached = ctor as grpc.ServiceClientConstructor;
  return cached;
}

function lookup(root: grpc.GrpcObject, dotted: string): unknown {
  let node: unknown = root;
  for (const part of dotted.split('.')) node = (node as Record<string, unknown> | undefined)?.[part];
  return node;
}
