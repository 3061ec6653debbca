/**
 * DEVELOPMENT AND TEST ONLY: the HCL configuration of a single-host SPIRE deployment (pure).
 *
 * The server keeps its datastore in an sqlite file (`:memory:` does not work: SPIRE pools
 * connections) and attests the agent by join token. The agent keeps its key on disk (join tokens
 * are single-use, so only a disk key lets it restart without a new token) and attests workloads
 * with the `unix` attestor, discovering each caller's binary path without hashing it (a node
 * binary is ~100 MB and would be hashed on every call). Both poll at 1 s so that registration
 * changes reach workloads quickly.
 */

export interface ServerConfigInput {
  trustDomain: string;
  dataDir: string;
  socketPath: string;
  port: number;
  defaultX509SvidTtlSeconds: number;
  defaultJwtSvidTtlSeconds: number;
  caTtlSeconds: number;
  /** UpstreamAuthority "disk": SPIRE's CA becomes an intermediate under this root. */
  upstream?: { certFile: string; keyFile: string; bundleFile: string };
  logLevel: string;
}

export interface AgentConfigInput {
  trustDomain: string;
  dataDir: string;
  socketPath: string;
  serverPort: number;
  trustBundleFile: string;
  joinToken: string;
  logLevel: string;
}

/** HCL string literal: JSON's escaping is a subset HCL accepts. */
const q = (s: string): string => JSON.stringify(s);

export function serverConfig(c: ServerConfigInput): string {
  const upstream = c.upstream
    ? `
  UpstreamAuthority "disk" {
    plugin_data {
      cert_file_path = ${q(c.upstream.certFile)}
      key_file_path = ${q(c.upstream.keyFile)}
      bundle_file_path = ${q(c.upstream.bundleFile)}
    }
  }`
    : '';
  return `server {
  bind_address = "127.0.0.1"
  bind_port = "${c.port}"
  socket_path = ${q(c.socketPath)}
  trust_domain = ${q(c.trustDomain)}
  data_dir = ${q(c.dataDir)}
  log_level = ${q(c.logLevel)}
  ca_ttl = "${c.caTtlSeconds}s"
  default_x509_svid_ttl = "${c.defaultX509SvidTtlSeconds}s"
  default_jwt_svid_ttl = "${c.defaultJwtSvidTtlSeconds}s"
  experimental {
    cache_reload_interval = "1s"
  }
}

plugins {
  DataStore "sql" {
    plugin_data {
      database_type = "sqlite3"
      connection_string = ${q(`${c.dataDir}/datastore.sqlite3`)}
    }
  }
  NodeAttestor "join_token" {
    plugin_data {}
  }
  KeyManager "memory" {
    plugin_data {}
  }${upstream}
}
`;
}

export function agentConfig(c: AgentConfigInput): string {
  return `agent {
  data_dir = ${q(c.dataDir)}
  log_level = ${q(c.logLevel)}
  server_address = "127.0.0.1"
  server_port = "${c.serverPort}"
  socket_path = ${q(c.socketPath)}
  trust_bundle_path = ${q(c.trustBundleFile)}
  trust_domain = ${q(c.trustDomain)}
  join_token = ${q(c.joinToken)}
  experimental {
    sync_interval = "1s"
  }
}

plugins {
  NodeAttestor "join_token" {
    plugin_data {}
  }
  KeyManager "disk" {
    plugin_data {
      directory = ${q(`${c.dataDir}/keys`)}
    }
  }
  WorkloadAttestor "unix" {
    plugin_data {
      discover_workload_path = true
      workload_size_limit = -1
    }
  }
}
`;
}
