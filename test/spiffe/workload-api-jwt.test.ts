/**
 * The Workload API client checks what FetchJWTSVID returns against what it asked for: every
 * requested audience in `aud`, `sub` equal to the SVID's SPIFFE ID (and to the one asked for).
 * The answers come from a small Workload API server over a real Unix socket that hands out
 * real signed tokens with the wrong claims, and from the dev issuer as the control.
 */
import t from 'tap';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { SignJWT, generateKeyPair } from 'jose';
import { DevCa } from '../../src/dev/ca.js';
import { DevIssuer } from '../../src/dev/issuer.js';
import { WorkloadApiClient } from '../../src/spiffe/workload-api/client.js';
import { workloadApiService, type JwtSvidRequest, type JwtSvidResponse } from '../../src/spiffe/workload-api/proto.js';
import { tempSocketDir } from '../helpers/workload-api.js';

const TD = 'example.org';
const ME = `spiffe://${TD}/me`;
const { dir, cleanup } = tempSocketDir('wl-jwt-');
t.teardown(cleanup);
const ca = await DevCa.create({ trustDomain: TD });
const withReason = (reason: string) => ({ message: /./, reason });

/** Serves FetchJWTSVID on a Unix socket with whatever `answer` returns for the request. */
async function lyingAgent(name: string, answer: (req: JwtSvidRequest) => Promise<JwtSvidResponse>): Promise<{ endpoint: string; close: () => void }> {
  const socketPath = path.join(dir, `${name}.sock`);
  const server = new grpc.Server();
  server.addService(workloadApiService().service, {
    FetchJWTSVID: (call: grpc.ServerUnaryCall<JwtSvidRequest, JwtSvidResponse>, cb: grpc.sendUnaryData<JwtSvidResponse>) => {
      answer(call.request).then((r) => cb(null, r), (err: Error) => cb({ code: grpc.status.INTERNAL, details: err.message }));
    },
  });
  await new Promise<void>((resolve, reject) => server.bindAsync(`unix://${socketPath}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())));
  return { endpoint: `unix://${socketPath}`, close: () => server.forceShutdown() };
}

async function withClient(name: string, answer: (req: JwtSvidRequest) => Promise<JwtSvidResponse>): Promise<WorkloadApiClient> {
  const agent = await lyingAgent(name, answer);
  const client = new WorkloadApiClient({ endpoint: agent.endpoint });
  t.teardown(() => {
    client.close();
    agent.close();
  });
  return client;
}

const one = async (id: string, token: string): Promise<JwtSvidResponse> => ({ svids: [{ spiffe_id: id, svid: token, hint: '' }] });

t.test('a token without a requested audience is refused', async (t) => {
  const client = await withClient('wrong-aud', async () => one(ME, await ca.signJwtSvid(ME, ['someone-else'])));
  await t.rejects(client.fetchJwtSvid({ audience: ['svc'] }), { name: 'WorkloadApiError', reason: 'jwt_svid_audience_mismatch', message: /does not hold the requested \["svc"\]/ });

  const partial = await withClient('partial-aud', async () => one(ME, await ca.signJwtSvid(ME, ['a'])));
  await t.rejects(partial.fetchJwtSvid({ audience: ['a', 'b'] }), withReason('jwt_svid_audience_mismatch'), 'every audience must be held');
});

t.test('more audiences than asked, or aud as a single string, are accepted', async (t) => {
  const wider = await withClient('wider-aud', async (req) => one(ME, await ca.signJwtSvid(ME, [...req.audience, 'extra'])));
  const [svid] = await wider.fetchJwtSvid({ audience: ['a', 'b'] });
  t.same(svid!.audience, ['a', 'b', 'extra']);

  const { privateKey } = await generateKeyPair('ES256');
  const stringAud = await new SignJWT({}).setProtectedHeader({ alg: 'ES256' }).setSubject(ME).setAudience('a').setExpirationTime('5m').sign(privateKey);
  const rfc = await withClient('string-aud', async () => one(ME, stringAud));
  t.same((await rfc.fetchJwtSvid({ audience: ['a'] }))[0]!.audience, ['a'], 'RFC 7519 single-string aud');
});

t.test('a token whose sub is not its SPIFFE ID, or not the ID asked for, is refused', async (t) => {
  const other = `spiffe://${TD}/other`;
  const mislabelled = await withClient('wrong-sub', async (req) => one(ME, await ca.signJwtSvid(other, req.audience)));
  await t.rejects(mislabelled.fetchJwtSvid({ audience: ['a'] }), { name: 'WorkloadApiError', reason: 'jwt_svid_subject_mismatch', message: /is not its spiffe_id/ });

  const substitute = await withClient('wrong-id', async (req) => one(other, await ca.signJwtSvid(other, req.audience)));
  await t.rejects(substitute.fetchJwtSvid({ audience: ['a'], spiffeId: ME }), { reason: 'jwt_svid_subject_mismatch', message: /asked for spiffe:\/\/example\.org\/me, got/ });
  t.equal((await substitute.fetchJwtSvid({ audience: ['a'] }))[0]!.id.toString(), other, 'control: not asking for an ID, any of ours is fine');

  const garbage = await withClient('garbage', async () => one(ME, 'not-a-jwt'));
  await t.rejects(garbage.fetchJwtSvid({ audience: ['a'] }), withReason('workload_api_bad_response'));
});

t.test('control: the dev issuer answers what was asked', async (t) => {
  const issuer = await DevIssuer.start({ trustDomain: TD, socketDir: path.join(dir, 'issuer') });
  t.teardown(() => issuer.stop());
  const { endpoint } = await issuer.registerWorkload(ME);
  const client = new WorkloadApiClient({ endpoint });
  t.teardown(() => client.close());
  const [svid] = await client.fetchJwtSvid({ audience: ['a', 'b'], spiffeId: ME });
  t.same(svid!.audience, ['a', 'b']);
  t.equal(svid!.id.toString(), ME);
});
