/**
 * The injector's annotations and the checks on their values. Pure: a pod template's annotations
 * in, the injection settings or an InjectionRefusal naming the annotation out. Every check is
 * linear in the value (values are length-capped before any pattern runs).
 */
import { closestMatch } from '../lib/values.js';
import type { ReasonCode } from '../reasons.js';

export const ANNOTATION_PREFIX = 'attest-sidecar.io/';

export const ANNOTATIONS = Object.freeze({
  inject: 'attest-sidecar.io/inject',
  config: 'attest-sidecar.io/config',
  image: 'attest-sidecar.io/image',
  proxyTokenSecret: 'attest-sidecar.io/proxy-token-secret',
  redisPasswordSecret: 'attest-sidecar.io/redis-password-secret',
  cpuRequest: 'attest-sidecar.io/cpu-request',
  cpuLimit: 'attest-sidecar.io/cpu-limit',
  memoryRequest: 'attest-sidecar.io/memory-request',
  memoryLimit: 'attest-sidecar.io/memory-limit',
  /** Written by the injector (the marker); accepted on input so that injected pods re-inject cleanly. */
  status: 'attest-sidecar.io/status',
});

export const STATUS_INJECTED = 'injected';
/** Namespace label that opts every pod of the namespace in. */
export const NAMESPACE_LABEL = 'attest-sidecar.io/inject';
export const NAMESPACE_LABEL_VALUE = 'enabled';

const KNOWN_KEYS: readonly string[] = Object.values(ANNOTATIONS);

/** Why a manifest or pod was refused; `reason` is the catalogue code, `message` names what was wrong. */
export class InjectionRefusal extends Error {
  constructor(
    readonly reason: Extract<ReasonCode, 'injection_annotation_invalid' | 'injection_conflict' | 'injection_manifest_invalid'>,
    message: string,
  ) {
    super(message);
    this.name = 'InjectionRefusal';
  }
}

function badAnnotation(key: string, why: string): InjectionRefusal {
  return new InjectionRefusal('injection_annotation_invalid', `annotation '${key}': ${why}`);
}

/** Resources of the sidecar container; limits without a cpu entry unless annotated. */
export interface SidecarResources {
  requests: { cpu: string; memory: string };
  limits: { cpu?: string; memory: string };
}

export const DEFAULT_RESOURCES: Readonly<SidecarResources> = Object.freeze({
  requests: Object.freeze({ cpu: '50m', memory: '64Mi' }),
  limits: Object.freeze({ memory: '256Mi' }),
});

export interface InjectionSettings {
  configMap: string;
  image: string;
  proxyTokenSecret: string | undefined;
  /** Secret (key `password`) mounted for the sidecar alone: `budget.redis.password_file`. */
  redisPasswordSecret: string | undefined;
  resources: SidecarResources;
}

export type OptIn = 'opted-in' | 'opted-out' | 'not-opted-in';

/**
 * Annotations as a null-prototype string map; a non-object or a non-string value is refused
 * (the API server refuses them too, but `inject` reads hand-written YAML).
 */
export function readAnnotations(value: unknown): Record<string, string> {
  const out = Object.create(null) as Record<string, string>;
  if (value === undefined || value === null) return out;
  if (typeof value !== 'object' || Array.isArray(value)) throw new InjectionRefusal('injection_manifest_invalid', 'metadata.annotations must be a mapping of strings');
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
    if (typeof v !== 'string') {
      const hint = typeof v === 'number' || typeof v === 'boolean' ? ` (quote it in YAML: "${String(v)}")` : '';
      throw badAnnotation(k.slice(0, 253), `must be a string, got ${v === null ? 'null' : Array.isArray(v) ? 'a list' : typeof v}${hint}`);
    }
    out[k] = v;
  }
  return out;
}

/** Opt-out wins; then the pod annotation; then the namespace label. A value other than "true"/"false" is refused. */
export function optInOf(annotations: Readonly<Record<string, string>>, namespaceOptedIn: boolean): OptIn {
  const v = annotations[ANNOTATIONS.inject];
  if (v === 'false') return 'opted-out';
  if (v === 'true') return 'opted-in';
  if (v !== undefined) throw badAnnotation(ANNOTATIONS.inject, `must be "true" or "false", got ${JSON.stringify(v.slice(0, 64))}`);
  return namespaceOptedIn ? 'opted-in' : 'not-opted-in';
}

/** Unknown attest-sidecar.io/* keys are refused: a typo would otherwise silently change nothing. */
export function checkKnownKeys(annotations: Readonly<Record<string, string>>): void {
  for (const key of Object.keys(annotations)) {
    if (!key.startsWith(ANNOTATION_PREFIX) || KNOWN_KEYS.includes(key)) continue;
    const near = closestMatch(key.slice(0, 128), KNOWN_KEYS);
    throw badAnnotation(key, `unknown attest-sidecar annotation${near ? ` (did you mean '${near}'?)` : ''}; known: ${KNOWN_KEYS.join(', ')}`);
  }
}

/** Kubernetes object names of ConfigMaps and Secrets: DNS-1123 subdomain, at most 253 characters. */
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

export function isDns1123Subdomain(name: string): boolean {
  return name.length > 0 && name.length <= 253 && DNS1123_SUBDOMAIN.test(name);
}

function objectName(annotations: Readonly<Record<string, string>>, key: string, what: string): string | undefined {
  const v = annotations[key];
  if (v === undefined) return undefined;
  if (!isDns1123Subdomain(v)) {
    throw badAnnotation(key, `${JSON.stringify(v.slice(0, 64))} is not a valid ${what} name (DNS-1123: lowercase letters, digits, '-' and '.', starting and ending with a letter or digit, at most 253 characters)`);
  }
  return v;
}

/** A container image reference: no whitespace or control characters; the registry checks the rest. */
const IMAGE = /^[\x21-\x7e]{1,512}$/;

/** Kubernetes resource quantity (the serialized form): a non-negative number with an optional suffix. */
const QUANTITY = /^(\d+(\.\d*)?|\.\d+)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?\d{1,3})?$/;
const SUFFIX_SCALE: Readonly<Record<string, number>> = Object.freeze(Object.assign(Object.create(null) as Record<string, number>, {
  '': 1, n: 1e-9, u: 1e-6, m: 1e-3, k: 1e3, M: 1e6, G: 1e9, T: 1e12, P: 1e15, E: 1e18,
  Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, Pi: 2 ** 50, Ei: 2 ** 60,
}));

/** The quantity's value as a float (for request <= limit checks), or undefined when it does not parse. */
export function quantityValue(text: string): number | undefined {
  if (text.length > 64) return undefined;
  const m = QUANTITY.exec(text);
  if (!m) return undefined;
  const suffix = m[3] ?? '';
  const number = Number(m[1]);
  if (suffix.startsWith('e') || suffix.startsWith('E')) return number * 10 ** Number(suffix.slice(1));
  return number * SUFFIX_SCALE[suffix]!;
}

function quantity(annotations: Readonly<Record<string, string>>, key: string, fallback: string | undefined): string | undefined {
  const v = annotations[key];
  if (v === undefined) return fallback;
  if (quantityValue(v) === undefined) throw badAnnotation(key, `${JSON.stringify(v.slice(0, 64))} is not a Kubernetes quantity (examples: 100m, 0.5, 128Mi, 1Gi)`);
  return v;
}

function requestWithinLimit(resource: string, request: string, limit: string | undefined, requestKey: string, limitKey: string): void {
  if (limit === undefined || quantityValue(request)! <= quantityValue(limit)!) return;
  throw badAnnotation(limitKey, `the ${resource} limit ${limit} is below the ${resource} request ${request} (set '${requestKey}' too)`);
}

/** The settings of an opted-in pod: the ConfigMap (required), image, token Secret and resources. */
export function injectionSettings(annotations: Readonly<Record<string, string>>, defaultImage: string): InjectionSettings {
  const configMap = objectName(annotations, ANNOTATIONS.config, 'ConfigMap');
  if (configMap === undefined) throw badAnnotation(ANNOTATIONS.config, 'is required: name the ConfigMap that holds the sidecar configuration (sidecar.yaml)');
  const image = annotations[ANNOTATIONS.image] ?? defaultImage;
  if (!IMAGE.test(image)) throw badAnnotation(ANNOTATIONS.image, `${JSON.stringify(image.slice(0, 64))} is not an image reference`);
  const cpuRequest = quantity(annotations, ANNOTATIONS.cpuRequest, DEFAULT_RESOURCES.requests.cpu)!;
  const cpuLimit = quantity(annotations, ANNOTATIONS.cpuLimit, undefined);
  const memoryRequest = quantity(annotations, ANNOTATIONS.memoryRequest, DEFAULT_RESOURCES.requests.memory)!;
  const memoryLimit = quantity(annotations, ANNOTATIONS.memoryLimit, DEFAULT_RESOURCES.limits.memory)!;
  requestWithinLimit('cpu', cpuRequest, cpuLimit, ANNOTATIONS.cpuRequest, ANNOTATIONS.cpuLimit);
  requestWithinLimit('memory', memoryRequest, memoryLimit, ANNOTATIONS.memoryRequest, ANNOTATIONS.memoryLimit);
  return {
    configMap,
    image,
    proxyTokenSecret: objectName(annotations, ANNOTATIONS.proxyTokenSecret, 'Secret'),
    redisPasswordSecret: objectName(annotations, ANNOTATIONS.redisPasswordSecret, 'Secret'),
    resources: {
      requests: { cpu: cpuRequest, memory: memoryRequest },
      limits: cpuLimit === undefined ? { memory: memoryLimit } : { cpu: cpuLimit, memory: memoryLimit },
    },
  };
}
