/**
 * The meter on long and real streams: 50 MB synthetic SSE bodies (plain and gzip) pass with
 * the meter's buffer bounded by one event, and bodies read off a real HTTP socket with undici
 * (which, like the proxy, hands over the still-encoded bytes), including a connection cut.
 */
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { createGzip, gzipSync } from 'node:zlib';
import t from 'tap';
import { request } from 'undici';
import { createUsageMeter } from '../../src/budget/usage/meter.js';
import { fixture, prng, SSE } from './usage-helpers.js';

const TARGET_BYTES = 50 * 1024 * 1024;

/** A block of whole OpenAI chat chunks (include_usage: each carries `"usage":null`). */
function openaiBlock(): Buffer {
  const words = ['token', ' 🚀', ' données', ' 数据', ' streaming', ' Ω', '\\n', ' \\"quoted\\"'];
  let s = '';
  for (let i = 0; s.length < 60_000; i++) {
    s += `data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":"${words[i % words.length]}"},"finish_reason":null}],"usage":null}\n\n`;
  }
  return Buffer.from(s);
}

/** A block of Anthropic content deltas with keep-alive pings and comments, CRLF framed. */
function anthropicBlock(): Buffer {
  let s = '';
  for (let i = 0; s.length < 60_000; i++) {
    s += `event: content_block_delta\r\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"chunk ${i} — ça 🌍"}}\r\n\r\n`;
    if (i % 50 === 0) s += 'event: ping\r\ndata: {"type": "ping"}\r\n\r\n: comment\r\n\r\n';
  }
  return Buffer.from(s);
}

/** head, then `block` repeated to ~50 MB, then tail, cut into seeded random chunk sizes. */
function* longStream(head: string, block: Buffer, tail: string, seed: number): Generator<Buffer> {
  const rand = prng(seed);
  yield Buffer.from(head);
  let sent = 0;
  let offset = 0;
  while (sent < TARGET_BYTES) {
    const n = Math.min(1 + Math.floor(rand() * 65_536), block.length - offset);
    yield block.subarray(offset, offset + n);
    sent += n;
    offset = (offset + n) % block.length;
  }
  if (offset !== 0) yield block.subarray(offset); // finish the event in flight
  yield Buffer.from(tail);
}

const OPENAI_TAIL =
  'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[],"usage":{"prompt_tokens":4242,"completion_tokens":987654,"total_tokens":991896}}\n\ndata: [DONE]\n\n';
const ANTHROPIC_HEAD =
  'event: message_start\r\ndata: {"type":"message_start","message":{"model":"claude-x","usage":{"input_tokens":321,"output_tokens":1}}}\r\n\r\n';
const ANTHROPIC_TAIL =
  'event: message_delta\r\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":765432}}\r\n\r\nevent: message_stop\r\ndata: {"type":"message_stop"}\r\n\r\n';

t.test('50 MB of OpenAI SSE: usage read, buffer bounded by one event', async (t) => {
  // A 4 KiB bound: every event fits, the stream as a whole is 12,800 times larger.
  const meter = createUsageMeter('openai', { contentType: SSE, maxBufferBytes: 4096 });
  let total = 0;
  let refused = 0;
  for (const chunk of longStream('', openaiBlock(), OPENAI_TAIL, 42)) {
    total += chunk.length;
    if (!meter.push(chunk)) refused++;
    if (meter.bufferedBytes() > 4096) t.fail(`buffer grew to ${meter.bufferedBytes()}`);
  }
  t.equal(refused, 0, 'no backpressure without an encoding');
  t.ok(total >= TARGET_BYTES, `${total} bytes streamed`);
  t.ok(meter.peakBufferedBytes() > 0 && meter.peakBufferedBytes() <= 512, `peak buffer ${meter.peakBufferedBytes()} bytes`);
  t.strictSame(await meter.end(), { ok: true, usage: { inputTokens: 4242, outputTokens: 987654, model: 'gpt-4o-mini' } });
});

t.test('50 MB of gzip-encoded Anthropic SSE, decompressed as it streams', async (t) => {
  const meter = createUsageMeter('anthropic', { contentType: 'text/event-stream', contentEncoding: 'gzip', maxBufferBytes: 4096 });
  const gzip = Readable.from(longStream(ANTHROPIC_HEAD, anthropicBlock(), ANTHROPIC_TAIL, 7)).pipe(createGzip({ level: 1 }));
  let compressed = 0;
  let waits = 0;
  for await (const chunk of gzip as AsyncIterable<Buffer>) {
    compressed += chunk.length;
    if (!meter.push(chunk)) {
      waits++;
      await meter.drained();
    }
    if (meter.bufferedBytes() > 4096) t.fail(`buffer grew to ${meter.bufferedBytes()}`);
  }
  t.ok(compressed > 0 && compressed < TARGET_BYTES, `${compressed} compressed bytes (${waits} backpressure waits)`);
  t.ok(meter.peakBufferedBytes() <= 512, `peak buffer ${meter.peakBufferedBytes()} bytes`);
  t.strictSame(await meter.end(), { ok: true, usage: { inputTokens: 321, outputTokens: 765432, model: 'claude-x' } });
});

t.test('a pusher that ignores backpressure gets usage_too_large, not unbounded memory', async (t) => {
  // 8 MiB of gzip pushed in one synchronous burst with a 1 MiB bound on the backlog.
  const gz = gzipSync(Buffer.concat(Array.from({ length: 140 }, () => anthropicBlock())), { level: 0 });
  const meter = createUsageMeter('anthropic', { contentType: SSE, contentEncoding: 'gzip', maxBacklogBytes: 1024 * 1024 });
  for (let i = 0; i < gz.length; i += 16 * 1024) meter.push(gz.subarray(i, i + 16 * 1024));
  t.match(await meter.end(), { ok: false, reason: 'usage_too_large', detail: /backlog/ });
});

/** Serves `body` in small pieces with pauses, optionally cutting the connection part-way. */
async function serve(body: Buffer, headers: Record<string, string>, cutAt?: number): Promise<{ server: Server; url: string }> {
  const server = createServer((req, res) => {
    res.writeHead(200, headers);
    let i = 0;
    const next = (): void => {
      if (cutAt !== undefined && i >= cutAt) {
        res.socket?.destroy();
        return;
      }
      if (i >= body.length) {
        res.end();
        return;
      }
      res.write(body.subarray(i, i + 37));
      i += 37;
      setImmediate(next);
    };
    next();
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/messages` };
}

t.test('over a real socket: a gzip SSE body read with undici, as the proxy does', async (t) => {
  const gz = gzipSync(fixture('anthropic-stream.sse'));
  const { server, url } = await serve(gz, { 'content-type': 'text/event-stream', 'content-encoding': 'gzip' });
  t.teardown(() => server.close());
  const res = await request(url);
  const meter = createUsageMeter('anthropic', {
    contentType: String(res.headers['content-type']),
    contentEncoding: String(res.headers['content-encoding']),
  });
  const forwarded: Buffer[] = [];
  for await (const chunk of res.body) {
    forwarded.push(chunk as Buffer);
    if (!meter.push(chunk as Buffer)) await meter.drained();
  }
  t.same(Buffer.concat(forwarded), gz, 'undici handed over the encoded bytes untouched');
  t.strictSame(await meter.end(), { ok: true, usage: { inputTokens: 2272, outputTokens: 89, model: 'claude-sonnet-4-5-20250929' } });
});

t.test('over a real socket: the upstream cuts the stream mid-way', async (t) => {
  const body = fixture('anthropic-stream.sse');
  const { server, url } = await serve(body, { 'content-type': 'text/event-stream' }, Math.floor(body.length / 2));
  t.teardown(() => server.close());
  const res = await request(url);
  const meter = createUsageMeter('anthropic', { contentType: String(res.headers['content-type']) });
  const err = await (async () => {
    try {
      for await (const chunk of res.body) meter.push(chunk as Buffer);
    } catch (e) {
      return e;
    }
    return undefined;
  })();
  t.ok(err, 'the body read failed');
  t.match(await meter.end(), { ok: false, reason: 'usage_missing', partial: { inputTokens: 2272, outputTokens: 2 } });
});
