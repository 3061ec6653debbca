/**
 * Writes everything the benchmark's servers read into a fresh temp folder: certificates from the
 * dev CA (shared by the sidecars and the reference pair), the two sidecar configs and the policy.
 */
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { DevCa } from '../src/dev/ca.js';
import { freePort, sidecarArgs, spawnNode, waitForOk, type Child } from './lib.js';

export const TRUST_DOMAIN = 'bench.local';
export const AGENT_ID = `spiffe://${TRUST_DOMAIN}/agent`;
export const SERVICE_ID = `spiffe://${TRUST_DOMAIN}/service`;
/** Agents that attest with the sim TEE: once per session, and on every request. */
export const ATTESTED_ID = `spiffe://${TRUST_DOMAIN}/agent-attested`;
export const FRESH_ID = `spiffe://${TRUST_DOMAIN}/agent-fresh`;
export const SIM_MEASUREMENT = 'b0'.repeat(48);
/** Route name = Host header both proxies route by. */
export const ROUTE = 'app';
export const BENCH_PATH = '/bench';

export interface Ports {
  app: number;
  refOutbound: number;
  refInbound: number;
  /** A second bare pair, identical to the first: the A/A control (b') that shows the run's noise. */
  controlOutbound: number;
  controlInbound: number;
  agentOutbound: number;
  agentAdmin: number;
  serviceInbound: number;
  serviceAdmin: number;
  /** A second inbound sidecar, configured like the first, serving only the attested scenarios (d, e). */
  attestedInbound: number;
  attestedInboundAdmin: number;
  attestedOutbound: number;
  attestedAdmin: number;
  freshOutbound: number;
  freshAdmin: number;
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
  /** The service config again on the attested inbound's ports (see Ports.attestedInbound). */
  attestedServiceConfig: string;
  attestedConfig: string;
  freshConfig: string;
}

async function allocatePorts(): Promise<Ports> {
  // Held ports are released before the next is asked for, so collect them all first and
  // check they are distinct (the OS rarely hands the same one out twice in a row).
  const names = [
    'app', 'refOutbound', 'refInbound', 'controlOutbound', 'controlInbound', 'agentOutbound', 'agentAdmin', 'serviceInbound', 'serviceAdmin',
    'attestedInbound', 'attestedInboundAdmin', 'attestedOutbound', 'attestedAdmin', 'freshOutbound', 'freshAdmin',
  ] as const;
  for (let attempt = 0; attempt < 5; attempt++) {
    const ports: number[] = [];
    for (let i = 0; i < names.length; i++) ports.push(await freePort());
    if (new Set(ports).size === ports.length) {
      return Object.fromEntries(names.map((n, i) => [n, ports[i]!])) as unknown as Ports;
    }
  }
  throw new Error('bench: could not allocate distinct free ports');
}

type Base = Omit<BenchFiles, 'agentConfig' | 'serviceConfig' | 'attestedServiceConfig' | 'attestedConfig' | 'freshConfig'>;

function agentConfig(f: Base, name = 'agent', listen = f.ports.agentOutbound, admin = f.ports.agentAdmin, attest = false): string {
  // Attesting agents go to their own inbound sidecar: the plain path (c) is then measured on a
  // pair that serves nothing else, as the bare pair (b) does, and per-request attestation's load
  // (e) cannot linger into the next scenario's run through a shared process.
  const inbound = attest ? f.ports.attestedInbound : f.ports.serviceInbound;
  return `# attest-sidecar benchmark: the ${name} sidecar (outbound only)
name: bench-${name}
identity: { source: files, cert: ${name}.pem, key: ${name}-key.pem, bundle: bundle.pem }
outbound:
  listen: 127.0.0.1:${listen}
  routes:
    - { name: ${ROUTE}, upstream: "https://127.0.0.1:${inbound}", server_id: "${SERVICE_ID}" }
admin: { listen: "127.0.0.1:${admin}" }
log: { level: warn, audit: ${JSON.stringify(path.join(f.dir, `audit-${name}.log`))} }
state_dir: ${JSON.stringify(path.join(f.dir, `state-${name}`))}
${attest ? `attestation: { attester: { type: sim, key: sim-key.pem, measurement: "${SIM_MEASUREMENT}", guest_svn: 2 } }
` : ''}`;
}

function serviceConfig(f: Base, name = 'service', listen = f.ports.serviceInbound, admin = f.ports.serviceAdmin): string {
  return `# attest-sidecar benchmark: the service's sidecar (inbound only)
name: bench-${name}
identity: { source: files, cert: service.pem, key: service-key.pem, bundle: bundle.pem }
inbound:
  listen: 127.0.0.1:${listen}
  app: http://127.0.0.1:${f.ports.app}
  actions:
    - { method: GET, path: ${BENCH_PATH}, action: bench.read }
policy: policy.yaml
admin: { listen: "127.0.0.1:${admin}" }
log: { level: warn, audit: ${JSON.stringify(path.join(f.dir, `audit-${name}.log`))} }
state_dir: ${JSON.stringify(path.join(f.dir, `state-${name}`))}
attestation: { verifier: { sim_keys: [sim-pub.pem] } }
`;
}

const requirements = (freshness: string) => `    attestation_requirements:
      tee_type: sim
      expected_measurement: "${SIM_MEASUREMENT}"
      require_runtime_debug_disabled: true
      freshness: ${freshness}
`;

const POLICY = `# attest-sidecar benchmark policy: the bench agents may read /bench, nothing else.
agents:
  - name: agent
    spiffe_id: ${AGENT_ID}
    allowed_actions: [bench.read]
  - name: agent-attested
    spiffe_id: ${ATTESTED_ID}
    allowed_actions: [bench.read]
${requirements('session')}  - name: agent-fresh
    spiffe_id: ${FRESH_ID}
    allowed_actions: [bench.read]
${requirements('per_request')}`;

export async function writeBenchFiles(): Promise<BenchFiles> {
  const dir = mkdtempSync(path.join(tmpdir(), 'attest-bench-'));
  const ca = await DevCa.create({ trustDomain: TRUST_DOMAIN });
  const agent = await ca.issueX509Svid(AGENT_ID, { ttlSeconds: 3600 });
  const service = await ca.issueX509Svid(SERVICE_ID, { ttlSeconds: 3600 });
  const attested = await ca.issueX509Svid(ATTESTED_ID, { ttlSeconds: 3600 });
  const fresh = await ca.issueX509Svid(FRESH_ID, { ttlSeconds: 3600 });
  const sim = generateKeyPairSync('ec', { namedCurve: 'P-256' });
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
  file('agent-attested.pem', attested.certChainPem);
  file('agent-attested-key.pem', attested.keyPem, 0o600);
  file('agent-fresh.pem', fresh.certChainPem);
  file('agent-fresh-key.pem', fresh.keyPem, 0o600);
  file('sim-key.pem', sim.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, 0o600);
  file('sim-pub.pem', sim.publicKey.export({ type: 'spki', format: 'pem' }) as string);
  const p = base.ports;
  return {
    ...base,
    agentConfig: file('agent.yaml', agentConfig(base)),
    serviceConfig: file('service.yaml', serviceConfig(base)),
    attestedServiceConfig: file('service-attested.yaml', serviceConfig(base, 'service-attested', p.attestedInbound, p.attestedInboundAdmin)),
    attestedConfig: file('agent-attested.yaml', agentConfig(base, 'agent-attested', p.attestedOutbound, p.attestedAdmin, true)),
    freshConfig: file('agent-fresh.yaml', agentConfig(base, 'agent-fresh', p.freshOutbound, p.freshAdmin, true)),
  };
}

/** The proxies of a side-by-side comparison, by the names their processes get. */
export type ProxyName = 'ref-in' | 'ref-out' | 'sc-in' | 'sc-out';

export interface Pairs {
  /** Every process started, the app included (for stopChild). */
  procs: Child[];
  refIn: Child;
  refOut: Child;
  scIn: Child;
  scOut: Child;
}

/**
 * Starts the app, the bare reference pair and the sidecar pair (with its executable's node flags)
 * on `f`'s ports, and waits until a request passes through each pair. For the diagnostics:
 * `nodeArgs` adds node flags before a proxy's script, `wrapper` runs a proxy under another program
 * (e.g. valgrind). Processes started before a failure are left to killAll().
 */
export async function startPairs(
  f: BenchFiles,
  root: string,
  opts: { nodeArgs?: (name: ProxyName) => string[]; wrapper?: (name: ProxyName) => string[]; timeoutMs?: number } = {},
): Promise<Pairs> {
  const p = f.ports;
  const here = path.dirname(fileURLToPath(import.meta.url));
  const url = (port: number, suffix = '') => `http://127.0.0.1:${port}${suffix}`;
  const tls = (cert: string, key: string) => ['--cert', cert, '--key', key, '--ca', f.bundle];
  const procs: Child[] = [spawnNode('app', [path.join(here, 'app.js'), '--port', String(p.app)], root)];
  const start = (name: ProxyName, args: string[]) => {
    const c = spawnNode(name, args, root, opts.wrapper?.(name) ?? []);
    procs.push(c);
    return c;
  };
  const reference = (name: ProxyName, args: string[]) => start(name, [...(opts.nodeArgs?.(name) ?? []), path.join(here, 'reference-proxy.js'), ...args]);
  const sidecar = (name: ProxyName, config: string) => {
    const args = sidecarArgs(root, 'run', '--config', config);
    args.splice(args.findIndex((a) => a.endsWith('attest-sidecar')), 0, ...(opts.nodeArgs?.(name) ?? []));
    return start(name, args);
  };
  const refIn = reference('ref-in', ['--mode', 'inbound', '--port', String(p.refInbound), '--upstream', url(p.app), ...tls(f.serviceCert, f.serviceKey)]);
  const refOut = reference('ref-out', ['--mode', 'outbound', '--port', String(p.refOutbound), '--route', ROUTE, '--upstream', `https://127.0.0.1:${p.refInbound}`, ...tls(f.agentCert, f.agentKey)]);
  const scIn = sidecar('sc-in', f.serviceConfig);
  const scOut = sidecar('sc-out', f.agentConfig);
  const timeout = opts.timeoutMs ?? 180_000;
  await waitForOk(procs, url(p.serviceAdmin, '/readyz'), {}, timeout);
  await waitForOk(procs, url(p.agentAdmin, '/readyz'), {}, timeout);
  await waitForOk(procs, url(p.refOutbound, BENCH_PATH), { host: ROUTE }, timeout);
  await waitForOk(procs, url(p.agentOutbound, BENCH_PATH), { host: ROUTE }, timeout);
  return { procs, refIn, refOut, scIn, scOut };
}
