/**
 * What the deploy/ tests need: a real kustomize (scripts/build-kustomize.sh, cached), the CRDs of
 * cert-manager and spire-controller-manager (from the Go module proxy, cached), schema validation
 * of core objects (kubernetes-models, plus a strict decode into the k8s.io/api Go types, which
 * refuses unknown fields as `kubectl apply --validate=strict` does) and of CRD instances (ajv
 * against the CRD's openAPIV3Schema, plus the unknown-field check the API server's pruning would
 * otherwise hide).
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync, mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { Ajv, type ValidateFunction } from 'ajv';
import { parseAllDocuments } from 'yaml';
import * as coreV1 from 'kubernetes-models/v1';
import * as appsV1 from 'kubernetes-models/apps/v1';
import * as policyV1 from 'kubernetes-models/policy/v1';
import * as networkingV1 from 'kubernetes-models/networking.k8s.io/v1';
import * as admissionV1 from 'kubernetes-models/admissionregistration.k8s.io/v1';
import * as rbacV1 from 'kubernetes-models/rbac.authorization.k8s.io/v1';
import { cacheRoot } from '../../src/mesh/spire/binaries.js';
import { goCommand, goProgramsMissing, type GoProgramSet } from '../helpers/go-programs.js';
import { repoRoot } from '../helpers/paths.js';
import type { Missing } from '../helpers/needs.js';

const run = promisify(execFile);

export type K8sObject = {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  [key: string]: unknown;
};

/** The version scripts/build-kustomize.sh builds (its cache folder's name). */
const KUSTOMIZE_VERSION = '5.8.1';

/** A cold kustomize build or CRD download fetches modules and compiles: minutes on a busy machine. */
export const TOOL_TIMEOUT_MS = 600_000;

/** Where the CRDs come from: a Go module of the project that publishes them, and the files in it. */
export const CRD_SOURCES = [
  {
    module: 'github.com/spiffe/spire-controller-manager',
    version: 'v0.6.4',
    files: ['config/crd/bases/spire.spiffe.io_clusterspiffeids.yaml'],
  },
  {
    module: 'github.com/cert-manager/cert-manager',
    version: 'v1.21.2',
    files: ['deploy/crds/cert-manager.io_certificates.yaml', 'deploy/crds/cert-manager.io_issuers.yaml'],
  },
] as const;

function crdCacheDir(source: (typeof CRD_SOURCES)[number]): string {
  return path.join(cacheRoot(), 'crds', `${source.module.replaceAll('/', '_')}@${source.version}`);
}

function sourceCached(source: (typeof CRD_SOURCES)[number]): boolean {
  return source.files.every((f) => existsSync(path.join(crdCacheDir(source), path.basename(f))));
}

function crdsCached(): boolean {
  return CRD_SOURCES.every(sourceCached);
}

/**
 * test/go/kube-tools: kube-strict decodes core objects strictly into the k8s.io/api v0.37 Go
 * types; cel-eval evaluates CEL expressions (cel-go v0.31) as matchConditions.
 */
export const KUBE_TOOLS: GoProgramSet = {
  name: 'kube-tools',
  dir: 'test/go/kube-tools',
  programs: { 'kube-strict': './kube-strict', 'cel-eval': './cel-eval' },
};

/** Why the tools cannot be had here (no Go and nothing cached), or undefined. */
export function deployToolsMissing(): Missing {
  if (goCommand() !== undefined) return undefined;
  const kustomizeCached = existsSync(path.join(cacheRoot(), `kustomize-v${KUSTOMIZE_VERSION}`, 'kustomize'));
  const missing = 'no Go toolchain to build kustomize and test/go/kube-tools and to fetch CRDs (Go >= 1.26 on PATH or in /usr/local/go/bin)';
  return kustomizeCached && crdsCached() && goProgramsMissing(KUBE_TOOLS) === undefined ? undefined : missing;
}

function goEnv(): NodeJS.ProcessEnv {
  const go = goCommand();
  const dir = go && go.includes('/') ? path.dirname(go) : undefined;
  return { ...process.env, GOTOOLCHAIN: 'local', ...(dir ? { PATH: `${dir}${path.delimiter}${process.env.PATH ?? ''}` } : {}) };
}

/** The kustomize binary (built once into the cache by scripts/build-kustomize.sh). */
export async function kustomizeBinary(): Promise<string> {
  const { stdout } = await run('sh', [path.join(repoRoot, 'scripts/build-kustomize.sh')], {
    env: goEnv(),
    timeout: TOOL_TIMEOUT_MS,
    maxBuffer: 16 << 20,
  });
  return stdout.trim().split('\n').pop()!;
}

/** `kustomize build DIR`: its text and the parsed objects (one per YAML document). */
export async function render(kustomize: string, dir: string): Promise<{ text: string; objects: K8sObject[] }> {
  const { stdout } = await run(kustomize, ['build', dir], { timeout: 120_000, maxBuffer: 64 << 20 });
  const objects = parseAllDocuments(stdout).map((d) => {
    if (d.errors.length > 0) throw new Error(`kustomize output of ${dir} is not YAML: ${d.errors[0]!.message}`);
    return d.toJS() as K8sObject;
  });
  return { text: stdout, objects };
}

export interface StrictResult {
  kind: string;
  name: string;
  result: 'ok' | 'invalid' | 'unregistered';
  error?: string;
}

function runWithStdin(bin: string, input: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(bin, [], { timeout: 60_000, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${path.basename(bin)} failed: ${err.message}\n${stderr}`));
      else resolve(stdout);
    });
    child.stdin!.on('error', reject);
    child.stdin!.end(input);
  });
}

/** Runs kube-strict over multi-document YAML: one result per object. */
export async function strictDecode(bin: string, yamlText: string): Promise<StrictResult[]> {
  const stdout = await runWithStdin(bin, yamlText);
  return stdout.split('\n').filter((l) => l.trim() !== '').map((l) => JSON.parse(l) as StrictResult);
}

/** Evaluates each expression against each object (bound to `object`): rows of true, false or an error text. */
export async function celEval(bin: string, expressions: string[], objects: unknown[]): Promise<(boolean | string)[][]> {
  const stdout = await runWithStdin(bin, JSON.stringify({ expressions, objects }));
  return (JSON.parse(stdout) as { results: (boolean | string)[][] }).results;
}

/**
 * CRDs by `group/version kind` -> their openAPIV3Schema. Downloaded with `go mod download -json`
 * (a module's zip from the proxy, checked against the checksum database), then copied into the
 * cache so that a warm run needs neither Go nor the network.
 */
export async function loadCrdSchemas(): Promise<Map<string, Record<string, unknown>>> {
  const schemas = new Map<string, Record<string, unknown>>();
  for (const source of CRD_SOURCES) {
    const dir = crdCacheDir(source);
    if (!sourceCached(source)) {
      const go = goCommand();
      if (!go) throw new Error('no Go toolchain to download the CRDs');
      const cwd = mkdtempSync(path.join(os.tmpdir(), 'crd-download-'));
      try {
        const { stdout } = await run(go, ['mod', 'download', '-json', `${source.module}@${source.version}`], {
          cwd,
          env: goEnv(),
          timeout: TOOL_TIMEOUT_MS,
          maxBuffer: 16 << 20,
        });
        const info = JSON.parse(stdout) as { Dir?: string; Error?: string };
        if (!info.Dir) throw new Error(`go mod download ${source.module}@${source.version}: ${info.Error ?? 'no Dir'}`);
        const partial = `${dir}.partial.${process.pid}`;
        mkdirSync(partial, { recursive: true });
        for (const f of source.files) writeFileSync(path.join(partial, path.basename(f)), readFileSync(path.join(info.Dir, f)));
        // A folder missing a file (removed by hand) would block the rename.
        if (existsSync(dir) && !sourceCached(source)) rmSync(dir, { recursive: true, force: true });
        try {
          renameSync(partial, dir);
        } catch (err) {
          // Another test file renamed its download into place first: use that one.
          rmSync(partial, { recursive: true, force: true });
          if (!sourceCached(source)) throw err;
        }
      } finally {
        rmSync(cwd, { recursive: true, force: true });
      }
    }
    for (const f of source.files) {
      const crd = parseAllDocuments(readFileSync(path.join(dir, path.basename(f)), 'utf8'))
        .map((d) => d.toJS() as { kind?: string; spec?: CrdSpec })
        .find((d) => d?.kind === 'CustomResourceDefinition');
      if (!crd?.spec) throw new Error(`${f}: no CustomResourceDefinition`);
      for (const v of crd.spec.versions) schemas.set(`${crd.spec.group}/${v.name} ${crd.spec.names.kind}`, v.schema.openAPIV3Schema);
    }
  }
  return schemas;
}

interface CrdSpec {
  group: string;
  names: { kind: string };
  versions: { name: string; schema: { openAPIV3Schema: Record<string, unknown> } }[];
}

type ModelClass = { apiVersion: string; kind: string; new (data: unknown): { validate(): void } };

/** apiVersion + kind -> the kubernetes-models class that validates it. */
const CORE_MODELS = new Map<string, ModelClass>();
for (const mod of [coreV1, appsV1, policyV1, networkingV1, admissionV1, rbacV1] as Record<string, unknown>[]) {
  for (const value of Object.values(mod)) {
    if (typeof value !== 'function') continue;
    const cls = value as unknown as Partial<ModelClass>;
    if (typeof cls.apiVersion === 'string' && typeof cls.kind === 'string') CORE_MODELS.set(`${cls.apiVersion} ${cls.kind}`, cls as ModelClass);
  }
}

export class SchemaValidator {
  private readonly ajv = new Ajv({ strict: false, allErrors: true, validateFormats: false });
  private readonly compiled = new Map<string, ValidateFunction>();

  constructor(private readonly crds: Map<string, Record<string, unknown>>) {}

  /** Problems of one object against its schema ([] when valid); an object of no known schema is a problem. */
  problems(obj: K8sObject): string[] {
    const key = `${obj.apiVersion} ${obj.kind}`;
    const model = CORE_MODELS.get(key);
    if (model) {
      try {
        new model(obj).validate();
        return [];
      } catch (err) {
        return [`${key} ${obj.metadata?.name}: ${err instanceof Error ? err.message : String(err)}`];
      }
    }
    const schema = this.crds.get(key);
    if (!schema) return [`${key} ${obj.metadata?.name}: no schema (neither a Kubernetes kind nor a known CRD)`];
    let validate = this.compiled.get(key);
    if (!validate) {
      validate = this.ajv.compile(schema);
      this.compiled.set(key, validate);
    }
    const out: string[] = [];
    const name = `${key} ${obj.metadata?.name}`;
    const valid = validate(obj as unknown);
    if (!valid) out.push(...(validate.errors ?? []).map((e) => `${name}${e.instancePath}: ${e.message}`));
    out.push(...unknownFields(schema, obj, '').map((p) => `${name}${p}: unknown field (the API server would prune it)`));
    return out;
  }
}

/**
 * Fields a structural schema does not declare: the API server silently drops them, so a typo
 * would never reach the controller. Objects with `additionalProperties` or
 * `x-kubernetes-preserve-unknown-fields`, and `metadata`, are open.
 */
export function unknownFields(schema: Record<string, unknown>, value: unknown, at: string): string[] {
  if (value === null || typeof value !== 'object') return [];
  if (Array.isArray(value)) {
    const items = schema.items as Record<string, unknown> | undefined;
    return items ? value.flatMap((v, i) => unknownFields(items, v, `${at}/${i}`)) : [];
  }
  const props = schema.properties as Record<string, Record<string, unknown>> | undefined;
  const extra = schema.additionalProperties;
  const out: string[] = [];
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
    const sub = props && Object.hasOwn(props, k) ? props[k] : undefined;
    if (sub) {
      if (!(at === '' && k === 'metadata')) out.push(...unknownFields(sub, v, `${at}/${k}`));
    } else if (extra && typeof extra === 'object') {
      out.push(...unknownFields(extra as Record<string, unknown>, v, `${at}/${k}`));
    } else if (props && !extra && schema['x-kubernetes-preserve-unknown-fields'] !== true) {
      out.push(`${at}/${k}`);
    }
  }
  return out;
}

/** Every pod spec of a workload object (Deployment, StatefulSet, DaemonSet, Job, Pod). */
export function podSpecs(obj: K8sObject): { where: string; spec: Record<string, unknown>; meta: K8sObject['metadata'] | undefined }[] {
  const spec = obj.spec as Record<string, any> | undefined;
  if (obj.kind === 'Pod') return [{ where: `Pod ${obj.metadata.name}`, spec: spec ?? {}, meta: obj.metadata }];
  if (spec?.template?.spec) return [{ where: `${obj.kind} ${obj.metadata.name}`, spec: spec.template.spec, meta: spec.template.metadata }];
  if (spec?.jobTemplate?.spec?.template?.spec) {
    const tpl = spec.jobTemplate.spec.template;
    return [{ where: `${obj.kind} ${obj.metadata.name}`, spec: tpl.spec, meta: tpl.metadata }];
  }
  return [];
}

/** Volume types the restricted Pod Security Standard admits. */
const RESTRICTED_VOLUME_TYPES = new Set(['configMap', 'csi', 'downwardAPI', 'emptyDir', 'ephemeral', 'persistentVolumeClaim', 'projected', 'secret']);

/**
 * What every pod of deploy/ must satisfy (the restricted Pod Security Standard and more): no API
 * token, and each container non-root, read-only root, no privilege escalation, all capabilities
 * dropped, seccomp RuntimeDefault, a memory limit. Problems as text ([] when none).
 */
export function podSecurityProblems(where: string, spec: Record<string, any>): string[] {
  const out: string[] = [];
  const podSc = spec.securityContext ?? {};
  if (spec.automountServiceAccountToken !== false) out.push(`${where}: automountServiceAccountToken is not false`);
  for (const key of ['hostNetwork', 'hostPID', 'hostIPC']) if (spec[key]) out.push(`${where}: ${key}`);
  for (const v of spec.volumes ?? []) {
    const type = Object.keys(v).find((k) => k !== 'name');
    if (!RESTRICTED_VOLUME_TYPES.has(type ?? '')) out.push(`${where}: volume ${v.name} of type ${type} (not allowed by the restricted Pod Security Standard)`);
  }
  const containers = [...(spec.initContainers ?? []), ...(spec.containers ?? [])];
  if (containers.length === 0) out.push(`${where}: no containers`);
  for (const c of containers) {
    const sc = c.securityContext ?? {};
    const name = `${where} ${c.name}`;
    if (!(sc.runAsNonRoot ?? podSc.runAsNonRoot)) out.push(`${name}: runAsNonRoot is not set`);
    if ((sc.runAsUser ?? podSc.runAsUser) === 0) out.push(`${name}: runs as uid 0`);
    if (sc.readOnlyRootFilesystem !== true) out.push(`${name}: readOnlyRootFilesystem is not true`);
    if (sc.allowPrivilegeEscalation !== false) out.push(`${name}: allowPrivilegeEscalation is not false`);
    if (JSON.stringify(sc.capabilities?.drop) !== '["ALL"]') out.push(`${name}: capabilities.drop is not [ALL]`);
    if ((sc.seccompProfile ?? podSc.seccompProfile)?.type !== 'RuntimeDefault') out.push(`${name}: seccomp is not RuntimeDefault`);
    if (!c.resources?.limits?.memory) out.push(`${name}: no memory limit`);
    if ((c.ports ?? []).some((p: any) => p.hostPort)) out.push(`${name}: a hostPort`);
  }
  return out;
}
