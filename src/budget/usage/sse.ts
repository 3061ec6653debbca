/**
 * Incremental, bounded Server-Sent Events parser (WHATWG HTML "event stream interpretation").
 * Works on bytes: lines end at LF, CR or CRLF (a CRLF split across chunks is one terminator),
 * and a line is decoded as UTF-8 only once it is complete, so a chunk boundary inside a
 * multi-byte character is harmless. It keeps only the unfinished line and the current event's
 * data; `maxEventBytes` bounds both together. Comments (`:`), `id` and `retry` are skipped.
 */

const LF = 0x0a;
const CR = 0x0d;
const COLON = 0x3a;
const SPACE = 0x20;
/** Event names longer than this are cut: they are labels, not payload. */
const MAX_EVENT_NAME = 128;

export interface SseEvent {
  /** The `event:` field, or `message` when absent. */
  event: string;
  /** `data:` lines joined with LF. */
  data: string;
}

export class SseParser {
  private readonly onEvent: (event: SseEvent) => void;
  private readonly maxEventBytes: number;
  /** Bytes of the line not yet terminated (copies; the caller's chunks are not retained). */
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  /** The previous chunk ended in CR: a LF starting the next chunk belongs to it. */
  private afterCR = false;
  private firstLine = true;
  private eventName = '';
  private dataLines: string[] = [];
  private dataBytes = 0;
  private overLimit = false;

  constructor(onEvent: (event: SseEvent) => void, maxEventBytes: number) {
    this.onEvent = onEvent;
    this.maxEventBytes = maxEventBytes;
  }

  /** True once an event (or unterminated line) outgrew the bound; the parser then ignores input. */
  get tooLarge(): boolean {
    return this.overLimit;
  }

  /** Bytes held for the unfinished line and the current event's data. */
  bufferedBytes(): number {
    return this.pendingBytes + this.dataBytes;
  }

  push(buf: Buffer): void {
    if (this.overLimit || buf.length === 0) return;
    let pos = 0;
    if (this.afterCR) {
      this.afterCR = false;
      if (buf[0] === LF) pos = 1;
    }
    // Next LF / CR at or after pos; recomputed only when passed, so a chunk is scanned once.
    let nextLF = buf.indexOf(LF, pos);
    let nextCR = buf.indexOf(CR, pos);
    while (pos < buf.length) {
      if (nextLF !== -1 && nextLF < pos) nextLF = buf.indexOf(LF, pos);
      if (nextCR !== -1 && nextCR < pos) nextCR = buf.indexOf(CR, pos);
      const end = nextLF === -1 ? nextCR : nextCR === -1 ? nextLF : Math.min(nextLF, nextCR);
      if (end === -1) break;
      this.completeLine(buf.subarray(pos, end));
      if (this.overLimit) return;
      if (buf[end] === CR) {
        if (end + 1 === buf.length) this.afterCR = true;
        else if (buf[end + 1] === LF) {
          pos = end + 2;
          continue;
        }
      }
      pos = end + 1;
    }
    if (pos < buf.length) {
      const rest = Buffer.from(buf.subarray(pos)); // copy: the caller may reuse its chunk
      this.pending.push(rest);
      this.pendingBytes += rest.length;
      this.checkBound();
    }
  }

  /**
   * End of stream. Lenient where the spec discards: a final line without terminator and a
   * final event without the blank line are still interpreted (a cut stream keeps what it said).
   */
  end(): void {
    if (this.overLimit) return;
    if (this.pendingBytes > 0) this.completeLine(Buffer.alloc(0));
    if (!this.overLimit) this.dispatch();
  }

  private checkBound(): void {
    if (this.pendingBytes + this.dataBytes > this.maxEventBytes) {
      this.overLimit = true;
      this.pending = [];
      this.pendingBytes = 0;
      this.dataLines = [];
      this.dataBytes = 0;
    }
  }

  private completeLine(tail: Buffer): void {
    let line = tail;
    if (this.pendingBytes > 0) {
      this.pending.push(tail);
      line = Buffer.concat(this.pending, this.pendingBytes + tail.length);
      this.pending = [];
      this.pendingBytes = 0;
    }
    if (this.firstLine) {
      this.firstLine = false;
      // A UTF-8 byte order mark before the first line is not part of it.
      if (line.length >= 3 && line[0] === 0xef && line[1] === 0xbb && line[2] === 0xbf) line = line.subarray(3);
    }
    this.interpretLine(line);
  }

  private interpretLine(line: Buffer): void {
    if (line.length === 0) {
      this.dispatch();
      return;
    }
    if (line[0] === COLON) return; // comment (keep-alive)
    const colon = line.indexOf(COLON);
    const nameEnd = colon === -1 ? line.length : colon;
    let valueStart = colon === -1 ? line.length : colon + 1;
    if (line[valueStart] === SPACE) valueStart++;
    if (nameEnd === 4 && line[0] === 0x64 && line[1] === 0x61 && line[2] === 0x74 && line[3] === 0x61) {
      // "data"
      this.dataLines.push(line.toString('utf8', valueStart));
      this.dataBytes += line.length - valueStart + 1;
      this.checkBound();
    } else if (nameEnd === 5 && line.toString('latin1', 0, 5) === 'event') {
      this.eventName = line.toString('utf8', valueStart, Math.min(line.length, valueStart + MAX_EVENT_NAME));
    }
  }

  private dispatch(): void {
    const lines = this.dataLines;
    const event = this.eventName || 'message';
    this.dataLines = [];
    this.dataBytes = 0;
    this.eventName = '';
    if (lines.length === 0) return;
    this.onEvent({ event, data: lines.length === 1 ? lines[0]! : lines.join('\n') });
  }
}
