/**
 * deploy/: every kustomization renders with a real kustomize, every object validates against its
 * schema (Kubernetes OpenAPI through kubernetes-models; the cert-manager and spire-controller-manager
 * CRDs through ajv), and the pieces agree with each other and with the code: the webhook reaches
 * the injector's Service, port, path and flags; the sidecar ConfigMap passes the sidecar's own
 * config, policy and revocation-list loaders and decides the walkthrough's requests as
 * docs/kubernetes.md says; every container runs non-root on a read-only root file system.
 */
import t, { type Test } from 'tap';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { loadConfigFile } from '../../src/config/load.js';
import type { SidecarConfig } from '../../src/config/types.js';
import { compilePolicy } from '../../src/policy/compile.js';
import { compileActionMatcher } from '../../src/policy/actions.js';
import { decide } from '../../src/policy/decide.js';
import { parseSharedList } from '../../src/revocation/shared-file.js';
import { repoRoot } from '../helpers/paths.js';
import { skipFor } from '../helpers/needs.js';
import { buildGoPrograms } from '../helpers/go-programs.js';
import {
  celEval,
  deployToolsMissing,
  KUBE_TOOLS,
  kustomizeBinary,
  loadCrdSchemas,
  podSecurityProblems,
  podSpecs,
  render,
  SchemaValidator,
  strictDecode,
  type K8sObject,
} from './render-tools.js';

const deployDir = path.join(repoRoot, 'deploy');
/** The shared contract (DESIGN-28): container name, paths and ports inside an injected pod. */
const CONTRACT = {
  sidecar: 'attest-sidecar',
  namespaceLabel: ['attest-sidecar.io/inject', 'enabled'],
  configDir: '/etc/attest-sidecar',
  stateDir: '/var/lib/attest-sidecar',
  socket: 'unix:///spiffe-workload-api/spire-agent.sock',
  ports: { outbound: 15001, inbound: 15443, admin: 15000, health: 15021 },
  webhookPath: '/mutate',
} as const;

/** Every folder under deploy/ with a kustomization that is not a Component. */
function kustomizations(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const sub = path.join(dir, name);
    if (statSync(sub).isDirectory()) out.push(...kustomizations(sub));
  }
  const file = path.join(dir, 'kustomization.yaml');
  if (existsSync(file) && (parseYaml(readFileSync(file, 'utf8')) as { kind?: string }).kind !== 'Component') out.push(dir);
  return out;
}

const find = (objs: K8sObject[], kind: string, name?: string) => objs.filter((o) => o.kind === kind && (name === undefined || o.metadata.name === name));
const one = (objs: K8sObject[], kind: string, name?: string): any => {
  const found = find(objs, kind, name);
  if (found.length !== 1) throw new Error(`expected one ${kind}${name ? ` ${name}` : ''}, found ${found.length}`);
  return found[0];
};
const flag = (args: string[], name: string): string | undefined => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : args.find((a) => a.startsWith(`${name}=`))?.slice(name.length + 1);
};

/** The pod environment of an injected sidecar (what the loader sees at start). */
const POD_ENV: NodeJS.ProcessEnv = {
  KUBERNETES_SERVICE_HOST: '10.96.0.1',
  POD_IP: '10.244.1.7',
  SPIFFE_ENDPOINT_SOCKET: CONTRACT.socket,
  ATTEST_SIDECAR_STATE_DIR: CONTRACT.stateDir,
};

/** Writes a ConfigMap's keys into a folder, as the volume would, and loads its sidecar.yaml. */
function loadMountedConfig(t: Test, cm: K8sObject & { data: Record<string, string> }): SidecarConfig {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'deploy-config-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  for (const [key, text] of Object.entries(cm.data)) writeFileSync(path.join(dir, key), text);
  return loadConfigFile(path.join(dir, 'sidecar.yaml'), POD_ENV);
}

/** The ConfigMap key a path under the config mount names (or undefined when outside it). */
const mountedKey = (file: string | undefined) =>
  file !== undefined && path.dirname(file) === CONTRACT.configDir ? path.basename(file) : undefined;


const skip = skipFor(deployToolsMissing());
if (skip) t.skip(skip, () => {});
else {
  const dirs = kustomizations(deployDir);
  const rendered = new Map<string, K8sObject[]>();
  const renderedText = new Map<string, string>();
  let validator: SchemaValidator;
  let kubeStrict: string;
  let celEvalBin: string;

  t.before(async () => {
    const kustomize = await kustomizeBinary();
    validator = new SchemaValidator(await loadCrdSchemas());
    const tools = (await buildGoPrograms(KUBE_TOOLS)).bins;
    kubeStrict = tools['kube-strict']!;
    celEvalBin = tools['cel-eval']!;
    for (const dir of dirs) {
      const { text, objects } = await render(kustomize, dir);
      rendered.set(path.relative(deployDir, dir), objects);
      renderedText.set(path.relative(deployDir, dir), text);
    }
  });

  t.test('every kustomization renders and every object validates against its schema', async (t) => {
    t.same([...rendered.keys()].sort(), ['agents', 'injector', 'overlays/shared-budgets', 'spire'], 'the kustomizations under deploy/');
    for (const [dir, objs] of rendered) {
      t.ok(objs.length > 0, `${dir}: renders objects`);
      const problems = objs.flatMap((o) => validator.problems(o));
      t.same(problems, [], `${dir}: ${objs.length} objects valid (${[...new Set(objs.map((o) => o.kind))].join(', ')})`);
    }
  });

  t.test('core objects decode strictly into the Kubernetes Go types (no unknown or duplicate fields)', async (t) => {
    const crdKinds = new Set(['ClusterSPIFFEID', 'Certificate', 'Issuer']);
    for (const [dir, text] of renderedText) {
      const results = await strictDecode(kubeStrict, text);
      t.equal(results.length, rendered.get(dir)!.length, `${dir}: every object decoded`);
      t.same(results.filter((r) => r.result === 'invalid'), [], `${dir}: no object refused`);
      t.same(results.filter((r) => r.result === 'unregistered' && !crdKinds.has(r.kind)), [], `${dir}: only CRD kinds left to the CRD schemas`);
    }
    const typo = 'apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  template:\n    spec:\n      containers:\n        - name: a\n          securityContext: {readOnlyRootFileSystem: true}\n';
    const [bad] = await strictDecode(kubeStrict, typo);
    t.match(bad, { result: 'invalid', error: /unknown field "spec\.template\.spec\.containers\[0\]\.securityContext\.readOnlyRootFileSystem"/ }, 'a misspelt field is refused');
  });

  t.test('the schema checks catch what they should', async (t) => {
    const bad = { apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'x' }, spec: { replicas: 'two', selector: {}, template: {} } };
    t.ok(validator.problems(bad as K8sObject).length > 0, 'a core object of the wrong type is refused');
    const cert = one(rendered.get('injector')!, 'Certificate', 'attest-sidecar-injector-serving');
    t.match(validator.problems({ ...cert, spec: { ...cert.spec, dnsName: ['x'] } }).join('\n'), /spec\/dnsName: unknown field/, 'a misspelt CRD field is refused');
    t.ok(validator.problems({ ...cert, spec: { ...cert.spec, issuerRef: undefined } }).length > 0, 'a missing required CRD field is refused');
    t.match(validator.problems({ apiVersion: 'example.com/v1', kind: 'Thing', metadata: { name: 'x' } }).join(''), /no schema/);
  });

  t.test('every container runs non-root on a read-only root file system, without privileges', async (t) => {
    let pods = 0;
    for (const [dir, objs] of rendered) {
      for (const { where, spec } of objs.flatMap(podSpecs)) {
        pods++;
        t.same(podSecurityProblems(`${dir} ${where}`, spec), [], `${dir} ${where}`);
      }
    }
    t.ok(pods >= 4, `${pods} pod templates checked`);
    const loose = { automountServiceAccountToken: false, containers: [{ name: 'c', securityContext: { readOnlyRootFilesystem: true } }] };
    t.equal(podSecurityProblems('x', loose).length, 5, 'a container missing the settings is caught');
    const host = { ...loose, hostNetwork: true, volumes: [{ name: 'h', hostPath: { path: '/' } }] };
    t.equal(podSecurityProblems('x', host).length, 7, 'host namespaces and hostPath volumes are caught');
  });

  t.test('the webhook reaches the injector: Service, port, path, certificate, flags', async (t) => {
    const objs = rendered.get('injector')!;
    const mwc = one(objs, 'MutatingWebhookConfiguration');
    const deployment = one(objs, 'Deployment', 'attest-sidecar-injector');
    const pod = deployment.spec.template;
    const container = pod.spec.containers.find((c: any) => c.name === 'injector');
    const args: string[] = container.args;
    t.equal(args[0], 'injector', 'runs `attest-sidecar injector`');
    const listen = flag(args, '--listen')!;
    t.match(listen, /^0\.0\.0\.0:\d+$/, 'listens on every address of the pod');
    const listenPort = Number(listen.split(':')[1]);
    t.equal(flag(args, '--image'), container.image, "the injected sidecar's image is the injector's own (keep them in step)");
    t.ok(mwc.webhooks.length >= 1);
    for (const hook of mwc.webhooks) {
      const where = hook.name;
      t.equal(hook.failurePolicy, 'Fail', `${where}: failurePolicy Fail`);
      t.equal(hook.sideEffects, 'None', `${where}: sideEffects None`);
      t.same(hook.admissionReviewVersions, ['v1'], `${where}: AdmissionReview v1`);
      t.ok(hook.timeoutSeconds >= 1 && hook.timeoutSeconds <= 30, `${where}: timeoutSeconds ${hook.timeoutSeconds}`);
      t.same(hook.rules.map((r: any) => [r.operations, r.resources]), [[['CREATE'], ['pods']]], `${where}: pod creation only`);
      const ref = hook.clientConfig.service;
      t.equal(ref.path, CONTRACT.webhookPath, `${where}: path ${CONTRACT.webhookPath}`);
      const svc = one(objs, 'Service', ref.name);
      t.equal(svc.metadata.namespace, ref.namespace, `${where}: the Service's namespace`);
      const port = svc.spec.ports.find((p: any) => p.port === (ref.port ?? 443));
      t.ok(port, `${where}: the Service has port ${ref.port ?? 443}`);
      const target = pod.spec.containers.flatMap((c: any) => c.ports ?? []).find((p: any) => p.name === port.targetPort || p.containerPort === port.targetPort);
      t.equal(target?.containerPort, listenPort, `${where}: the Service's targetPort is the --listen port`);
      t.ok(hook.matchConditions?.length > 0, `${where}: matchConditions skip opted-out or injected pods before the call`);
    }
    const byNamespace = mwc.webhooks.find((h: any) => h.namespaceSelector?.matchLabels);
    t.same(Object.entries(byNamespace.namespaceSelector.matchLabels), [CONTRACT.namespaceLabel], 'opt-in by namespace label');
    t.match(byNamespace.matchConditions.map((c: any) => c.expression).join('\n'), /'attest-sidecar\.io\/inject'\] != 'false'/, 'annotated false: skipped');
    t.same(svc0(objs).spec.selector, pod.metadata.labels, "the Service selects the injector's pods");
    for (const probe of ['startupProbe', 'readinessProbe', 'livenessProbe']) {
      t.match(container[probe]?.httpGet, { path: '/healthz', scheme: 'HTTPS' }, `${probe} GET /healthz over HTTPS`);
    }

    const mount = container.volumeMounts.find((m: any) => flag(args, '--cert')!.startsWith(`${m.mountPath}/`));
    t.ok(mount, '--cert lies in a mounted volume');
    t.ok(flag(args, '--key')!.startsWith(`${mount.mountPath}/`), '--key lies in the same volume');
    t.same([path.basename(flag(args, '--cert')!), path.basename(flag(args, '--key')!)], ['tls.crt', 'tls.key'], 'the keys cert-manager writes');
    const volume = pod.spec.volumes.find((v: any) => v.name === mount.name);
    const cert = find(objs, 'Certificate').find((c: any) => c.spec.secretName === volume.secret.secretName) as any;
    t.ok(cert, 'a Certificate writes the Secret the injector mounts');
    const svc = svc0(objs);
    t.ok(cert.spec.dnsNames.includes(`${svc.metadata.name}.${svc.metadata.namespace}.svc`), "the certificate names the Service's DNS name");
    t.equal(mwc.metadata.annotations['cert-manager.io/inject-ca-from'], `${cert.metadata.namespace}/${cert.metadata.name}`, 'cainjector fills caBundle from that Certificate');
    const issuer = one(objs, 'Issuer', cert.spec.issuerRef.name);
    t.ok(issuer.spec.ca?.secretName, 'the serving certificate comes from a CA issuer (renewal keeps the caBundle)');
    t.ok(find(objs, 'Certificate').some((c: any) => c.spec.isCA && c.spec.secretName === issuer.spec.ca.secretName), 'whose CA cert-manager makes');
  });

  t.test('the sidecar ConfigMap passes the sidecar’s own loaders and matches the contract', async (t) => {
    for (const dir of ['agents', 'overlays/shared-budgets']) {
      const objs = rendered.get(dir)!;
      const cm = one(objs, 'ConfigMap', 'attest-sidecar');
      const config = loadMountedConfig(t, cm);
      t.match(config.identity, { source: 'workload-api', socket: CONTRACT.socket }, `${dir}: the Workload API socket of the CSI mount`);
      t.match(config.outbound?.listen, { host: '127.0.0.1', port: CONTRACT.ports.outbound }, `${dir}: outbound proxy on loopback`);
      t.match(config.inbound?.listen, { host: '0.0.0.0', port: CONTRACT.ports.inbound }, `${dir}: inbound mTLS`);
      t.match(config.admin?.listen, { host: '127.0.0.1', port: CONTRACT.ports.admin }, `${dir}: admin on loopback`);
      t.equal(config.stateDir, CONTRACT.stateDir, `${dir}: state on the state volume`);
      // health and drain_timeout: typed loosely here, the keys belong to the lifecycle's config.
      const lifecycle = config as unknown as { health?: { listen?: { port: number } }; drainTimeoutMs?: number };
      t.equal(lifecycle.health?.listen?.port, CONTRACT.ports.health, `${dir}: health listener for kubelet and Prometheus`);
      for (const { where, spec, meta } of objs.flatMap(podSpecs)) {
        if (meta?.annotations?.['attest-sidecar.io/config'] !== cm.metadata.name) continue;
        const graceMs = ((spec.terminationGracePeriodSeconds as number | undefined) ?? 30) * 1000;
        t.ok(lifecycle.drainTimeoutMs! > 0 && lifecycle.drainTimeoutMs! < graceMs, `${dir} ${where}: drain_timeout ends before the grace period`);
      }
      t.ok(config.admin?.tokenFile?.startsWith(`${CONTRACT.stateDir}/`), `${dir}: the admin token on the state volume`);
      const policyKey = mountedKey(config.policy);
      t.ok(policyKey && cm.data[policyKey], `${dir}: the policy is a key of the same ConfigMap`);
      const policy = compilePolicy(cm.data[policyKey!], config.policy!);
      t.ok(config.revocations.sharedFiles.length > 0, `${dir}: a shared revocation list`);
      for (const file of config.revocations.sharedFiles) {
        const key = mountedKey(file);
        t.ok(key && cm.data[key], `${dir}: ${file} is a key of the mounted ConfigMap`);
        const list = parseSharedList(cm.data[key!], file, { now: () => 0 });
        t.equal(list.byId.size + (list.all ? 1 : 0), 0, `${dir}: ${file} revokes nobody`);
      }

      // The walkthrough's requests (docs/kubernetes.md), decided as the ledger's sidecar would.
      const actionOf = compileActionMatcher(config.inbound!.actions);
      const ask = (id: string, method: string, p: string) => decide(policy, { method, path: p, action: actionOf(method, p)?.action }, { spiffeId: id });
      const reader = 'spiffe://example.org/ns/agents/sa/reader';
      t.match(ask(reader, 'GET', '/ledger/42'), { allow: true }, 'reader: GET /ledger/42 allowed');
      t.match(ask(reader, 'POST', '/payments'), { allow: false, reason: 'action_not_permitted' }, 'reader: POST /payments refused');
      t.match(ask(reader, 'DELETE', '/ledger/42'), { allow: false, reason: 'no_action_mapped' }, 'reader: DELETE refused (unmapped)');
      t.match(ask('spiffe://example.org/ns/agents/sa/ledger', 'GET', '/ledger'), { allow: false, reason: 'unknown_agent' });
      const approve = ask('spiffe://example.org/ns/agents/sa/approver', 'POST', '/payments') as any;
      t.ok(approve.allow && approve.obligations?.attestation, 'the high-value approver is allowed only with attestation');

      // Identities agree: the SPIFFE IDs the policy and routes name are the ClusterSPIFFEID's
      // IDs of service accounts in this namespace; the route's Service exposes the mTLS port.
      const accounts = new Set(find(objs, 'ServiceAccount').map((s) => `spiffe://example.org/ns/${s.metadata.namespace}/sa/${s.metadata.name}`));
      t.ok(accounts.has(reader), 'the reader agent has its service account');
      for (const route of config.outbound!.routes) {
        t.ok(route.serverId && accounts.has(route.serverId), `route ${route.name}: server_id is a service account here`);
        const url = new URL(route.upstream);
        const [svcName, ns] = url.hostname.split('.');
        const svc = one(objs, 'Service', svcName);
        t.equal(svc.metadata.namespace, ns, `route ${route.name}: the Service's namespace`);
        t.ok(svc.spec.ports.some((p: any) => p.port === Number(url.port) && p.targetPort === CONTRACT.ports.inbound), `route ${route.name}: to the sidecar's mTLS port`);
        const workload = find(objs, 'Deployment').find((d: any) => Object.entries(svc.spec.selector).every(([k, v]) => d.spec.template.metadata.labels[k] === v)) as any;
        t.equal(`spiffe://example.org/ns/${ns}/sa/${workload.spec.template.spec.serviceAccountName}`, route.serverId, `route ${route.name}: the pods behind it hold server_id`);
      }
      for (const { where, meta } of objs.flatMap(podSpecs)) {
        const wanted = meta?.annotations?.['attest-sidecar.io/config'];
        if (meta?.annotations?.['attest-sidecar.io/inject'] === 'false') continue;
        t.ok(wanted && find(objs, 'ConfigMap', wanted).length === 1, `${dir} ${where}: names a ConfigMap of its namespace`);
      }
      if (config.budget.store === 'redis') {
        const url = new URL(config.budget.url);
        const [svcName, ns] = url.hostname.split('.');
        const svc = one(objs, 'Service', svcName);
        t.equal(svc.metadata.namespace, ns, 'the Redis URL names the Redis Service');
        t.ok(svc.spec.ports.some((p: any) => p.port === Number(url.port)), 'and its port');
        t.equal(url.password, '', 'no password in the ConfigMap');
        t.equal(config.budget.passwordFile, '/var/run/attest-sidecar/redis/password', 'the password is the file the injector mounts from the Secret');
        for (const { where, meta } of objs.flatMap(podSpecs)) {
          if (meta?.annotations?.['attest-sidecar.io/inject'] === 'false') continue;
          t.equal(meta?.annotations?.['attest-sidecar.io/redis-password-secret'], 'attest-sidecar-redis', `${dir} ${where}: asks the injector to mount the Redis password`);
        }
        const base = one(rendered.get('agents')!, 'ConfigMap', 'attest-sidecar').data['sidecar.yaml'];
        const { budget: _b, ...rest } = parseYaml(cm.data['sidecar.yaml']);
        const { budget: _c, ...baseRest } = parseYaml(base);
        t.same(rest, baseRest, 'the Redis variant differs from the base config only in budget:');
      }
    }
  });

  t.test('matchConditions send the injector exactly the pods it should see', async (t) => {
    const mwc = one(rendered.get('injector')!, 'MutatingWebhookConfiguration');
    const pod = (annotations?: Record<string, string>) => ({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p', ...(annotations ? { annotations } : {}) } });
    const cases: [string, object, { namespace: boolean; annotation: boolean }][] = [
      ['no annotations', pod(), { namespace: true, annotation: false }],
      ['other annotations', pod({ 'example.com/x': 'y' }), { namespace: true, annotation: false }],
      ['inject: "true"', pod({ 'attest-sidecar.io/inject': 'true' }), { namespace: true, annotation: true }],
      ['inject: "false"', pod({ 'attest-sidecar.io/inject': 'false' }), { namespace: false, annotation: false }],
      ['already injected', pod({ 'attest-sidecar.io/inject': 'true', 'attest-sidecar.io/status': 'injected' }), { namespace: false, annotation: false }],
    ];
    for (const hook of mwc.webhooks) {
      const which = hook.namespaceSelector?.matchLabels ? 'namespace' : 'annotation';
      const expressions: string[] = hook.matchConditions.map((c: any) => c.expression);
      const rows = await celEval(celEvalBin, expressions, cases.map(([, object]) => object));
      cases.forEach(([label, , expected], i) => {
        // The API server calls the webhook when every condition is true, skips it when one is
        // false, and applies failurePolicy (Fail) when one errs: no condition may err.
        t.ok(rows[i]!.every((cell) => typeof cell === 'boolean'), `${hook.name}, ${label}: every condition evaluates (${JSON.stringify(rows[i])})`);
        t.equal(rows[i]!.every((cell) => cell === true), expected[which], `${hook.name}, ${label}: ${expected[which] ? 'sent' : 'skipped'}`);
      });
    }
    const [[broken]] = await celEval(celEvalBin, ["object.metadata.annotations['a'] =="], [pod()]);
    t.match(broken, /^compile:/, 'a malformed condition is reported');
  });

  t.test('SPIRE registers the sidecar container of injected pods', async (t) => {
    const id = one(rendered.get('spire')!, 'ClusterSPIFFEID');
    t.ok(id.spec.workloadSelectorTemplates.includes(`k8s:container-name:${CONTRACT.sidecar}`), 'selects the sidecar container (the Workload API caller)');
    t.same(Object.entries(id.spec.namespaceSelector.matchLabels), [CONTRACT.namespaceLabel], 'in opted-in namespaces');
    t.match(id.spec.spiffeIDTemplate, /\/ns\/\{\{ \.PodMeta\.Namespace \}\}\/sa\/\{\{ \.PodSpec\.ServiceAccountName \}\}$/);
  });

  t.test('NetworkPolicy: in only to the mTLS and health ports, out only to DNS and mesh mTLS', async (t) => {
    const pols = find(rendered.get('agents')!, 'NetworkPolicy') as any[];
    t.ok(pols.some((p) => p.spec.podSelector && Object.keys(p.spec.podSelector).length === 0 && p.spec.policyTypes.length === 2 && !p.spec.ingress && !p.spec.egress), 'a default deny');
    const ingressPorts = pols.flatMap((p) => p.spec.ingress ?? []).flatMap((r: any) => r.ports.map((x: any) => x.port)).sort();
    t.same(ingressPorts, [CONTRACT.ports.inbound, CONTRACT.ports.health].sort(), 'ingress: 15443 and 15021 only');
    const egressPorts = [...new Set(pols.flatMap((p) => p.spec.egress ?? []).flatMap((r: any) => r.ports.map((x: any) => x.port)))].sort();
    t.same(egressPorts, [CONTRACT.ports.inbound, 53].sort(), 'egress: DNS and mesh mTLS only');
  });
}

function svc0(objs: K8sObject[]): any {
  return one(objs, 'Service', 'attest-sidecar-injector');
}
