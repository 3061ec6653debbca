/**
 * The validated, resolved shape of a sidecar config file (`attest-sidecar run --config FILE`).
 * All paths are absolute (resolved against the config file's folder by the loader).
 */

export type IdentitySourceConfig =
  | {
      source: 'workload-api';
      /** `unix:///abs/path.sock` or `tcp://IP:port`; default $SPIFFE_ENDPOINT_SOCKET. */
      socket: string;
      /** Pick the SVID with this hint; default: the first one. */
      hint?: string;
      /** How long startup waits for the first SVID before readiness reports it missing. */
      startupTimeoutMs: number;
    }
  | {
      source: 'files';
      cert: string;
      key: string;
      bundle: string;
      /** trust domain name (or spiffe://td) -> bundle file */
      federated: Record<string, string>;
    }
  | {
      /** The embedded development issuer (src/dev); never for production. */
      source: 'dev';
      /** SPIFFE ID the dev issuer registers for this sidecar. */
      spiffeId: string;
      svidTtlSeconds: number;
      startupTimeoutMs: number;
    };

export interface OutboundRouteConfig {
  name: string;
  /** https URL of the peer sidecar (or any SPIFFE-authenticated server). */
  upstream: string;
  /** Exactly one of these two is set. */
  serverId?: string;
  serverTrustDomain?: string;
  /** ms; defaults applied by the loader. */
  connectTimeoutMs: number;
  requestTimeoutMs: number;
}

export interface OutboundConfig {
  listen: { host: string; port: number };
  allowNonLoopback: boolean;
  routes: OutboundRouteConfig[];
}

export interface ActionMappingConfig {
  method: string; // upper-case, or '*' for any
  path: string; // '/agents/:id/status', '*' suffix allowed ('/files/*')
  action: string;
  resource?: string;
  permission?: string;
}

export interface InboundConfig {
  listen: { host: string; port: number };
  /** Local app base URL (http). */
  app: string;
  actions: ActionMappingConfig[];
  requestTimeoutMs: number;
}

export interface AdminConfig {
  listen: { host: string; port: number };
}

export interface LogConfig {
  level: 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal' | 'silent';
  /** Where audit records go: 'stdout' or an absolute file path. */
  audit: string;
}

export interface SidecarConfig {
  /** Absolute path of the file this came from (for messages), or '<inline>'. */
  file: string;
  /** Human label used in logs and metrics (defaults to the SPIFFE ID once known). */
  name?: string;
  identity: IdentitySourceConfig;
  outbound?: OutboundConfig;
  inbound?: InboundConfig;
  /** Absolute path of the policy file; required when inbound is set. */
  policy?: string;
  admin?: AdminConfig;
  log: LogConfig;
  attestation?: AttestationConfig;
}

/** `attestation:` — what this sidecar proves about itself, and what evidence it trusts. */
export interface AttestationConfig {
  /** Outbound: produce evidence bound to our SVID key. */
  attester?: AttesterConfig;
  /** Inbound: verify peers' evidence. */
  verifier?: VerifierConfig;
}

export type AttesterConfig =
  | SimAttesterConfig
  | { type: 'sev-snp' | 'tdx'; tsmPath: string; privlevel?: number }
  | { type: 'tpm'; device?: string; address?: { host: string; port: number }; pcrBank: 'sha1' | 'sha256' | 'sha384'; pcrs: number[]; keyAlgorithm: 'ecc-p256' | 'rsa-2048' };

export interface VerifierConfig {
  /** PEM files of trusted `sim` report signing keys (SPKI). Development and tests only. */
  simKeys: string[];
  /** AMD ARK/ASK/ASVK PEM files or directories. */
  snpAnchors: string[];
  /** AMD KDS collateral cache (VCEKs for reports that arrive without one). */
  kds?: { cacheDir: string; offline: boolean; baseUrl?: string; product?: 'Milan' | 'Genoa' | 'Turin' };
  /** Pinned TPM attestation keys (PEM SPKI) and CAs that certify AKs. */
  tpmAkKeys: string[];
  tpmAkCas: string[];
  /** Reference values by environment name (policies refer to them by name). */
  referenceValues?: { files: Record<string, string>; signingKeys?: string; requireSignature: boolean };
  cacheSize: number;
}

export interface SimAttesterConfig {
  type: 'sim';
  /** PKCS#8 PEM private key file; absent: a fresh in-memory key (then no peer can trust it unless told). */
  key?: string;
  measurement: string;
  guestSvn: number;
  debug: boolean;
}
