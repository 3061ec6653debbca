/**
 * Resuming a chain when the sidecar restarts on an existing audit file. Only the tail is read
 * (64 KiB, more only when the last line is longer), never the whole file.
 *
 * - Last line has no newline: it is torn (a crash cut a write short). It is truncated away and
 *   the repair is itself audited, with the dropped bytes' length and SHA-256.
 * - Last complete line is a chained record: seq/prev (and the chain ID) continue from it.
 * - Empty file: a new chain starts with its genesis record (seq 0, prev zeros).
 * - Otherwise (old unchained format, damage): a new chain starts, its genesis record's prev
 *   being the SHA-256 of that line, so the chain is still anchored to what came before.
 */
import { fsyncSync, ftruncateSync, readSync } from 'node:fs';
import { SidecarError } from '../errors.js';
import { classifyAuditLine, isChainId, lineHash, newChainId, ZERO_HASH } from './chain.js';
import type { AuditRecord } from './record.js';

const FIRST_WINDOW = 64 * 1024;
/** A last line longer than this is not one the sink wrote; refuse rather than read without bound. */
export const MAX_TAIL_BYTES = 64 * 1024 * 1024;

export interface FileTail {
  /** The last newline-terminated line (without the newline), if any. */
  lastLine: Buffer | undefined;
  /** Bytes after the last newline (empty when the file ends with one). */
  torn: Buffer;
}

/**
 * Finds the last complete line and the torn remainder in `window`, the last bytes of a file.
 * Returns undefined when the window is too short to tell (and does not start the file).
 */
export function findTail(window: Buffer, startsFile: boolean): FileTail | undefined {
  const nl = window.lastIndexOf(0x0a);
  if (nl === -1) return startsFile ? { lastLine: undefined, torn: window } : undefined;
  // lastIndexOf with a negative offset counts from the end, so nl === 0 is handled apart.
  const before = nl === 0 ? -1 : window.lastIndexOf(0x0a, nl - 1);
  if (before === -1 && !startsFile) return undefined;
  return { lastLine: window.subarray(before + 1, nl), torn: window.subarray(nl + 1) };
}

/** Reads the tail of the open file `fd` of `size` bytes (synchronous: runs once, at start). */
export function readFileTail(fd: number, size: number): FileTail {
  let want = Math.min(size, FIRST_WINDOW);
  for (;;) {
    const window = Buffer.alloc(want);
    let got = 0;
    while (got < want) {
      const n = readSync(fd, window, got, want - got, size - want + got);
      if (n === 0) throw new SidecarError('audit_tail_unreadable', `audit file shrank while reading its tail (${size} bytes expected)`);
      got += n;
    }
    const tail = findTail(window, want === size);
    if (tail) return tail;
    if (want >= MAX_TAIL_BYTES) {
      throw new SidecarError('audit_tail_unreadable', `the last audit line is longer than ${MAX_TAIL_BYTES} bytes; refusing to continue the chain`);
    }
    want = Math.min(size, want * 4, MAX_TAIL_BYTES);
  }
}

export interface ChainResume {
  /** The seq of the last record written (the next record gets seq + 1); -1: a new chain (next is its genesis, seq 0). */
  seq: number;
  /** The chain's ID: the file's own when it continues, else a new one. */
  chain: string;
  /** The SHA-256 of the last line, the next record's prev. */
  head: string;
  /** Truncate the file to this length before appending (drops a torn tail). */
  truncateTo: number | undefined;
  /** Records the sink writes first: the genesis record and/or the tail repair. */
  notes: AuditRecord[];
}

/** The first record of every chain (seq 0). */
export function genesisRecord(chain: string, detail: string, reason = 'chain_genesis'): AuditRecord {
  return { type: 'audit_chain_start', decision: 'allow', reason, detail: `chain ${chain}: ${detail}` };
}

/** Where a chain starts when there is nothing to continue (stdout, an empty file). */
export function freshChain(): ChainResume {
  const chain = newChainId();
  return { seq: -1, chain, head: ZERO_HASH, truncateTo: undefined, notes: [genesisRecord(chain, `new chain (pid ${process.pid})`)] };
}

/** Decides how to continue from a file's tail (pure: no I/O). */
export function planResume(tail: FileTail, size: number): ChainResume {
  const notes: AuditRecord[] = [];
  let seq = -1;
  let head = ZERO_HASH;
  let chain = newChainId();
  if (tail.lastLine) {
    const parsed = classifyAuditLine(tail.lastLine);
    head = lineHash(tail.lastLine);
    if (parsed.kind === 'chained') {
      seq = parsed.seq;
      if (isChainId(parsed.chain)) chain = parsed.chain;
    } else {
      notes.push(
        genesisRecord(
          chain,
          `new chain (pid ${process.pid}); the previous line (${tail.lastLine.length} bytes) is not a chained audit record; prev is its sha256`,
          'unchained_predecessor',
        ),
      );
    }
  } else {
    notes.push(genesisRecord(chain, `new chain (pid ${process.pid})`));
  }
  let truncateTo: number | undefined;
  if (tail.torn.length > 0) {
    truncateTo = size - tail.torn.length;
    notes.push({
      type: 'audit_tail_repaired',
      decision: 'error',
      reason: 'torn_tail',
      detail: `dropped ${tail.torn.length} bytes sha256=${lineHash(tail.torn)}`,
    });
  }
  return { seq, chain, head, truncateTo, notes };
}

/** Reads the tail of `fd`, truncates a torn line away (fsync'd) and says where the chain resumes. */
export function resumeChain(fd: number, size: number): ChainResume {
  if (size === 0) return freshChain();
  const plan = planResume(readFileTail(fd, size), size);
  if (plan.truncateTo !== undefined) {
    ftruncateSync(fd, plan.truncateTo);
    fsyncSync(fd);
  }
  return plan;
}
