/**
 * Evidence from the kernel's configfs-tsm interface: an SEV-SNP report (with the certificate
 * table from `auxblob`) or a TDX quote, bound to our SVID key through the 64-byte inblob.
 */
import type { Attester } from '../attester.js';
import { bindingUserData } from '../binding.js';
import type { Evidence } from '../envelope.js';
import { AttestationError } from '../types.js';
import { TsmAttester, type TsmAttesterOptions } from './attester.js';

export class TsmEvidenceAttester implements Attester {
  private readonly tsm: TsmAttester;

  constructor(
    readonly type: 'sev-snp' | 'tdx',
    opts: TsmAttesterOptions = {},
  ) {
    this.tsm = new TsmAttester({ ...opts, providers: [type === 'sev-snp' ? 'sev_guest' : 'tdx_guest'] });
  }

  async produce(spki: Uint8Array, nonce?: Uint8Array): Promise<Evidence> {
    const r = await this.tsm.report(bindingUserData(spki, nonce));
    if (this.type === 'tdx') return { type: 'tdx', parts: { quote: r.outblob } };
    if (r.outblob.length !== 1184) {
      throw new AttestationError('evidence_malformed', `configfs-tsm returned ${r.outblob.length} bytes; an SEV-SNP report is 1184`);
    }
    return { type: 'sev-snp', parts: { report: r.outblob, ...(r.auxblob && r.auxblob.length > 0 ? { cert_table: r.auxblob } : {}) } };
  }
}
