/**
 * Attesters produce this sidecar's own evidence, bound to its SVID key. Evidence is produced
 * once per SVID (and on demand for a verifier's nonce), never per request.
 */
import { createHash, createPrivateKey, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { bindingUserData } from './binding.js';
import { encodeEvidence, type Evidence } from './envelope.js';
import { generateSimKey, signSimReport } from './sim/report.js';
import type { EvidenceType } from './types.js';

export interface Attester {
  readonly type: EvidenceType;
  /** Evidence whose user data binds `spki` (and `nonce`, when a verifier asked for one). */
  produce(spki: Uint8Array, nonce?: Uint8Array): Promise<Evidence>;
  close?(): Promise<void>;
}

/** Evidence ready to send: the header value and its id (what `attest-evidence-ref` carries). */
export interface PreparedEvidence {
  readonly header: string;
  readonly id: string;
}

export function prepareEvidence(ev: Evidence): PreparedEvidence {
  const header = encodeEvidence(ev);
  return { header, id: evidenceId(header) };
}

/** Short, collision-resistant id of an envelope (base64url of the first 16 bytes of SHA-256). */
export function evidenceId(header: string): string {
  return createHash('sha256').update(header).digest().subarray(0, 16).toString('base64url');
}

export interface SimAttesterOptions {
  /** PKCS#8 PEM file of the sim signing key; a fresh in-memory key when absent. */
  keyFile?: string;
  key?: KeyObject;
  measurement: string; // hex, 48 bytes
  guestSvn?: number;
  debug?: boolean;
  tcb?: bigint;
  chipId?: string; // hex, 64 bytes
}

/** The development TEE: a local key signs a report (see src/attestation/sim/report.ts). */
export class SimAttester implements Attester {
  readonly type = 'sim' as const;
  private readonly key: KeyObject;

  constructor(private readonly opts: SimAttesterOptions) {
    this.key = opts.key ?? (opts.keyFile ? createPrivateKey(readFileSync(opts.keyFile)) : generateSimKey().privateKey);
  }

  async produce(spki: Uint8Array, nonce?: Uint8Array): Promise<Evidence> {
    const report = signSimReport(
      {
        measurement: Buffer.from(this.opts.measurement, 'hex'),
        guestSvn: this.opts.guestSvn ?? 1,
        debug: this.opts.debug ?? false,
        tcb: this.opts.tcb ?? 0n,
        chipId: Buffer.from(this.opts.chipId ?? '', 'hex'),
        reportData: bindingUserData(spki, nonce),
        issuedAtMs: Date.now(),
      },
      this.key,
    );
    return { type: 'sim', parts: { report } };
  }
}
