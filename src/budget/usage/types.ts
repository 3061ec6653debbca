/**
 * Token usage read from model-API responses, and its price. Costs are computed in integer
 * arithmetic (BigInt pico-dollars, rounded UP to whole micro-dollars) so that summing many
 * requests never drifts and a charge is never under-stated by float rounding.
 */
import { SidecarError } from '../../errors.js';
import type { ReasonCode } from '../../reasons.js';

export type ModelProvider = 'openai' | 'anthropic' | 'gemini';

export const MODEL_PROVIDERS: readonly ModelProvider[] = ['openai', 'anthropic', 'gemini'];

export interface TokenUsage {
  /** Everything billed at the input rate (for Anthropic including cache writes and reads). */
  inputTokens: number;
  /** Everything billed at the output rate (for Gemini including thinking tokens). */
  outputTokens: number;
  /** The model the provider says answered, when it says so. */
  model?: string;
}

export interface TokenPrices {
  inputUsdPerMillion: number;
  outputUsdPerMillion: number;
}

/** The largest token count accepted from a response; anything above is not a real count. */
export const MAX_TOKEN_COUNT = 1_000_000_000;

/** Prices are accepted up to this many USD per million tokens (far above any real model). */
export const MAX_USD_PER_MILLION = 1_000_000;

/** Price resolution: one micro-dollar per million tokens. */
const PRICE_SCALE = 1_000_000;

/** Returns why `p` is not a usable price pair, or undefined when it is. */
export function tokenPricesProblem(prices: TokenPrices): string | undefined {
  for (const key of ['inputUsdPerMillion', 'outputUsdPerMillion'] as const) {
    const v = prices[key];
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || v > MAX_USD_PER_MILLION) {
      return `${key} must be a number between 0 and ${MAX_USD_PER_MILLION}, got ${String(v)}`;
    }
  }
  return undefined;
}

function tokenCount(name: string, v: number): bigint {
  if (!Number.isSafeInteger(v) || v < 0 || v > MAX_TOKEN_COUNT) {
    throw new SidecarError('usage_invalid', `${name} must be an integer between 0 and ${MAX_TOKEN_COUNT}, got ${String(v)}`);
  }
  return BigInt(v);
}

/**
 * Cost of `u` at `p` in whole micro-dollars, rounded up. Prices are taken to one micro-dollar
 * per million tokens (finer digits are rounded to nearest). Throws SidecarError
 * (`usage_invalid` / `price_invalid`) for counts or prices that are not sane numbers.
 */
export function usageCostMicros(u: TokenUsage, prices: TokenPrices): number {
  const problem = tokenPricesProblem(prices);
  if (problem) throw new SidecarError('price_invalid', problem);
  const input = tokenCount('inputTokens', u.inputTokens);
  const output = tokenCount('outputTokens', u.outputTokens);
  // tokens * (USD per million * 1e6) = pico-dollars (1e-12 USD); exact in BigInt.
  const pico =
    input * BigInt(Math.round(prices.inputUsdPerMillion * PRICE_SCALE)) +
    output * BigInt(Math.round(prices.outputUsdPerMillion * PRICE_SCALE));
  const micros = (pico + 999_999n) / 1_000_000n;
  // At most 2e9 tokens * 1e12 pico/token / 1e6 = 2e15 micros: below 2^53, so exact as a number.
  return Number(micros);
}

/** Cost of `u` at `p` in USD (from integer micro-dollars; see usageCostMicros). */
export function usageCostUsd(u: TokenUsage, prices: TokenPrices): number {
  return usageCostMicros(u, prices) / 1_000_000;
}

export type UsageFailureReason = Extract<ReasonCode, 'usage_missing' | 'usage_unreadable' | 'usage_too_large' | 'usage_encoding_unsupported'>;

/**
 * What a meter learned from one response body. A failure may carry `partial`: the counts seen
 * before the body ended or went wrong (e.g. an Anthropic stream cut after `message_start`), for
 * callers that would rather charge a lower bound than nothing.
 */
export type UsageResult =
  | { ok: true; usage: TokenUsage }
  | { ok: false; reason: UsageFailureReason; detail: string; partial?: TokenUsage };
