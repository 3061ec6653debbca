/**
 * This sidecar's evidence for one identity generation: produced once per SVID (bound to its
 * key), on the first request that needs it, and on demand over a peer's nonce.
 */
import { prepareEvidence, type Attester, type PreparedEvidence } from '../../attestation/attester.js';

export interface SessionEvidence {
  /** The generation's evidence once it was produced (the warm path reads it without waiting). */
  readonly ready: PreparedEvidence | undefined;
  /** The generation's evidence; a failed production is retried on the next call. */
  get(): Promise<PreparedEvidence>;
  /** Fresh evidence over a peer's nonce (never cached: a nonce is used once). */
  fresh(nonce: Uint8Array): Promise<PreparedEvidence>;
}

export class GenerationEvidence implements SessionEvidence {
  ready: PreparedEvidence | undefined = undefined;
  private pending: Promise<PreparedEvidence> | undefined = undefined;

  constructor(
    private readonly attester: Attester,
    readonly generation: number,
    /** The generation's public key, which the evidence binds. */
    private readonly spki: Uint8Array,
  ) {}

  get(): Promise<PreparedEvidence> {
    if (this.pending === undefined) {
      const pending = this.attester.produce(this.spki).then(prepareEvidence);
      this.pending = pending;
      pending.then(
        (p) => (this.ready = p),
        () => {
          if (this.pending === pending) this.pending = undefined;
        },
      );
    }
    return this.pending;
  }

  fresh(nonce: Uint8Array): Promise<PreparedEvidence> {
    return this.attester.produce(this.spki, nonce).then(prepareEvidence);
  }
}
