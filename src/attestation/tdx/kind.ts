/**
 * The tdx evidence kind: an Intel TDX quote. This sidecar can produce one (configfs-tsm) and the
 * envelope carries it, but no verifier exists yet, so peers' TDX evidence is refused
 * (evidence_unsupported).
 */
import type { EvidenceKind } from '../kind.js';
import { tsmAttesterSection, type TsmAttesterConfig } from '../tsm/section.js';

export const tdxKind: EvidenceKind<'tdx', object, object, TsmAttesterConfig<'tdx'>> = {
  name: 'tdx',
  parts: { quote: { mediaType: 'application/vnd.intel.tdx.quote', required: true, maxBytes: 8192 } },
  attester: tsmAttesterSection<'tdx'>(),
  requirements: { measurementHexDigits: 96 },
};
