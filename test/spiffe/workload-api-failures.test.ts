/**
 * Workload API client failure handling over real Unix sockets, against scripted grpc-js servers:
 * InvalidArgument/Unimplemented are fatal (not retried), Unavailable and a clean stream end are
 * retried with backoff, and a message that does not parse is reported while the last good state
 * stays.
 */
import t from 'tap';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { DevCa } from '../../src/dev/ca.js';
import { WorkloadApiClient, WorkloadApiError } from '../../src/spiffe/workload-api/client.js';
import { type X509Context } from '../../src/spiffe/workload-api/parse.js';
import { workloadApiService, type X509SvidResponse } from '../../src/spiffe/workload-api/proto.js';
import type { SidecarError } from '../../src/errors.js';
import { EventLog, sleep, tempSocketDir } from '../helpers/workload-api.js';

const { dir, cleanup } = tempSocketDir('wlfail-');
t.teardown(cleanup);

/** A scripted Workload API server: FetchX509SVID runs `handler`, counting calls. */
async function fakeServer(
  name: string,
  handler: (call: grpc.ServerWritableStream<unknown, X509SvidResponse>, n: number) => void,
): Promise<{ endpoint: string; calls: () => number; stop: () => void }> {
  const socketPath = path.join(dir, `${name}.sock`);
  const server = new grpc.Server();
  let calls = 0;
  server.addService(workloadApiService().service, {
    FetchX509SVID: (call: grpc.ServerWritableStream<unknown, X509SvidResponse>) => handler(call, ++calls),
  });
  await new Promise<void>((res, rej) => server.bindAsync(`unix://${socketPath}`, grpc.ServerCredentials.createInsecure(), (e) => (e ? rej(e) : res())));
  return { endpoint: `unix://${socketPath}`, calls: () => calls, stop: () => server.forceShutdown() };
}

const fastBackoff = { initialMs: 20, maxMs: 100 };

for (const [code, reason] of [
  [grpc.status.UNIMPLEMENTED, 'workload_api_unimplemented'],
  [grpc.status.INVALID_ARGUMENT, 'workload_api_invalid_argument'],
] as const) {
  t.test(`${grpc.status[code]} is fatal: reported once, not retried`, async (t) => {
    const srv = await fakeServer(`fatal-${code}`, (call) => call.emit('error', { code, details: 'scripted' }));
    t.teardown(srv.stop);
    const client = new WorkloadApiClient({ endpoint: srv.endpoint, backoff: fastBackoff });
    t.teardown(() => client.close());
    const errors = new EventLog<SidecarError>();
    client.watchX509Context(() => t.fail('no update expected'), errors.push);
    const err = await errors.next();
    t.equal(err.reason, reason);
    t.ok(err instanceof WorkloadApiError && err.fatal, 'marked fatal');
    await sleep(400); // many backoff periods at 20..100 ms
    t.equal(srv.calls(), 1, 'called exactly once');
    t.equal(errors.items.length, 1);
  });
}

t.test('Unavailable and a clean stream end are retried with backoff', async (t) => {
  const srv = await fakeServer('unavailable', (call, n) => {
    if (n % 2 === 1) call.emit('error', { code: grpc.status.UNAVAILABLE, details: 'scripted' });
    else call.end();
  });
  t.teardown(srv.stop);
  const client = new WorkloadApiClient({ endpoint: srv.endpoint, backoff: fastBackoff });
  t.teardown(() => client.close());
  const errors = new EventLog<SidecarError>();
  client.watchX509Context(() => {}, errors.push);
  await errors.next((e) => e.reason === 'workload_api_unavailable');
  await errors.next((e) => e.reason === 'workload_api_stream_ended');
  await errors.next((e) => e.reason === 'workload_api_unavailable');
  t.ok(srv.calls() >= 3, `retried (${srv.calls()} calls)`);
  t.notOk(errors.items.some((e) => e instanceof WorkloadApiError && e.fatal));
});

t.test('a message that does not parse is reported; the previous good state stays', async (t) => {
  const ca = await DevCa.create({ trustDomain: 'example.org' });
  const serials: string[] = [];
  const good = async (): Promise<X509SvidResponse> => {
    const s = await ca.issueX509Svid('spiffe://example.org/w');
    serials.push(s.svid.certificates[0]!.serialNumber);
    return {
      svids: [{ spiffe_id: 'spiffe://example.org/w', x509_svid: s.certChainDer, x509_svid_key: s.keyDer, bundle: ca.bundleDer(), hint: '' }],
      crl: [],
      federated_bundles: {},
    };
  };
  const first = await good();
  const second = await good();
  const mismatched = await good();
  mismatched.svids[0]!.spiffe_id = 'spiffe://example.org/someone-else';
  const srv = await fakeServer('garbage', (call) => {
    call.write(first);
    call.write({ svids: [{ ...first.svids[0]!, x509_svid: Buffer.from('not DER') }], crl: [], federated_bundles: {} });
    call.write({ svids: [], crl: [], federated_bundles: {} });
    call.write(mismatched);
    call.write({ ...first, svids: [{ ...first.svids[0]!, x509_svid_key: second.svids[0]!.x509_svid_key }] });
    call.write({ ...first, federated_bundles: { 'not a trust domain!': ca.bundleDer() } });
    setTimeout(() => call.write(second), 50);
  });
  t.teardown(srv.stop);
  const client = new WorkloadApiClient({ endpoint: srv.endpoint, backoff: fastBackoff });
  t.teardown(() => client.close());
  const updates = new EventLog<X509Context>();
  const errors = new EventLog<SidecarError>();
  client.watchX509Context(updates.push, errors.push);

  const u1 = await updates.next();
  const u2 = await updates.next();
  t.equal(u1.svid.certificates[0]!.serialNumber, serials[0]);
  t.equal(u2.svid.certificates[0]!.serialNumber, serials[1], 'stream survived the bad messages');
  t.equal(updates.items.length, 2, 'bad messages produced no updates');
  t.same(
    errors.items.map((e) => e.reason),
    Array(5).fill('workload_api_bad_response'),
    'each bad message reported',
  );
  t.match(errors.items[0]!.message, /svids\[0\]/);
  t.match(errors.items[1]!.message, /no SVIDs/);
  t.match(errors.items[2]!.message, /does not match/);
  t.match(errors.items[3]!.message, /private key/);
  t.match(errors.items[4]!.message, /federated_bundles/);
  t.equal(srv.calls(), 1, 'no reconnect for a parse failure');
});
