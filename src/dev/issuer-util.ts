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

export function hasWorkloadHeader(md: grpc.Metadata): boolean {
  return md.get(WORKLOAD_HEADER_KEY).some((v) => v === WORKLOAD_HEADER_VALUE);
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
