/**
 * Loads proto/workload.proto (the SPIFFE Workload API) with @grpc/proto-loader and exposes the
 * service definition plus plain TypeScript shapes of its messages. Shared by the client and the
 * development issuer.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

/** Metadata key/value every Workload API call must carry (SSRF hardening, per the spec). */
export const WORKLOAD_HEADER_KEY = 'workload.spiffe.io';
export const WORKLOAD_HEADER_VALUE = 'true';

export const SERVICE_NAME = 'SpiffeWorkloadAPI';

// ---- message shapes (as produced/accepted by proto-loader with keepCase + defaults) ----

export interface X509SvidMessage {
  spiffe_id: string;
  x509_svid: Buffer;
  x509_svid_key: Buffer;
  bundle: Buffer;
  hint: string;
}
export interface X509SvidResponse {
  svids: X509SvidMessage[];
  crl: Buffer[];
  federated_bundles: Record<string, Buffer>;
}
export interface X509BundlesResponse {
  crl: Buffer[];
  bundles: Record<string, Buffer>;
}
export interface JwtSvidRequest {
  audience: string[];
  spiffe_id: string;
}
export interface JwtSvidMessage {
  spiffe_id: string;
  svid: string;
  hint: string;
}
export interface JwtSvidResponse {
  svids: JwtSvidMessage[];
}
export interface JwtBundlesResponse {
  bundles: Record<string, Buffer>;
}
export interface ValidateJwtSvidRequest {
  audience: string;
  svid: string;
}
/** google.protobuf.Struct as proto-loader represents it (oneofs: true adds `kind`). */
export interface StructMessage {
  fields: Record<string, ValueMessage>;
}
export interface ListValueMessage {
  values: ValueMessage[];
}
export type ValueMessage =
  | { kind?: 'nullValue'; nullValue: 'NULL_VALUE' | 0 }
  | { kind?: 'numberValue'; numberValue: number }
  | { kind?: 'stringValue'; stringValue: string }
  | { kind?: 'boolValue'; boolValue: boolean }
  | { kind?: 'structValue'; structValue: StructMessage }
  | { kind?: 'listValue'; listValue: ListValueMessage };
export interface ValidateJwtSvidResponse {
  spiffe_id: string;
  claims: StructMessage | null;
}

/** Walks up from this module to the folder holding package.json (works from src/ and dist/). */
export function findRepoRoot(start: string = path.dirname(fileURLToPath(import.meta.url))): string {
  let dir = start;
  for (;;) {
    if (existsSync(path.join(dir, 'package.json')) && existsSync(path.join(dir, 'proto'))) return dir;
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error(`cannot find the repository root (package.json) above ${start}`);
    dir = parent;
  }
}

let cachedDefinition: protoLoader.PackageDefinition | undefined;
let cached: grpc.ServiceClientConstructor | undefined;

/** proto/workload.proto as loaded by proto-loader (also gives message descriptors, for tests). */
export function workloadApiDefinition(): protoLoader.PackageDefinition {
  if (cachedDefinition) return cachedDefinition;
  const protoFile = path.join(findRepoRoot(), 'proto', 'workload.proto');
  // protobufjs ships google/protobuf/*; struct.proto is also built into it as a "common" file.
  const require = createRequire(import.meta.url);
  const protobufjsDir = path.dirname(require.resolve('protobufjs/package.json'));
  cachedDefinition = protoLoader.loadSync(protoFile, {
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
    includeDirs: [protobufjsDir],
  });
  return cachedDefinition;
}

/** The generated SpiffeWorkloadAPI client constructor; its `.service` is the server definition. */
export function workloadApiService(): grpc.ServiceClientConstructor {
  if (cached) return cached;
  const pkg = grpc.loadPackageDefinition(workloadApiDefinition());
  const ctor = pkg[SERVICE_NAME];
  if (typeof ctor !== 'function') throw new Error(`${SERVICE_NAME} not found in proto/workload.proto`);
  cached = ctor as grpc.ServiceClientConstructor;
  return cached;
}

/** JSON value -> google.protobuf.Value (for ValidateJWTSVIDResponse.claims). */
export function toValueMessage(v: unknown): ValueMessage {
  if (v === null || v === undefined) return { kind: 'nullValue', nullValue: 'NULL_VALUE' };
  if (typeof v === 'number') return { kind: 'numberValue', numberValue: v };
  if (typeof v === 'string') return { kind: 'stringValue', stringValue: v };
  if (typeof v === 'boolean') return { kind: 'boolValue', boolValue: v };
  if (Array.isArray(v)) return { kind: 'listValue', listValue: { values: v.map(toValueMessage) } };
  if (typeof v === 'object') return { kind: 'structValue', structValue: toStructMessage(v as Record<string, unknown>) };
  return { kind: 'stringValue', stringValue: String(v) };
}

export function toStructMessage(obj: Record<string, unknown>): StructMessage {
  const fields: Record<string, ValueMessage> = Object.create(null); // claim names are data ('__proto__' too)
  for (const [k, v] of Object.entries(obj)) fields[k] = toValueMessage(v);
  return { fields };
}

/** google.protobuf.Value -> JSON value. */
export function fromValueMessage(v: ValueMessage | undefined): unknown {
  if (!v) return null;
  const m = v as Record<string, unknown>;
  const kind = (m['kind'] as string | undefined) ?? Object.keys(m).find((k) => k.endsWith('Value'));
  switch (kind) {
    case 'numberValue':
      return m['numberValue'];
    case 'stringValue':
      return m['stringValue'];
    case 'boolValue':
      return m['boolValue'];
    case 'structValue':
      return fromStructMessage(m['structValue'] as StructMessage);
    case 'listValue':
      return ((m['listValue'] as ListValueMessage | undefined)?.values ?? []).map(fromValueMessage);
    default:
      return null;
  }
}

export function fromStructMessage(struct: StructMessage | null | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = Object.create(null); // claim names are data ('__proto__' too)
  if (!struct?.fields) return out;
  for (const [k, v] of Object.entries(struct.fields)) out[k] = fromValueMessage(v);
  return out;
}
