/** Azure confidential VM evidence (SEV-SNP + paravisor vTPM): HCL report parsing and verification. */
export {
  parseHclReport,
  parseHclLayout,
  parseRuntimeJson,
  hclAkPub,
  HCL_SIGNATURE,
  HCL_RUNTIME_DATA_OFFSET,
  MAX_HCL_REPORT_BYTES,
  type HclReport,
  type HclLayout,
  type HclHashType,
} from './hcl.js';
export {
  verifyAzSnpVtpm,
  describeAzSnpVtpm,
  type AzSnpVtpmInput,
  type AzSnpVtpmRefs,
  type AzSnpVtpmClaims,
  type AzSnpVtpmDescription,
  type HclClaims,
} from './verify.js';
