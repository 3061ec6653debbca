import t from 'tap';
import {
  budgetKey,
  DAILY_RETENTION_MS,
  keyRetentionEndsAt,
  MONTHLY_RETENTION_MS,
  parseBudgetKey,
  periodEndsAt,
  periodId,
  usdToMicros,
} from '../../src/budget/period.js';

const at = (iso: string) => Date.parse(iso);

t.test('period ids are UTC days and months', async (t) => {
  const now = at('2026-11-22T23:59:59.999Z');
  t.equal(periodId('total', now), 'total');
  t.equal(periodId('daily', now), '2026-11-22');
  t.equal(periodId('monthly', now), '2026-11');
  t.equal(periodId('daily', now + 1), '2026-11-23', 'midnight UTC starts a new day');
  t.equal(periodId('daily', at('2026-11-23T01:00:00+05:00')), '2026-11-22', 'local offsets do not matter');
  t.throws(() => periodId('daily', NaN), RangeError, 'a broken clock throws instead of inventing a period');
});

t.test('period ends: next UTC midnight / first of next month; none for total', async (t) => {
  t.equal(periodEndsAt('total', Date.now()), undefined);
  t.equal(periodEndsAt('daily', at('2026-11-22T10:00:00Z')), at('2026-11-23T00:00:00Z'));
  t.equal(periodEndsAt('daily', at('2026-12-31T23:00:00Z')), at('2027-01-01T00:00:00Z'));
  t.equal(periodEndsAt('monthly', at('2026-12-15T00:00:00Z')), at('2027-01-01T00:00:00Z'));
  t.equal(periodEndsAt('monthly', at('2028-02-29T12:00:00Z')), at('2028-03-01T00:00:00Z'));
  t.equal(periodEndsAt('daily', at('2026-11-23T00:00:00Z')), at('2026-11-24T00:00:00Z'), 'the first instant belongs to the new day');
});

t.test('keys name agent and period instance; parsing takes the last colon', async (t) => {
  const now = at('2026-11-22T10:00:00Z');
  t.equal(budgetKey('fuzzer', 'daily', now), 'fuzzer:2026-11-22');
  t.equal(budgetKey('ns:fuzzer', 'monthly', now), 'ns:fuzzer:2026-11');
  t.same(parseBudgetKey('ns:fuzzer:2026-11'), { agent: 'ns:fuzzer', periodId: '2026-11' });
  t.same(parseBudgetKey('a:total'), { agent: 'a', periodId: 'total' });
  t.equal(parseBudgetKey('a:yesterday'), undefined);
  t.equal(parseBudgetKey(':total'), undefined);
  t.equal(parseBudgetKey('total'), undefined);
});

t.test('retention: 40 days after a day starts, 400 after a month starts, never for total', async (t) => {
  t.equal(keyRetentionEndsAt('a:2026-11-22'), at('2026-11-22T00:00:00Z') + DAILY_RETENTION_MS);
  t.equal(keyRetentionEndsAt('a:2026-11'), at('2026-11-01T00:00:00Z') + MONTHLY_RETENTION_MS);
  t.equal(keyRetentionEndsAt('a:total'), undefined);
  t.equal(keyRetentionEndsAt('no-period'), undefined);
});

t.test('USD to micro-dollars is exact integer arithmetic', async (t) => {
  t.equal(usdToMicros(25), 25_000_000);
  t.equal(usdToMicros(0.1) + usdToMicros(0.2), usdToMicros(0.3), '0.1 + 0.2 == 0.3 in micros');
  t.equal(usdToMicros(0.0000004), 0);
  t.equal(usdToMicros(0.0000005), 1);
});
