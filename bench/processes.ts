/** The bench's server processes: starting them, which one serves each scenario, stopping them. */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawnNode, stopChild, waitForOk, sidecarArgs, type Child } from './lib.js';
import { BENCH_PATH, ROUTE, type BenchFiles } from './setup.js';
import type { Scenario } from './report.js';

export interface Processes {
  app: Child;
  refInbound: Child;
  refOutbound: Child;
  /** A second bare pair, identical: the A/A control (b'). */
  controlInbound: Child;
  controlOutbound: Child;
  sidecarInbound: Child;
  sidecarOutbound: Child;
  /** Configured like sidecarInbound; serves only the attested scenarios (d, e): see setup.ts. */
  attestedInbound: Child;
  attestedOutbound: Child;
  freshOutbound: Child;
}

const here = path.dirname(fileURLToPath(import.meta.url));
const ROUTE_HEADERS = { host: ROUTE };

export async function startProcesses(f: BenchFiles, root: string): Promise<Processes> {
  const p = f.ports;
  const url = (port: number, suffix = '') => `http://127.0.0.1:${port}${suffix}`;
  const app = spawnNode('app', [path.join(here, 'app.js'), '--port', String(p.app)], root);
  const tlsArgs = (cert: string, key: string) => ['--cert', cert, '--key', key, '--ca', f.bundle];
  // The bare pair, and an identical second one: the A/A control (b'). Two pairs of the same code
  // measured in the same rounds differ only by the run's noise, which is what b'/b shows.
  const barePair = (prefix: string, inboundPort: number, outboundPort: number) => {
    const inbound = spawnNode(
      `${prefix}-inbound`,
      [path.join(here, 'reference-proxy.js'), '--mode', 'inbound', '--port', String(inboundPort), '--upstream', url(p.app), ...tlsArgs(f.serviceCert, f.serviceKey)],
      root,
    );
    const outbound = spawnNode(
      `${prefix}-outbound`,
      [
        path.join(here, 'reference-proxy.js'), '--mode', 'outbound', '--port', String(outboundPort), '--route', ROUTE,
        '--upstream', `https://127.0.0.1:${inboundPort}`, ...tlsArgs(f.agentCert, f.agentKey),
      ],
      root,
    );
    return [inbound, outbound] as const;
  };
  const [refInbound, refOutbound] = barePair('reference', p.refInbound, p.refOutbound);
  const [controlInbound, controlOutbound] = barePair('control', p.controlInbound, p.controlOutbound);
  const sidecarInbound = spawnNode('sidecar-inbound', sidecarArgs(root, 'run', '--config', f.serviceConfig), root);
  const sidecarOutbound = spawnNode('sidecar-outbound', sidecarArgs(root, 'run', '--config', f.agentConfig), root);
  const attestedInbound = spawnNode('attested-inbound', sidecarArgs(root, 'run', '--config', f.attestedServiceConfig), root);
  const attestedOutbound = spawnNode('attested-outbound', sidecarArgs(root, 'run', '--config', f.attestedConfig), root);
  const freshOutbound = spawnNode('fresh-outbound', sidecarArgs(root, 'run', '--config', f.freshConfig), root);
  const procs = { app, refInbound, refOutbound, controlInbound, controlOutbound, sidecarInbound, sidecarOutbound, attestedInbound, attestedOutbound, freshOutbound };

  await waitForOk([app], url(p.app, BENCH_PATH));
  await waitForOk([sidecarInbound], url(p.serviceAdmin, '/readyz'));
  await waitForOk([sidecarOutbound], url(p.agentAdmin, '/readyz'));
  // End to end through each pair: proves certificates, routing and policy before measuring.
  await waitForOk([refOutbound, refInbound, app], url(p.refOutbound, BENCH_PATH), ROUTE_HEADERS);
  await waitForOk([controlOutbound, controlInbound, app], url(p.controlOutbound, BENCH_PATH), ROUTE_HEADERS);
  await waitForOk([sidecarOutbound, sidecarInbound, app], url(p.agentOutbound, BENCH_PATH), ROUTE_HEADERS);
  await waitForOk([attestedInbound], url(p.attestedInboundAdmin, '/readyz'));
  await waitForOk([attestedOutbound], url(p.attestedAdmin, '/readyz'));
  await waitForOk([freshOutbound], url(p.freshAdmin, '/readyz'));
  await waitForOk([attestedOutbound, attestedInbound, app], url(p.attestedOutbound, BENCH_PATH), ROUTE_HEADERS);
  await waitForOk([freshOutbound, attestedInbound, app], url(p.freshOutbound, BENCH_PATH), ROUTE_HEADERS);
  return procs;
}

/** Every proxy process, in the order the RSS table lists them (outbound before inbound, pair by pair). */
export function proxyProcesses(procs: Processes): Child[] {
  return [
    procs.refOutbound, procs.refInbound, procs.controlOutbound, procs.controlInbound, procs.sidecarOutbound, procs.sidecarInbound,
    procs.attestedInbound, procs.attestedOutbound, procs.freshOutbound,
  ];
}

export function target(s: Scenario, f: BenchFiles, procs: Processes): { url: string; headers?: Record<string, string>; watch: Child[] } {
  const p = f.ports;
  switch (s) {
    case 'direct':
      return { url: `http://127.0.0.1:${p.app}${BENCH_PATH}`, watch: [] };
    case 'reference':
      return {
        url: `http://127.0.0.1:${p.refOutbound}${BENCH_PATH}`,
        headers: ROUTE_HEADERS,
        watch: [procs.refOutbound, procs.refInbound],
      };
    case 'control':
      return {
        url: `http://127.0.0.1:${p.controlOutbound}${BENCH_PATH}`,
        headers: ROUTE_HEADERS,
        watch: [procs.controlOutbound, procs.controlInbound],
      };
    case 'sidecar':
      return {
        url: `http://127.0.0.1:${p.agentOutbound}${BENCH_PATH}`,
        headers: ROUTE_HEADERS,
        watch: [procs.sidecarOutbound, procs.sidecarInbound],
      };
    case 'attested':
      return { url: `http://127.0.0.1:${p.attestedOutbound}${BENCH_PATH}`, headers: ROUTE_HEADERS, watch: [procs.attestedOutbound, procs.attestedInbound] };
    case 'fresh':
      return { url: `http://127.0.0.1:${p.freshOutbound}${BENCH_PATH}`, headers: ROUTE_HEADERS, watch: [procs.freshOutbound, procs.attestedInbound] };
  }
}

/** Fails the bench when a server has died: its numbers would be another scenario's. */
export function assertAlive(procs: Processes): void {
  const dead = Object.values(procs).filter((c) => c.proc.exitCode !== null || c.proc.signalCode !== null);
  if (dead.length) throw new Error(`process(es) died during the run: ${dead.map((c) => `${c.name}\n${c.output().trim()}`).join('\n')}`);
}

export async function stopProcesses(procs: Processes): Promise<void> {
  await Promise.all(Object.values(procs).map((c) => stopChild(c)));
}
