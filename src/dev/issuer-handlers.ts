/**
 * DEVELOPMENT ONLY: the dev issuer's Workload API handlers for one workload socket. Status codes
 * and texts are SPIRE's (pkg/agent/endpoints/middleware.go and workload/handler.go).
 */
import * as grpc from '@grpc/grpc-js';
import { errorMessage } from '../errors.js';
import { parseSpiffeId, type SpiffeId } from '../spiffe/id.js';
import {
  toStructMessage,
  type JwtBundlesResponse,
  type JwtSvidRequest,
  type JwtSvidResponse,
  type ValidateJwtSvidRequest,
  type ValidateJwtSvidResponse,
  type X509BundlesResponse,
  type X509SvidResponse,
} from '../spiffe/workload-api/proto.js';
import type { DevCa } from './ca.js';
import type { Identity, WorkloadEntry } from './issuer-entry.js';
import { NO_IDENTITY_ISSUED, SECURITY_HEADER_MISSING, hasWorkloadHeader, safeWrite, status, type AnyStream } from './issuer-util.js';
import type { Logger } from '../lib/log.js';

/** What the handlers need from the issuer. */
export interface WorkloadApiHost {
  readonly ca: DevCa;
  readonly logger: Logger | undefined;
  x509Response(entry: WorkloadEntry): Promise<X509SvidResponse>;
  bundlesResponse(entry: WorkloadEntry): X509BundlesResponse;
  jwtBundlesResponse(): JwtBundlesResponse;
  jwtSvidFor(ident: Identity, audience: string[]): Promise<string>;
}

/** Registers a server stream in `set` until the client cancels it. */
function track(set: Set<AnyStream>, call: AnyStream): void {
  set.add(call);
  const drop = (): void => {
    set.delete(call);
  };
  call.on('cancelled', drop);
  call.on('close', drop);
  call.on('error', drop);
}

/** Header and registration checks shared by the RPCs that need an identity; the error status to send, if any. */
function admit(entry: WorkloadEntry, md: grpc.Metadata): Partial<grpc.StatusObject> | undefined {
  if (!hasWorkloadHeader(md)) return status(grpc.status.INVALID_ARGUMENT, SECURITY_HEADER_MISSING);
  if (!entry.registered || entry.identities.length === 0) return status(grpc.status.PERMISSION_DENIED, NO_IDENTITY_ISSUED);
  return undefined;
}

/** The Workload API service of one workload's socket. */
export function workloadApiHandlers(host: WorkloadApiHost, entry: WorkloadEntry): grpc.UntypedServiceImplementation {
  const unimplemented = (call: grpc.ServerWritableStream<unknown, unknown>): void => {
    call.emit('error', status(grpc.status.UNIMPLEMENTED, 'WIT-SVID profile is not implemented by the dev issuer'));
  };
  return {
    FetchX509SVID: (call: AnyStream) => {
      const denied = admit(entry, call.metadata);
      if (denied) return void call.emit('error', denied);
      track(entry.x509Streams, call);
      const pushesBefore = entry.x509Pushes;
      host.x509Response(entry).then(
        (msg) => {
          // If a push reached this stream meanwhile, it carried newer state than `msg`.
          if (entry.x509Streams.has(call) && entry.x509Pushes === pushesBefore) safeWrite(call, msg);
        },
        (err: unknown) => {
          host.logger?.error({ err: errorMessage(err) }, 'dev issuer: cannot issue X.509-SVID');
          entry.x509Streams.delete(call);
          call.emit('error', status(grpc.status.UNAVAILABLE, `could not serialize response: ${errorMessage(err)}`));
        },
      );
    },
    FetchX509Bundles: (call: AnyStream) => {
      const denied = admit(entry, call.metadata);
      if (denied) return void call.emit('error', denied);
      track(entry.bundleStreams, call);
      safeWrite(call, host.bundlesResponse(entry));
    },
    FetchJWTBundles: (call: AnyStream) => {
      const denied = admit(entry, call.metadata);
      if (denied) return void call.emit('error', denied);
      track(entry.jwtBundleStreams, call);
      safeWrite(call, host.jwtBundlesResponse());
    },
    FetchJWTSVID: (call: grpc.ServerUnaryCall<JwtSvidRequest, JwtSvidResponse>, cb: grpc.sendUnaryData<JwtSvidResponse>) => {
      // SPIRE checks the header first (middleware), then the request, then attests the caller.
      if (!hasWorkloadHeader(call.metadata)) return cb(status(grpc.status.INVALID_ARGUMENT, SECURITY_HEADER_MISSING));
      const audience = call.request.audience ?? [];
      if (audience.length === 0 || audience.some((a) => !a)) {
        return cb(status(grpc.status.INVALID_ARGUMENT, 'audience must be specified'));
      }
      let wantedId: SpiffeId | undefined;
      if (call.request.spiffe_id) {
        try {
          wantedId = parseSpiffeId(call.request.spiffe_id);
        } catch (err) {
          return cb(status(grpc.status.INVALID_ARGUMENT, `invalid requested SPIFFE ID: ${errorMessage(err)}`));
        }
      }
      const denied = admit(entry, call.metadata);
      if (denied) return cb(denied);
      const wanted = wantedId ? entry.identities.filter((i) => i.id.equals(wantedId)) : entry.identities;
      if (wanted.length === 0) return cb(status(grpc.status.PERMISSION_DENIED, NO_IDENTITY_ISSUED));
      Promise.all(wanted.map((i) => host.jwtSvidFor(i, audience))).then(
        (tokens) => cb(null, { svids: tokens.map((svid, k) => ({ spiffe_id: wanted[k]!.id.toString(), svid, hint: wanted[k]!.hint })) }),
        (err: unknown) => cb(status(grpc.status.UNAVAILABLE, `could not fetch JWT-SVID: ${errorMessage(err)}`)),
      );
    },
    ValidateJWTSVID: (
      call: grpc.ServerUnaryCall<ValidateJwtSvidRequest, ValidateJwtSvidResponse>,
      cb: grpc.sendUnaryData<ValidateJwtSvidResponse>,
    ) => {
      if (!hasWorkloadHeader(call.metadata)) return cb(status(grpc.status.INVALID_ARGUMENT, SECURITY_HEADER_MISSING));
      if (!call.request.audience) return cb(status(grpc.status.INVALID_ARGUMENT, 'audience must be specified'));
      if (!call.request.svid) return cb(status(grpc.status.INVALID_ARGUMENT, 'svid must be specified'));
      // As SPIRE: validation needs no identity of the caller, only the bundles.
      host.ca.verifyJwtSvid(call.request.svid, call.request.audience).then(
        (v) => cb(null, { spiffe_id: v.spiffeId.toString(), claims: toStructMessage(v.claims as Record<string, unknown>) }),
        (err: unknown) => cb(status(grpc.status.INVALID_ARGUMENT, errorMessage(err))),
      );
    },
    FetchWITSVID: unimplemented,
    FetchWITBundles: unimplemented,
  };
}
