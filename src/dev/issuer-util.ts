/**
 * DEVELOPMENT ONLY: small gRPC and socket helpers for the dev issuer (src/dev/issuer.ts).
 */
import { lstat, unlink } from 'node:fs/promises';
import * as grpc from '@grpc/grpc-js';
import { SidecarError } from '../errors.js';
import { WORKLOAD_HEADER_KEY, WORKLOAD_HEADER_VALUE } from '../spiffe/workload-api/proto.js';

export type AnyStream = grpc.ServerWritableStream<unknown, unknown>;

/** Linux sun_path is 108 bytes including the NUL. */
export const MAX_SOCKET_PATH = 107;

export function status(code: grpc.status, details: string): Partial<grpc.StatusObject> {
  return { code, details };
}

/** SPIRE's texts (pkg/agent/endpoints/middleware.go, workload/handler.go), so clients meet the same ones here. */
export const SECURITY_HEADER_MISSING = 'security header missing from request';
export const NO_IDENTITY_ISSUED = 'no identity issued';

/** As SPIRE: exactly one `workload.spiffe.io` value, and it is "true". */
export function hasWorkloadHeader(md: grpc.Metadata): boolean {
  const values = md.get(WORKLOAD_HEADER_KEY);
  return values.length === 1 && values[0] === WORKLOAD_HEADER_VALUE;
}

/**
 * SPIRE's rotation rule (pkg/common/rotationutil): due once the time left is at most half of
 * the lifetime (NotAfter - NotBefore, i.e. TTL + the 10 s backdate for X.509; exp - iat for
 * JWT), the half-life drawn afresh within +/-10 % on every check.
 */
export function rotationDue(nowMs: number, beginMs: number, endMs: number, jitter: boolean): boolean {
  const left = endMs - nowMs;
  if (left <= 0) return true;
  const half = (endMs - beginMs) / 2;
  const threshold = jitter ? half - half / 10 + Math.random() * (half / 5) : half;
  return left <= threshold;
}

export function safeWrite(stream: AnyStream, msg: unknown): void {
  if (stream.cancelled || stream.destroyed || stream.writableEnded) return;
  try {
    stream.write(msg);
  } catch {
    // The client went away between the check and the write; its 'cancelled' handler cleans up.
  }
}

/** Removes a leftover socket file from a previous run; refuses to delete anything that is not a socket. */
export async function removeStaleSocket(socketPath: string): Promise<void> {
  try {
    const stats = await lstat(socketPath);
    if (!stats.isSocket()) throw new SidecarError('dev_issuer_invalid', `${socketPath} exists and is not a socket`);
    await unlink(socketPath);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}
