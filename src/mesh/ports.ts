/**
 * Dev mesh addressing shared by the in-process mesh and the mesh on SPIRE: each sidecar's name,
 * and with free ports the real address of every listener so that references between sidecars
 * (the control plane's app URL, the agents' upstreams) follow where things really listen.
 */
import type { SidecarConfig } from '../config/types.js';

export function sidecarName(config: SidecarConfig): string {
  return config.name ?? ('spiffeId' in config.identity ? config.identity.spiffeId : config.file);
}

export type Listen = { host: string; port: number };

/**
 * With free ports: each listener's configured `host:port` and the address it really bound, so
 * that a URL naming a listener started earlier is rewritten to where it listens. Without: none.
 */
export class PortMap {
  private readonly bound = new Map<string, Listen>();

  constructor(readonly free: boolean) {}

  /** Where to listen: the configured address, or its host on port 0. */
  listen(at: Listen): Listen {
    return this.free ? { host: at.host, port: 0 } : at;
  }

  record(configured: Listen | undefined, actual: { address: string; port: number } | undefined): void {
    if (this.free && configured && actual) this.bound.set(`${configured.host}:${configured.port}`, { host: configured.host, port: actual.port });
  }

  /** `url` with its host:port replaced by the real address of the listener configured there. */
  url(url: string): string {
    if (!this.free) return url;
    const parsed = new URL(url);
    const port = parsed.port || (parsed.protocol === 'https:' ? '443' : '80');
    const bound = this.bound.get(`${parsed.hostname}:${port}`);
    if (!bound) return url;
    parsed.port = String(bound.port);
    return parsed.toString().replace(/\/$/, url.endsWith('/') ? '/' : '');
  }

  /** The sidecar's config with its listeners on free ports and its references followed. */
  config(config: SidecarConfig): SidecarConfig {
    if (!this.free) return config;
    return {
      ...config,
      ...(config.inbound ? { inbound: { ...config.inbound, listen: this.listen(config.inbound.listen), app: this.url(config.inbound.app) } } : {}),
      ...(config.outbound
        ? { outbound: { ...config.outbound, listen: this.listen(config.outbound.listen), routes: config.outbound.routes.map((r) => ({ ...r, upstream: this.url(r.upstream) })) } }
        : {}),
      ...(config.admin
        ? { admin: { ...config.admin, listen: this.listen(config.admin.listen), ...(config.admin.mtlsListen ? { mtlsListen: this.listen(config.admin.mtlsListen) } : {}) } }
        : {}),
    };
  }
}

/** With free ports, sidecars that others call (an inbound listener) start first, so that their real ports are known. */
export function startOrder(sidecars: readonly SidecarConfig[]): SidecarConfig[] {
  return [...sidecars.filter((c) => c.inbound), ...sidecars.filter((c) => !c.inbound)];
}
