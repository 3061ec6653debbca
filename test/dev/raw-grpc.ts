/**
 * Raw Workload API calls for the dev issuer tests: grpc-js with nothing added implicitly (no
 * client library, so the security header is exactly what the test sets).
 */
import * as grpc from '@grpc/grpc-js';
import { workloadApiService, WORKLOAD_HEADER_KEY } from '../../src/spiffe/workload-api/proto.js';

/** Metadata with the given `workload.spiffe.io` values (none: no header). */
export function headerMd(...values: string[]): grpc.Metadata {
  const m = new grpc.Metadata();
  for (const v of values) m.add(WORKLOAD_HEADER_KEY, v);
  return m;
}

/** The first message of a server stream, or its status if it ends first (bounded by a 30 s deadline). */
export function firstOfStream<T>(socketPath: string, method: string, meta: grpc.Metadata): Promise<{ msg?: T; status?: grpc.StatusObject }> {
  const Ctor = workloadApiService();
  const client = new Ctor(`unix://${socketPath}`, grpc.credentials.createInsecure());
  const def = Ctor.service[method]!;
  return new Promise((resolve) => {
    const call = client.makeServerStreamRequest(def.path, def.requestSerialize, def.responseDeserialize, {}, meta, { deadline: Date.now() + 30_000 });
    call.on('data', (msg: T) => {
      call.cancel();
      client.close();
      resolve({ msg });
    });
    call.on('error', () => {});
    call.on('status', (st) => {
      client.close();
      resolve({ status: st });
    });
  });
}

export function rawUnary<T>(socketPath: string, method: string, req: object, meta: grpc.Metadata): Promise<{ value?: T; err?: grpc.ServiceError }> {
  const Ctor = workloadApiService();
  const client = new Ctor(`unix://${socketPath}`, grpc.credentials.createInsecure());
  const def = Ctor.service[method]!;
  return new Promise((resolve) => {
    client.makeUnaryRequest(def.path, def.requestSerialize, def.responseDeserialize, req, meta, { deadline: Date.now() + 30_000 }, (err, value) => {
      client.close();
      resolve(err ? { err } : { value: value as T });
    });
  });
}
