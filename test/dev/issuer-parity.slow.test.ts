/**
 * Parity: the same raw Workload API calls against the dev issuer and against a real SPIRE
 * v1.13.3 agent give the same answers where a client can tell: error codes and texts, entry ID
 * order and duplicate hints, per-entry federated bundles, leaf-only chains and their lifetime,
 * JWT-SVID caching, TTL and `aud` form, and what a workload sees through CA rotation in SPIRE's
 * steps. This test process is the workload (`unix:path` of node).
 */
import t, { type Test } from 'tap';
import path from 'node:path';
import { realpathSync, writeFileSync } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { decodeJwt } from 'jose';
import { DevIssuer } from '../../src/dev/issuer.js';
import { DevCa } from '../../src/dev/ca.js';
import { splitDerSequences } from '../../src/spiffe/x509.js';
import { fromStructMessage, workloadApiService, type JwtSvidResponse, type ValidateJwtSvidResponse, type X509BundlesResponse, type X509SvidResponse } from '../../src/spiffe/workload-api/proto.js';
import { WorkloadApiClient } from '../../src/spiffe/workload-api/client.js';
import type { X509Context } from '../../src/spiffe/workload-api/parse.js';
import { parseTrustDomain } from '../../src/spiffe/id.js';
import { spireSkip, startSpire, until } from '../helpers/spire.js';
import { EventLog, tempSocketDir } from '../helpers/workload-api.js';
import { firstOfStream, headerMd, rawUnary } from './raw-grpc.js';

const TD = 'parity.test';
const PARTNER = 'partner.test';
const id = (name: string) => `spiffe://${TD}/${name}`;
const TTL = 60;
/** Entry IDs chosen so that entry ID order differs from registration order; "three" repeats hint "one". */
const ENTRIES = [
  { spiffeId: id('one'), entryId: 'parity-2', hint: 'one', federatesWith: [PARTNER] },
  { spiffeId: id('two'), entryId: 'parity-1', hint: 'two', federatesWith: [] as string[] },
  { spiffeId: id('three'), entryId: 'parity-3', hint: 'one', federatesWith: [] as string[] },
];

/** What a client observes from one Workload API socket. */
async function observe(socket: string) {
  const ok = headerMd('true');
  const noHeader = await firstOfStream(socket, 'FetchX509SVID', headerMd());
  const x509 = (await firstOfStream<X509SvidResponse>(socket, 'FetchX509SVID', ok)).msg!;
  const now = Date.now();
  const leaves = x509.svids.map((s) => splitDerSequences(s.x509_svid).map((d) => new X509Certificate(d)));
  const bundles = (await firstOfStream<X509BundlesResponse>(socket, 'FetchX509Bundles', ok)).msg!;
  const jwt = async (audience: string[], spiffeId = id('two')) => (await rawUnary<JwtSvidResponse>(socket, 'FetchJWTSVID', { audience, spiffe_id: spiffeId }, ok)).value?.svids[0]?.svid;
  const first = await jwt(['x']);
  const claims = decodeJwt(first!);
  const validated = (await rawUnary<ValidateJwtSvidResponse>(socket, 'ValidateJWTSVID', { audience: 'x', svid: first }, ok)).value;
  const denied = await rawUnary(socket, 'FetchJWTSVID', { audience: ['x'], spiffe_id: id('three') }, ok);
  const malformed = await rawUnary(socket, 'FetchJWTSVID', { audience: ['x'], spiffe_id: 'nope' }, ok);
  return {
    noHeader: [noHeader.status?.code, noHeader.status?.details],
    svids: x509.svids.map((s) => [s.spiffe_id, s.hint]),
    federated: Object.keys(x509.federated_bundles).sort(),
    bundleStream: Object.keys(bundles.bundles).sort(),
    chainLengths: leaves.map((c) => c.length),
    // TTL + the 10 s backdate (the dev issuer rounds the expiry up to a whole second).
    lifetimeIsTtlPlus10s: leaves.every((c) => {
      const ms = Date.parse(c[0]!.validTo) - Date.parse(c[0]!.validFrom);
      return ms >= (TTL + 10) * 1000 && ms <= (TTL + 11) * 1000;
    }),
    backdated: leaves.every((c) => Date.parse(c[0]!.validFrom) <= now - 9_000),
    jwtAud: claims.aud,
    jwtTtlS: Number(claims.exp) - Number(claims.iat),
    jwtCached: (await jwt(['x'])) === first,
    jwtAudienceSet: (await jwt(['x', 'y'])) === (await jwt(['y', 'x'])),
    validatedAud: validated ? fromStructMessage(validated.claims)['aud'] : undefined,
    duplicateHintDenied: [denied.err?.code, denied.err?.details],
    malformedId: [malformed.err?.code, malformed.err?.details?.replace(/:.*/s, ':')],
  };
}

/** An open FetchX509SVID stream: its first message, and the status it ends with (bounded by 60 s). */
function streamEnd(socket: string): { first: Promise<void>; status: Promise<[grpc.status, string]> } {
  const Ctor = workloadApiService();
  const client = new Ctor(`unix://${socket}`, grpc.credentials.createInsecure());
  const def = Ctor.service['FetchX509SVID']!;
  const call = client.makeServerStreamRequest(def.path, def.requestSerialize, def.responseDeserialize, {}, headerMd('true'), { deadline: Date.now() + 60_000 });
  call.on('error', () => {});
  const first = new Promise<void>((resolve) => call.once('data', () => resolve()));
  const status = new Promise<[grpc.status, string]>((resolve) =>
    call.on('status', (st) => {
      client.close();
      resolve([st.code, st.details]);
    }),
  );
  return { first, status };
}

const skip = spireSkip();
if (skip) t.skip(skip, () => {});
else {
  t.test('the dev issuer answers like a SPIRE agent', async (t) => {
    const spire = await startSpire(t, { trustDomain: TD, defaultX509SvidTtlSeconds: TTL });
    const partner = await DevCa.create({ trustDomain: PARTNER });
    const workload = `unix:path:${realpathSync(process.execPath)}`;

    // Not registered yet: the same refusal from both.
    const { dir, cleanup } = tempSocketDir('parity-');
    t.teardown(cleanup);
    const issuer = await DevIssuer.start({ trustDomain: TD, socketDir: path.join(dir, 'dev'), svidTtlSeconds: TTL });
    t.teardown(() => issuer.stop());
    const [primary, ...extra] = ENTRIES;
    const { socketPath } = await issuer.registerWorkload(primary!.spiffeId, primary);
    issuer.deregisterWorkload(primary!.spiffeId);
    const unregistered = async (socket: string) => {
      const r = await firstOfStream(socket, 'FetchX509SVID', headerMd('true'));
      return [r.status?.code, r.status?.details];
    };
    const spireUnregistered = await unregistered(spire.workloadSocket);
    t.same(spireUnregistered, [grpc.status.PERMISSION_DENIED, 'no identity issued'], 'SPIRE: unregistered');
    t.same(await unregistered(socketPath), spireUnregistered, 'dev issuer: the same');

    const partnerPem = path.join(spire.dir, 'partner.pem');
    writeFileSync(partnerPem, partner.bundle().toPem());
    await spire.server(['bundle', 'set', '-id', `spiffe://${PARTNER}`, '-path', partnerPem]);
    const created = Date.now();
    const entryIds: string[] = [];
    for (const e of ENTRIES) entryIds.push(await spire.createEntry({ ...e, selectors: [workload] }));
    await until(async () => {
      const r = await firstOfStream<X509SvidResponse>(spire.workloadSocket, 'FetchX509SVID', headerMd('true'));
      return r.msg && r.msg.svids.length === 2 && Object.keys(r.msg.federated_bundles).length === 1 ? true : undefined;
    }, 'SPIRE serving both SVIDs and the federated bundle');
    t.comment(`SPIRE: entries created to SVIDs served: ${Date.now() - created} ms`);
    issuer.setFederatedBundle(PARTNER, partner.bundle());
    await issuer.registerWorkload(primary!.spiffeId, { ...primary, extraIdentities: extra });

    const fromSpire = await observe(spire.workloadSocket);
    t.same(
      fromSpire,
      {
        noHeader: [grpc.status.INVALID_ARGUMENT, 'security header missing from request'],
        svids: [[id('two'), 'two'], [id('one'), 'one']],
        federated: [`spiffe://${PARTNER}`],
        bundleStream: [`spiffe://${TD}`, `spiffe://${PARTNER}`],
        chainLengths: [1, 1],
        lifetimeIsTtlPlus10s: true,
        backdated: true,
        jwtAud: ['x'],
        jwtTtlS: 300,
        jwtCached: true,
        jwtAudienceSet: true,
        validatedAud: ['x'],
        duplicateHintDenied: [grpc.status.PERMISSION_DENIED, 'no identity issued'],
        malformedId: [grpc.status.INVALID_ARGUMENT, 'invalid requested SPIFFE ID:'],
      },
      'SPIRE answers as documented',
    );
    t.same(await observe(socketPath), fromSpire, 'the dev issuer answers the same');

    // Deleting the entries (deregistering) ends an open FetchX509SVID stream the same way.
    const spireEnd = streamEnd(spire.workloadSocket);
    await spireEnd.first;
    const deleting = Date.now();
    for (const entryId of entryIds) await spire.deleteEntry(entryId);
    const devEnd = streamEnd(socketPath);
    await devEnd.first;
    issuer.deregisterWorkload(primary!.spiffeId);
    const spireStatus = await spireEnd.status;
    t.comment(`SPIRE: entry delete started to the open stream ending: ${Date.now() - deleting} ms`);
    t.same(spireStatus, [grpc.status.PERMISSION_DENIED, 'no identity issued'], 'SPIRE: the open stream ends');
    t.same(await devEnd.status, spireStatus, 'dev issuer: the same');
  });
}

/** The CA steps, as the dev issuer and `spire-server localauthority x509 ...` take them. */
interface CaSteps {
  prepare(): Promise<string>;
  activate(id: string): Promise<void>;
  taint(id: string): Promise<void>;
  revoke(id: string): Promise<void>;
  activeId(): Promise<string>;
}

/** Runs prepare, activate, taint, revoke against one Workload API socket; returns what the workload saw, and step times. */
async function caRotation(t: Test, endpoint: string, steps: CaSteps) {
  const client = new WorkloadApiClient({ endpoint });
  t.teardown(() => client.close());
  const updates = new EventLog<X509Context>();
  client.watchX509Context(updates.push, () => {});
  const roots = (c: X509Context) => c.bundles.getX509Bundle(parseTrustDomain(TD))!.authorities;
  const serial = (c: X509Context) => c.svid.certificates[0]!.serialNumber;
  const wait = (pred: (c: X509Context) => boolean, what: string) => updates.next(pred, 60_000, what);
  const timed = async <T>(f: () => Promise<T>): Promise<[T, number]> => {
    const start = Date.now();
    const v = await f();
    return [v, Date.now() - start];
  };

  const first = await wait(() => true, 'first SVID');
  const oldRoot = roots(first)[0]!;
  const oldId = await steps.activeId();
  const newId = await steps.prepare();
  const [prepared, prepareMs] = await timed(() => wait((c) => roots(c).length === 2, 'the prepared root in the bundle'));
  const newRoot = roots(prepared).find((r) => !r.raw.equals(oldRoot.raw))!;
  await steps.activate(newId);
  const activeAfter = await steps.activeId();
  await steps.taint(oldId);
  const [tainted, taintMs] = await timed(() => wait((c) => serial(c) !== serial(first), 'an SVID from the new authority'));
  await steps.revoke(oldId);
  const [revoked, revokeMs] = await timed(() => wait((c) => roots(c).length === 1, 'the old root gone'));
  return {
    seen: {
      firstFromOld: first.svid.certificates[0]!.checkIssued(oldRoot),
      preparedKeepsSvid: serial(prepared) === serial(first),
      activated: activeAfter === newId && newId !== oldId,
      taintedFromNew: tainted.svid.certificates[0]!.checkIssued(newRoot),
      taintedRoots: roots(tainted).length,
      revokedKeepsSvid: serial(revoked) === serial(tainted),
      revokedRootIsNew: roots(revoked)[0]!.raw.equals(newRoot.raw),
    },
    times: { prepareMs, taintMs, revokeMs },
  };
}

if (!skip) {
  t.test('CA rotation in steps: the workload sees the same with the dev issuer and with SPIRE', async (t) => {
    const spire = await startSpire(t, { trustDomain: TD, defaultX509SvidTtlSeconds: 600 });
    await spire.createEntry({ spiffeId: id('ca'), selectors: [`unix:path:${realpathSync(process.execPath)}`] });
    const la = async (args: string[]) => JSON.parse((await spire.server(['localauthority', 'x509', ...args, '-output', 'json'])).stdout) as Record<string, { authority_id: string } | undefined>;
    const fromSpire = await caRotation(t, `unix://${spire.workloadSocket}`, {
      prepare: async () => (await la(['prepare'])).prepared_authority!.authority_id,
      activate: async (authorityId) => void (await la(['activate', '-authorityID', authorityId])),
      taint: async (authorityId) => void (await la(['taint', '-authorityID', authorityId])),
      revoke: async (authorityId) => void (await la(['revoke', '-authorityID', authorityId])),
      activeId: async () => (await la(['show'])).active!.authority_id,
    });
    t.comment(`SPIRE CA rotation, seen by the workload: prepare ${fromSpire.times.prepareMs} ms, taint to new SVID ${fromSpire.times.taintMs} ms, revoke to root gone ${fromSpire.times.revokeMs} ms`);
    const expected = { firstFromOld: true, preparedKeepsSvid: true, activated: true, taintedFromNew: true, taintedRoots: 2, revokedKeepsSvid: true, revokedRootIsNew: true };
    t.same(fromSpire.seen, expected, 'SPIRE');

    const { dir, cleanup } = tempSocketDir('parity-ca-');
    t.teardown(cleanup);
    const issuer = await DevIssuer.start({ trustDomain: TD, socketDir: dir, svidTtlSeconds: 600 });
    t.teardown(() => issuer.stop());
    const { endpoint } = await issuer.registerWorkload(id('ca'));
    const fromDev = await caRotation(t, endpoint, {
      prepare: () => issuer.prepareCa(),
      activate: async (authorityId) => issuer.activateCa(authorityId),
      taint: (authorityId) => issuer.taintCa(authorityId),
      revoke: async (authorityId) => issuer.revokeCa(authorityId),
      activeId: async () => issuer.ca.activeAuthorityId,
    });
    t.same(fromDev.seen, expected, 'the dev issuer: the same');
  });
}
