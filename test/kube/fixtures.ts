/** Manifests for the injector tests: every injectable kind around the same pod template. */

export type Json = Record<string, any>;

export const OPTED_IN = Object.freeze({ 'attest-sidecar.io/inject': 'true', 'attest-sidecar.io/config': 'agent-config' });

export function podTemplate(annotations: Record<string, string> = { ...OPTED_IN }, spec: Json = {}): Json {
  return {
    metadata: { labels: { app: 'agent' }, annotations },
    spec: {
      containers: [{ name: 'agent', image: 'registry.example/agent:1.2', env: [{ name: 'MODE', value: 'prod' }] }],
      ...spec,
    },
  };
}

const selector = { matchLabels: { app: 'agent' } };

/** apiVersion, kind, a builder from a pod template, and where the template sits in the object. */
export const KINDS: readonly { kind: string; make: (tpl: Json) => Json; template: (o: Json) => Json }[] = [
  {
    kind: 'Pod',
    make: (tpl) => ({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'agent', namespace: 'agents', ...tpl.metadata }, spec: tpl.spec }),
    template: (o) => o,
  },
  {
    kind: 'Deployment',
    make: (tpl) => ({ apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'agent' }, spec: { replicas: 2, selector, template: tpl } }),
    template: (o) => o.spec.template,
  },
  {
    kind: 'StatefulSet',
    make: (tpl) => ({ apiVersion: 'apps/v1', kind: 'StatefulSet', metadata: { name: 'agent' }, spec: { serviceName: 'agent', selector, template: tpl } }),
    template: (o) => o.spec.template,
  },
  {
    kind: 'DaemonSet',
    make: (tpl) => ({ apiVersion: 'apps/v1', kind: 'DaemonSet', metadata: { name: 'agent' }, spec: { selector, template: tpl } }),
    template: (o) => o.spec.template,
  },
  {
    kind: 'ReplicaSet',
    make: (tpl) => ({ apiVersion: 'apps/v1', kind: 'ReplicaSet', metadata: { name: 'agent' }, spec: { selector, template: tpl } }),
    template: (o) => o.spec.template,
  },
  {
    kind: 'ReplicationController',
    make: (tpl) => ({ apiVersion: 'v1', kind: 'ReplicationController', metadata: { name: 'agent' }, spec: { selector: { app: 'agent' }, template: tpl } }),
    template: (o) => o.spec.template,
  },
  {
    kind: 'Job',
    make: (tpl) => ({ apiVersion: 'batch/v1', kind: 'Job', metadata: { name: 'agent' }, spec: { template: { ...tpl, spec: { ...tpl.spec, restartPolicy: 'Never' } } } }),
    template: (o) => o.spec.template,
  },
  {
    kind: 'CronJob',
    make: (tpl) => ({
      apiVersion: 'batch/v1',
      kind: 'CronJob',
      metadata: { name: 'agent' },
      spec: { schedule: '*/5 * * * *', jobTemplate: { spec: { template: { ...tpl, spec: { ...tpl.spec, restartPolicy: 'OnFailure' } } } } },
    }),
    template: (o) => o.spec.jobTemplate.spec.template,
  },
];

export function pod(annotations: Record<string, string> = { ...OPTED_IN }, spec: Json = {}): Json {
  return KINDS[0]!.make(podTemplate(annotations, spec));
}
