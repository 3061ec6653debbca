/**
 * The workloads of deploy/ as the cluster will run them: rendered by kustomize, then injected by
 * `attest-sidecar inject` with the injector's own --image and an opted-in namespace (what the
 * webhook does on pod creation). The injected pods must still validate against the schemas, run
 * unprivileged, and fit the rest of deploy/: the ConfigMap they mount, the ports the Services and
 * NetworkPolicies open, the container the ClusterSPIFFEID registers, the listeners of the config.
 */
import t from 'tap';
import { execFile, spawnSync } from 'node:child_process';
import path from 'node:path';
import { parseAllDocuments, parse as parseYaml } from 'yaml';
import { binPath, repoRoot } from '../helpers/paths.js';
import { skipFor } from '../helpers/needs.js';
import { buildGoPrograms } from '../helpers/go-programs.js';
import {
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
const SIDECAR = 'attest-sidecar';

/** `attest-sidecar inject` exists in this build (src/cli/inject.ts), or why not. */
function injectMissing(): string | undefined {
  const r = spawnSync(binPath, ['inject', '--help'], { encoding: 'utf8', timeout: 60_000 });
  return r.status === 0 ? undefined : `this build has no 'attest-sidecar inject' command (exit ${r.status}: ${r.stderr.trim().split('\n')[0]})`;
}

function inject(text: string, image: string): Promise<{ objects: K8sObject[]; text: string; summary: string }> {
  return new Promise((resolve, reject) => {
    const args = ['inject', '--image', image, '--namespace-labels', 'attest-sidecar.io/inject=enabled'];
    const child = execFile(binPath, args, { timeout: 60_000, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      if (err) return reject(new Error(`inject failed: ${err.message}\n${stderr}`));
      resolve({ objects: parseAllDocuments(stdout).map((d) => d.toJS() as K8sObject), text: stdout, summary: stderr });
    });
    child.stdin!.on('error', reject);
    child.stdin!.end(text);
  });
}

const skip = skipFor(deployToolsMissing(), injectMissing());
if (skip) t.skip(skip, () => {});
else {
  for (const dir of ['agents', 'overlays/shared-budgets']) {
    t.test(`${dir}: the injected workloads are valid and fit the rest of deploy/`, async (t) => {
      const kustomize = await kustomizeBinary();
      const validator = new SchemaValidator(await loadCrdSchemas());
      const kubeStrict = (await buildGoPrograms(KUBE_TOOLS)).bins['kube-strict']!;
      const injector = (await render(kustomize, path.join(deployDir, 'injector'))).objects.find((o) => o.kind === 'Deployment') as any;
      const args: string[] = injector.spec.template.spec.containers[0].args;
      const image = args[args.indexOf('--image') + 1]!;
      const spiffeId = (await render(kustomize, path.join(deployDir, 'spire'))).objects[0] as any;

      const rendered = await render(kustomize, path.join(deployDir, dir));
      const injected = await inject(rendered.text, image);
      t.comment(injected.summary.trim());
      t.equal(injected.objects.length, rendered.objects.length, 'every document comes back');
      t.same(injected.objects.flatMap((o) => validator.problems(o)), [], 'every object still validates (kubernetes-models)');
      const strict = await strictDecode(kubeStrict, injected.text);
      t.same(strict.filter((r) => r.result === 'invalid'), [], 'and decodes strictly into the Kubernetes types');

      const cm = injected.objects.find((o) => o.kind === 'ConfigMap' && o.metadata.name === SIDECAR) as any;
      const config = parseYaml(cm.data['sidecar.yaml']);
      const port = (listen: string) => Number(listen.split(':').pop());
      const services = injected.objects.filter((o) => o.kind === 'Service') as any[];
      const ingressPorts = injected.objects
        .filter((o) => o.kind === 'NetworkPolicy')
        .flatMap((p: any) => p.spec.ingress ?? [])
        .flatMap((r: any) => r.ports.map((x: any) => x.port));

      let injectedPods = 0;
      for (const { where, spec, meta } of injected.objects.flatMap(podSpecs)) {
        t.same(podSecurityProblems(where, spec), [], `${where}: every container unprivileged, the sidecar too`);
        const sidecar = (spec.initContainers as any[] | undefined)?.find((c) => c.name === SIDECAR);
        if (meta?.annotations?.['attest-sidecar.io/inject'] === 'false') {
          t.notOk(sidecar, `${where}: opted out, left alone`);
          continue;
        }
        injectedPods++;
        t.ok(sidecar, `${where}: the sidecar is injected`);
        t.equal(sidecar.restartPolicy, 'Always', `${where}: as a native sidecar`);
        t.equal(sidecar.image, image, `${where}: with the injector's --image`);
        t.equal(meta?.annotations?.['attest-sidecar.io/status'], 'injected');
        t.ok(spiffeId.spec.workloadSelectorTemplates.includes(`k8s:container-name:${sidecar.name}`), `${where}: the container the ClusterSPIFFEID registers`);

        // The ConfigMap the pod mounts is the one deploy/ ships, at the path the args name.
        const configFile = sidecar.args[sidecar.args.indexOf('--config') + 1];
        const mount = sidecar.volumeMounts.find((m: any) => configFile.startsWith(`${m.mountPath}/`));
        const volume = (spec.volumes as any[]).find((v) => v.name === mount?.name);
        t.equal(volume?.configMap?.name, cm.metadata.name, `${where}: mounts the ConfigMap ${cm.metadata.name}`);
        t.ok(cm.data[path.basename(configFile)], `${where}: which holds ${path.basename(configFile)}`);
        for (const shared of config.revocations.shared_files as string[]) {
          t.equal(path.dirname(shared), mount.mountPath, `${where}: ${shared} is in that mount`);
        }
        t.ok(sidecar.volumeMounts.some((m: any) => m.mountPath === config.state_dir && !m.readOnly), `${where}: state_dir is a writable volume`);
        const socket = String(config.identity.socket).replace(/^unix:\/\//, '');
        const csiMount = sidecar.volumeMounts.find((m: any) => socket.startsWith(`${m.mountPath}/`));
        const csi = (spec.volumes as any[]).find((v) => v.name === csiMount?.name);
        t.equal(csi?.csi?.driver, 'csi.spiffe.io', `${where}: the Workload API socket is on the SPIFFE CSI volume`);
        const redisPassword = config.budget?.redis?.password_file as string | undefined;
        if (redisPassword) {
          const pwMount = sidecar.volumeMounts.find((m: any) => path.dirname(redisPassword) === m.mountPath);
          const pwVolume = (spec.volumes as any[]).find((v) => v.name === pwMount?.name);
          t.equal(pwVolume?.secret?.secretName, 'attest-sidecar-redis', `${where}: the Redis password file is the Secret the injector mounts`);
          t.ok(pwVolume?.secret?.items?.some((i: any) => i.path === path.basename(redisPassword)), `${where}: under the name the config reads`);
          const others = [...(spec.containers as any[]), ...((spec.initContainers as any[]) ?? [])].filter((c) => c !== sidecar);
          t.notOk(others.some((c) => (c.volumeMounts ?? []).some((m: any) => m.name === pwMount?.name)), `${where}: no agent container mounts it`);
        }

        // Ports: probes on the config's health listener; the inbound listener is what the
        // Services target and the NetworkPolicy opens.
        const health = port(config.health.listen);
        for (const probe of ['startupProbe', 'readinessProbe', 'livenessProbe']) {
          t.equal(sidecar[probe]?.httpGet?.port, health, `${where}: ${probe} on the health listener`);
        }
        t.ok(ingressPorts.includes(health) && ingressPorts.includes(port(config.inbound.listen)), `${where}: the NetworkPolicy opens the health and mTLS ports`);
        const containerPorts = sidecar.ports.map((p: any) => p.containerPort);
        for (const svc of services.filter((s) => Object.entries(s.spec.selector).every(([k, v]) => meta?.labels?.[k] === v))) {
          for (const p of svc.spec.ports) t.ok(containerPorts.includes(p.targetPort), `${where}: Service ${svc.metadata.name} targets the sidecar's port ${p.targetPort}`);
        }
        for (const c of spec.containers as any[]) {
          const proxy = c.env?.find((e: any) => e.name === 'HTTP_PROXY')?.value;
          t.match(proxy, new RegExp(`127\\.0\\.0\\.1:${port(config.outbound.listen)}$`), `${where} ${c.name}: HTTP_PROXY is the outbound listener`);
        }
      }
      t.ok(injectedPods >= 2, `${injectedPods} pods injected`);
    });
  }
}
