/**
 * JWT-SVIDs against real SPIRE with the project's Workload API client: FetchJWTSVID (`aud` is a
 * list, `sub` the entry's ID, `exp - iat` the entry's JWT TTL), ValidateJWTSVID, and local
 * validation with jose against the JWT bundle SPIRE serves (FetchJWTBundles); a wrong audience
 * and a token of a foreign key are refused both ways. Then both directions with go-spiffe: a
 * token go-spiffe fetched is validated by our client, ours by go-spiffe.
 */
import t from 'tap';
import { realpathSync } from 'node:fs';
import { createLocalJWKSet, decodeJwt, decodeProtectedHeader, jwtVerify } from 'jose';
import { DevCa } from '../../src/dev/ca.js';
import type { JwtBundle } from '../../src/spiffe/bundle/jwt-bundle.js';
import { WorkloadApiClient } from '../../src/spiffe/workload-api/client.js';
import { SPIFFE_PEERS, buildGoPrograms, goProgramsMissing, runSpiffeClient } from '../helpers/go-programs.js';
import { skipFor } from '../helpers/needs.js';
import { tapSelector } from '../helpers/spire-peers.js';
import { spireSkip, startSpire, until } from '../helpers/spire.js';

const TD = 'jwt.test';
const me = `spiffe://${TD}/client`;
const goClient = `spiffe://${TD}/go-client`;
const JWT_TTL = 45;

/** The reason code a call was refused with, or 'accepted'. */
const refusal = (p: Promise<unknown>): Promise<string> => p.then(() => 'accepted', (err: { reason?: string }) => err.reason ?? String(err));

const skip = spireSkip();
if (skip) t.skip(skip, () => {});
else {
  t.setTimeout(900_000);
  const spire = await startSpire(t, { trustDomain: TD });
  const socket = `unix://${spire.workloadSocket}`;
  await spire.createEntry({ spiffeId: me, selectors: [tapSelector()], x509SvidTtlSeconds: 60, jwtSvidTtlSeconds: JWT_TTL });
  const client = new WorkloadApiClient({ endpoint: socket });
  t.teardown(() => client.close());
  const started = Date.now();
  const first = await until(() => client.fetchJwtSvid({ audience: ['svc-a', 'svc-b'] }), 'a JWT-SVID for the new entry', 60_000);
  t.comment(`entry created -> first JWT-SVID: ${Date.now() - started} ms`);

  /** SPIRE's JWT bundle for our trust domain as jose's key set (from FetchJWTBundles). */
  const jwks = await new Promise<ReturnType<typeof createLocalJWKSet>>((resolve, reject) => {
    const watch = client.watchJwtBundles(
      (bundles: ReadonlyMap<string, JwtBundle>) => {
        const own = bundles.get(TD);
        if (!own) return;
        watch.cancel();
        resolve(createLocalJWKSet(JSON.parse(own.toJwks())));
      },
      (err) => reject(err),
    );
  });
  const verifyLocally = (token: string, audience: string) => jwtVerify(token, jwks, { audience });

  t.test('FetchJWTSVID: aud is a list, sub is the ID, the TTL is the entry’s', async (t) => {
    t.equal(first.length, 1);
    const svid = first[0]!;
    t.equal(svid.id.toString(), me);
    t.same(svid.audience, ['svc-a', 'svc-b']);
    const header = decodeProtectedHeader(svid.token);
    t.match(header, { alg: 'ES256', typ: 'JWT' });
    t.ok(header.kid, 'the header names the signing key');
    const claims = decodeJwt(svid.token);
    t.same(claims.aud, ['svc-a', 'svc-b']);
    t.equal(claims.sub, me);
    t.equal(claims.exp! - claims.iat!, JWT_TTL, `exp - iat is the entry's jwtSvidTtlSeconds (${JWT_TTL})`);
    t.equal(svid.expiry?.getTime(), claims.exp! * 1000);

    const one = (await client.fetchJwtSvid({ audience: ['only'] }))[0]!;
    t.same(decodeJwt(one.token).aud, ['only'], 'one audience is still a list (SPIRE always sends aud as an array)');
  });

  t.test('ValidateJWTSVID and local validation against FetchJWTBundles agree', async (t) => {
    const token = first[0]!.token;
    const validated = await client.validateJwtSvid(token, 'svc-a');
    t.equal(validated.id.toString(), me, 'SPIRE validates it for a listed audience');
    t.same(validated.claims.aud, ['svc-a', 'svc-b']);
    const local = await verifyLocally(token, 'svc-b');
    t.equal(local.payload.sub, me, 'jose validates it against the JWT bundle SPIRE serves');

    t.equal(await refusal(client.validateJwtSvid(token, 'svc-other')), 'workload_api_invalid_argument', 'SPIRE refuses another audience');
    await t.rejects(verifyLocally(token, 'svc-other'), { code: 'ERR_JWT_CLAIM_VALIDATION_FAILED' }, 'so does jose');

    const foreign = await (await DevCa.create({ trustDomain: TD })).signJwtSvid(me, ['svc-a']);
    t.equal(await refusal(client.validateJwtSvid(foreign, 'svc-a')), 'workload_api_invalid_argument', 'SPIRE refuses a token of a key not in its bundle');
    await t.rejects(verifyLocally(foreign, 'svc-a'), 'so does jose');
  });

  t.test('go-spiffe both ways', { skip: skipFor(goProgramsMissing(SPIFFE_PEERS)) }, async (t) => {
    const { bins, built, buildMs } = await buildGoPrograms(SPIFFE_PEERS);
    if (built) t.comment(`built the go-spiffe peers (cold) in ${buildMs} ms`);
    const goBin = realpathSync(bins['spiffe-client']!);
    await spire.createEntry({ spiffeId: goClient, selectors: [`unix:path:${goBin}`], x509SvidTtlSeconds: 60, jwtSvidTtlSeconds: JWT_TTL });
    const fetched = await until(
      async () => {
        const r = await runSpiffeClient(goBin, ['jwt-fetch', '-audience', 'svc-a'], socket);
        return r.code === 0 ? r : undefined;
      },
      'go-spiffe to fetch a JWT-SVID',
      60_000,
    );
    const goToken = String(fetched.lines[0]!.token);
    t.match(fetched.lines[0], { type: 'jwt_svid', spiffe_id: goClient, audience: ['svc-a'] });
    t.equal((await client.validateJwtSvid(goToken, 'svc-a')).id.toString(), goClient, 'our client has SPIRE validate the go-spiffe token');
    t.equal((await verifyLocally(goToken, 'svc-a')).payload.sub, goClient, 'and validates it locally against the JWT bundle');
    t.equal(await refusal(client.validateJwtSvid(goToken, 'svc-b')), 'workload_api_invalid_argument', 'not for another audience');

    const ours = first[0]!.token;
    for (const via of ['bundles', 'api']) {
      const valid = await runSpiffeClient(goBin, ['jwt-validate', '-audience', 'svc-b', '-via', via, ours], socket);
      t.equal(valid.code, 0, `go-spiffe (${via}) validates the token our client fetched: ${valid.stderr}`);
      t.match(valid.lines[0], { type: 'jwt_valid', spiffe_id: me, audience: ['svc-a', 'svc-b'] });
      const wrong = await runSpiffeClient(goBin, ['jwt-validate', '-audience', 'svc-other', '-via', via, ours], socket);
      t.equal(wrong.code, 6, `go-spiffe (${via}) refuses it for another audience`);
    }
  });
}
