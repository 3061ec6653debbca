/**
 * TPM attester: creates a primary restricted signing Attestation Key and produces quotes
 * (TPM2_Quote + TPM2_PCR_Read) by speaking TPM commands directly over a transport — no
 * tpm2-tools at run time. The output feeds `verifyTpmQuote` on the other side.
 */
import { createHash, type KeyObject } from 'node:crypto';
import { SidecarError } from '../../errors.js';
import { parseParams, parsePcrRead, createPrimaryParams, pcrSelectionParams, quoteParams, runCommand } from './commands.js';
import { hashAlgId, TPM_RH, TPM_SU_CLEAR, type PcrBank } from './constants.js';
import { akTemplate, parseTpmtPublic, type AkAlgorithm } from './public.js';
import { TPM_RC_INITIALIZE } from './rc.js';
import { parseTpmsAttest, parseTpmtSignature } from './structures.js';
import { DeviceTpmTransport, TcpTpmTransport, type TpmTransport } from './transport.js';

export interface TpmAttesterOptions {
  /** AK algorithm: ECC P-256 ECDSA-SHA256 (default) or RSA-2048 RSASSA-SHA256 */
  algorithm?: AkAlgorithm;
  /** hierarchy the primary AK lives under (default endorsement) */
  hierarchy?: 'endorsement' | 'owner';
  /** send TPM2_Startup(CLEAR) first (fresh simulator); TPM_RC_INITIALIZE is ignored */
  startup?: boolean;
}

export interface AkPublic {
  /** TPMT_PUBLIC bytes (no TPM2B prefix): what the verifier takes as `ak` */
  readonly tpmtPublic: Uint8Array;
  readonly key: KeyObject;
  /** TPM Name (nameAlg || H(TPMT_PUBLIC)) */
  readonly name: Uint8Array;
  readonly qualifiedName: Uint8Array;
}

export interface TpmQuoteResult {
  /** TPMS_ATTEST as signed */
  readonly attest: Uint8Array;
  /** TPMT_SIGNATURE */
  readonly signature: Uint8Array;
  readonly pcrs: { alg: PcrBank; values: Record<number, string> };
}

export type TpmEndpoint = { device: string } | { host: string; port: number };

/** Attempts at a consistent quote + PCR read when PCRs change between the two commands. */
const QUOTE_ATTEMPTS = 3;

function requestError(message: string): SidecarError {
  return new SidecarError('tpm_bad_request', message);
}

export class TpmAttester {
  private akHandle: number | undefined;
  private ak: AkPublic | undefined;

  constructor(
    private readonly transport: TpmTransport,
    private readonly options: TpmAttesterOptions = {},
  ) {}

  /** Opens /dev/tpmrm0-style devices or a swtpm TCP port. */
  static async connect(endpoint: TpmEndpoint, options: TpmAttesterOptions = {}): Promise<TpmAttester> {
    const transport =
      'device' in endpoint ? await DeviceTpmTransport.open(endpoint.device) : await TcpTpmTransport.connect(endpoint.host, endpoint.port);
    return new TpmAttester(transport, options);
  }

  get akPublic(): AkPublic {
    if (!this.ak) throw requestError('TPM attester not started');
    return this.ak;
  }

  async start(): Promise<AkPublic> {
    if (this.ak) return this.ak;
    if (this.options.startup) {
      const params = Buffer.alloc(2);
      params.writeUInt16BE(TPM_SU_CLEAR);
      await runCommand(this.transport, 'Startup', { params }, [TPM_RC_INITIALIZE]);
    }
    const hierarchy = this.options.hierarchy === 'owner' ? TPM_RH.OWNER : TPM_RH.ENDORSEMENT;
    const template = akTemplate(this.options.algorithm ?? 'ecc-p256');
    const res = await runCommand(this.transport, 'CreatePrimary', {
      handles: [hierarchy],
      pwSessions: 1,
      params: createPrimaryParams(template),
      responseHandles: 1,
    });
    const handle = res.handles[0]!;
    this.akHandle = handle;
    const { publicArea, name } = parseParams('CreatePrimary', res, (r) => {
      const publicArea = r.tpm2b('outPublic', 1024);
      r.tpm2b('creationData', 2048);
      r.tpm2b('creationHash', 64);
      r.u16('creationTicket.tag');
      r.u32('creationTicket.hierarchy');
      r.tpm2b('creationTicket.digest', 64);
      const name = r.tpm2b('name', 66);
      return { publicArea, name };
    });
    const parsed = parseTpmtPublic(publicArea);
    if (!Buffer.from(parsed.name).equals(Buffer.from(name))) {
      throw requestError('TPM2_CreatePrimary returned a Name that does not match the public area');
    }
    const readPublic = await runCommand(this.transport, 'ReadPublic', { handles: [handle] });
    const qualifiedName = parseParams('ReadPublic', readPublic, (r) => {
      r.tpm2b('outPublic', 1024);
      r.tpm2b('name', 66);
      return r.tpm2b('qualifiedName', 66);
    });
    this.ak = { tpmtPublic: parsed.bytes, key: parsed.key, name: parsed.name, qualifiedName };
    return this.ak;
  }

  /** Reads PCR values, repeating TPM2_PCR_Read since one response holds at most 8 digests. */
  async readPcrs(alg: PcrBank, indices: readonly number[]): Promise<Record<number, string>> {
    const values: Record<number, string> = {};
    let remaining = [...new Set(indices)].sort((a, b) => a - b);
    while (remaining.length > 0) {
      const res = await runCommand(this.transport, 'PCR_Read', { params: pcrSelectionParams(alg, remaining) });
      const out = parseParams('PCR_Read', res, parsePcrRead);
      const got = out.selection.filter((s) => s.hashAlg === hashAlgId(alg)).flatMap((s) => s.indices);
      if (got.length === 0 || got.length !== out.digests.length) {
        throw requestError(`TPM2_PCR_Read returned no usable ${alg} values for PCRs ${remaining.join(',')}`);
      }
      got.forEach((i, k) => (values[i] = Buffer.from(out.digests[k]!).toString('hex')));
      remaining = remaining.filter((i) => !got.includes(i));
    }
    return values;
  }

  async quote(extraData: Uint8Array, pcrSelection: { alg: PcrBank; indices: number[] }): Promise<TpmQuoteResult> {
    if (this.akHandle === undefined) throw requestError('TPM attester not started');
    if (!(extraData instanceof Uint8Array) || extraData.length > 64) throw requestError('quote extraData must be at most 64 bytes');
    const indices = [...new Set(pcrSelection.indices)].sort((a, b) => a - b);
    if (indices.some((i) => !Number.isInteger(i) || i < 0 || i > 23)) throw requestError('PCR indices must be 0..23');
    for (let attempt = 1; ; attempt++) {
      const res = await runCommand(this.transport, 'Quote', {
        handles: [this.akHandle],
        pwSessions: 1,
        params: quoteParams(extraData, pcrSelection.alg, indices),
      });
      const { attest, signature } = parseParams('Quote', res, (r) => {
        const attest = r.tpm2b('quoted', 2048);
        return { attest, signature: r.take(r.remaining, 'signature') };
      });
      const values = await this.readPcrs(pcrSelection.alg, indices);
      // A PCR extended between Quote and PCR_Read makes the pair inconsistent: quote again.
      const hash = parseTpmtSignature(signature).hash;
      const h = createHash(hash);
      for (const i of indices) h.update(Buffer.from(values[i]!, 'hex'));
      if (h.digest().equals(Buffer.from(parseTpmsAttest(attest).pcrDigest)) || attempt >= QUOTE_ATTEMPTS) {
        return { attest, signature, pcrs: { alg: pcrSelection.alg, values } };
      }
    }
  }

  /** Flushes the AK and closes the transport. */
  async close(): Promise<void> {
    try {
      if (this.akHandle !== undefined) {
        const params = Buffer.alloc(4);
        params.writeUInt32BE(this.akHandle);
        this.akHandle = undefined;
        this.ak = undefined;
        await runCommand(this.transport, 'FlushContext', { params });
      }
    } finally {
      await this.transport.close();
    }
  }
}
