/**
 * The development TEE's attester: a local key signs a sim report bound to the SVID key.
 * It imports no envelope code, so the kind registry can load it without a cycle.
 */
import { createPrivateKey, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Attester } from '../attester.js';
import { bindingUserData } from '../binding.js';
import type { Evidence } from '../envelope.js';
import { generateSimKey, signSimReport } from './report.js';

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
