/**
 * Injection as a pure function: every injectable kind, opt-in and opt-out, idempotence, refusals
 * naming the annotation; every injected object validated against the Kubernetes schemas.
 */
import t, { type Test } from 'tap';
import { injectObject, type InjectResult } from '../../src/kube/inject.js';
import { InjectionRefusal, quantityValue } from '../../src/kube/annotations.js';
import { validateKubernetesObject } from '../helpers/kube.js';
import { KINDS, OPTED_IN, pod, podTemplate, type Json } from './fixtures.js';

const IMAGE = 'registry.example/attest-sidecar:0.1.0';
const opts = (namespaceOptedIn = false) => ({ image: IMAGE, namespaceOptedIn });

function injected(t: Test, r: InjectResult): Json {
  t.equal(r.outcome, 'injected', 'injected');
  return r.object as Json;
}

function refusal(fn: () => unknown): InjectionRefusal {
  try {
    fn();
  } catch (err) {
    if (err instanceof InjectionRefusal) return err;
    throw err;
  }
  throw new Error('expected an InjectionRefusal, the object was accepted');
}

for (const k of KINDS) {
  t.test(`${k.kind}: the pod template gets the sidecar, volumes, proxy env and marker`, async (t) => {
    const input = k.make(podTemplate());
    const before = structuredClone(input);
    const out = injected(t, injectObject(input, opts()));
    t.same(input, before, 'the input is not modified');
    validateKubernetesObject(out);
    const tpl = k.template(out);
    t.equal(tpl.metadata.annotations['attest-sidecar.io/status'], 'injected', 'marker annotation');
    const [sidecar, ...others] = tpl.spec.initContainers;
    t.equal(others.length, 0);
    t.equal(sidecar.name, 'attest-sidecar');
    t.equal(sidecar.restartPolicy, 'Always', 'native sidecar');
    t.equal(sidecar.image, IMAGE);
    t.same(sidecar.args, ['run', '--config', '/etc/attest-sidecar/sidecar.yaml']);
    t.same(sidecar.env, [
      { name: 'POD_IP', valueFrom: { fieldRef: { fieldPath: 'status.podIP' } } },
      { name: 'SPIFFE_ENDPOINT_SOCKET', value: 'unix:///spiffe-workload-api/spire-agent.sock' },
      { name: 'ATTEST_SIDECAR_STATE_DIR', value: '/var/lib/attest-sidecar' },
    ]);
    t.same(sidecar.startupProbe.httpGet, { path: '/readyz', port: 15021, scheme: 'HTTP' });
    t.same(sidecar.readinessProbe.httpGet, { path: '/readyz', port: 15021, scheme: 'HTTP' });
    t.same(sidecar.livenessProbe.httpGet, { path: '/healthz', port: 15021, scheme: 'HTTP' });
    t.same(sidecar.resources, { requests: { cpu: '50m', memory: '64Mi' }, limits: { memory: '256Mi' } });
    t.same(sidecar.securityContext, {
      allowPrivilegeEscalation: false,
      capabilities: { drop: ['ALL'] },
      readOnlyRootFilesystem: true,
      runAsNonRoot: true,
      runAsUser: 10001,
      runAsGroup: 10001,
      seccompProfile: { type: 'RuntimeDefault' },
    });
    t.same(sidecar.volumeMounts, [
      { name: 'attest-sidecar-config', mountPath: '/etc/attest-sidecar', readOnly: true },
      { name: 'attest-sidecar-state', mountPath: '/var/lib/attest-sidecar' },
      { name: 'attest-sidecar-spiffe', mountPath: '/spiffe-workload-api', readOnly: true },
    ]);
    t.same(tpl.spec.volumes, [
      { name: 'attest-sidecar-config', configMap: { name: 'agent-config' } },
      { name: 'attest-sidecar-state', emptyDir: {} },
      { name: 'attest-sidecar-spiffe', csi: { driver: 'csi.spiffe.io', readOnly: true } },
    ]);
    t.same(tpl.spec.containers[0].env, [
      { name: 'MODE', value: 'prod' },
      { name: 'HTTP_PROXY', value: 'http://127.0.0.1:15001' },
      { name: 'http_proxy', value: 'http://127.0.0.1:15001' },
      { name: 'NO_PROXY', value: '127.0.0.1,localhost,.svc,.cluster.local' },
      { name: 'no_proxy', value: '127.0.0.1,localhost,.svc,.cluster.local' },
    ]);
    t.notOk(sidecar.env.some((e: Json) => /proxy/i.test(e.name)), 'the sidecar itself gets no proxy env');

    const again = injectObject(out, opts());
    t.equal(again.outcome, 'unchanged', 'injecting twice changes nothing');
    t.equal(JSON.stringify(again.object), JSON.stringify(out), 'byte-identical');
    t.equal(JSON.stringify(injectObject(structuredClone(input), opts()).object), JSON.stringify(out), 'deterministic: the same input gives the same bytes');
  });
}

t.test('the sidecar goes before existing init containers, which get the proxy env too', async (t) => {
  const out = injected(t, injectObject(pod(undefined, { initContainers: [{ name: 'fetch-model', image: 'curl:8' }] }), opts()));
  validateKubernetesObject(out);
  t.same(out.spec.initContainers.map((c: Json) => c.name), ['attest-sidecar', 'fetch-model']);
  t.same(out.spec.initContainers[1].env.map((e: Json) => e.name), ['HTTP_PROXY', 'http_proxy', 'NO_PROXY', 'no_proxy']);
});

t.test('the proxy token Secret: mounted in the sidecar, in the agents\' proxy URL', async (t) => {
  const out = injected(t, injectObject(pod({ ...OPTED_IN, 'attest-sidecar.io/proxy-token-secret': 'agent-token' }), opts()));
  validateKubernetesObject(out);
  const env = out.spec.containers[0].env;
  t.same(env[1], { name: 'ATTEST_SIDECAR_PROXY_TOKEN', valueFrom: { secretKeyRef: { name: 'agent-token', key: 'token' } } }, 'the token variable comes before its use');
  t.equal(env[2].value, 'http://agent:$(ATTEST_SIDECAR_PROXY_TOKEN)@127.0.0.1:15001');
  t.equal(env[3].value, env[2].value, 'http_proxy too');
  t.same(out.spec.volumes.at(-1), { name: 'attest-sidecar-caller-token', secret: { secretName: 'agent-token', items: [{ key: 'token', path: 'token' }] } });
  t.same(out.spec.initContainers[0].volumeMounts.at(-1), { name: 'attest-sidecar-caller-token', mountPath: '/var/run/attest-sidecar/caller-token', readOnly: true });
  t.notOk(out.spec.initContainers[0].env.some((e: Json) => e.name === 'ATTEST_SIDECAR_PROXY_TOKEN'), 'the sidecar reads the file, not an env var');
});

t.test('the Redis password Secret: mounted read-only in the sidecar alone, never in the agents\' environment', async (t) => {
  const out = injected(t, injectObject(pod({ ...OPTED_IN, 'attest-sidecar.io/redis-password-secret': 'attest-sidecar-redis' }), opts()));
  validateKubernetesObject(out);
  t.same(out.spec.volumes.at(-1), { name: 'attest-sidecar-redis-password', secret: { secretName: 'attest-sidecar-redis', items: [{ key: 'password', path: 'password' }] } });
  t.same(out.spec.initContainers[0].volumeMounts.at(-1), { name: 'attest-sidecar-redis-password', mountPath: '/var/run/attest-sidecar/redis', readOnly: true });
  t.notOk(JSON.stringify(out.spec.containers).includes('attest-sidecar-redis'), 'the agent containers see neither the volume nor the Secret');
  t.throws(() => injectObject(pod({ ...OPTED_IN, 'attest-sidecar.io/redis-password-secret': 'Not_A_Name' }), opts()), { reason: 'injection_annotation_invalid', message: /redis-password-secret.*not a valid Secret name/ });
});

t.test('image and resources from annotations', async (t) => {
  const out = injected(
    t,
    injectObject(
      pod({ ...OPTED_IN, 'attest-sidecar.io/image': 'mirror.local/sidecar@sha256:abc', 'attest-sidecar.io/cpu-request': '0.2', 'attest-sidecar.io/cpu-limit': '1', 'attest-sidecar.io/memory-request': '100Mi', 'attest-sidecar.io/memory-limit': '1Gi' }),
      opts(),
    ),
  );
  validateKubernetesObject(out);
  t.equal(out.spec.initContainers[0].image, 'mirror.local/sidecar@sha256:abc');
  t.same(out.spec.initContainers[0].resources, { requests: { cpu: '0.2', memory: '100Mi' }, limits: { cpu: '1', memory: '1Gi' } });
});

t.test('opt-in and opt-out', async (t) => {
  const plain = pod({});
  t.equal(injectObject(plain, opts(false)).outcome, 'unchanged', 'neither annotation nor namespace label: unchanged');
  t.equal((injectObject(plain, opts(false)) as { why: string }).why, 'not-opted-in');
  t.match(refusal(() => injectObject(plain, opts(true))).message, /attest-sidecar\.io\/config': is required/, 'namespace opt-in still needs the config annotation');
  const byNamespace = injected(t, injectObject(pod({ 'attest-sidecar.io/config': 'agent-config' }), opts(true)));
  validateKubernetesObject(byNamespace);
  const out = pod({ 'attest-sidecar.io/inject': 'false', 'attest-sidecar.io/config': 'agent-config' });
  const r = injectObject(out, opts(true));
  t.equal(r.outcome, 'unchanged', 'opt-out wins over the namespace label');
  t.equal(r.object, out, 'the very same object');
  t.equal(injectObject(pod({ 'attest-sidecar.io/inject': 'false', 'attest-sidecar.io/cpu-request': 'lots', 'attest-sidecar.io/bogus': 'x' }), opts(true)).outcome, 'unchanged', 'opted out: other annotations are not checked');
  const deployment = KINDS[1]!.make(podTemplate({}));
  deployment.metadata.annotations = { ...OPTED_IN };
  t.equal(injectObject(deployment, opts()).outcome, 'unchanged', "a workload's own annotations do not opt its pods in (the pod template's do)");
});

t.test('a pod that already has an attest-sidecar container is left alone', async (t) => {
  for (const where of ['containers', 'initContainers']) {
    const p = pod(undefined, { [where]: [{ name: 'attest-sidecar', image: 'old:1' }, ...(where === 'initContainers' ? [] : [{ name: 'agent', image: 'a:1' }])] });
    const r = injectObject(p, opts(true));
    t.equal(r.outcome, 'unchanged', where);
    t.equal(r.object, p);
  }
  const markedOnly = pod({ ...OPTED_IN, 'attest-sidecar.io/status': 'injected' });
  t.equal(injectObject(markedOnly, opts()).outcome, 'injected', 'the marker alone (sidecar removed) does not stop injection');
});

t.test('other kinds and other API versions pass through unchanged; a List has its items injected', async (t) => {
  const others = [
    { apiVersion: 'v1', kind: 'Service', metadata: { name: 's' }, spec: { ports: [{ port: 80 }] } },
    { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'agent-config' }, data: { 'sidecar.yaml': 'x: 1\n' } },
    { apiVersion: 'example.com/v1', kind: 'Deployment', metadata: { name: 'crd' }, spec: { template: podTemplate() } },
  ];
  for (const o of others) {
    const r = injectObject(o, opts(true));
    t.equal(r.outcome, 'unchanged', `${o.apiVersion} ${o.kind}`);
    t.equal(r.object, o);
  }
  const list = { apiVersion: 'v1', kind: 'List', items: [others[0], KINDS[1]!.make(podTemplate()), pod({})] };
  const out = injected(t, injectObject(list, opts()));
  validateKubernetesObject(out);
  t.equal(out.items[0], list.items[0]);
  t.equal(out.items[1].spec.template.spec.initContainers[0].name, 'attest-sidecar');
  t.equal(out.items[2], list.items[2], 'a not-opted-in item is the same object');
  t.match(refusal(() => injectObject({ ...list, items: [pod({ 'attest-sidecar.io/inject': 'true' })] }, opts())).message, /^items\[0\]: Pod agent: annotation 'attest-sidecar.io\/config'/);
});

const REFUSED: [string, () => Json, RegExp, string][] = [
  ['config missing', () => pod({ 'attest-sidecar.io/inject': 'true' }), /annotation 'attest-sidecar\.io\/config': is required/, 'injection_annotation_invalid'],
  ['config not DNS-1123', () => pod({ ...OPTED_IN, 'attest-sidecar.io/config': 'Agent_Config' }), /'attest-sidecar\.io\/config': "Agent_Config" is not a valid ConfigMap name/, 'injection_annotation_invalid'],
  ['config too long', () => pod({ ...OPTED_IN, 'attest-sidecar.io/config': 'a'.repeat(254) }), /'attest-sidecar\.io\/config'.*not a valid ConfigMap name/, 'injection_annotation_invalid'],
  ['config with an empty label', () => pod({ ...OPTED_IN, 'attest-sidecar.io/config': 'a..b' }), /not a valid ConfigMap name/, 'injection_annotation_invalid'],
  ['token Secret not DNS-1123', () => pod({ ...OPTED_IN, 'attest-sidecar.io/proxy-token-secret': '-tok' }), /'attest-sidecar\.io\/proxy-token-secret'.*not a valid Secret name/, 'injection_annotation_invalid'],
  ['inject not true/false', () => pod({ ...OPTED_IN, 'attest-sidecar.io/inject': 'yes' }), /'attest-sidecar\.io\/inject': must be "true" or "false", got "yes"/, 'injection_annotation_invalid'],
  ['unknown key', () => pod({ ...OPTED_IN, 'attest-sidecar.io/memory-limt': '1Gi' }), /'attest-sidecar\.io\/memory-limt': unknown attest-sidecar annotation \(did you mean 'attest-sidecar\.io\/memory-limit'\?\)/, 'injection_annotation_invalid'],
  ['cpu not a quantity', () => pod({ ...OPTED_IN, 'attest-sidecar.io/cpu-request': 'lots' }), /'attest-sidecar\.io\/cpu-request': "lots" is not a Kubernetes quantity/, 'injection_annotation_invalid'],
  ['negative memory', () => pod({ ...OPTED_IN, 'attest-sidecar.io/memory-limit': '-1Gi' }), /'attest-sidecar\.io\/memory-limit'.*not a Kubernetes quantity/, 'injection_annotation_invalid'],
  ['memory unit typo', () => pod({ ...OPTED_IN, 'attest-sidecar.io/memory-limit': '256MB' }), /'attest-sidecar\.io\/memory-limit'.*not a Kubernetes quantity/, 'injection_annotation_invalid'],
  ['limit below request', () => pod({ ...OPTED_IN, 'attest-sidecar.io/memory-limit': '32Mi' }), /'attest-sidecar\.io\/memory-limit': the memory limit 32Mi is below the memory request 64Mi/, 'injection_annotation_invalid'],
  ['image with a space', () => pod({ ...OPTED_IN, 'attest-sidecar.io/image': 'a b' }), /'attest-sidecar\.io\/image'.*not an image reference/, 'injection_annotation_invalid'],
  ['annotation not a string', () => pod({ ...OPTED_IN, 'attest-sidecar.io/cpu-request': 1 as unknown as string }), /'attest-sidecar\.io\/cpu-request': must be a string, got number/, 'injection_annotation_invalid'],
  ['agent sets HTTP_PROXY', () => pod(undefined, { containers: [{ name: 'agent', image: 'a', env: [{ name: 'HTTP_PROXY', value: 'http://elsewhere' }] }] }), /spec\.containers\[0\]\.env HTTP_PROXY already exists/, 'injection_conflict'],
  ['volume name taken', () => pod(undefined, { volumes: [{ name: 'attest-sidecar-state', emptyDir: {} }] }), /spec\.volumes attest-sidecar-state already exists/, 'injection_conflict'],
  ['host network', () => pod(undefined, { hostNetwork: true }), /spec\.hostNetwork is true: the sidecar needs the pod's own network namespace/, 'injection_conflict'],
  ['no containers', () => pod(undefined, { containers: [] }), /spec\.containers is empty/, 'injection_manifest_invalid'],
  ['containers not a list', () => pod(undefined, { containers: { name: 'a' } }), /spec\.containers must be a list of objects/, 'injection_manifest_invalid'],
  ['template without spec', () => ({ apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'd' }, spec: { template: { metadata: { annotations: OPTED_IN } } } }), /^Deployment d: spec\.template\.spec must be an object/, 'injection_manifest_invalid'],
];

for (const [name, make, message, reason] of REFUSED) {
  t.test(`refused: ${name}`, async (t) => {
    const err = refusal(() => injectObject(make(), opts(true)));
    t.match(err.message, message);
    t.equal(err.reason, reason);
  });
}

t.test('quantities', async (t) => {
  const cases: [string, number | undefined][] = [['50m', 0.05], ['1', 1], ['0.5', 0.5], ['.5', 0.5], ['64Mi', 64 * 2 ** 20], ['1G', 1e9], ['1e3', 1000], ['2Ki', 2048], ['', undefined], ['1.2.3', undefined], ['-1', undefined], ['1 Gi', undefined], ['1x', undefined], ['9'.repeat(65), undefined]];
  for (const [text, value] of cases) t.equal(quantityValue(text), value, JSON.stringify(text));
});

t.test('the schema check of the tests refuses a misspelled field (it can fail)', async (t) => {
  const out = injected(t, injectObject(pod(), opts())) as Json;
  const bad = structuredClone(out);
  bad.spec.initContainers[0].securityContext.readOnlyRootFileSystem = true;
  t.throws(() => validateKubernetesObject(bad), /initContainers\[0\]\.securityContext\.readOnlyRootFileSystem: not a field of SecurityContext/);
  const wrongType = structuredClone(out);
  wrongType.spec.initContainers[0].startupProbe.httpGet.port = [15021];
  t.throws(() => validateKubernetesObject(wrongType), 'a wrong type is refused by the OpenAPI schema');
});
