/** The hash-chained audit trail: record shape, sink, chain format and verifier. */
export { type AuditFields, type AuditRecord, type AuditRecordType, type AuditSink, MemoryAuditSink } from './record.js';
export { AUDIT_BACKLOG_LIMIT_BYTES, JsonLinesAuditSink, type JsonLinesAuditSinkOptions } from './sink.js';
export { ZERO_HASH, lineHash, classifyAuditLine, type AuditLine } from './chain.js';
export {
  AuditChainVerifier,
  verifyAuditChain,
  verifyAuditFile,
  MAX_REPORTED_ERRORS,
  type AuditChainError,
  type AuditChainErrorReason,
  type AuditVerifyOptions,
  type AuditVerifyReport,
} from './verify.js';
