/**
 * Identity sources by name (`identity.source` in the config). Each factory loads its code on
 * demand, so a sidecar carries only what it uses (the gRPC client, the dev CA). A factory
 * registers what it opens with `defer` (closed newest first when the sidecar closes, or at
 * once when the start fails), so a half-built source is never left running.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { IdentitySourceConfig } from '../config/types.js';
import type { Logger } from '../lib/log.js';
import type { X509Source } from '../spiffe/source.js';

export type IdentitySourceName = IdentitySourceConfig['source'];

export interface SourceContext {
  logger: Logger;
  /** Registers a close function for something the factory opened. */
  defer(close: () => unknown): void;
}

export type SourceFactory<K extends IdentitySourceName> = (config: Extract<IdentitySourceConfig, { source: K }>, ctx: SourceContext) => Promise<X509Source>;

const SOURCES: { readonly [K in IdentitySourceName]: SourceFactory<K> } = {
  'workload-api': async (id, ctx) => {
    const { WorkloadApiX509Source } = await import('../spiffe/workload-api/source.js');
    const source = new WorkloadApiX509Source({ endpoint: id.socket, ...(id.hint ? { hint: id.hint } : {}), logger: ctx.logger });
    ctx.defer(() => source.close());
    source.start();
    return source;
  },
  files: async (id, ctx) => {
    const { FilesX509Source } = await import('../spiffe/files-source.js');
    const source = new FilesX509Source({ cert: id.cert, key: id.key, bundle: id.bundle, federated: id.federated, logger: ctx.logger });
    ctx.defer(() => source.close());
    // Files that cannot make an identity are a configuration mistake: refuse to start.
    await source.requireIdentity(id.startupTimeoutMs);
    return source;
  },
  dev: async (id, ctx) => {
    // Development only: a private in-process issuer for this one sidecar.
    const trustDomain = id.spiffeId.slice('spiffe://'.length).split('/')[0]!;
    const socketDir = mkdtempSync(path.join(tmpdir(), 'attest-sidecar-dev-'));
    const [{ DevIssuer }, { WorkloadApiX509Source }] = await Promise.all([import('../dev/issuer.js'), import('../spiffe/workload-api/source.js')]);
    const issuer = await DevIssuer.start({ trustDomain, socketDir, svidTtlSeconds: id.svidTtlSeconds, logger: ctx.logger });
    ctx.defer(() => issuer.stop());
    const { endpoint } = await issuer.registerWorkload(id.spiffeId);
    const source = new WorkloadApiX509Source({ endpoint, logger: ctx.logger });
    ctx.defer(() => source.close());
    source.start();
    return source;
  },
};

/** Opens the source `config` names. */
export function openIdentitySource(config: IdentitySourceConfig, ctx: SourceContext): Promise<X509Source> {
  const factory = SOURCES[config.source] as SourceFactory<IdentitySourceName>;
  return factory(config, ctx);
}
