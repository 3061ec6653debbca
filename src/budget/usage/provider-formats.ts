/**
 * Where each provider puts token counts, and how they map to the two prices we charge.
 * A response object (a whole JSON body, one element of a JSON array, or one SSE event's data)
 * is fed to `observe`; counts are validated as they arrive and kept as a per-field maximum,
 * because every streamed count these APIs send is cumulative (the last is the largest).
 *
 * Formats (documented by the providers):
 * - OpenAI Chat Completions / Completions / Embeddings: `usage.prompt_tokens`,
 *   `usage.completion_tokens` (absent for embeddings). Streamed chat sends usage only when the
 *   request set `stream_options.include_usage`: one extra chunk before `data: [DONE]` whose
 *   `usage` is set, all others `usage: null`. Cached / reasoning / audio token details are
 *   subsets of those two totals and are not added again.
 *   Responses API: `usage.input_tokens` / `usage.output_tokens`; streamed, the terminal event
 *   (`response.completed`, `response.incomplete` or `response.failed`) carries `response.usage`.
 * - Anthropic Messages: `usage.input_tokens`, `usage.output_tokens`,
 *   `cache_creation_input_tokens`, `cache_read_input_tokens`. Cache writes and reads are billed
 *   at other rates than plain input; we charge them at the input price (conservative for reads,
 *   an under-charge of the 1.25x write premium that routes can cover with their input price).
 *   Streamed: `message_start` carries `message.usage` (input, initial output), `message_delta`
 *   carries cumulative `usage` (output, and in newer API versions input/cache counts too).
 *   A stream without a `message_delta` usage was cut: its output count is unknown.
 *   Server-tool request counts (`server_tool_use`) are priced per request, not per token: ignored.
 * - Gemini generateContent: `usageMetadata.promptTokenCount`, `candidatesTokenCount`,
 *   `thoughtsTokenCount` (billed as output), `toolUsePromptTokenCount` (input),
 *   `totalTokenCount`; `cachedContentTokenCount` is a part of `promptTokenCount`. Each
 *   streamed response (SSE with `alt=sse`, or an element of the JSON array without it) carries
 *   the cumulative `usageMetadata`. When `totalTokenCount` exceeds the parts we know, the
 *   difference is charged as output (a token category we do not know yet still costs money).
 */
import { MAX_TOKEN_COUNT, type ModelProvider, type TokenUsage, type UsageResult } from './types.js';

type Counts = ReadonlyMap<string, number>;

interface UsageBlock {
  counts: Record<string, unknown>;
  /** Where it was found, for messages. */
  path: string;
  /** True when this block is the provider's final word on the request's usage. */
  final: boolean;
}

interface ProviderFormat {
  /** Count fields read from a usage block; anything else is ignored. */
  fields: readonly string[];
  blocks(obj: Record<string, unknown>): UsageBlock[];
  model(obj: Record<string, unknown>): unknown;
  /** Input/output totals from the per-field maxima, or why they cannot be formed. */
  combine(counts: Counts): { inputTokens: number; outputTokens: number } | string;
  /** Added to "carries no usage" messages. */
  missingHint: string;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const get = (c: Counts, k: string): number => c.get(k) ?? 0;

const openai: ProviderFormat = {
  fields: ['prompt_tokens', 'completion_tokens', 'input_tokens', 'output_tokens'],
  blocks(obj) {
    const found: UsageBlock[] = [];
    if (isObject(obj.usage)) found.push({ counts: obj.usage, path: 'usage', final: true });
    if (isObject(obj.response) && isObject(obj.response.usage)) {
      found.push({ counts: obj.response.usage, path: 'response.usage', final: true });
    }
    return found;
  },
  model: (obj) => obj.model ?? (isObject(obj.response) ? obj.response.model : undefined),
  combine(counts) {
    if (!counts.has('prompt_tokens') && !counts.has('input_tokens')) return 'usage has neither prompt_tokens nor input_tokens';
    return {
      inputTokens: Math.max(get(counts, 'prompt_tokens'), get(counts, 'input_tokens')),
      outputTokens: Math.max(get(counts, 'completion_tokens'), get(counts, 'output_tokens')),
    };
  },
  missingHint: '; streamed chat completions report usage only when the request sets stream_options.include_usage',
};

const anthropic: ProviderFormat = {
  fields: ['input_tokens', 'output_tokens', 'cache_creation_input_tokens', 'cache_read_input_tokens'],
  blocks(obj) {
    const found: UsageBlock[] = [];
    if (obj.type === 'message_start' && isObject(obj.message) && isObject(obj.message.usage)) {
      found.push({ counts: obj.message.usage, path: 'message.usage', final: false });
    }
    // A whole `message` or a `message_delta`: both carry the final counts at top level.
    if (isObject(obj.usage)) found.push({ counts: obj.usage, path: 'usage', final: true });
    return found;
  },
  model: (obj) => obj.model ?? (isObject(obj.message) ? obj.message.model : undefined),
  combine(counts) {
    if (!counts.has('input_tokens')) return 'usage never reported input_tokens';
    if (!counts.has('output_tokens')) return 'usage never reported output_tokens';
    return {
      inputTokens: get(counts, 'input_tokens') + get(counts, 'cache_creation_input_tokens') + get(counts, 'cache_read_input_tokens'),
      outputTokens: get(counts, 'output_tokens'),
    };
  },
  missingHint: '',
};

const gemini: ProviderFormat = {
  fields: ['promptTokenCount', 'candidatesTokenCount', 'thoughtsTokenCount', 'toolUsePromptTokenCount', 'totalTokenCount'],
  blocks: (obj) => (isObject(obj.usageMetadata) ? [{ counts: obj.usageMetadata, path: 'usageMetadata', final: true }] : []),
  model: (obj) => obj.modelVersion,
  combine(counts) {
    if (!counts.has('promptTokenCount')) return 'usageMetadata never reported promptTokenCount';
    const inputTokens = get(counts, 'promptTokenCount') + get(counts, 'toolUsePromptTokenCount');
    let outputTokens = get(counts, 'candidatesTokenCount') + get(counts, 'thoughtsTokenCount');
    const unexplained = get(counts, 'totalTokenCount') - inputTokens - outputTokens;
    if (unexplained > 0) outputTokens += unexplained;
    return { inputTokens, outputTokens };
  },
  missingHint: '',
};

const FORMATS: Record<ModelProvider, ProviderFormat> = { openai, anthropic, gemini };

/** Most characters of a provider's error message quoted in a detail. */
const MAX_QUOTE = 200;
const MAX_MODEL = 256;

function quote(v: unknown): string {
  let text: string;
  try {
    text = typeof v === 'string' ? v : JSON.stringify(v) ?? String(v);
  } catch {
    text = String(v);
  }
  return text.length > MAX_QUOTE ? `${text.slice(0, MAX_QUOTE)}...` : text;
}

/** The message of an error object in any of the three providers' shapes, if `obj` is one. */
function providerError(obj: Record<string, unknown>): string | undefined {
  const err = obj.error ?? (obj.type === 'error' ? obj : undefined);
  if (err === undefined || err === null) return undefined;
  if (isObject(err)) {
    const label = err.type ?? err.status ?? err.code;
    const message = err.message;
    return [label, message].filter((x) => x !== undefined && x !== null).map(quote).join(': ') || quote(err);
  }
  return quote(err);
}

export class UsageAccumulator {
  private readonly format: ProviderFormat;
  private readonly max = new Map<string, number>();
  private seenUsage = false;
  private seenFinal = false;
  private model: string | undefined;
  private error: string | undefined;
  private unreadable: string | undefined;

  constructor(provider: ModelProvider) {
    this.format = FORMATS[provider];
  }

  /** Feeds one parsed JSON value; arrays (Gemini's non-SSE stream) are fed element by element. */
  observe(value: unknown): void {
    if (Array.isArray(value)) {
      for (const v of value) this.observe(v);
      return;
    }
    if (!isObject(value) || this.unreadable) return;
    this.error ??= providerError(value);
    for (const block of this.format.blocks(value)) {
      const problem = this.takeCounts(block);
      if (problem) {
        this.unreadable = problem;
        return;
      }
    }
    const model = this.format.model(value);
    if (typeof model === 'string' && model !== '') this.model = model.slice(0, MAX_MODEL);
  }

  /** Marks the data unreadable (e.g. an event that is not JSON); the first reason sticks. */
  markUnreadable(detail: string): void {
    this.unreadable ??= detail;
  }

  /** What was learned so far, if anything: for failures that still want a lower bound. */
  partial(): TokenUsage | undefined {
    if (!this.seenUsage || this.unreadable) return undefined;
    const totals = this.totals();
    return typeof totals === 'string' ? undefined : totals;
  }

  result(): UsageResult {
    if (this.unreadable) return { ok: false, reason: 'usage_unreadable', detail: this.unreadable };
    if (!this.seenUsage) {
      const detail = this.error
        ? `provider returned an error without usage: ${this.error}`
        : `response carries no token usage${this.format.missingHint}`;
      return { ok: false, reason: 'usage_missing', detail };
    }
    const totals = this.totals();
    if (typeof totals === 'string') return { ok: false, reason: 'usage_unreadable', detail: totals };
    if (!this.seenFinal) {
      const why = this.error ? `: ${this.error}` : '';
      return { ok: false, reason: 'usage_missing', detail: `stream ended before its final usage${why}`, partial: totals };
    }
    return { ok: true, usage: totals };
  }

  private totals(): TokenUsage | string {
    const t = this.format.combine(this.max);
    if (typeof t === 'string') return t;
    if (t.inputTokens > MAX_TOKEN_COUNT || t.outputTokens > MAX_TOKEN_COUNT) {
      return `token totals are implausible (input ${t.inputTokens}, output ${t.outputTokens})`;
    }
    return this.model === undefined ? t : { ...t, model: this.model };
  }

  /** Validates one usage block and folds it into the maxima; returns a problem or undefined. */
  private takeCounts(block: UsageBlock): string | undefined {
    const valid: [string, number][] = [];
    for (const field of this.format.fields) {
      const v = block.counts[field];
      if (v === undefined || v === null) continue;
      if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0 || v > MAX_TOKEN_COUNT) {
        return `${block.path}.${field} is not a token count: ${quote(v)}`;
      }
      valid.push([field, v]);
    }
    if (valid.length === 0) return `${block.path} carries no token counts`;
    for (const [field, v] of valid) this.max.set(field, Math.max(this.max.get(field) ?? 0, v));
    this.seenUsage = true;
    if (block.final) this.seenFinal = true;
    return undefined;
  }
}
