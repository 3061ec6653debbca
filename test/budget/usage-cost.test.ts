/** Pricing token usage: integer micro-dollar math, rounding up, refusing nonsense. */
import t from 'tap';
import { SidecarError } from '../../src/errors.js';
import type { TokenPrices, TokenUsage } from '../../src/budget/usage/types.js';
import { tokenPricesProblem, usageCostMicros, usageCostUsd } from '../../src/budget/usage/types.js';

t.test('1M input at $2.50 + 500k output at $10 is exactly $7.50', async (t) => {
  const prices = { inputUsdPerMillion: 2.5, outputUsdPerMillion: 10 };
  t.equal(usageCostUsd({ inputTokens: 1_000_000, outputTokens: 500_000 }, prices), 7.5);
  t.equal(usageCostMicros({ inputTokens: 1_000_000, outputTokens: 500_000 }, prices), 7_500_000);
});

t.test('no float drift: prices like $0.1 and $0.3 sum exactly', async (t) => {
  const prices = { inputUsdPerMillion: 0.1, outputUsdPerMillion: 0.2 };
  // With floats, 0.1 + 0.2 per million would give 0.30000000000000004.
  t.equal(usageCostUsd({ inputTokens: 1_000_000, outputTokens: 1_000_000 }, prices), 0.3);
  let micros = 0;
  for (let i = 0; i < 1000; i++) micros += usageCostMicros({ inputTokens: 3_000, outputTokens: 7_000 }, prices);
  t.equal(micros, 1000 * 1_700, 'a thousand requests add up to exactly $1.70');
  t.equal(micros / 1e6, 1.7);
});

t.test('fractions of a micro-dollar are rounded up, never down', async (t) => {
  const prices = { inputUsdPerMillion: 0.075, outputUsdPerMillion: 0.3 };
  // 1 input token at $0.075/M = 0.075 micro-dollars -> 1 micro-dollar.
  t.equal(usageCostMicros({ inputTokens: 1, outputTokens: 0 }, prices), 1);
  t.equal(usageCostMicros({ inputTokens: 0, outputTokens: 0 }, prices), 0);
  // 13 input (0.975) + 3 output (0.9) = 1.875 micro-dollars -> 2.
  t.equal(usageCostMicros({ inputTokens: 13, outputTokens: 3 }, prices), 2);
  t.equal(usageCostUsd({ inputTokens: 13, outputTokens: 3 }, prices), 0.000002);
});

t.test('the largest accepted counts at the largest price stay exact', async (t) => {
  const prices = { inputUsdPerMillion: 1_000_000, outputUsdPerMillion: 999_999.999999 };
  const micros = usageCostMicros({ inputTokens: 1e9, outputTokens: 1e9 }, prices);
  t.ok(Number.isSafeInteger(micros));
  t.equal(micros, 1_999_999_999_999_000);
});

/** The reason code usageCostUsd throws with, or 'no throw'; checks the value is a SidecarError. */
function thrownReason(u: TokenUsage, p: TokenPrices): string {
  try {
    usageCostUsd(u, p);
  } catch (err) {
    return err instanceof SidecarError ? err.reason : `not a SidecarError: ${String(err)}`;
  }
  return 'no throw';
}

t.test('invalid counts and prices throw typed errors instead of producing NaN', async (t) => {
  const ok = { inputUsdPerMillion: 1, outputUsdPerMillion: 1 };
  for (const bad of [-1, 1.5, NaN, Infinity, 1e9 + 1, '5' as unknown as number]) {
    t.equal(thrownReason({ inputTokens: bad, outputTokens: 0 }, ok), 'usage_invalid', `input ${String(bad)}`);
    t.equal(thrownReason({ inputTokens: 0, outputTokens: bad }, ok), 'usage_invalid', `output ${String(bad)}`);
  }
  for (const bad of [-0.01, NaN, Infinity, 1e7, '2' as unknown as number]) {
    const p = { inputUsdPerMillion: bad, outputUsdPerMillion: 1 };
    t.ok(tokenPricesProblem(p), `problem for ${String(bad)}`);
    t.equal(thrownReason({ inputTokens: 1, outputTokens: 1 }, p), 'price_invalid');
  }
  t.equal(tokenPricesProblem({ inputUsdPerMillion: 0, outputUsdPerMillion: 0 }), undefined, 'free is a price');
});
