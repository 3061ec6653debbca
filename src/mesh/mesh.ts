/**
 * The development mesh (DEVELOPMENT ONLY): one embedded issuer, the demo app, and one sidecar
 * per config file listed in config/dev-mesh.yaml, all in this process but talking over real
 * sockets: each sidecar gets its SVIDs over the real Workload API (gRPC on its own Unix socket).
 * Listeners bind the ports the files name, or with `freePorts` ports the OS picks; references
 * between them (the control plane's app URL, the agents' upstreams) then follow the real ports.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { ConfigError } from '../errors.js';
import { loadConfigFile } from '../config/load.js';
import type { SidecarConfig } from '../config/types.js';
import { parseListen, parseDurationMs } from '../lib/values.js';
import type { Logger } from 'pino';
import { Sidecar } from '../sidecar.js';
import { WorkloadApiX509Source } from '../spiffe/workload-api/source.js';
import { DevIssuer } from '../dev/issuer.js';
import { DemoApp } from './demo-app.js';
import { SimAttester } from '../attestation/sim/attester.js';
import { generateSimKey } from '../attestation/sim/report.js';

import { devStateDir } from './paths.js';
import { carriedOverState, devSidecarStateDir, wipeDevState } from './state.js';
import type { MeshView } from './view.js';
import { listenError } from '../startup-errors.js';
import { PortMap, sidecarName, startOrder } from './ports.js';

export interface DevMeshSpec {
  file: string;
  trustDomain: string;
  svidTtlSeconds: number;
  demoApp: { host: string; port: number } | undefined;
  sidecars: SidecarConfig[];
}

export function loadDevMeshSpec(file: string): DevMeshSpec {
  const abs = path.resolve(file);
  let doc: unknown;
  try {
    doc = parseYaml(readFileSync(abs, 'utf8'));
  } catch (err) {
    throw new ConfigError(`cannot read dev mesh file: ${(err as Error).message}`, { file: abs });
  }
  if (!doc || typeof doc !== 'object') throw new ConfigError('expected a mapping', { file: abs });
  const fields = doc as Record<string, unknown>;
  const td = fields.trust_domain;
  if (typeof td !== 'string' || !td) throw new ConfigError('trust_domain is required', { file: abs, key: 'trust_domain' });
  const ttl = fields.svid_ttl === undefined ? 60_000 : parseDurationMs(fields.svid_ttl as string | number);
  if (!Array.isArray(fields.sidecars) || fields.sidecars.length === 0) {
    throw new ConfigError('sidecars must list at least one sidecar config file', { file: abs, key: 'sidecars' });
  }
  const demo = fields.demo_app as { listen?: string } | undefined;
  return {
    file: abs,
    trustDomain: td,
    svidTtlSeconds: Math.round(ttl / 1000),
    demoApp: demo?.listen ? parseListen(demo.listen) : undefined,
    sidecars: fields.sidecars.map((f, i) => {
      if (typeof f !== 'string') throw new ConfigError('expected a file name', { file: abs, key: `sidecars[${i}]` });
      return loadConfigFile(path.resolve(path.dirname(abs), f));
    }),
  };
}

export class DevMesh {
  private constructor(
    readonly spec: DevMeshSpec,
    readonly issuer: DevIssuer,
    readonly app: DemoApp | undefined,
    readonly sidecars: ReadonlyMap<string, Sidecar>,
    private readonly socketDir: string,
    readonly stateDir: string,
  ) {}

  /**
   * `fresh`: delete the state earlier runs left (revocations, budget spend, admin token) first.
   * `freePorts`: every listener binds a port the OS picks instead of the configured one (the
   * banner and each part's `address()` say which).
   */
  static async start(
    spec: DevMeshSpec,
    opts: { logger: Logger; svidTtlSeconds?: number; stateDir?: string; fresh?: boolean; freePorts?: boolean },
  ): Promise<DevMesh> {
    const stateDir = opts.stateDir ?? devStateDir();
    if (opts.fresh) {
      const removed = wipeDevState(stateDir, spec.sidecars.map(sidecarName));
      opts.logger.warn({ removed }, 'dev mesh state deleted (--fresh): no revocations, no budget spend, a new admin token');
    }
    const socketDir = mkdtempSync(path.join(tmpdir(), 'attest-sidecar-dev-'));
    const ttl = opts.svidTtlSeconds ?? spec.svidTtlSeconds;
    const issuer = await DevIssuer.start({ trustDomain: spec.trustDomain, socketDir, svidTtlSeconds: ttl, logger: opts.logger });
    // One in-memory sim TEE key for the whole mesh: agents sign with it, the control plane trusts it.
    const sim = generateSimKey();
    const sidecars = new Map<string, Sidecar>();
    const ports = new PortMap(opts.freePorts === true);
    let app: DemoApp | undefined;
    try {
      if (spec.demoApp) {
        app = new DemoApp();
        const at = ports.listen(spec.demoApp);
        await app.start(at.host, at.port).catch((err: unknown) => Promise.reject(listenError('demo app', at, err)));
        ports.record(spec.demoApp, app.address());
      }
      for (const configured of ports.free ? startOrder(spec.sidecars) : spec.sidecars) {
        const config = ports.config(configured);
        if (config.identity.source !== 'dev') {
          throw new ConfigError('dev mesh sidecars must use identity.source: dev', { file: config.file, key: 'identity.source' });
        }
        const name = sidecarName(config);
        const { endpoint } = await issuer.registerWorkload(config.identity.spiffeId);
        const logger = opts.logger.child({ sidecar: name });
        const source = new WorkloadApiX509Source({ endpoint, logger });
        source.start();
        const a = config.attestation?.attester;
        const attester = a && a.type === 'sim' && !a.key ? new SimAttester({ key: sim.privateKey, measurement: a.measurement, guestSvn: a.guestSvn, debug: a.debug }) : undefined;
        const trust = config.inbound ? { simKeys: [sim.publicKey] } : undefined;
        const sidecar = await Sidecar.start({
          config: {
            ...config,
            name,
            stateDir: devSidecarStateDir(stateDir, name),
            ...(config.admin ? { admin: { ...config.admin, tokenFile: config.admin.tokenFile ?? path.join(stateDir, 'admin-token') } } : {}),
          },
          source,
          logger,
          ...(attester ? { attester } : {}),
          ...(trust ? { attestationTrust: trust } : {}),
        });
        sidecars.set(name, sidecar);
        ports.record(configured.inbound?.listen, sidecar.inbound?.address() ?? undefined);
      }
    } catch (err) {
      await Promise.allSettled([...sidecars.values()].map((s) => s.close()));
      await app?.close();
      await issuer.stop();
      rmSync(socketDir, { recursive: true, force: true });
      throw err;
    }
    // In the mesh file's order (the banner lists them so), whatever order they started in.
    const inFileOrder = new Map(spec.sidecars.map(sidecarName).map((name) => [name, sidecars.get(name)!]));
    return new DevMesh(spec, issuer, app, inFileOrder, socketDir, stateDir);
  }

  view(): MeshView {
    return {
      trustDomain: this.spec.trustDomain,
      stateDir: this.stateDir,
      app: this.app?.address(),
      sidecars: [...this.sidecars].map(([name, s]) => ({
        name,
        spiffeId: s.status().spiffe_id as string | null,
        ...(s.inbound?.address() ? { inbound: { address: s.inbound.address()!, app: s.config.inbound!.app } } : {}),
        ...(s.outbound?.address() ? { outbound: s.outbound.address()! } : {}),
        ...(s.admin?.address() ? { admin: s.admin.address()! } : {}),
      })),
      carriedOver: carriedOverState(this.sidecars),
    };
  }

  async close(): Promise<void> {
    await Promise.allSettled([...this.sidecars.values()].map((s) => s.close()));
    await this.app?.close();
    await this.issuer.stop();
    rmSync(this.socketDir, { recursive: true, force: true });
  }
}
