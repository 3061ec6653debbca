/** AMD SEV-SNP attestation: report parsing, AMD certificate chain and report verification. */
export { parseSnpReport, SNP_REPORT_SIZE, SNP_SIGNED_LENGTH, SNP_FIELDS, type SnpReport } from './report.js';
export { decodeTcb, productFromCpuid, productFromName, type SnpProduct, type SnpTcb } from './tcb.js';
export { parseSnpEndorsementCert, SNP_CERT_OIDS, type SnpEndorsementCert } from './certs.js';
export { loadSnpAnchors, verifyEndorsementChain, type SnpTrustAnchors, type SnpProductAnchors } from './anchors.js';
export { parseSnpCertTable, buildSnpCertTable, SNP_CERT_GUIDS, type SnpCertTableEntry } from './cert-table.js';
export { describeSnpReport, type SnpClaims, type SnpReportDescription } from './claims.js';
export { verifySnpReport, type SnpVerifyRefs } from './verify.js';
