/**
 * The config file a dev mesh sidecar runs with as its own process (`attest-sidecar run`): the
 * mesh file's sidecar config, edited as a YAML document so that every setting the mesh does not
 * own stays as written. The copy lives in the mesh's run folder, so each relative path the
 * loader resolved against the original's folder is written absolute.
 */
import { isAbsolute, resolve, dirname } from 'node:path';
import { isScalar, parseDocument, visit, type Document } from 'yaml';
import type { SidecarConfig } from '../config/types.js';
import { readYamlFileText } from '../lib/yaml-limits.js';
import type { Listen } from './ports.js';

export interface ChildConfigOverrides {
  name: string;
  /** The Workload API socket the sidecar gets its SVIDs from (an absolute path). */
  workloadSocket: string;
  stateDir: string;
  /** The admin token file every sidecar of the mesh shares (when the sidecar has an admin listener). */
  adminTokenFile: string | undefined;
  logLevel: string;
  /** The mesh's sim TEE signing key (PKCS#8 PEM file), for a sim attester that names no key. */
  simKeyFile: string;
  /** Its public key (SPKI PEM file): what an inbound sidecar trusts for sim evidence. */
  simPublicKeyFile: string;
}

const listenText = (at: Listen): string => (at.host.includes(':') ? `[${at.host}]:${at.port}` : `${at.host}:${at.port}`);

/** Every string the loaded config holds (paths there are absolute). */
function loadedStrings(value: unknown, into = new Set<string>()): Set<string> {
  if (typeof value === 'string') into.add(value);
  else if (Array.isArray(value)) for (const v of value) loadedStrings(v, into);
  else if (value && typeof value === 'object') for (const v of Object.values(value)) loadedStrings(v, into);
  return into;
}

/** Rewrites each relative path value (one the loader resolved against `baseDir`) to its absolute form. */
function absolutePaths(doc: Document, baseDir: string, loaded: Set<string>): void {
  visit(doc, {
    Pair(_key, pair) {
      const value = pair.value;
      if (!isScalar(value) || typeof value.value !== 'string' || isAbsolute(value.value)) return;
      const absolute = resolve(baseDir, value.value);
      if (loaded.has(absolute)) value.value = absolute;
    },
    Seq(_key, seq) {
      for (const item of seq.items) {
        if (!isScalar(item) || typeof item.value !== 'string' || isAbsolute(item.value)) continue;
        const absolute = resolve(baseDir, item.value);
        if (loaded.has(absolute)) item.value = absolute;
      }
    },
  });
}

/**
 * The YAML of `config` (as PortMap.config returned it: listeners and references already
 * rewritten) for a sidecar process whose identity comes from the Workload API at `o.workloadSocket`.
 */
export function childConfigYaml(config: SidecarConfig, o: ChildConfigOverrides): string {
  const doc = parseDocument(readYamlFileText(config.file));
  absolutePaths(doc, dirname(config.file), loadedStrings(config));
  doc.set('name', o.name);
  doc.set('identity', doc.createNode({ source: 'workload-api', socket: `unix://${o.workloadSocket}`, startup_timeout: `${config.identity.startupTimeoutMs}ms` }));
  doc.set('state_dir', o.stateDir);
  doc.setIn(['log', 'level'], o.logLevel);
  if (config.inbound) {
    doc.setIn(['inbound', 'listen'], listenText(config.inbound.listen));
    doc.setIn(['inbound', 'app'], config.inbound.app);
    // Only the mesh's sim key, as the in-process mesh trusts it; other evidence kinds keep their anchors.
    const simKeys = doc.getIn(['attestation', 'verifier', 'sim_keys']);
    if (simKeys === undefined) doc.setIn(['attestation', 'verifier', 'sim_keys'], doc.createNode([o.simPublicKeyFile]));
    else doc.addIn(['attestation', 'verifier', 'sim_keys'], o.simPublicKeyFile);
  }
  if (config.outbound) {
    doc.setIn(['outbound', 'listen'], listenText(config.outbound.listen));
    config.outbound.routes.forEach((route, i) => doc.setIn(['outbound', 'routes', i, 'upstream'], route.upstream));
  }
  if (config.admin) {
    doc.setIn(['admin', 'listen'], listenText(config.admin.listen));
    if (config.admin.mtlsListen) doc.setIn(['admin', 'mtls_listen'], listenText(config.admin.mtlsListen));
    if (o.adminTokenFile) doc.setIn(['admin', 'token_file'], o.adminTokenFile);
  }
  const attester = config.attestation?.attester;
  if (attester?.type === 'sim' && !attester.key) doc.setIn(['attestation', 'attester', 'key'], o.simKeyFile);
  return doc.toString();
}
