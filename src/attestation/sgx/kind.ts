/** The sgx evidence kind: an Intel SGX quote. The envelope carries it; no verifier exists yet (evidence_unsupported). */
import type { EvidenceKind } from '../kind.js';

export const sgxKind: EvidenceKind<'sgx'> = {
  name: 'sgx',
  parts: { quote: { mediaType: 'application/vnd.intel.sgx.quote', required: true, maxBytes: 8192 } },
  /** MRENCLAVE is a 32-byte digest. */
  requirements: { measurementHexDigits: 64 },
};
