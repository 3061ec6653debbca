/**
 * The usage meter on realistic provider bodies (fixtures/usage): whole, byte by byte and in
 * seeded random splits, identity and gzip / br / deflate encoded; and every failure reason.
 */
import { execFileSync } from 'node:child_process';
import { gzipSync } from 'node:zlib';
import t, { type Test } from 'tap';
import { createUsageMeter } from '../../src/budget/usage/meter.js';
import type { ModelProvider, TokenUsage, UsageResult } from '../../src/budget/usage/types.js';
import { skipFor, toolsMissing } from '../helpers/needs.js';
import { chunks, encode, ENCODINGS, feed, fixture, JSON_TYPE, meterBody, SSE, type Split } from './usage-helpers.js';

interface Case {
  file: string;
  provider: ModelProvider;
  contentType: string | undefined;
  expect: TokenUsage | { reason: string; detail: RegExp };
}

const CASES: Case[] = [
  { file: 'openai-chat.json', provider: 'openai', contentType: JSON_TYPE, expect: { inputTokens: 19, outputTokens: 10, model: 'gpt-4.1-2025-04-14' } },
  { file: 'openai-chat-stream.sse', provider: 'openai', contentType: SSE, expect: { inputTokens: 1250, outputTokens: 347, model: 'gpt-4o-mini-2024-07-18' } },
  {
    file: 'openai-chat-stream-no-usage.sse',
    provider: 'openai',
    contentType: SSE,
    expect: { reason: 'usage_missing', detail: /stream_options\.include_usage/ },
  },
  { file: 'openai-responses.json', provider: 'openai', contentType: JSON_TYPE, expect: { inputTokens: 328, outputTokens: 52, model: 'gpt-4o-2024-08-06' } },
  { file: 'openai-responses-stream.sse', provider: 'openai', contentType: SSE, expect: { inputTokens: 37, outputTokens: 11, model: 'gpt-4.1-2025-04-14' } },
  { file: 'openai-embeddings.json', provider: 'openai', contentType: 'application/json', expect: { inputTokens: 8, outputTokens: 0, model: 'text-embedding-3-small' } },
  { file: 'openai-error.json', provider: 'openai', contentType: JSON_TYPE, expect: { reason: 'usage_missing', detail: /insufficient_quota.*exceeded your current quota/ } },
  { file: 'anthropic-message.json', provider: 'anthropic', contentType: 'application/json', expect: { inputTokens: 14386, outputTokens: 503, model: 'claude-sonnet-4-5-20250929' } },
  { file: 'anthropic-stream.sse', provider: 'anthropic', contentType: 'text/event-stream', expect: { inputTokens: 2272, outputTokens: 89, model: 'claude-sonnet-4-5-20250929' } },
  { file: 'anthropic-error.json', provider: 'anthropic', contentType: 'application/json', expect: { reason: 'usage_missing', detail: /overloaded_error: Overloaded/ } },
  { file: 'gemini-generate.json', provider: 'gemini', contentType: undefined, expect: { inputTokens: 1074, outputTokens: 580, model: 'gemini-2.5-flash' } },
  { file: 'gemini-stream.sse', provider: 'gemini', contentType: 'text/event-stream', expect: { inputTokens: 9, outputTokens: 54, model: 'gemini-2.5-flash' } },
  { file: 'gemini-stream-array.json', provider: 'gemini', contentType: JSON_TYPE, expect: { inputTokens: 9, outputTokens: 54, model: 'gemini-2.5-flash' } },
  { file: 'gemini-error.json', provider: 'gemini', contentType: JSON_TYPE, expect: { reason: 'usage_missing', detail: /RESOURCE_EXHAUSTED.*exhausted/ } },
];

function check(t: Test, r: UsageResult, expect: Case['expect'], label: string): void {
  if ('reason' in expect) {
    t.match(r, { ok: false, reason: expect.reason, detail: expect.detail }, label);
  } else {
    t.strictSame(r, { ok: true, usage: expect }, label);
  }
}

const RANDOM_SPLITS: Split[] = [1, 2, 3, 4, 5, 6].map((seed) => ({ seed, maxChunk: seed % 2 ? 7 : 97 }));

t.test('every fixture, every encoding, every split gives the documented usage', async (t) => {
  for (const c of CASES) {
    const plain = fixture(c.file);
    for (const enc of ENCODINGS) {
      const { body, header } = encode(plain, enc);
      const splits: Split[] = ['whole', ...RANDOM_SPLITS];
      if (enc === 'identity' || enc === 'gzip') splits.push('bytes');
      for (const split of splits) {
        const r = await meterBody(c.provider, body, { contentType: c.contentType, contentEncoding: header, split });
        check(t, r, c.expect, `${c.file} ${enc} ${JSON.stringify(split)}`);
      }
    }
  }
});

/** The stream compressed by the gzip(1) CLI (an independent encoder; sets a file name header). */
t.test('a body gzipped by the gzip(1) CLI decodes', { skip: skipFor(toolsMissing(['gzip'], 'gzip')) }, async (t) => {
  const cliGz = execFileSync('gzip', ['-c', '-9', '-N'], { input: fixture('anthropic-stream.sse'), stdio: ['pipe', 'pipe', 'ignore'] });
  const r = await meterBody('anthropic', cliGz, { contentType: SSE, contentEncoding: 'x-gzip', split: { seed: 9, maxChunk: 13 } });
  t.match(r, { ok: true, usage: { inputTokens: 2272, outputTokens: 89 } });
});

t.test('an Anthropic stream cut before message_delta: usage_missing with the partial counts', async (t) => {
  const full = fixture('anthropic-stream.sse').toString();
  const cut = Buffer.from(full.slice(0, full.indexOf('event: message_delta')));
  for (const split of ['whole', 'bytes'] as Split[]) {
    const r = await meterBody('anthropic', cut, { contentType: SSE, split });
    t.match(r, {
      ok: false,
      reason: 'usage_missing',
      detail: /stream ended before its final usage/,
      partial: { inputTokens: 2272, outputTokens: 2 },
    });
  }
  // The same stream cut inside a gzip body: the decoder error wins, the partial is kept.
  const gz = gzipSync(fixture('anthropic-stream.sse'));
  const r = await meterBody('anthropic', gz.subarray(0, gz.length - 40), { contentType: SSE, contentEncoding: 'gzip' });
  t.match(r, { ok: false, reason: 'usage_unreadable', detail: /gzip body could not be decoded/, partial: { inputTokens: 2272 } });
});

t.test('Anthropic message_delta with input and cache counts (newer API versions)', async (t) => {
  const body = [
    'event: message_start',
    'data: {"type":"message_start","message":{"model":"claude-x","usage":{"input_tokens":10,"output_tokens":1}}}',
    '',
    'event: message_delta',
    'data: {"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"input_tokens":10,"cache_creation_input_tokens":5,"cache_read_input_tokens":null,"output_tokens":40}}',
    '',
    'event: message_delta',
    'data: {"type":"message_delta","delta":{},"usage":{"output_tokens":55}}',
    '',
    '',
  ].join('\n');
  const r = await meterBody('anthropic', Buffer.from(body), { contentType: SSE });
  t.strictSame(r, { ok: true, usage: { inputTokens: 15, outputTokens: 55, model: 'claude-x' } }, 'several message_deltas: the last cumulative count');
});

t.test('an Anthropic error event mid-stream is named in the detail', async (t) => {
  const full = fixture('anthropic-stream.sse').toString();
  const body =
    full.slice(0, full.indexOf('event: content_block_stop')) +
    'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n';
  const r = await meterBody('anthropic', Buffer.from(body), { contentType: SSE });
  t.match(r, { ok: false, reason: 'usage_missing', detail: /overloaded_error/, partial: { inputTokens: 2272 } });
});

t.test('Gemini: a totalTokenCount above the known parts is charged as output', async (t) => {
  const body = JSON.stringify({ usageMetadata: { promptTokenCount: 100, candidatesTokenCount: 20, totalTokenCount: 150 } });
  const r = await meterBody('gemini', Buffer.from(body), { contentType: JSON_TYPE });
  t.strictSame(r, { ok: true, usage: { inputTokens: 100, outputTokens: 50 } });
  const blocked = JSON.stringify({ promptFeedback: { blockReason: 'SAFETY' }, usageMetadata: { promptTokenCount: 7, totalTokenCount: 7 } });
  t.strictSame(await meterBody('gemini', Buffer.from(blocked)), { ok: true, usage: { inputTokens: 7, outputTokens: 0 } });
});

t.test('token counts that are not counts are usage_unreadable', async (t) => {
  // Raw JSON text: 1e400 parses to Infinity.
  for (const v of ['-1', '1.5', '"12"', '1000000001', 'true', '{"n":1}', '1e400']) {
    const bodies: [ModelProvider, string][] = [
      ['openai', `{"usage":{"prompt_tokens":${v},"completion_tokens":1}}`],
      ['openai', `{"usage":{"prompt_tokens":1,"completion_tokens":${v}}}`],
      ['anthropic', `{"type":"message","usage":{"input_tokens":1,"output_tokens":1,"cache_read_input_tokens":${v}}}`],
      ['gemini', `{"usageMetadata":{"promptTokenCount":1,"thoughtsTokenCount":${v}}}`],
    ];
    for (const [provider, body] of bodies) {
      const r = await meterBody(provider, Buffer.from(body), { contentType: JSON_TYPE });
      t.match(r, { ok: false, reason: 'usage_unreadable', detail: /is not a token count/ }, `${provider} ${v}`);
    }
  }
  // Totals over the bound even though each part is under it.
  const huge = '{"type":"message","usage":{"input_tokens":600000000,"cache_read_input_tokens":600000000,"output_tokens":1}}';
  t.match(await meterBody('anthropic', Buffer.from(huge)), { ok: false, reason: 'usage_unreadable', detail: /implausible/ });
  // A usage block without any count, and a usage that is not an object.
  t.match(await meterBody('openai', Buffer.from('{"usage":{"total_tokens":5}}')), { ok: false, reason: 'usage_unreadable', detail: /no token counts/ });
  t.match(await meterBody('openai', Buffer.from('{"usage":"lots"}')), { ok: false, reason: 'usage_missing' });
  t.match(await meterBody('anthropic', Buffer.from('{"type":"message_delta","usage":{"output_tokens":5}}')), {
    ok: false,
    reason: 'usage_unreadable',
    detail: /never reported input_tokens/,
  });
});

t.test('malformed bodies are usage_unreadable, never a throw', async (t) => {
  t.match(await meterBody('openai', Buffer.from('{"usage":{"prompt_tokens":1,'), { contentType: JSON_TYPE }), {
    ok: false,
    reason: 'usage_unreadable',
    detail: /not valid JSON/,
  });
  const sse = 'data: {"choices":[],"usage":{"prompt_tokens":1,\n\ndata: [DONE]\n\n';
  t.match(await meterBody('openai', Buffer.from(sse), { contentType: SSE }), { ok: false, reason: 'usage_unreadable', detail: /not valid JSON/ });
  // Garbage that is not even an event stream carries no usage.
  t.match(await meterBody('openai', Buffer.from([0xff, 0xfe, 0, 1, 2, 0x0a, 0x0a]), { contentType: SSE }), {
    ok: false,
    reason: 'usage_missing',
  });
  // A corrupt gzip body.
  const gz = gzipSync(fixture('openai-chat.json'));
  gz[gz.length >> 1] ^= 0xff;
  t.match(await meterBody('openai', gz, { contentType: JSON_TYPE, contentEncoding: 'gzip' }), { ok: false, reason: 'usage_unreadable' });
  t.match(await meterBody('openai', Buffer.from('not gzip at all'), { contentEncoding: 'gzip' }), {
    ok: false,
    reason: 'usage_unreadable',
    detail: /gzip body could not be decoded/,
  });
  // Wrong calls do not throw either.
  const m = createUsageMeter('openai');
  t.doesNotThrow(() => m.push(null as unknown as Uint8Array));
  t.match(await m.end(), { ok: false, reason: 'usage_unreadable', detail: /meter failed/ });
});

t.test('oversize bodies and events are usage_too_large and release their buffers', async (t) => {
  const body = fixture('openai-chat.json');
  const m = createUsageMeter('openai', { contentType: JSON_TYPE, maxBufferBytes: 200 });
  for (const part of chunks(body, { seed: 3, maxChunk: 50 })) m.push(part);
  t.equal(m.bufferedBytes(), 0, 'buffer dropped once over the bound');
  t.ok(m.peakBufferedBytes() <= 200);
  t.match(await m.end(), { ok: false, reason: 'usage_too_large', detail: /exceeds 200 bytes/ });

  const bigEvent = `data: {"choices":[{"delta":{"content":"${'x'.repeat(5000)}"}}]}\n\n`;
  t.match(await meterBody('openai', Buffer.from(bigEvent), { contentType: SSE, maxBufferBytes: 4096 }), {
    ok: false,
    reason: 'usage_too_large',
  });

  // A gzip bomb: 16 MiB of JSON whitespace in a tiny body stops at the bound.
  const bomb = gzipSync(Buffer.alloc(16 * 1024 * 1024, 0x20), { level: 9 });
  t.ok(bomb.length < 32 * 1024);
  const b = createUsageMeter('openai', { contentType: JSON_TYPE, contentEncoding: 'gzip', maxBufferBytes: 1024 * 1024 });
  const r = await feed(b, [bomb]);
  t.match(r, { ok: false, reason: 'usage_too_large' });
  t.ok(b.peakBufferedBytes() <= 1024 * 1024);
});

t.test('encodings and content types the meter cannot read', async (t) => {
  const body = fixture('openai-chat.json');
  for (const enc of ['zstd', 'compress', 'gzip, br', 'br, identity, gzip']) {
    t.match(await meterBody('openai', body, { contentEncoding: enc }), { ok: false, reason: 'usage_encoding_unsupported' }, enc);
  }
  for (const enc of ['identity', ' ', 'IDENTITY']) {
    t.match(await meterBody('openai', body, { contentEncoding: enc }), { ok: true }, `"${enc}"`);
  }
  t.match(await meterBody('openai', body, { contentEncoding: 'GZip' }), { ok: false, reason: 'usage_unreadable' }, 'says gzip, is not');
  t.match(await meterBody('openai', Buffer.from([0xff, 0xf3]), { contentType: 'audio/mpeg' }), { ok: false, reason: 'usage_missing', detail: /audio\/mpeg/ });
  t.match(await meterBody('openai', body, { contentType: 'application/vnd.example+json' }), { ok: true });
});

t.test('empty bodies, end twice, push after end', async (t) => {
  t.match(await createUsageMeter('gemini').end(), { ok: false, reason: 'usage_missing', detail: /empty/ });
  t.match(await createUsageMeter('gemini', { contentEncoding: 'br' }).end(), { ok: false, reason: 'usage_missing', detail: /empty/ });
  const m = createUsageMeter('openai', { contentType: JSON_TYPE });
  m.push(fixture('openai-chat.json'));
  const first = m.end();
  m.push(Buffer.from('garbage'));
  t.equal(m.end(), first, 'same promise');
  t.match(await first, { ok: true, usage: { inputTokens: 19 } });
});

t.test('drained() resolves whether or not the decompressor is behind', async (t) => {
  const plain = createUsageMeter('openai');
  await plain.drained();
  const gz = gzipSync(fixture('openai-chat.json'));
  const m = createUsageMeter('openai', { contentType: JSON_TYPE, contentEncoding: 'gzip' });
  t.equal(m.push(gz.subarray(0, 10)), true, 'a small backlog needs no wait');
  await m.drained(); // must not wait for a 'drain' that will never come
  m.push(gz.subarray(10));
  await m.drained();
  t.match(await m.end(), { ok: true, usage: { inputTokens: 19, outputTokens: 10 } });
  await m.drained();
});
