/**
 * Verifies a hash-chained audit log, streaming: memory is bounded by one line, so a multi-GB
 * file is fine. Pure over bytes; `verifyAuditFile` is the only function that does I/O.
 *
 * What a chain proves: a record edited, removed, inserted or moved anywhere before the last
 * record breaks a `prev` or `seq`. What it cannot prove: that records were not removed from the
 * END (the shortened file is a valid chain). Anchor the head (seq + hash) somewhere else and
 * pass it as `expect` to catch that.
 */
import { createReadStream } from 'node:fs';
import { classifyAuditLine, lineHash, ZERO_HASH } from './chain.js';

export type AuditChainErrorReason =
  | 'malformed_line'
  | 'unchained_record'
  | 'seq_gap'
  | 'seq_out_of_order'
  | 'prev_mismatch'
  | 'chain_restart'
  | 'torn_tail'
  | 'line_too_long'
  | 'anchor_missing'
  | 'anchor_mismatch';

export interface AuditChainError {
  /** 1-based line number in the input (for anchor errors: the number of lines read). */
  line: number;
  seq?: number;
  /** For prev_mismatch: the line whose hash this record's prev should have matched. */
  previousLine?: number;
  reason: AuditChainErrorReason;
  detail: string;
}

export interface AuditVerifyReport {
  ok: boolean;
  /** Chained audit records seen. */
  records: number;
  firstSeq: number | undefined;
  lastSeq: number | undefined;
  /** SHA-256 of the last chained record's line: the value to anchor. */
  headHash: string | undefined;
  /** prev of the first chained record: 64 zeros when the input starts at a chain's genesis. */
  firstPrev: string | undefined;
  /** Chains in the input: more than one only when a mixed stream spans sidecar restarts. */
  segments: number;
  /** Audit lines from before chaining (accepted only before the first chained record). */
  unchained: number;
  /** Non-audit lines skipped (mixed mode only). */
  skipped: number;
  lines: number;
  /** All problems found; `errors` holds the first MAX_REPORTED_ERRORS of them. */
  errorCount: number;
  errors: AuditChainError[];
}

export interface AuditVerifyOptions {
  /**
   * The input interleaves audit lines with other lines (a container's stdout with pino logs):
   * lines that are not audit lines are skipped, and a fresh genesis record starts a new segment
   * (a sidecar restart). Without it every line must be a chained audit record.
   */
  mixed?: boolean;
  /** An externally anchored head: the record `seq` must exist and its line hash to `head`. */
  expect?: { seq?: number; head?: string };
  /** Lines longer than this are reported, not parsed; default 64 MiB. */
  maxLineBytes?: number;
}

export const MAX_REPORTED_ERRORS = 1000;

export class AuditChainVerifier {
  private readonly mixed: boolean;
  private readonly expect: { seq?: number; head?: string } | undefined;
  private readonly maxLineBytes: number;
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private overlong = false;
  private lineNo = 0;
  // Chain state: the last chained record (or the last unchained line before the chain began).
  private lastSeq: number | undefined;
  private lastHash: string | undefined;
  private lastLine = 0;
  /** Damaged audit lines since the last chained record (each may have been a record). */
  private damaged = 0;
  private anchorSeqSeen = false;
  private anchorMatched = false;
  private readonly report: AuditVerifyReport = {
    ok: false,
    records: 0,
    firstSeq: undefined,
    lastSeq: undefined,
    headHash: undefined,
    firstPrev: undefined,
    segments: 0,
    unchained: 0,
    skipped: 0,
    lines: 0,
    errorCount: 0,
    errors: [],
  };

  constructor(opts: AuditVerifyOptions = {}) {
    this.mixed = opts.mixed ?? false;
    this.expect = opts.expect && (opts.expect.seq !== undefined || opts.expect.head !== undefined) ? opts.expect : undefined;
    this.maxLineBytes = opts.maxLineBytes ?? 64 * 1024 * 1024;
  }

  update(chunk: Uint8Array): void {
    const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length);
    let start = 0;
    for (;;) {
      const nl = buf.indexOf(0x0a, start);
      if (nl === -1) {
        this.hold(buf.subarray(start));
        return;
      }
      let line = buf.subarray(start, nl);
      if (this.pending.length > 0 || this.overlong) {
        this.hold(line);
        line = Buffer.concat(this.pending, this.pendingBytes);
      }
      this.lineNo++;
      if (this.overlong) this.fail('line_too_long', `line longer than ${this.maxLineBytes} bytes; not parsed`);
      else this.onLine(line);
      this.pending = [];
      this.pendingBytes = 0;
      this.overlong = false;
      start = nl + 1;
    }
  }

  finish(): AuditVerifyReport {
    const r = this.report;
    if (this.pendingBytes > 0 || this.overlong) {
      this.lineNo++;
      const rest = Buffer.concat(this.pending, this.pendingBytes);
      const looksAudit = this.overlong || rest.includes('"log":"audit"');
      if (this.mixed && !looksAudit) r.skipped++;
      else this.fail('torn_tail', `${this.pendingBytes} bytes after the last newline: a write was cut short (the sidecar drops and audits them on restart)`);
    }
    r.lines = this.lineNo;
    this.checkAnchor();
    r.ok = r.errorCount === 0;
    return r;
  }

  private hold(part: Buffer): void {
    if (this.overlong || part.length === 0) return;
    if (this.pendingBytes + part.length > this.maxLineBytes) {
      this.overlong = true;
      this.pending = [];
      return;
    }
    this.pending.push(Buffer.from(part)); // copy: the caller may reuse its chunk
    this.pendingBytes += part.length;
  }

  private onLine(line: Buffer): void {
    const parsed = classifyAuditLine(line);
    switch (parsed.kind) {
      case 'empty':
        if (this.mixed) this.report.skipped++;
        else this.fail('malformed_line', 'empty line');
        return;
      case 'other':
        if (this.mixed) this.report.skipped++;
        else this.fail('malformed_line', 'valid JSON but not an audit record ("log":"audit" missing)');
        return;
      case 'invalid_json':
        if (this.mixed && !parsed.looksAudit) {
          this.report.skipped++;
          return;
        }
        this.damaged++;
        this.fail('malformed_line', `not valid JSON: ${parsed.detail}`);
        return;
      case 'bad_chain_fields':
        this.damaged++;
        this.fail('malformed_line', parsed.detail);
        return;
      case 'unchained':
        if (this.report.records === 0) {
          // Legacy lines before the first chained record: the chain's start links to the last one.
          this.report.unchained++;
          this.lastHash = lineHash(line);
          this.lastLine = this.lineNo;
        } else {
          this.fail('unchained_record', 'audit record without seq/prev inside a hash chain (inserted?)');
        }
        return;
      case 'chained':
        this.onRecord(parsed.seq, parsed.prev, lineHash(line));
    }
  }

  private onRecord(seq: number, prev: string, hash: string): void {
    const r = this.report;
    const genesis = seq === 1 && prev === ZERO_HASH;
    if (r.records === 0) {
      r.firstSeq = seq;
      r.firstPrev = prev;
      r.segments = 1;
      if (this.lastHash !== undefined && this.damaged === 0 && prev !== this.lastHash) {
        this.fail('prev_mismatch', `the chain's first record does not link to the line before it (line ${this.lastLine})`, seq, this.lastLine);
      }
    } else if (genesis && this.mixed) {
      r.segments++; // a sidecar restart on a shared stdout starts a fresh chain
    } else if (genesis) {
      this.fail('chain_restart', `a new chain (seq 1, prev zeros) inside the file after seq ${this.lastSeq} (line ${this.lastLine})`, seq);
    } else {
      this.checkLink(seq, prev);
    }
    r.records++;
    r.lastSeq = seq;
    r.headHash = hash;
    this.lastSeq = seq;
    this.lastHash = hash;
    this.lastLine = this.lineNo;
    this.damaged = 0;
    if (this.expect && (this.expect.seq === undefined || this.expect.seq === seq)) {
      if (this.expect.seq !== undefined) this.anchorSeqSeen = true;
      if (this.expect.head === undefined || this.expect.head === hash) this.anchorMatched = true;
    }
  }

  /** Checks a record against the one before it; then the caller resyncs on it (no cascades). */
  private checkLink(seq: number, prev: string): void {
    const last = this.lastSeq!;
    const expected = last + 1;
    const linked = prev === this.lastHash;
    if (this.damaged > 0) {
      // Damaged lines in between: fine if they were inserted junk (links to the last record),
      // or if they were records themselves (seq skips exactly them; their hashes are unknown).
      if ((seq === expected && linked) || seq === expected + this.damaged) return;
    }
    const where = `line ${this.lastLine}, seq ${last}`;
    if (seq > expected) {
      this.fail(
        'seq_gap',
        `expected seq ${expected}, found ${seq}: ${seq - expected} record(s) missing after ${where}${linked ? '' : '; prev does not match either'}`,
        seq,
        this.lastLine,
      );
    } else if (seq < expected) {
      this.fail('seq_out_of_order', `seq ${seq} after seq ${last} (${where}): records moved, duplicated or inserted`, seq, this.lastLine);
    } else if (!linked) {
      this.fail(
        'prev_mismatch',
        `prev is not the sha256 of the previous record (${where}): that record was edited, or this one's prev was`,
        seq,
        this.lastLine,
      );
    }
  }

  private checkAnchor(): void {
    const want = this.expect;
    if (!want || this.anchorMatched) return;
    const last = this.report.lastSeq === undefined ? 'no records' : `last seq ${this.report.lastSeq}`;
    if (want.seq !== undefined && this.anchorSeqSeen) {
      this.fail('anchor_mismatch', `record seq ${want.seq} does not hash to the expected head ${want.head}: it was rewritten`, want.seq);
    } else if (want.seq !== undefined) {
      this.fail('anchor_missing', `no record with seq ${want.seq} (${last}): records were removed from the end`, want.seq);
    } else {
      this.fail('anchor_missing', `no record hashes to the expected head ${want.head} (${last}): records were removed from the end or rewritten`);
    }
  }

  private fail(reason: AuditChainErrorReason, detail: string, seq?: number, previousLine?: number): void {
    const r = this.report;
    r.errorCount++;
    if (r.errors.length >= MAX_REPORTED_ERRORS) return;
    const err: AuditChainError = { line: this.lineNo, reason, detail };
    if (seq !== undefined) err.seq = seq;
    if (previousLine !== undefined && previousLine > 0) err.previousLine = previousLine;
    r.errors.push(err);
  }
}

/** Verifies bytes, a string, or a stream of chunks (e.g. a file read stream). */
export async function verifyAuditChain(
  input: Uint8Array | string | AsyncIterable<Uint8Array | string>,
  opts: AuditVerifyOptions = {},
): Promise<AuditVerifyReport> {
  const verifier = new AuditChainVerifier(opts);
  if (typeof input === 'string') verifier.update(Buffer.from(input, 'utf8'));
  else if (input instanceof Uint8Array) verifier.update(input);
  else for await (const chunk of input) verifier.update(typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk);
  return verifier.finish();
}

/** Streams `file` through the verifier (rejects if the file cannot be read). */
export function verifyAuditFile(file: string, opts: AuditVerifyOptions = {}): Promise<AuditVerifyReport> {
  return verifyAuditChain(createReadStream(file, { highWaterMark: 1024 * 1024 }), opts);
}
