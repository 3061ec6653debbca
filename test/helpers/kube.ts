/**
 * Kubernetes OpenAPI schema validation for tests, with the kubernetes-models package (its
 * validators are generated from the upstream OpenAPI schemas). Unknown fields are not refused by
 * those schemas; types, enums and required fields are.
 */
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

/** Throws (naming the schema errors) unless `object` validates; a v1 List validates every item. */
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
}
