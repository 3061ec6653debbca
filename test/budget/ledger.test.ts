import t from 'tap';
import { BudgetLedger } from '../../src/budget/ledger.js';
import { FileBudgetStore } from '../../src/budget/file-store.js';
import type { BudgetStore } from '../../src/budget/store.js';
import type { PolicyBudget } from '../../src/budget/period.js';
import { tempDir } from './helpers.js';

const total = (limitUsd: number): PolicyBudget => ({ limitUsd, period: 'total' });

t.test('charges in USD, refuses once spent >= limit, even unpriced actions', async (t) => {
  const store = await FileBudgetStore.open(tempDir(t));
  t.teardown(() => store.close());
  const ledger = new BudgetLedger(store);
  const b = total(1);
  t.same(await ledger.charge('fuzzer', b, 0.4), { ok: true, key: 'fuzzer:total', spentUsd: 0.4, limitUsd: 1 });
  t.same(await ledger.charge('fuzzer', b, 0), { ok: true, key: 'fuzzer:total', spentUsd: 0.4, limitUsd: 1 }, 'unpriced: admitted under the limit');
  t.same(await ledger.charge('fuzzer', b, 0.7), { ok: true, key: 'fuzzer:total', spentUsd: 1.1, limitUsd: 1 }, 'the last admitted request may overshoot once');
  t.same(await ledger.charge('fuzzer', b, 0.01), { ok: false, reason: 'budget_exceeded', key: 'fuzzer:total', spentUsd: 1.1, limitUsd: 1 });
  t.same(await ledger.charge('fuzzer', b, 0), { ok: false, reason: 'budget_exceeded', key: 'fuzzer:total', spentUsd: 1.1, limitUsd: 1 }, 'exhausted: unpriced refused too');
  t.same(await ledger.charge('other', b, 0.5), { ok: true, key: 'other:total', spentUsd: 0.5, limitUsd: 1 }, 'budgets are per agent');
});

t.test('integer micro-dollars: no float drift over many small charges', async (t) => {
  const store = await FileBudgetStore.open(tempDir(t));
  t.teardown(() => store.close());
  const ledger = new BudgetLedger(store);
  for (let i = 0; i < 1000; i++) await ledger.charge('a', total(1000), 0.1);
  t.equal(store.peek('a:total'), 100_000_000);
  const last = await ledger.charge('a', total(1000), 0.2);
  t.equal(last.spentUsd, 100.2, 'exactly 100.2, not 100.19999999999');
});

t.test('daily budgets reset at UTC midnight; adjust sticks to the original key', async (t) => {
  const store = await FileBudgetStore.open(tempDir(t));
  t.teardown(() => store.close());
  let now = Date.parse('2026-11-22T23:59:59Z');
  const ledger = new BudgetLedger(store, () => now);
  const daily: PolicyBudget = { limitUsd: 2, period: 'daily' };
  const first = await ledger.charge('a', daily, 1.5);
  t.match(first, { ok: true, key: 'a:2026-11-22' });
  t.match(await ledger.charge('a', daily, 1), { ok: true, spentUsd: 2.5 });
  t.match(await ledger.charge('a', daily, 0.1), { ok: false, reason: 'budget_exceeded' });
  now += 2000; // past midnight
  t.same(await ledger.adjust('a', daily, -0.5, first.key), { key: 'a:2026-11-22', spentUsd: 2 }, 'the correction lands in the day it was charged');
  t.match(await ledger.charge('a', daily, 1), { ok: true, key: 'a:2026-11-23', spentUsd: 1 }, 'a new day starts from zero');
  t.same(await ledger.adjust('a', daily, 0.25), { key: 'a:2026-11-23', spentUsd: 1.25 }, 'without a key: the current period');
  const monthly: PolicyBudget = { limitUsd: 10, period: 'monthly' };
  t.match(await ledger.charge('b', monthly, 3), { ok: true, key: 'b:2026-11' });

  t.same(
    ledger.snapshot([
      { name: 'a', budget: daily },
      { name: 'b', budget: monthly },
      { name: 'c', budget: total(5) },
      { name: 'unbudgeted' },
    ]),
    [
      { agent: 'a', period: 'daily', period_id: '2026-11-23', spent_usd: 1.25, limit_usd: 2, resets_at: '2026-11-24T00:00:00.000Z' },
      { agent: 'b', period: 'monthly', period_id: '2026-11', spent_usd: 3, limit_usd: 10, resets_at: '2026-12-01T00:00:00.000Z' },
      { agent: 'c', period: 'total', period_id: 'total', spent_usd: 0, limit_usd: 5, resets_at: null },
    ],
  );
});

t.test('bad input is refused with typed errors', async (t) => {
  const store = await FileBudgetStore.open(tempDir(t));
  t.teardown(() => store.close());
  const ledger = new BudgetLedger(store);
  const bad = { name: 'SidecarError', reason: 'budget_invalid_argument' };
  await t.rejects(ledger.charge('a', total(1), -0.01), bad);
  await t.rejects(ledger.charge('a', total(1), NaN), bad);
  await t.rejects(ledger.charge('a', total(1), Infinity), bad);
  await t.rejects(ledger.charge('a', total(NaN), 1), bad);
  await t.rejects(ledger.charge('', total(1), 1), bad);
  await t.rejects(ledger.adjust('a', total(1), 1, 'b:total'), bad, "another agent's key");
  await t.rejects(ledger.adjust('a', total(1), 1, 'a'), bad, 'not a ledger key');
  t.equal(store.peek('a:total'), undefined, 'nothing was charged');
});

t.test('store failures reach callers as typed errors (callers deny with 503)', async (t) => {
  const broken: BudgetStore = {
    charge: () => Promise.reject(new Error('disk on fire')),
    adjust: () => Promise.reject(new Error('disk on fire')),
    peek: () => undefined,
    entries: () => [],
    close: () => Promise.resolve(),
  };
  const ledger = new BudgetLedger(broken);
  await t.rejects(ledger.charge('a', total(1), 0.1), { name: 'SidecarError', reason: 'budget_ledger_failed', message: /disk on fire/ });
  await t.rejects(ledger.adjust('a', total(1), 0.1), { name: 'SidecarError', reason: 'budget_ledger_failed' });

  const store = await FileBudgetStore.open(tempDir(t));
  await store.close();
  await t.rejects(new BudgetLedger(store).charge('a', total(1), 0.1), { name: 'SidecarError', reason: 'budget_store_unavailable' });
});
