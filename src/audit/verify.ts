/**
 * Verifies a hash-chained audit log, streaming: memory is bounded by one line (plus one small
 * state per chain in mixed mode), so a multi-GB file is fine. Pure over bytes;
 * `verifyAuditFile` is the only function that does I/O.
 *
 * What a chain proves: a record edited, removed, inserted or moved anywhere breaks a `prev` or
 * `seq`, and a chain must begin with its genesis record (seq 0), so removing records from the
 * START is caught too. A log that legitimately starts later (rotated) is checked from an
 * anchor (`from`: a record's seq and hash noted earlier). What it cannot prove: that records
 * were not removed from the END (the shortened file is a valid chain), nor that a whole chain
 * with its own genesis is genuine (anyone can compute SHA-256). Anchor the head (chain ID, seq
 * and hash) somewhere else and pass it as `expect` to catch those.
 */
import { createReadStream } from 'node:fs';
import { classifyAuditLine, lineHash, ZERO_HASH } from './chain.js';
import { ChainState, type ChainReport } from './verify-chain.js';

export type AuditChainErrorReason =
  | 'malformed_line'
  | 'unchained_record'
  | 'seq_gap'
  | 'seq_out_of_order'
  | 'prev_mismatch'
  | 'chain_restart'
  | 'chain_start_missing'
  | 'torn_tail'
  | 'line_too_long'
  | 'anchor_missing'
  | 'anchor_mismatch';

export interface AuditChainError {
  /** 1-based line number in the input (for anchor errors: the number of lines read). */
  line: number;
  seq?: number;
  /** The chain the problem is in (mixed mode, when the record names one). */
  chain?: string;
  /** For prev_mismatch: the line whose hash this record's prev should have matched. */
  previousLine?: number;
  reason: AuditChainErrorReason;
  detail: string;
}

export interface AuditVerifyReport {
  ok: boolean;
  /** Chained audit records seen (all chains). */
  records: number;
  /** The first chain's first seq; 0 when the input starts at a genesis record. */
  firstSeq: number | undefined;
  /** The last chain's last seq and head (the values to anchor when there is one chain). */
  lastSeq: number | undefined;
  headHash: string | undefined;
  /** prev of the first chained record: 64 zeros when the input starts at a chain's genesis. */
  firstPrev: string | undefined;
  /** Chains in the input (mixed mode: one per sidecar start; otherwise 1). */
  segments: number;
  /** Each chain: ID, sidecar, first/last seq and head, in order of first appearance. */
  chains: ChainReport[];
  /** Audit lines from before chaining (accepted only before the first chained record). */
  unchained: number;
  /** Non-audit lines skipped (mixed mode only), and records of other chains (with `chain`). */
  skipped: number;
  lines: number;
  /** All problems found; `errors` holds the first MAX_REPORTED_ERRORS of them. */
  errorCount: number;
  errors: AuditChainError[];
}

export interface AuditVerifyOptions {
  /**
   * The input interleaves audit lines with other lines (a container's stdout with pino logs,
   * several sidecars on one stream): lines that are not audit records are skipped, and records
   * are grouped into chains by their `chain` ID (else by sidecar name), each verified on its
   * own. Without it every line must be a chained audit record of one chain.
   */
  mixed?: boolean;
  /** Verify only this chain (its ID); records of other chains are skipped. */
  chain?: string;
  /** An externally anchored head: the record `seq` must exist and its line hash to `head`. */
  expect?: { seq?: number; head?: string };
  /**
   * Where the input starts when it does not start at the genesis record (a rotated log): a
   * record seen earlier, by seq and hash. The input must start with that record or the next.
   */
  from?: { seq: number; hash: string };
  /** Lines longer than this are reported, not parsed; default 64 MiB. */
  maxLineBytes?: number;
}

export const MAX_REPORTED_ERRORS = 1000;
/** Mixed mode keeps one small state per chain; more chains than this in one input are refused. */
export const MAX_CHAINS = 100_000;

export class AuditChainVerifier {
  private readonly mixed: boolean;
  private readonly only: string | undefined;
  private readonly expect: { seq?: number; head?: string } | undefined;
  private readonly from: { seq: number; hash: string } | undefined;
  private readonly maxLineBytes: number;
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private overlong = false;
  private lineNo = 0;
  /** Non-mixed mode: the one chain; mixed mode: by chain ID (or sidecar name). */
  private readonly chains = new Map<string, ChainState>();
  /** Every chain, in order of first appearance. */
  private readonly allChains: ChainState[] = [];
  /** The last unchained legacy line before any chained record: a genesis may link to it. */
  private legacyHash: string | undefined;
  private legacyLine = 0;
  /** Damaged audit lines since the last chained record (each may have been a record). */
  private damaged = 0;
  private tooManyChains = false;
  private readonly report: AuditVerifyReport = {
    ok: false,
    records: 0,
    firstSeq: undefined,
    lastSeq: undefined,
    headHash: undefined,
    firstPrev: undefined,
    segments: 0,
    chains: [],
    unchained: 0,
    skipped: 0,
    lines: 0,
    errorCount: 0,
    errors: [],
  };

  constructor(opts: AuditVerifyOptions = {}) {
    this.mixed = opts.mixed ?? false;
    this.only = opts.chain;
    this.expect = opts.expect && (opts.expect.seq !== undefined || opts.expect.head !== undefined) ? opts.expect : undefined;
    this.from = opts.from;
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
    const report = this.report;
    if (this.pendingBytes > 0 || this.overlong) {
      this.lineNo++;
      const rest = Buffer.concat(this.pending, this.pendingBytes);
      const looksAudit = this.overlong || rest.includes('"log":"audit"');
      if (this.mixed && !looksAudit) report.skipped++;
      else this.fail('torn_tail', `${this.pendingBytes} bytes after the last newline: a write was cut short (the sidecar drops and audits them on restart)`);
    }
    report.lines = this.lineNo;
    report.chains = this.allChains.map((c) => c.summary());
    report.segments = report.chains.length;
    const first = report.chains[0];
    const last = report.chains[report.chains.length - 1];
    report.firstSeq = first?.firstSeq;
    report.firstPrev = first?.firstPrev;
    report.lastSeq = last?.lastSeq;
    report.headHash = last?.headHash;
    this.checkAnchor();
    report.ok = report.errorCount === 0;
    return report;
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
          this.legacyHash = lineHash(line);
          this.legacyLine = this.lineNo;
        } else {
          this.fail('unchained_record', 'audit record without seq/prev inside a hash chain (inserted?)');
        }
        return;
      case 'chained': {
        const key = this.mixed ? (parsed.chain ?? (parsed.sidecar !== undefined ? `sidecar:${parsed.sidecar}` : '')) : '';
        if (this.only !== undefined && parsed.chain !== this.only) {
          this.report.skipped++;
          return;
        }
        this.onRecord(key, parsed.chain, parsed.sidecar, parsed.seq, parsed.prev, lineHash(line));
      }
    }
  }

  private onRecord(key: string, id: string | undefined, sidecar: string | undefined, seq: number, prev: string, hash: string): void {
    let chain = this.chains.get(key);
    // A restart in a log written before chain IDs: its chain began again at seq 1.
    if (chain && id === undefined && seq === 1 && prev === ZERO_HASH && this.mixed) chain = undefined;
    if (!chain) {
      if (this.allChains.length >= MAX_CHAINS) {
        if (!this.tooManyChains) this.fail('malformed_line', `more than ${MAX_CHAINS} chains in one input; the rest are not verified`, seq);
        this.tooManyChains = true;
        this.report.skipped++;
        return;
      }
      chain = new ChainState(id, sidecar, this.lineNo);
      this.chains.set(key, chain);
      this.allChains.push(chain);
      this.checkStart(chain, seq, prev, hash);
    } else if (seq === 0) {
      const where = `after seq ${chain.lastSeq} (line ${chain.lastLine})`;
      this.fail('chain_restart', `a second genesis record (seq 0) in ${chain.describe()} ${where}: a chain starts once`, seq, undefined, id);
    } else {
      this.checkLink(chain, seq, prev, id);
    }
    this.report.records++;
    chain.add(seq, prev, hash, this.lineNo);
    this.damaged = 0;
    if (this.expect && (this.expect.seq === undefined || this.expect.seq === seq)) chain.noteAnchor(this.expect, hash);
  }

  /** A chain's first record: its genesis, a record after an anchor, or records were removed before it. */
  private checkStart(chain: ChainState, seq: number, prev: string, hash: string): void {
    const from = this.from;
    if (from) {
      if ((seq === from.seq && hash === from.hash) || (seq === from.seq + 1 && prev === from.hash)) return;
      this.fail(
        'chain_start_missing',
        `${chain.describe()} starts at seq ${seq}, not at the anchored record seq ${from.seq} (sha256 ${from.hash}) or the one after it`,
        seq,
        undefined,
        chain.id,
      );
      return;
    }
    if (seq === 0) {
      // A genesis after legacy lines links to the last of them; otherwise its prev is zeros.
      const expected = this.legacyHash !== undefined && this.report.records === 0 ? this.legacyHash : ZERO_HASH;
      if (prev !== expected && this.damaged === 0) {
        const what = expected === ZERO_HASH ? '64 zeros' : `the sha256 of line ${this.legacyLine}`;
        this.fail('prev_mismatch', `the genesis record's prev is not ${what}`, seq, expected === ZERO_HASH ? undefined : this.legacyLine, chain.id);
      }
      return;
    }
    // Logs written before genesis records began at seq 1 with prev zeros.
    if (seq === 1 && prev === ZERO_HASH) return;
    this.fail(
      'chain_start_missing',
      `${chain.describe()} starts at seq ${seq} without its genesis record (seq 0): ${seq} record(s) before it were removed, ` +
        'or the log was rotated (then verify from an anchored record: --from SEQ:SHA256)',
      seq,
      undefined,
      chain.id,
    );
  }

  /** Checks a record against the one before it in its chain; then the chain resyncs on it (no cascades). */
  private checkLink(chain: ChainState, seq: number, prev: string, id: string | undefined): void {
    const last = chain.lastSeq!;
    const expected = last + 1;
    const linked = prev === chain.lastHash;
    if (this.damaged > 0) {
      // Damaged lines in between: fine if they were inserted junk (links to the last record),
      // or if they were records themselves (seq skips exactly them; their hashes are unknown).
      if ((seq === expected && linked) || seq === expected + this.damaged) return;
    }
    const where = `line ${chain.lastLine}, seq ${last}`;
    if (seq > expected) {
      this.fail(
        'seq_gap',
        `expected seq ${expected}, found ${seq}: ${seq - expected} record(s) missing after ${where}${linked ? '' : '; prev does not match either'}`,
        seq,
        chain.lastLine,
        id,
      );
    } else if (seq < expected) {
      this.fail('seq_out_of_order', `seq ${seq} after seq ${last} (${where}): records moved, duplicated or inserted`, seq, chain.lastLine, id);
    } else if (!linked) {
      this.fail(
        'prev_mismatch',
        `prev is not the sha256 of the previous record (${where}): that record was edited, or this one's prev was`,
        seq,
        chain.lastLine,
        id,
      );
    }
  }

  private checkAnchor(): void {
    const want = this.expect;
    if (!want) return;
    const states = this.allChains;
    if (states.some((c) => c.anchorMatched)) return;
    const report = this.report;
    const last = report.lastSeq === undefined ? 'no records' : `last seq ${report.lastSeq}`;
    if (want.seq !== undefined && states.some((c) => c.anchorSeqSeen)) {
      this.fail('anchor_mismatch', `record seq ${want.seq} does not hash to the expected head ${want.head}: it was rewritten`, want.seq);
    } else if (want.seq !== undefined) {
      this.fail('anchor_missing', `no record with seq ${want.seq} (${last}): records were removed from the end`, want.seq);
    } else {
      this.fail('anchor_missing', `no record hashes to the expected head ${want.head} (${last}): records were removed from the end or rewritten`);
    }
  }

  private fail(reason: AuditChainErrorReason, detail: string, seq?: number, previousLine?: number, chain?: string): void {
    const report = this.report;
    report.errorCount++;
    if (report.errors.length >= MAX_REPORTED_ERRORS) return;
    const err: AuditChainError = { line: this.lineNo, reason, detail };
    if (seq !== undefined) err.seq = seq;
    if (chain !== undefined && this.mixed) err.chain = chain;
    if (previousLine !== undefined && previousLine > 0) err.previousLine = previousLine;
    report.errors.push(err);
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
