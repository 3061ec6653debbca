/**
 * RedisBudgetStore against a real redis-server: two sidecars (two clients) share one budget
 * atomically; a dead or hung Redis makes charges fail fast and closed; a restarted one works again.
 */
import { randomBytes } from 'node:crypto';
import t, { type Test } from 'tap';
import { createClient } from 'redis';
import { BudgetLedger } from '../../src/budget/ledger.js';
import { RedisBudgetStore } from '../../src/budget/redis-store.js';
import type { PolicyBudget } from '../../src/budget/period.js';
import { freePort } from '../helpers/ports.js';
import { capturingLogger } from './helpers.js';
import { RedisServer, redisSkipReason } from './redis-server.js';

const skip = redisSkipReason();
if (skip) {
  t.skip(skip, () => {});
} else {
  runTests();
}

/** `timeoutMs` default 500 (the production default); tests about atomicity, not outages, use more slack for a loaded CI box. */
async function openStore(t: Test, url: string, prefix: string, logger = capturingLogger(), timeoutMs = 500): Promise<RedisBudgetStore> {
  const store = await RedisBudgetStore.open({ url, keyPrefix: prefix, logger, timeoutMs });
  t.teardown(() => store.close());
  return store;
}

/** Rejects if `p` takes longer than `ms`: a hang becomes a failure, not a stuck suite. */
function within<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`still pending after ${ms} ms`)), ms))),
  ]);
}

const total = (limitUsd: number): PolicyBudget => ({ limitUsd, period: 'total' });

function runTests(): void {
  t.test('two sidecars share one budget: concurrent charges never exceed limit + one amount', async (t) => {
    const server = await RedisServer.start(t);
    const prefix = `test-${randomBytes(4).toString('hex')}:`;
    const a = new BudgetLedger(await openStore(t, server.url, prefix, capturingLogger(), 10_000));
    const b = new BudgetLedger(await openStore(t, server.url, prefix, capturingLogger(), 10_000));

    const cents = await Promise.all(Array.from({ length: 600 }, (_, i) => (i % 2 ? a : b).charge('shared', total(1), 0.01)));
    t.equal(cents.filter((r) => r.ok).length, 100, 'exactly 100 charges of $0.01 fit a $1 budget across both replicas');
    t.ok(cents.filter((r) => !r.ok).every((r) => !r.ok && r.reason === 'budget_exceeded'));

    const threes = await Promise.all(Array.from({ length: 400 }, (_, i) => (i % 2 ? a : b).charge('odd', total(1), 0.03)));
    t.equal(threes.filter((r) => r.ok).length, 34, 'admitted while spent < limit');
    const maxSpent = Math.max(...threes.map((r) => r.spentUsd));
    t.ok(maxSpent <= 1.03, `spent ${maxSpent} <= limit + one amount`);

    const raw = createClient({ url: server.url });
    raw.on('error', () => undefined);
    await raw.connect();
    t.teardown(() => raw.destroy());
    t.equal(await raw.get(`${prefix}shared:total`), '1000000', 'Redis holds integer micro-dollars');
    t.equal(await raw.get(`${prefix}odd:total`), '1020000');
    t.equal(await raw.ttl(`${prefix}shared:total`), -1, 'total budgets never expire');

    const daily = await a.charge('d', { limitUsd: 1, period: 'daily' }, 0.5);
    const ttl = await raw.pTTL(`${prefix}${daily.key}`);
    t.ok(ttl > 38 * 86_400_000 && ttl <= 40 * 86_400_000, `daily counters expire ~40 days after the day starts (${ttl} ms)`);
    const monthly = await a.charge('m', { limitUsd: 1, period: 'monthly' }, 0.5);
    t.ok((await raw.pTTL(`${prefix}${monthly.key}`)) > 360 * 86_400_000, 'monthly counters keep for ~400 days');

    t.same(await b.adjust('shared', total(1), -0.25), { key: 'shared:total', spentUsd: 0.75 }, 'adjust is an unconditional INCRBY');
    t.match(await a.charge('shared', total(1), 0.01), { ok: true, spentUsd: 0.76 }, 'the refund is visible to the other replica');
    t.equal(b.store.peek('shared:total'), 750_000, 'peek: the last value this client saw, no I/O');
    t.same(
      a.snapshot([{ name: 'shared', budget: total(1) }]),
      [{ agent: 'shared', period: 'total', period_id: 'total', spent_usd: 0.76, limit_usd: 1, resets_at: null }],
    );
    t.ok([...a.store.entries()].some(([k]) => k === 'odd:total'));
  });

  t.test('Redis down: charges fail fast with budget_store_unavailable; back up: charges work again', async (t) => {
    const server = await RedisServer.start(t);
    const logger = capturingLogger();
    const store = await openStore(t, server.url, `test-${randomBytes(4).toString('hex')}:`, logger);
    const ledger = new BudgetLedger(store);
    t.match(await ledger.charge('a', total(10), 1), { ok: true, spentUsd: 1 });
    t.ok(store.ready);

    await server.stop();
    for (let i = 0; i < 3; i++) {
      await t.rejects(within(ledger.charge('a', total(10), 1), 20_000), { name: 'SidecarError', reason: 'budget_store_unavailable' });
    }
    await t.rejects(within(ledger.adjust('a', total(10), 1), 20_000), { name: 'SidecarError', reason: 'budget_store_unavailable' });
    t.notOk(store.ready);
    t.ok(logger.lines.some((l) => l.level === 'warn' && /unreachable/.test(l.msg ?? '')), 'the outage was logged');

    await server.restart(); // empty: no persistence in this test server
    const res = await eventually(() => ledger.charge('a', total(10), 2));
    t.match(res, { ok: true, spentUsd: 2 }, 'reconnected in the background; the script is reloaded (EVAL fallback)');
    t.ok(logger.lines.filter((l) => l.level === 'warn').length <= 2, 'one warning per outage, not one per retry');
  });

  t.test('a hung Redis (SIGSTOP) times charges out instead of hanging them', async (t) => {
    const server = await RedisServer.start(t);
    const store = await openStore(t, server.url, `test-${randomBytes(4).toString('hex')}:`);
    const ledger = new BudgetLedger(store);
    t.match(await ledger.charge('a', total(10), 1), { ok: true });
    server.pause();
    t.teardown(() => server.resume());
    await t.rejects(within(ledger.charge('a', total(10), 1), 20_000), { name: 'SidecarError', reason: 'budget_store_unavailable', message: /timeout/i });
    server.resume();
    t.match(await eventually(() => ledger.charge('a', total(10), 1)), { ok: true });
  });

  t.test('unreachable at start: open resolves, charges are refused, close is clean', async (t) => {
    const port = await freePort();
    const store = await openStore(t, `redis://127.0.0.1:${port}`, 'x:');
    t.notOk(store.ready);
    await t.rejects(within(new BudgetLedger(store).charge('a', total(10), 1), 20_000), {
      name: 'SidecarError',
      reason: 'budget_store_unavailable',
    });
    await store.close();
    await t.rejects(store.charge('a:total', 1, 10), { name: 'SidecarError', reason: 'budget_store_unavailable', message: /closed/ });
  });

  t.test('a Redis that requires AUTH: the password option works, a wrong or missing one fails closed, none is logged', async (t) => {
    const password = `pw-${randomBytes(6).toString('hex')}`;
    const server = await RedisServer.start(t, { password });
    const prefix = `auth-${randomBytes(4).toString('hex')}:`;
    const logger = capturingLogger();
    const store = await RedisBudgetStore.open({ url: server.url, password, keyPrefix: prefix, logger, timeoutMs: 10_000 });
    t.teardown(() => store.close());
    t.match(await new BudgetLedger(store).charge('a', total(10), 1), { ok: true, spentUsd: 1 });
    for (const [what, opts] of [['a wrong password', { password: 'wrong' }], ['no password', {}]] as const) {
      const bad = await RedisBudgetStore.open({ url: server.url, keyPrefix: prefix, logger, timeoutMs: 2_000, ...opts });
      t.teardown(() => bad.close());
      await t.rejects(within(new BudgetLedger(bad).charge('a', total(10), 1), 30_000), { name: 'SidecarError', reason: 'budget_store_unavailable' }, what);
    }
    t.notMatch(JSON.stringify(logger.lines), password, 'the password reaches no log line');
  });

  t.test('a bad URL is a typed configuration error', async (t) => {
    await t.rejects(RedisBudgetStore.open({ url: 'http://nope' }), { name: 'SidecarError', reason: 'budget_store_config' });
  });
}

/** Retries `fn` until it resolves (up to 10 s): reconnection happens in the background with backoff. */
async function eventually<T>(fn: () => Promise<T>): Promise<T> {
  let last: unknown;
  for (let i = 0; i < 100; i++) {
    try {
      return await fn();
    } catch (err) {
      last = err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  throw last;
}
