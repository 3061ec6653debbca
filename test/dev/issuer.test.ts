/**
 * DevIssuer (development Workload API server) over real Unix sockets with raw grpc-js calls (no
 * client library, so nothing is added implicitly): the `workload.spiffe.io: true` header rule,
 * WIT RPCs Unimplemented, socket permissions and cleanup, deregistration ending open streams with
 * PermissionDenied, stale socket handling, and openssl-verifiable SVIDs on the wire.
 */
import t from 'tap';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { mkdirSync, statSync, writeFileSync } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import net from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { DevIssuer } from '../../src/dev/issuer.js';
import { workloadApiService, WORKLOAD_HEADER_KEY, type X509SvidResponse } from '../../src/spiffe/workload-api/proto.js';
import { splitDerSequences } from '../../src/spiffe/x509.js';
import { tempSocketDir } from '../helpers/workload-api.js';

const { dir, cleanup } = tempSocketDir('issuer-');
t.teardown(cleanup);
const withReason = (reason: string) => ({ message: /./, reason });

function headerMd(value?: string): grpc.Metadata {
  const md = new grpc.Metadata();
  if (value !== undefined) md.set(WORKLOAD_HEADER_KEY, value);
  return md;
}

/** Raw grpc-js call (no client library, so no automatic header) -> resulting status. */
function rawStreamStatus(socketPath: string, method: string, md: grpc.Metadata): Promise<grpc.StatusObject> {
  const Ctor = workloadApiService();
  const client = new Ctor(`unix://${socketPath}`, grpc.credentials.createInsecure());
  const def = Ctor.service[method]!;
  return new Promise((resolve) => {
    const call = client.makeServerStreamRequest(def.path, def.requestSerialize, def.responseDeserialize, {}, md, {});
    call.on('data', () => {});
    call.on('error', () => {});
    call.on('status', (st) => {
      client.close();
      resolve(st);
    });
  });
}

function rawUnaryStatus(socketPath: string, method: string, req: object, md: grpc.Metadata): Promise<grpc.status> {
  const Ctor = workloadApiService();
  const client = new Ctor(`unix://${socketPath}`, grpc.credentials.createInsecure());
  const def = Ctor.service[method]!;
  return new Promise((resolve) => {
    client.makeUnaryRequest(def.path, def.requestSerialize, def.responseDeserialize, req, md, {}, (err) => {
      client.close();
      resolve(err ? (err.code as grpc.status) : grpc.status.OK);
    });
  });
}

t.test('dev issuer: header enforcement, WIT Unimplemented, socket permissions', async (t) => {
  const socketDir = path.join(dir, 'issuer');
  const issuer = await DevIssuer.start({ trustDomain: 'example.org', socketDir, svidTtlSeconds: 60 });
  t.teardown(() => issuer.stop());
  const { socketPath } = await issuer.registerWorkload('spiffe://example.org/w');
  t.equal(statSync(socketPath).mode & 0o777, 0o600, 'socket is 0600');
  t.equal(statSync(socketDir).mode & 0o777, 0o700, 'created socket dir is 0700');

  const none = new grpc.Metadata();
  const wrong = new grpc.Metadata();
  wrong.set(WORKLOAD_HEADER_KEY, 'TRUE');
  const ok = new grpc.Metadata();
  ok.set(WORKLOAD_HEADER_KEY, 'true');

  for (const method of ['FetchX509SVID', 'FetchX509Bundles', 'FetchJWTBundles']) {
    t.equal((await rawStreamStatus(socketPath, method, none)).code, grpc.status.INVALID_ARGUMENT, `${method} without header`);
  }
  const st = await rawStreamStatus(socketPath, 'FetchX509SVID', wrong);
  t.equal(st.code, grpc.status.INVALID_ARGUMENT, 'value is case-sensitive');
  t.match(st.details, /security header missing/);
  t.equal(await rawUnaryStatus(socketPath, 'FetchJWTSVID', { audience: ['a'] }, none), grpc.status.INVALID_ARGUMENT);
  t.equal(await rawUnaryStatus(socketPath, 'ValidateJWTSVID', { audience: 'a', svid: 'x' }, none), grpc.status.INVALID_ARGUMENT);
  t.equal(await rawUnaryStatus(socketPath, 'FetchJWTSVID', { audience: [] }, ok), grpc.status.INVALID_ARGUMENT, 'no audience');
  t.equal(await rawUnaryStatus(socketPath, 'ValidateJWTSVID', { audience: 'a', svid: 'x.y.z' }, ok), grpc.status.INVALID_ARGUMENT, 'bad token');
  t.equal(await rawUnaryStatus(socketPath, 'FetchJWTSVID', { audience: ['a'] }, ok), grpc.status.OK, 'control: with header');

  t.equal((await rawStreamStatus(socketPath, 'FetchWITSVID', ok)).code, grpc.status.UNIMPLEMENTED);
  t.equal((await rawStreamStatus(socketPath, 'FetchWITBundles', ok)).code, grpc.status.UNIMPLEMENTED);

  await issuer.stop();
  t.throws(() => statSync(socketPath), 'socket file removed on stop');
});


t.test('deregistration ends open streams with PermissionDenied; SVIDs on the wire verify with openssl', async (t) => {
  const issuer = await DevIssuer.start({ trustDomain: 'example.org', socketDir: path.join(dir, 'dereg'), svidTtlSeconds: 60 });
  t.teardown(() => issuer.stop());
  const { socketPath } = await issuer.registerWorkload('spiffe://example.org/w');
  const Ctor = workloadApiService();
  const client = new Ctor(`unix://${socketPath}`, grpc.credentials.createInsecure());
  t.teardown(() => client.close());
  const def = Ctor.service['FetchX509SVID']!;
  const call = client.makeServerStreamRequest(def.path, def.requestSerialize, def.responseDeserialize, {}, headerMd('true'), {});
  const first = await new Promise<X509SvidResponse>((resolve) => call.once('data', resolve));
  const ended = new Promise<grpc.StatusObject>((resolve) => call.on('status', resolve));
  call.on('error', () => {});

  // The raw message: DER chain leaf-first, PKCS#8 key, DER bundle, checked with openssl.
  t.equal(first.svids.length, 1);
  const svid = first.svids[0]!;
  t.equal(svid.spiffe_id, 'spiffe://example.org/w');
  const chain = splitDerSequences(svid.x509_svid).map((d) => new X509Certificate(d));
  const roots = splitDerSequences(svid.bundle).map((d) => new X509Certificate(d));
  t.equal(chain.length, 1, 'leaf only (SPIRE default)');
  t.equal(roots.length, 1);
  const files = { ca: path.join(dir, 'ca.pem'), leaf: path.join(dir, 'leaf.pem') };
  writeFileSync(files.ca, roots[0]!.toString());
  writeFileSync(files.leaf, chain[0]!.toString());
  const v = spawnSync('openssl', ['verify', '-CAfile', files.ca, '-purpose', 'sslserver', files.leaf], { encoding: 'utf8' });
  t.equal(v.status, 0, `openssl verify: ${v.stdout}${v.stderr}`);
  const keyCheck = spawnSync('openssl', ['pkey', '-inform', 'DER', '-noout'], { input: svid.x509_svid_key });
  t.equal(keyCheck.status, 0, 'key is DER PKCS#8 openssl can read');

  issuer.deregisterWorkload('spiffe://example.org/w');
  const st = await ended;
  t.equal(st.code, grpc.status.PERMISSION_DENIED, 'open stream ended with PermissionDenied');
  const again = await rawStreamStatus(socketPath, 'FetchX509SVID', headerMd('true'));
  t.equal(again.code, grpc.status.PERMISSION_DENIED, 'new calls denied');
  t.equal(await rawUnaryStatus(socketPath, 'FetchJWTSVID', { audience: ['a'] }, headerMd('true')), grpc.status.PERMISSION_DENIED);
});

t.test('registration rules and stale sockets', async (t) => {
  const socketDir = path.join(dir, 'rules');
  mkdirSync(socketDir, { mode: 0o700 });
  const issuer = await DevIssuer.start({ trustDomain: 'example.org', socketDir, svidTtlSeconds: 60 });
  t.teardown(() => issuer.stop());
  await t.rejects(issuer.registerWorkload('spiffe://other.org/w'), withReason('dev_issuer_invalid'), 'foreign trust domain');
  await t.rejects(issuer.registerWorkload('not-an-id'), withReason('spiffe_id_invalid'));

  // A socket file left at the path (here still bound by a stray listener) is replaced;
  // a regular file is never deleted.
  const stalePath = issuer.socketPathFor('spiffe://example.org/stale');
  const stray = net.createServer().listen(stalePath);
  await new Promise((r) => stray.once('listening', r));
  t.teardown(() => stray.close());
  const reg = await issuer.registerWorkload('spiffe://example.org/stale');
  t.equal(reg.socketPath, stalePath);
  t.equal(await rawUnaryStatus(stalePath, 'FetchJWTSVID', { audience: ['a'] }, headerMd('true')), grpc.status.OK, 'issuer serves the path');

  const filePath = issuer.socketPathFor('spiffe://example.org/file');
  writeFileSync(filePath, 'precious');
  await t.rejects(issuer.registerWorkload('spiffe://example.org/file'), withReason('dev_issuer_invalid'));
  t.ok(statSync(filePath).isFile(), 'regular file left alone');

  await t.rejects(DevIssuer.start({ trustDomain: 'example.org', socketDir, svidTtlSeconds: 0 }), withReason('dev_issuer_invalid'));
  await issuer.stop();
  await t.rejects(issuer.registerWorkload('spiffe://example.org/late'), withReason('dev_issuer_stopped'));
});
