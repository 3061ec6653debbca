/**
 * Reason codes for inbound TLS handshakes refused before SPIFFE verification ran. A certificate
 * that does not verify against the bundle (unknown CA, expired) is refused by node after the
 * handshake messages, with the error on the socket (`authorizationError`) and a plain
 * "socket hang up" as the error; everything else is the error's code. Unlisted codes are
 * `tls_handshake_failed`. These codes label `attest_sidecar_peer_rejections_total` and the
 * aggregated `peer_rejected` audit records.
 */
import type { ReasonCode } from '../reasons.js';

const BY_CERT_ERROR: Readonly<Record<string, ReasonCode>> = {
  CERT_HAS_EXPIRED: 'tls_certificate_expired',
  CERT_NOT_YET_VALID: 'tls_certificate_not_yet_valid',
};

const BY_CODE: Readonly<Record<string, ReasonCode>> = {
  ERR_TLS_HANDSHAKE_TIMEOUT: 'tls_handshake_timeout',
  ECONNRESET: 'tls_handshake_aborted',
  EPIPE: 'tls_handshake_aborted',
  ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE: 'tls_no_client_certificate',
  ERR_SSL_WRONG_VERSION_NUMBER: 'tls_not_tls',
  ERR_SSL_HTTP_REQUEST: 'tls_not_tls',
  ERR_SSL_UNSUPPORTED_PROTOCOL: 'tls_protocol_version',
  ERR_SSL_NO_PROTOCOLS_AVAILABLE: 'tls_protocol_version',
  ERR_SSL_NO_SHARED_CIPHER: 'tls_no_shared_cipher',
};

export function handshakeFailureReason(err: Error & { code?: string }, socket: { authorizationError?: Error | string | null } | undefined): { reason: ReasonCode; detail: string } {
  const certError = socket?.authorizationError;
  if (certError) {
    const code = String((certError as { code?: string }).code ?? certError);
    return { reason: (Object.hasOwn(BY_CERT_ERROR, code) && BY_CERT_ERROR[code]) || 'tls_certificate_untrusted', detail: `client certificate refused: ${code}` };
  }
  const reason = (err.code !== undefined && Object.hasOwn(BY_CODE, err.code) && BY_CODE[err.code]) || 'tls_handshake_failed';
  return { reason, detail: `TLS handshake failed: ${err.message.split('\n')[0]!.slice(0, 200)}` };
}
