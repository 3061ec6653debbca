/**
 * WorkloadApiX509Source over real Unix sockets against the DevIssuer: ready/generations,
 * no new state for identical pushes, keeps the SVID across an issuer restart and across
 * PermissionDenied (and keeps retrying), svid_timeout.
 */
import t from 'tap';
import path from 'node:path';
import { DevIssuer } from '../../src/dev/issuer.js';
import { DevCa } from '../../src/dev/ca.js';
import { WorkloadApiX509Source } from '../../src/spiffe/workload-api/source.js';
import { WorkloadApiClient } from '../../src/spiffe/workload-api/client.js';
import type { IdentityState } from '../../src/spiffe/source.js';
import { parseTrustDomain } from '../../src/spiffe/id.js';
import type { SidecarError } from '../../src/errors.js';
import { EventLog, sleep, tempSocketDir } from '../helpers/workload-api.js';

const { dir, cleanup } = tempSocketDir('wlsrc-');
t.teardown(cleanup);
const fastBackoff = { initialMs: 20, maxMs: 200 };
const withReason = (reason: string) => ({ message: /./, reason });
const serial = (s: IdentityState): string => s.svid.certificates[0]!.serialNumber;

async function until(cond: () => boolean, timeoutMs = 30_000, what = 'condition'): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

t.test('ready, generations on change only, unsubscribe', async (t) => {
  const issuer = await DevIssuer.start({ trustDomain: 'example.org', socketDir: path.join(dir, 'gen'), svidTtlSeconds: 60 });
  t.teardown(() => issuer.stop());
  const { endpoint } = await issuer.registerWorkload('spiffe://example.org/src', { federatesWith: ['partner.example'] });
  const source = new WorkloadApiX509Source({ endpoint, backoff: fastBackoff }).start();
  t.teardown(() => source.close());
  t.equal(source.current(), undefined, 'nothing before the first SVID');

  const states = new EventLog<IdentityState>();
  const unsubscribe = source.subscribe(states.push);
  const ready = await source.waitReady(30_000);
  t.equal(ready.generation, 1);
  t.equal(ready.svid.id.toString(), 'spiffe://example.org/src');
  t.equal(source.current(), ready, 'current() is the ready state');
  t.equal((await states.next()).generation, 1, 'subscriber saw it');
  t.equal(source.health().connected, true);
  t.ok(source.health().lastUpdate instanceof Date);
  t.equal(await source.waitReady(1), ready, 'waitReady resolves at once when ready');

  const partner = await DevCa.create({ trustDomain: 'partner.example' });
  issuer.setFederatedBundle('partner.example', partner.bundle());
  const s2 = await states.next(undefined, 5000, 'federated change');
  t.equal(s2.generation, 2);
  t.equal(serial(s2), serial(ready), 'same SVID, new bundles');
  t.ok(s2.bundles.has(parseTrustDomain('partner.example')));

  // The same bundle again: the issuer pushes an identical message, the source emits nothing.
  issuer.setFederatedBundle('partner.example', partner.bundle());
  await sleep(300);
  t.equal(states.items.length, 2, 'identical state is not a new generation');
  t.equal(source.current()!.generation, 2);

  unsubscribe();
  await issuer.rotateCa();
  await until(() => source.current()!.generation === 3, 5000, 'generation 3');
  t.not(serial(source.current()!), serial(ready), 'new SVID after CA rotation');
  t.equal(states.items.length, 2, 'unsubscribed listener not called');
});

t.test('keeps the SVID while the issuer is down; reconnects after a restart on the same socket', async (t) => {
  const socketDir = path.join(dir, 'restart');
  const ca = await DevCa.create({ trustDomain: 'example.org' });
  const issuer1 = await DevIssuer.start({ trustDomain: 'example.org', socketDir, svidTtlSeconds: 60, ca });
  const reg1 = await issuer1.registerWorkload('spiffe://example.org/restart');
  const source = new WorkloadApiX509Source({ endpoint: reg1.endpoint, backoff: fastBackoff }).start();
  t.teardown(() => source.close());
  const first = await source.waitReady(30_000);

  await issuer1.stop();
  await until(() => !source.health().connected, 5000, 'disconnect noticed');
  t.ok(source.health().lastError, `error recorded: ${source.health().lastError}`);
  await sleep(300); // several failed reconnects
  t.equal(source.current(), first, 'the good SVID is kept while the agent is away');

  const issuer2 = await DevIssuer.start({ trustDomain: 'example.org', socketDir, svidTtlSeconds: 60, ca });
  t.teardown(() => issuer2.stop());
  const reg2 = await issuer2.registerWorkload('spiffe://example.org/restart');
  t.equal(reg2.socketPath, reg1.socketPath, 'same socket path after restart');
  await until(() => source.current()!.generation === 2, 5000, 'SVID from the restarted issuer');
  t.not(serial(source.current()!), serial(first), 'fresh SVID');
  t.equal(source.health().connected, true);
  t.equal(source.health().lastError, undefined, 'error cleared by a good update');
});

t.test('PermissionDenied: keeps its SVID and keeps retrying', async (t) => {
  const issuer = await DevIssuer.start({ trustDomain: 'example.org', socketDir: path.join(dir, 'denied'), svidTtlSeconds: 60 });
  t.teardown(() => issuer.stop());
  const { endpoint } = await issuer.registerWorkload('spiffe://example.org/denied');
  const source = new WorkloadApiX509Source({ endpoint, backoff: fastBackoff }).start();
  t.teardown(() => source.close());
  const first = await source.waitReady(30_000);

  // A bare client alongside, to count its retries.
  const client = new WorkloadApiClient({ endpoint, backoff: fastBackoff });
  t.teardown(() => client.close());
  const errors = new EventLog<SidecarError>();
  const updates = new EventLog<unknown>();
  client.watchX509Context(updates.push, errors.push);
  await updates.next(undefined, 5000, 'client SVID');

  issuer.deregisterWorkload('spiffe://example.org/denied');
  await errors.next((e) => e.reason === 'workload_api_permission_denied', 5000, 'first PermissionDenied');
  await errors.next((e) => e.reason === 'workload_api_permission_denied', 5000, 'second PermissionDenied (a retry)');
  await until(() => /PERMISSION_DENIED/.test(source.health().lastError ?? ''), 5000, 'source records PermissionDenied');
  t.equal(source.health().connected, false);
  t.equal(source.current(), first, 'SVID kept');
  await t.rejects(client.fetchJwtSvid({ audience: ['a'] }), withReason('workload_api_permission_denied'));

  await issuer.registerWorkload('spiffe://example.org/denied');
  await until(() => source.current()!.generation === 2, 5000, 'SVID after re-registration');
  t.not(serial(source.current()!), serial(first));
});

t.test('waitReady rejects with svid_timeout; close rejects pending waiters', async (t) => {
  const endpoint = `unix://${path.join(dir, 'nobody-home.sock')}`;
  const source = new WorkloadApiX509Source({ endpoint, backoff: fastBackoff }).start();
  const err = (await source.waitReady(300).catch((e: unknown) => e)) as SidecarError;
  t.equal(err.reason, 'svid_timeout');
  t.match(err.message, /300 ms/);
  t.match(err.message, /UNAVAILABLE/, 'names the last error');
  t.equal(source.health().connected, false);
  const pending = source.waitReady(10_000);
  await source.close();
  await t.rejects(pending, withReason('source_closed'));
  t.throws(() => new WorkloadApiX509Source({ endpoint: 'tcp://localhost:1' }), withReason('workload_endpoint_invalid'));
});
