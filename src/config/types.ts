/**
 * The validated, resolved shape of a sidecar config file (`attest-sidecar run --config FILE`).
 * All paths are absolute (resolved against the config file's folder by the loader).
 */
import type { ListenerLimits } from '../lib/listener-limits.js';
import type { ActionMappingConfig } from '../policy/actions.js';
import type { AttestationConfig } from '../attestation/config.js';

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
      /** How long startup waits for missing files before refusing to start. */
      startupTimeoutMs: number;
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
  /** https URL of the peer sidecar (or any SPIFFE-authenticated server), or of a public API (`tls: web`). */
  upstream: string;
  /**
   * `spiffe` (default): mTLS with our SVID, the server authenticated by SPIFFE ID; exactly one of
   * serverId / serverTrustDomain is set. `web`: ordinary server-authenticated TLS (a model API),
   * checked against the system roots or `caFile`; no SVID is presented.
   */
  tls: 'spiffe' | 'web';
  serverId?: string;
  serverTrustDomain?: string;
  /** `web` only: PEM CA bundle replacing the system roots. */
  caFile?: string;
  /** Headers the sidecar sets from secret files (the agent never sees them); lower-case names. */
  injectHeaders: InjectedHeaderConfig[];
  /** Metered model API: token usage read from responses is charged to our agent's budget. */
  metering?: MeteringConfig;
  /** ms; defaults applied by the loader. */
  connectTimeoutMs: number;
  requestTimeoutMs: number;
  /** Admit requests that carry browser-only headers (refused by default: see isBrowserRequest). */
  allowBrowserRequests?: boolean;
}

export interface InjectedHeaderConfig {
  /** Lower-case header name, e.g. `x-api-key` or `authorization`. */
  name: string;
  /** Secret file; its content (trimmed) is the value, re-read when the file changes. */
  file: string;
  /** Text before the secret, e.g. `Bearer `. */
  prefix: string;
}

export interface MeteringConfig {
  provider: 'openai' | 'anthropic' | 'gemini';
  inputUsdPerMillion: number;
  outputUsdPerMillion: number;
  /** Charged up front on admission and replaced by the metered cost (also charged when usage is unreadable). */
  reserveUsd: number;
}

export interface OutboundConfig {
  listen: { host: string; port: number };
  allowNonLoopback: boolean;
  routes: OutboundRouteConfig[];
  /** Callers must present this file's token as the Proxy-Authorization password (re-read on change). */
  callerTokenFile?: string;
  /** Agent requests with more header fields are refused (431); default DEFAULT_OUTBOUND_MAX_REQUEST_HEADERS. */
  maxRequestHeaders?: number;
  /** Timeouts and connection caps of the listener (`outbound.limits`). */
  limits: ListenerLimits;
}


export interface InboundConfig {
  listen: { host: string; port: number };
  /** Local app base URL (http only). */
  app: string;
  actions: ActionMappingConfig[];
  requestTimeoutMs: number;
  /** Requests with more header fields are refused (431); default DEFAULT_MAX_REQUEST_HEADERS. */
  maxRequestHeaders?: number;
  /** Timeouts and connection caps of the listener (`inbound.limits`). */
  limits: ListenerLimits;
}

export interface AdminConfig {
  listen: { host: string; port: number };
  /** Bearer token file (0600) for mutations from loopback; created when missing. */
  tokenFile?: string;
  /** Optional mTLS admin listener: peers whose SPIFFE ID the policy lists under `admins`. */
  mtlsListen?: { host: string; port: number };
  /** Host names the admin listener answers to besides IP literals and localhost (DNS rebinding guard). */
  allowedHosts?: string[];
}

/** `health:`; `listen` absent: no health listener. */
export interface HealthConfig {
  /** Serves only /healthz, /readyz and /metrics (for kubelet and Prometheus on the pod IP). */
  listen?: { host: string; port: number };
}

export interface RevocationsConfig {
  /** Revocation lists several sidecars watch (YAML/JSON), merged with this sidecar's own. */
  sharedFiles: string[];
}

export type BudgetStoreConfig =
  | { store: 'file' }
  | { store: 'redis'; url: string; keyPrefix: string; timeoutMs: number; /** AUTH password file (a mounted secret), read at start. */ passwordFile?: string };

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
  /** The health listener (probes and metrics only); absent or without `listen`: none. */
  health?: HealthConfig;
  /** SIGTERM/SIGINT: requests in progress get this long to finish before they are cut (loader default 25 s). */
  drainTimeoutMs?: number;
  log: LogConfig;
  attestation?: AttestationConfig;
  /** Durable state (revocations, budget ledger): absolute directory, created 0700. */
  stateDir: string;
  revocations: RevocationsConfig;
  budget: BudgetStoreConfig;
}

/** `attestation:` (defined with the evidence kinds, which read it). */
