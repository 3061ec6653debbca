/**
 * Reason codes for inbound TLS handshakes OpenSSL refused before SPIFFE verification ran. The
 * error's code, or for OpenSSL errors its `reason` text, picks the code; anything unlisted is
 * `tls_handshake_failed`. These codes label `attest_sidecar_peer_rejections_total` and the
 * aggregated `peer_rejected` audit records.
 */
const BY_CODE: Record<string, string> = {
  ERR_TLS_HANDSHAKE_TIMEOUT: 'tls_handshake_timeout',
  ECONNRESET: 'tls_handshake_aborted',
  EPIPE: 'tls_handshake_aborted',
  ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE: 'tls_no_client_certificate',
  ERR_SSL_CERTIFICATE_VERIFY_FAILED: 'tls_certificate_rejected',
  ERR_SSL_WRONG_VERSION_NUMBER: 'tls_not_tls',
  ERR_SSL_HTTP_REQUEST: 'tls_not_tls',
  ERR_SSL_UNSUPPORTED_PROTOCOL: 'tls_protocol_version',
  ERR_SSL_NO_SHARED_CIPHER: 'tls_no_shared_cipher',
  ERR_SSL_NO_PROTOCOLS_AVAILABLE: 'tls_protocol_version',
};

export function handshakeFailureReason(err: Error & { code?: string }): string {
  return (err.code !== undefined && BY_CODE[err.code]) || 'tls_handshake_failed';
}
