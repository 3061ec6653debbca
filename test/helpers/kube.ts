/**
 * Kubernetes OpenAPI schema validation for tests, with the kubernetes-models package (its
 * validators are generated from the upstream OpenAPI schemas). Those schemas check types, enums
 * and required fields but let unknown fields through, so the pod spec is also checked field by
 * field (`checkKnownFields`): a misspelled field the API server would drop fails here.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { repoRoot } from './paths.js';
import { Pod } from 'kubernetes-models/v1/Pod';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { Service } from 'kubernetes-models/v1/Service';
import { ReplicationController } from 'kubernetes-models/v1/ReplicationController';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { StatefulSet } from 'kubernetes-models/apps/v1/StatefulSet';
import { DaemonSet } from 'kubernetes-models/apps/v1/DaemonSet';
import { ReplicaSet } from 'kubernetes-models/apps/v1/ReplicaSet';
import { Job } from 'kubernetes-models/batch/v1/Job';
import { CronJob } from 'kubernetes-models/batch/v1/CronJob';

type Model = new (data: never) => { validate(): void };

const MODELS: ReadonlyMap<string, Model> = new Map<string, Model>([
  ['v1 Pod', Pod as unknown as Model],
  ['v1 ConfigMap', ConfigMap as unknown as Model],
  ['v1 Service', Service as unknown as Model],
  ['v1 ReplicationController', ReplicationController as unknown as Model],
  ['apps/v1 Deployment', Deployment as unknown as Model],
  ['apps/v1 StatefulSet', StatefulSet as unknown as Model],
  ['apps/v1 DaemonSet', DaemonSet as unknown as Model],
  ['apps/v1 ReplicaSet', ReplicaSet as unknown as Model],
  ['batch/v1 Job', Job as unknown as Model],
  ['batch/v1 CronJob', CronJob as unknown as Model],
]);

const SCHEMAS = path.join(repoRoot, 'node_modules/kubernetes-models/_schemas');
const fieldCache = new Map<string, Set<string>>();

/** The properties a generated validator reads (`data.<name>`): the schema's known fields. */
function knownFields(schema: string): Set<string> {
  let fields = fieldCache.get(schema);
  if (!fields) {
    const source = readFileSync(path.join(SCHEMAS, `IoK8sApiCoreV1${schema}.js`), 'utf8');
    fields = new Set([...source.matchAll(/\bdata\.([A-Za-z]+)/g)].map((m) => m[1]!));
    fieldCache.set(schema, fields);
  }
  return fields;
}

/** Where the check descends: field -> schema (a `[]` prefix: a list of it). Other fields are leaves. */
const NESTED: Readonly<Record<string, Readonly<Record<string, string>>>> = {
  PodSpec: { initContainers: '[]Container', containers: '[]Container', volumes: '[]Volume' },
  Container: { env: '[]EnvVar', ports: '[]ContainerPort', startupProbe: 'Probe', readinessProbe: 'Probe', livenessProbe: 'Probe', resources: 'ResourceRequirements', securityContext: 'SecurityContext', volumeMounts: '[]VolumeMount' },
  Probe: { httpGet: 'HTTPGetAction' },
  EnvVar: { valueFrom: 'EnvVarSource' },
  EnvVarSource: { fieldRef: 'ObjectFieldSelector', secretKeyRef: 'SecretKeySelector' },
  SecurityContext: { capabilities: 'Capabilities', seccompProfile: 'SeccompProfile' },
  Volume: { configMap: 'ConfigMapVolumeSource', emptyDir: 'EmptyDirVolumeSource', csi: 'CSIVolumeSource', secret: 'SecretVolumeSource' },
  SecretVolumeSource: { items: '[]KeyToPath' },
};

/** Throws naming the first field of `value` that the core/v1 `schema` does not define. */
export function checkKnownFields(value: unknown, schema: string, at = schema): void {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return;
  const fields = knownFields(schema);
  for (const [k, v] of Object.entries(value)) {
    if (!fields.has(k)) throw new Error(`${at}.${k}: not a field of ${schema}`);
    const nested = NESTED[schema]?.[k];
    if (nested === undefined) continue;
    if (nested.startsWith('[]')) (v as unknown[]).forEach((e, i) => checkKnownFields(e, nested.slice(2), `${at}.${k}[${i}]`));
    else checkKnownFields(v, nested, `${at}.${k}`);
  }
}

function podSpecOf(o: any): unknown {
  if (o.kind === 'Pod') return o.spec;
  if (o.kind === 'CronJob') return o.spec?.jobTemplate?.spec?.template?.spec;
  return o.spec?.template?.spec;
}

/**
 * Throws (naming the schema errors) unless `object` validates, its pod spec included field by
 * field; a v1 List validates every item.
 */
export function validateKubernetesObject(object: unknown): void {
  const o = object as { apiVersion?: string; kind?: string; items?: unknown[] };
  if (o.apiVersion === 'v1' && o.kind === 'List') {
    if (!Array.isArray(o.items)) throw new Error('List without items');
    o.items.forEach(validateKubernetesObject);
    return;
  }
  const Model = MODELS.get(`${o.apiVersion} ${o.kind}`);
  if (!Model) throw new Error(`no schema model for ${o.apiVersion} ${o.kind} in the test helper`);
  new Model(structuredClone(object) as never).validate();
  const spec = podSpecOf(object);
  if (spec !== undefined) checkKnownFields(spec, 'PodSpec');
}
