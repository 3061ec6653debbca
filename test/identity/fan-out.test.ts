/**
 * The identity fan-out without sockets: real SVIDs from the dev CA, real TLS material, and
 * consumers that record what they were given (the listeners' part is covered end to end).
 */
import t from 'tap';
import type { Logger } from '../../src/lib/log.js';
import { DevCa } from '../../src/dev/ca.js';
import { BundleSet } from '../../src/spiffe/bundle/bundle-set.js';
import { BaseX509Source, type IdentityState } from '../../src/spiffe/source.js';
import type { TlsMaterial } from '../../src/spiffe/tls.js';
import { IdentityFanOut, svidCheck, bundleCheck, sourceCheck, type IdentityConsumer } from '../../src/identity/fan-out.js';

const ca = await DevCa.create({ trustDomain: 'example.org' });
const partner = await DevCa.create({ trustDomain: 'partner.test' });
const ID = 'spiffe://example.org/workload';

async function stateOf(generation: number, opts: { federated?: boolean; ttlSeconds?: number } = {}): Promise<IdentityState> {
  const { svid } = await ca.issueX509Svid(ID, { ttlSeconds: opts.ttlSeconds ?? 3600 });
  return { svid, bundles: new BundleSet(opts.federated ? [ca.bundle(), partner.bundle()] : [ca.bundle()]), generation };
}

function counter() {
  return { n: 0, inc() { this.n++; } };
}

function capture() {
  const lines: { level: string; obj: Record<string, unknown>; msg: string | undefined }[] = [];
  const at = (level: string) => (obj: Record<string, unknown>, msg?: string) => void lines.push({ level, obj, msg });
  return { lines, logger: { info: at('info'), error: at('error') } as unknown as Logger };
}

function fanOut(now = Date.now) {
  const metrics = { rotations: counter(), bundleUpdates: counter() };
  const log = capture();
  return { metrics, log, identity: new IdentityFanOut({ metrics, logger: log.logger, now }) };
}

/** A consumer that records generations; `hold()` makes the next install wait until released. */
function recorder(name: string, events: string[]) {
  let gate: Promise<void> | undefined;
  let release = () => {};
  const consumer: IdentityConsumer & { hold(): void; release(): void } = {
    async applyIdentity(m: TlsMaterial) {
      events.push(`${name} start ${m.generation}`);
      if (gate) await gate;
      events.push(`${name} done ${m.generation}`);
    },
    hold() {
      gate = new Promise((r) => (release = () => { gate = undefined; r(); }));
    },
    release: () => release(),
  };
  return consumer;
}

t.test('consumers are installed in registration order, one generation at a time', async (t) => {
  const { identity } = fanOut();
  const events: string[] = [];
  const outbound = recorder('outbound', events);
  const inbound = recorder('inbound', events);
  identity.register(outbound);
  identity.register(undefined); // an absent part (no admin configured) is skipped
  identity.register(inbound);
  inbound.hold();
  identity.offer(await stateOf(1));
  identity.offer(await stateOf(2));
  await new Promise((r) => setImmediate(r));
  t.same(events, ['outbound start 1', 'outbound done 1', 'inbound start 1'], 'generation 2 waits for generation 1 to finish everywhere');
  inbound.release();
  await identity.settled();
  t.same(events, ['outbound start 1', 'outbound done 1', 'inbound start 1', 'inbound done 1', 'outbound start 2', 'outbound done 2', 'inbound start 2', 'inbound done 2']);
  t.equal(identity.material?.generation, 2);
  t.equal(identity.state?.generation, 2);
});

t.test('rotations and bundle updates are counted against the previous state', async (t) => {
  const { identity, metrics, log } = fanOut();
  const first = await stateOf(1);
  identity.offer(first);
  identity.offer(first); // the same state again: nothing to do
  identity.offer({ svid: first.svid, bundles: new BundleSet([ca.bundle(), partner.bundle()]), generation: 2 });
  identity.offer(await stateOf(3, { federated: true }));
  await identity.settled();
  t.equal(metrics.rotations.n, 1, 'one new serial');
  t.equal(metrics.bundleUpdates.n, 1, 'one bundle change');
  t.same(
    log.lines.map((l) => `${l.msg} ${l.obj.generation}`),
    ['identity installed 1', 'identity updated 2', 'identity updated 3'],
  );
});

t.test('a failed install keeps going with the next state; the first failure is kept for start-up', async (t) => {
  const { identity, log } = fanOut();
  const events: string[] = [];
  const bindErr = Object.assign(new Error('listen EADDRINUSE'), { syscall: 'listen', code: 'EADDRINUSE' });
  let failNext = true;
  identity.register({
    applyIdentity: async (m) => {
      if (failNext) {
        failNext = false;
        throw bindErr;
      }
      events.push(`inbound ${m.generation}`);
    },
  });
  identity.register({ applyIdentity: (m) => void events.push(`admin ${m.generation}`) });
  identity.offer(await stateOf(1));
  await identity.settled();
  t.equal(identity.firstInstallError, bindErr);
  t.same(events, [], 'the consumers after the failing one keep their previous identity');
  t.match(log.lines.at(-1), { level: 'error', msg: 'failed to install identity; keeping the previous one', obj: { err: 'listen EADDRINUSE' } });
  identity.offer(await stateOf(2));
  await identity.settled();
  t.same(events, ['inbound 2', 'admin 2']);
  t.equal(identity.firstInstallError, bindErr, 'a later success does not erase why the first install failed');
});

class PushedSource extends BaseX509Source {
  constructor() {
    super();
  }
  push(state: IdentityState): void {
    this.publish(state);
  }
  breakFor(why: string): void {
    this.unrecoverable = why;
  }
  async close(): Promise<void> {}
}

t.test('follow installs the current state and every change until close()', async (t) => {
  const { identity } = fanOut();
  const seen: number[] = [];
  identity.register({ applyIdentity: (m) => void seen.push(m.generation) });
  const source = new PushedSource();
  const first = await stateOf(0);
  source.push(first);
  identity.follow(source);
  await identity.settled();
  t.same(seen, [1], 'the state the source already held');
  source.push(await stateOf(0));
  await identity.settled();
  t.same(seen, [1, 2]);
  identity.close();
  source.push(await stateOf(0));
  await identity.settled();
  t.same(seen, [1, 2], 'nothing after close()');
});

t.test('readiness: svid, bundle and identity_source as /readyz shows them', async (t) => {
  let now = Date.now();
  const { identity } = fanOut(() => now);
  const source = new PushedSource();
  identity.follow(source);
  const report = () => Object.fromEntries(identity.readinessChecks().map(([name, probe]) => [name, probe()]));
  t.same(report(), {
    svid: { ok: false, detail: 'no SVID received yet' },
    bundle: { ok: false, detail: 'no trust bundle for our own trust domain' },
    identity_source: undefined,
  });
  const state = await stateOf(0, { ttlSeconds: 60 });
  source.push(state);
  t.same(report(), { svid: { ok: true, detail: ID }, bundle: { ok: true, detail: 'trust domain example.org' }, identity_source: undefined });
  source.breakFor('socket not found');
  t.same(report().identity_source, { ok: false, detail: 'socket not found' });
  now = state.svid.notAfter.getTime();
  t.same(report().svid, { ok: false, detail: `SVID expired at ${state.svid.notAfter.toISOString()}` });
  await identity.settled();
});

t.test('the check functions on their own', async (t) => {
  const state = await stateOf(1);
  const onlyPartner = { ...state, bundles: new BundleSet([partner.bundle()]) };
  t.same(bundleCheck(onlyPartner), { ok: false, detail: 'no trust bundle for our own trust domain' }, 'a federated bundle is not ours');
  t.same(svidCheck(state, state.svid.notAfter.getTime() - 1), { ok: true, detail: ID });
  t.same(svidCheck(state, state.svid.notAfter.getTime() - 1, 'FetchX509SVID: UNAVAILABLE'), { ok: true, detail: ID }, 'a source error while the SVID is valid is not a readiness problem');
  t.same(
    svidCheck(undefined, 0, 'FetchX509SVID: PERMISSION_DENIED: no identity issued'),
    { ok: false, detail: 'no SVID received yet (identity source: FetchX509SVID: PERMISSION_DENIED: no identity issued)' },
    'readiness says why no SVID came',
  );
  t.same(
    svidCheck(state, state.svid.notAfter.getTime(), 'FetchX509SVID: PERMISSION_DENIED: no identity issued'),
    { ok: false, detail: `SVID expired at ${state.svid.notAfter.toISOString()} (identity source: FetchX509SVID: PERMISSION_DENIED: no identity issued)` },
  );
  t.equal(sourceCheck({ connected: false, lastError: 'retrying' }), undefined, 'a source that is only waiting adds no check');
});
