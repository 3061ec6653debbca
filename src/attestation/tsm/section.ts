/** The `attestation.attester` section of the kinds whose evidence comes from configfs-tsm. */
import { readPath } from '../../lib/fields.js';
import { intIn } from '../config-read.js';
import type { AttesterSection } from '../kind.js';
import { TsmEvidenceAttester } from './evidence.js';

export interface TsmAttesterConfig<N extends 'sev-snp' | 'tdx' = 'sev-snp' | 'tdx'> {
  type: N;
  tsmPath: string;
  privlevel?: number;
}

export function tsmAttesterSection<N extends 'sev-snp' | 'tdx'>(): AttesterSection<TsmAttesterConfig<N>> {
  return {
    keys: ['tsm_path', 'privlevel'],
    read(reader, am, baseDir, type) {
      const pathField = am.get('tsm_path');
      const tsmPath = (pathField && readPath(reader, pathField, baseDir)) ?? '/sys/kernel/config/tsm/report';
      const privlevel = intIn(reader, am, 'privlevel', 0, 3);
      return { type: type as N, tsmPath, ...(privlevel !== undefined ? { privlevel } : {}) };
    },
    create: (a) => new TsmEvidenceAttester(a.type, { basePath: a.tsmPath, ...(a.privlevel !== undefined ? { privlevel: a.privlevel } : {}) }),
  };
}
