/**
 * The config file a dev mesh sidecar runs with as its own process (`attest-sidecar run`): the
 * mesh file's sidecar config, edited as a YAML document so that every setting the mesh does not
 * own stays as written. The copy lives in the mesh's run folder, so each relative path the
 * loader resolved against the original's folder is written absolute.
 */
import { isAbsolute, resolve, dirname } from 'node:path';
import { isMap, isScalar, isSeq, parseDocument } from 'yaml';
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

const camel = (key: string) => key.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());

/** The loaded config's value under a file key (snake_case there, camelCase here) or list index. */
function loadedAt(loaded: unknown, key: string | number): unknown {
  if (loaded === null || typeof loaded !== 'object') return undefined;
  if (typeof key === 'number') return Array.isArray(loaded) ? loaded[key] : undefined;
  const o = loaded as Record<string, unknown>;
  return Object.hasOwn(o, key) ? o[key] : Object.hasOwn(o, camel(key)) ? o[camel(key)] : undefined;
}

/**
 * Rewrites each relative path the loader resolved against `baseDir` to its absolute form: a
 * value whose loaded counterpart (same place in the loaded config) is that absolute path, or,
 * where the loaded config is shaped differently, one that is among the loaded values at all.
 */
function absolutePaths(node: unknown, loaded: unknown, baseDir: string, all: Set<string>): void {
  const fix = (item: unknown, there: unknown) => {
    if (isScalar(item)) {
      if (typeof item.value !== 'string' || isAbsolute(item.value)) return;
      const absolute = resolve(baseDir, item.value);
      if (there === absolute || (there === undefined && all.has(absolute))) item.value = absolute;
    } else absolutePaths(item, there, baseDir, all);
  };
  if (isMap(node)) {
    for (const pair of node.items) if (isScalar(pair.key)) fix(pair.value, loadedAt(loaded, String(pair.key.value)));
  } else if (isSeq(node)) {
    node.items.forEach((item, i) => fix(item, loadedAt(loaded, i)));
  }
}

/**
 * The YAML of `config` (as PortMap.config returned it: listeners and references already
 * rewritten) for a sidecar process whose identity comes from the Workload API at `o.workloadSocket`.
 */
export function childConfigYaml(config: SidecarConfig, o: ChildConfigOverrides): string {
  const doc = parseDocument(readYamlFileText(config.file));
  absolutePaths(doc.contents, config, dirname(config.file), loadedStrings(config));
  doc.set('name', o.name);
  doc.set('identity', doc.createNode({ source: 'workload-api', socket: `unix://${o.workloadSocket}`, startup_timeout: `${config.identity.startupTimeoutMs}ms` }));
  doc.set('state_dir', o.stateDir);
  doc.setIn(['log', 'level'], o.logLevel);
  if (config.inbound) {
    doc.setIn(['inbound', 'listen'], listenText(config.inbound.listen));
    doc.setIn(['inbound', 'app'], config.inbound.app);
    // The mesh's sim key joins whatever the file trusts (the in-process mesh hands it over in memory).
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
