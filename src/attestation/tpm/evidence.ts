/**
 * TPM evidence on the wire: envelope parts <-> verifier input, and the attester that produces
 * them with our own TPM commands. extraData carries the 32-byte SVID-key binding.
 */
import type { Attester } from '../attester.js';
import { bindingUserData } from '../binding.js';
import { parseStrictJson } from '../../lib/strict-json.js';
import type { Evidence } from '../envelope.js';
import { AttestationError } from '../types.js';
import { TpmAttester, type TpmAttesterOptions, type TpmEndpoint } from './attester.js';
import type { PcrBank } from './constants.js';

export interface PcrValues {
  alg: PcrBank;
  values: Record<number, string>;
}

export function encodePcrs(pcrs: PcrValues): Buffer {
  return Buffer.from(JSON.stringify({ alg: pcrs.alg, values: pcrs.values }), 'utf8');
}

/** Parses the `pcrs` part: {"alg": "sha256", "values": {"0": "hex", ...}}. */
export function decodePcrs(bytes: Uint8Array): PcrValues {
  let doc: unknown;
  try {
    doc = parseStrictJson(new TextDecoder('utf-8', { fatal: true }).decode(bytes), 4);
  } catch (err) {
    throw new AttestationError('evidence_malformed', `pcrs part is not strict JSON: ${(err as Error).message}`);
  }
  const fields = doc as { alg?: unknown; values?: unknown };
  if (!fields || typeof fields !== 'object' || !['sha1', 'sha256', 'sha384'].includes(fields.alg as string) || !fields.values || typeof fields.values !== 'object') {
    throw new AttestationError('evidence_malformed', 'pcrs part must be {"alg": "sha1"|"sha256"|"sha384", "values": {index: hex}}');
  }
  const values: Record<number, string> = Object.create(null);
  for (const [k, v] of Object.entries(fields.values as Record<string, unknown>)) {
    const i = Number(k);
    if (!Number.isInteger(i) || i < 0 || i > 23 || typeof v !== 'string' || !/^[0-9a-fA-F]+$/.test(v)) {
      throw new AttestationError('evidence_malformed', `pcrs part: bad entry ${JSON.stringify(k)}`);
    }
    values[i] = v.toLowerCase();
  }
  return { alg: fields.alg as PcrBank, values };
}

export interface TpmEvidenceOptions extends TpmAttesterOptions {
  endpoint: TpmEndpoint;
  pcrs: { alg: PcrBank; indices: number[] };
}

/** Quotes over our SVID binding with a TPM reached by device or TCP (swtpm). */
export class TpmEvidenceAttester implements Attester {
  readonly type = 'tpm' as const;
  private tpm: Promise<TpmAttester> | undefined;

  constructor(private readonly opts: TpmEvidenceOptions) {}

  private attester(): Promise<TpmAttester> {
    if (!this.tpm) {
      const { endpoint, pcrs: _pcrs, ...rest } = this.opts;
      this.tpm = TpmAttester.connect(endpoint, rest).then(async (a) => {
        await a.start();
        return a;
      });
      this.tpm.catch(() => (this.tpm = undefined)); // reconnect on the next attempt
    }
    return this.tpm;
  }

  /** The AK's public key (connects and creates the AK on first use). */
  async akPublicKey(): Promise<import('node:crypto').KeyObject> {
    return (await this.attester()).akPublic.key;
  }

  /** The AK's TPM Name (nameAlg || H(TPMT_PUBLIC)): what verifiers pin in tpm_ak_names. */
  async akName(): Promise<Uint8Array> {
    return (await this.attester()).akPublic.name;
  }

  async produce(spki: Uint8Array, nonce?: Uint8Array): Promise<Evidence> {
    const tpm = await this.attester();
    const quote = await tpm.quote(bindingUserData(spki, nonce, 32), this.opts.pcrs);
    return {
      type: 'tpm',
      parts: {
        attest: Buffer.from(quote.attest),
        signature: Buffer.from(quote.signature),
        pcrs: encodePcrs(quote.pcrs),
        ak: Buffer.from(tpm.akPublic.tpmtPublic),
      },
    };
  }

  /** Releases the TPM (a TCP simulator serves one client at a time); the next produce() reconnects. */
  async close(): Promise<void> {
    const pending = this.tpm;
    this.tpm = undefined;
    const t = await pending?.catch(() => undefined);
    await t?.close();
  }
}
