/**
 * Injection as a pure function: a manifest object in, the injected object (or the same object,
 * or an InjectionRefusal) out. No I/O; the input is never modified.
 *
 * The pod's own annotations decide (for a workload, those of its pod template): that is what the
 * admission webhook sees on the pod, so `inject` and the webhook agree on every object.
 */
import {
  ANNOTATIONS,
  InjectionRefusal,
  STATUS_INJECTED,
  checkKnownKeys,
  injectionSettings,
  optInOf,
  readAnnotations,
} from './annotations.js';
import { hasSidecar, injectPodSpec } from './pod-spec.js';

type Json = Record<string, unknown>;

export interface InjectOptions {
  /** Image when the pod has no attest-sidecar.io/image annotation. */
  image: string;
  /** The namespace carries attest-sidecar.io/inject=enabled (for the webhook: it was called at all). */
  namespaceOptedIn: boolean;
}

export type SkipReason = 'kind-not-injectable' | 'opted-out' | 'not-opted-in' | 'already-injected';

export type InjectResult =
  | { readonly outcome: 'injected'; readonly object: Json }
  | { readonly outcome: 'unchanged'; readonly object: Json; readonly why: SkipReason };

/** Where each kind keeps its pod template (metadata + spec), by "apiVersion kind". */
const POD_TEMPLATE_PATHS: ReadonlyMap<string, readonly string[]> = new Map([
  ['v1 Pod', []],
  ['v1 ReplicationController', ['spec', 'template']],
  ['apps/v1 Deployment', ['spec', 'template']],
  ['apps/v1 StatefulSet', ['spec', 'template']],
  ['apps/v1 DaemonSet', ['spec', 'template']],
  ['apps/v1 ReplicaSet', ['spec', 'template']],
  ['batch/v1 Job', ['spec', 'template']],
  ['batch/v1 CronJob', ['spec', 'jobTemplate', 'spec', 'template']],
]);

export const INJECTABLE_KINDS: readonly string[] = [...POD_TEMPLATE_PATHS.keys()];

/** `kind: List` nests lists rarely and shallowly; deeper is refused rather than recursed into. */
const MAX_LIST_DEPTH = 4;

function isObject(v: unknown): v is Json {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function objectAt(parent: Json, key: string, where: string): Json {
  const v = parent[key];
  if (!isObject(v)) throw new InjectionRefusal('injection_manifest_invalid', `${where ? `${where}.` : ''}${key} must be an object`);
  return v;
}

/** Injects one pod template ({metadata, spec}); `where` names it in refusals. */
export function injectPodTemplate(template: Json, options: InjectOptions, where: string): InjectResult {
  const metadata = template['metadata'] === undefined ? {} : objectAt(template, 'metadata', where);
  const annotations = readAnnotations(metadata['annotations']);
  const optIn = optInOf(annotations, options.namespaceOptedIn);
  if (optIn === 'opted-out') return { outcome: 'unchanged', object: template, why: 'opted-out' };
  checkKnownKeys(annotations);
  const spec = objectAt(template, 'spec', where);
  const specPath = where ? `${where}.spec` : 'spec';
  if (hasSidecar(spec, specPath)) return { outcome: 'unchanged', object: template, why: 'already-injected' };
  if (optIn === 'not-opted-in') return { outcome: 'unchanged', object: template, why: 'not-opted-in' };
  const settings = injectionSettings(annotations, options.image);
  return {
    outcome: 'injected',
    object: {
      ...template,
      metadata: { ...metadata, annotations: { ...(metadata['annotations'] as Json | undefined), [ANNOTATIONS.status]: STATUS_INJECTED } },
      spec: injectPodSpec(spec, settings, specPath),
    },
  };
}

/** Rebuilds the path down to the template with the injected one in its place (copies, no mutation). */
function replaceAt(object: Json, path: readonly string[], value: Json): Json {
  if (path.length === 0) return value;
  const [head, ...rest] = path as [string, ...string[]];
  return { ...object, [head]: replaceAt(object[head] as Json, rest, value) };
}

function injectList(object: Json, options: InjectOptions, where: string, depth: number): InjectResult {
  const items = object['items'];
  if (!Array.isArray(items)) throw new InjectionRefusal('injection_manifest_invalid', `${where ? `${where}: ` : ''}List items must be a list`);
  let injected = false;
  const out = items.map((item, i) => {
    const r = injectObjectAt(item, options, `${where ? `${where}.` : ''}items[${i}]`, depth + 1);
    if (r.outcome === 'injected') injected = true;
    return r.object;
  });
  return injected ? { outcome: 'injected', object: { ...object, items: out } } : { outcome: 'unchanged', object, why: 'not-opted-in' };
}

function injectObjectAt(value: unknown, options: InjectOptions, where: string, depth: number): InjectResult {
  if (!isObject(value)) throw new InjectionRefusal('injection_manifest_invalid', `${where || 'the document'} is not an object`);
  const kind = value['kind'];
  const apiVersion = value['apiVersion'];
  if (kind === 'List' && apiVersion === 'v1') {
    if (depth >= MAX_LIST_DEPTH) throw new InjectionRefusal('injection_manifest_invalid', `${where}: Lists nested deeper than ${MAX_LIST_DEPTH}`);
    return injectList(value, options, where, depth);
  }
  const path = POD_TEMPLATE_PATHS.get(`${String(apiVersion)} ${String(kind)}`);
  if (path === undefined) return { outcome: 'unchanged', object: value, why: 'kind-not-injectable' };
  const metadata = value['metadata'];
  const name = isObject(metadata) && typeof metadata['name'] === 'string' ? metadata['name'].slice(0, 253) : '(unnamed)';
  const label = `${where ? `${where}: ` : ''}${String(kind)} ${name}`;
  try {
    let template: Json = value;
    const at: string[] = [];
    for (const key of path) {
      template = objectAt(template, key, at.join('.'));
      at.push(key);
    }
    const r = injectPodTemplate(template, options, at.join('.'));
    return r.outcome === 'injected' ? { outcome: 'injected', object: replaceAt(value, path, r.object) } : { ...r, object: value };
  } catch (err) {
    if (err instanceof InjectionRefusal) throw new InjectionRefusal(err.reason, `${label}: ${err.message}`);
    throw err;
  }
}

/**
 * Injects a manifest object: a pod, a workload with a pod template, or a v1 List of them; other
 * kinds come back unchanged. Throws InjectionRefusal (bad annotations, conflicts, malformed).
 * The result shares unchanged subtrees with the input; serialize it, do not mutate it.
 */
export function injectObject(value: unknown, options: InjectOptions): InjectResult {
  return injectObjectAt(value, options, '', 0);
}
