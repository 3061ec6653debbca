/** The bounded, incremental SSE parser used by the usage meter. */
import t from 'tap';
import { SseParser, type SseEvent } from '../../src/budget/usage/sse.js';

function parse(chunks: (string | Buffer)[], max = 1 << 20): { events: SseEvent[]; parser: SseParser } {
  const events: SseEvent[] = [];
  const parser = new SseParser((e) => events.push(e), max);
  for (const c of chunks) parser.push(typeof c === 'string' ? Buffer.from(c) : c);
  parser.end();
  return { events, parser };
}

/** Feeds `text` split at every possible single position, and byte by byte. */
function everySplit(text: string): SseEvent[][] {
  const bytes = Buffer.from(text);
  const runs: SseEvent[][] = [];
  for (let i = 0; i <= bytes.length; i++) runs.push(parse([bytes.subarray(0, i), bytes.subarray(i)]).events);
  runs.push(parse([...bytes].map((b) => Buffer.from([b]))).events);
  return runs;
}

t.test('LF, CRLF and CR line endings give the same events', async (t) => {
  const expected = [
    { event: 'message', data: 'one' },
    { event: 'delta', data: 'two\nlines' },
  ];
  for (const eol of ['\n', '\r\n', '\r']) {
    const text = `data: one${eol}${eol}event: delta${eol}data: two${eol}data: lines${eol}${eol}`;
    for (const events of everySplit(text)) t.strictSame(events, expected, JSON.stringify(eol));
  }
});

t.test('a CRLF split across chunks is one line end, not two', async (t) => {
  // If the LF after a chunk-final CR counted as a second line end, the blank line would
  // dispatch "a" early and "b" would be a separate event.
  const { events } = parse(['data: a\r', '\ndata: b\r\n\r\n']);
  t.strictSame(events, [{ event: 'message', data: 'a\nb' }]);
});

t.test('comments, id, retry, unknown fields and field-only lines', async (t) => {
  const text = ': keep-alive\nid: 7\nretry: 1000\nfoo: bar\ndata\ndata:no-space\ndata:  two spaces\n\n: tail comment\n\n';
  const { events } = parse([text]);
  t.strictSame(events, [{ event: 'message', data: '\nno-space\n two spaces' }]);
});

t.test('events without data are not dispatched; event name resets per event', async (t) => {
  const { events } = parse(['event: ping\n\nevent: x\ndata: 1\n\ndata: 2\n\n']);
  t.strictSame(events, [
    { event: 'x', data: '1' },
    { event: 'message', data: '2' },
  ]);
});

t.test('multi-byte UTF-8 split anywhere decodes intact', async (t) => {
  const text = 'data: {"t":"こんにちは 👋🏽 Grüße"}\n\n';
  for (const events of everySplit(text)) t.strictSame(events, [{ event: 'message', data: '{"t":"こんにちは 👋🏽 Grüße"}' }]);
});

t.test('a leading BOM is ignored, also when split', async (t) => {
  const bytes = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('data: x\n\n')]);
  t.strictSame(parse([bytes.subarray(0, 1), bytes.subarray(1, 2), bytes.subarray(2)]).events, [{ event: 'message', data: 'x' }]);
});

t.test('an unterminated final event is still interpreted', async (t) => {
  t.strictSame(parse(['data: last']).events, [{ event: 'message', data: 'last' }]);
  t.strictSame(parse(['data: last\n']).events, [{ event: 'message', data: 'last' }]);
});

t.test('the parser does not retain or depend on the caller chunk', async (t) => {
  const events: SseEvent[] = [];
  const parser = new SseParser((e) => events.push(e), 1024);
  const chunk = Buffer.from('data: abc');
  parser.push(chunk);
  chunk.fill(0x7a); // the caller reuses its buffer
  parser.push(Buffer.from('def\n\n'));
  t.strictSame(events, [{ event: 'message', data: 'abcdef' }]);
});

t.test('bounds: a long line or a big event trips tooLarge and frees its buffers', async (t) => {
  const line = parse(['data: ' + 'x'.repeat(200)], 100);
  t.ok(line.parser.tooLarge, 'unterminated long line');
  t.equal(line.parser.bufferedBytes(), 0);
  t.strictSame(line.events, []);

  const manyLines = parse([Array.from({ length: 20 }, () => 'data: 0123456789\n').join('')], 100);
  t.ok(manyLines.parser.tooLarge, 'many data lines in one event');
  t.strictSame(manyLines.events, []);

  // Events each under the bound pass however many there are.
  const many = parse([Array.from({ length: 1000 }, (_, i) => `data: ${i}\n\n`).join('')], 100);
  t.notOk(many.parser.tooLarge);
  t.equal(many.events.length, 1000);
});
