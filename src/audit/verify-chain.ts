/** The verifier's state for one chain: where it started and its last record. */

export interface ChainReport {
  /** The chain's ID (`chain` in each line); undefined for logs written before chain IDs. */
  id: string | undefined;
  sidecar: string | undefined;
  /** The input line of its first record. */
  line: number;
  records: number;
  firstSeq: number;
  firstPrev: string;
  lastSeq: number;
  headHash: string;
}

export class ChainState {
  records = 0;
  firstSeq: number | undefined;
  firstPrev: string | undefined;
  lastSeq: number | undefined;
  lastHash: string | undefined;
  lastLine = 0;
  anchorSeqSeen = false;
  anchorMatched = false;

  constructor(
    readonly id: string | undefined,
    readonly sidecar: string | undefined,
    readonly line: number,
  ) {}

  add(seq: number, prev: string, hash: string, line: number): void {
    if (this.records === 0) {
      this.firstSeq = seq;
      this.firstPrev = prev;
    }
    this.records++;
    this.lastSeq = seq;
    this.lastHash = hash;
    this.lastLine = line;
  }

  /** Called for a record whose seq matches the anchor (or for every record when it names only a head). */
  noteAnchor(want: { seq?: number; head?: string }, hash: string): void {
    if (want.seq !== undefined) this.anchorSeqSeen = true;
    if (want.head === undefined || want.head === hash) this.anchorMatched = true;
  }

  describe(): string {
    const parts = [this.sidecar !== undefined ? `sidecar ${this.sidecar}` : undefined, this.id !== undefined ? `chain ${this.id}` : undefined];
    const named = parts.filter(Boolean).join(' ');
    return named ? `the chain of ${named}` : 'the chain';
  }

  summary(): ChainReport {
    return {
      id: this.id,
      sidecar: this.sidecar,
      line: this.line,
      records: this.records,
      firstSeq: this.firstSeq!,
      firstPrev: this.firstPrev!,
      lastSeq: this.lastSeq!,
      headHash: this.lastHash!,
    };
  }
}
