/**
 * Writes everything the benchmark's servers read into a fresh temp folder: certificates from the
 * dev CA (shared by the sidecars and the reference pair), the two sidecar configs and the policy.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { DevCa } from '../src/dev/ca.js';
import { freePort } from './lib.js';

export const TRUST_DOMAIN = 'bench.local';
export const AGENT_ID = `spiffe://${TRUST_DOMAIN}/agent`;
export const SERVICE_ID = `spiffe://${TRUST_DOMAIN}/service`;
/** Route name = Host header both proxies route by. */
export const ROUTE = 'app';
export const BENCH_PATH = '/bench';

export interface Ports {
  app: number;
  refOutbound: number;
  refInbound: number;
  agentOutbound: number;
  agentAdmin: number;
  serviceInbound: number;
  serviceAdmin: number;
}

export interface BenchFiles {
  dir: string;
  ports: Ports;
  bundle: string;
  agentCert: string;
  agentKey: string;
  serviceCert: string;
  serviceKey: string;
  agentConfig: string;
  serviceConfig: string;
}

async function allocatePorts(): Promise<Ports> {
  // Held ports are released before the next is asked for, so collect them all first and
  // check they are distinct (the OS rarely hands the same one out twice in a row).
  const names = ['app', 'refOutbound', 'refInbound', 'agentOutbound', 'agentAdmin', 'serviceInbound', 'serviceAdmin'] as const;
  for (let attempt = 0; attempt < 5; attempt++) {
    const ports: number[] = [];
    for (let i = 0; i < names.length; i++) ports.push(await freePort());
    if (new Set(ports).size === ports.length) {
      return Object.fromEntries(names.map((n, i) => [n, ports[i]!])) as unknown as Ports;
    }
  }
  throw new Error('bench: could not allocate distinct free ports');
}

function agentConfig(f: Omit<BenchFiles, 'agentConfig' | 'serviceConfig'>): string {
  return `# attest-sidecar benchmark: the agent's sidecar (outbound only)
name: bench-agent
identity: { source: files, cert: agent.pem, key: agent-key.pem, bundle: bundle.pem }
outbound:
  listen: 127.0.0.1:${f.ports.agentOutbound}
  routes:
    - { name: ${ROUTE}, upstream: "https://127.0.0.1:${f.ports.serviceInbound}", server_id: "${SERVICE_ID}" }
admin: { listen: "127.0.0.1:${f.ports.agentAdmin}" }
log: { level: warn, audit: ${JSON.stringify(path.join(f.dir, 'audit-agent.log'))} }
`;
}

function serviceConfig(f: Omit<BenchFiles, 'agentConfig' | 'serviceConfig'>): string {
  return `# attest-sidecar benchmark: the service's sidecar (inbound only)
name: bench-service
identity: { source: files, cert: service.pem, key: service-key.pem, bundle: bundle.pem }
inbound:
  listen: 127.0.0.1:${f.ports.serviceInbound}
  app: http://127.0.0.1:${f.ports.app}
  actions:
    - { method: GET, path: ${BENCH_PATH}, action: bench.read }
policy: policy.yaml
admin: { listen: "127.0.0.1:${f.ports.serviceAdmin}" }
log: { level: warn, audit: ${JSON.stringify(path.join(f.dir, 'audit-service.log'))} }
`;
}

const POLICY = `# attest-sidecar benchmark policy: the bench agent may read /bench, nothing else.
agents:
  - name: agent
    spiffe_id: ${AGENT_ID}
    allowed_actions: [bench.read]
`;

export async function writeBenchFiles(): Promise<BenchFiles> {
  const dir = mkdtempSync(path.join(tmpdir(), 'attest-bench-'));
  const ca = await DevCa.create({ trustDomain: TRUST_DOMAIN });
  const agent = await ca.issueX509Svid(AGENT_ID, { ttlSeconds: 3600 });
  const service = await ca.issueX509Svid(SERVICE_ID, { ttlSeconds: 3600 });
  const file = (name: string, content: string, mode = 0o644) => {
    const p = path.join(dir, name);
    writeFileSync(p, content, { mode });
    return p;
  };
  const base = {
    dir,
    ports: await allocatePorts(),
    bundle: file('bundle.pem', ca.bundle().toPem()),
    agentCert: file('agent.pem', agent.certChainPem),
    agentKey: file('agent-key.pem', agent.keyPem, 0o600),
    serviceCert: file('service.pem', service.certChainPem),
    serviceKey: file('service-key.pem', service.keyPem, 0o600),
  };
  file('policy.yaml', POLICY);
  return {
    ...base,
    agentConfig: file('agent.yaml', agentConfig(base)),
    serviceConfig: file('service.yaml', serviceConfig(base)),
  };
}
