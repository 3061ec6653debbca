/**
 * What injection adds to a pod spec (the shared contract of docs/injector.md): the native sidecar
 * container, its volumes and the proxy environment of the other containers. Built as fresh
 * objects with a fixed key order, so that the same input always serializes to the same bytes.
 */
import { InjectionRefusal, type InjectionSettings } from './annotations.js';

export const SIDECAR_NAME = 'attest-sidecar';

/** Paths and ports inside the pod (DESIGN: paths in the image, ports). */
export const POD_PATHS = Object.freeze({
  configDir: '/etc/attest-sidecar',
  configFile: '/etc/attest-sidecar/sidecar.yaml',
  stateDir: '/var/lib/attest-sidecar',
  workloadApiDir: '/spiffe-workload-api',
  workloadApiSocket: 'unix:///spiffe-workload-api/spire-agent.sock',
  callerTokenDir: '/var/run/attest-sidecar/caller-token',
  /** Key of the token in the Secret; the sidecar config's `outbound.caller_token_file` names this file. */
  callerTokenKey: 'token',
  /** The Redis password Secret's key and mount; the config's `budget.redis.password_file` is `<dir>/password`. */
  redisPasswordDir: '/var/run/attest-sidecar/redis',
  redisPasswordKey: 'password',
});

export const PORTS = Object.freeze({ outbound: 15001, inbound: 15443, admin: 15000, health: 15021 });
export const SIDECAR_USER = 10001;

export const VOLUMES = Object.freeze({
  config: 'attest-sidecar-config',
  state: 'attest-sidecar-state',
  workloadApi: 'attest-sidecar-spiffe',
  callerToken: 'attest-sidecar-caller-token',
  redisPassword: 'attest-sidecar-redis-password',
});

/** Environment of the other containers that points them at the sidecar's outbound proxy. */
export const PROXY_ENV_NAMES = ['ATTEST_SIDECAR_PROXY_TOKEN', 'HTTP_PROXY', 'http_proxy', 'NO_PROXY', 'no_proxy'] as const;
const NO_PROXY = '127.0.0.1,localhost,.svc,.cluster.local';

type Json = Record<string, unknown>;

function httpProbe(path: string, periodSeconds: number, failureThreshold: number): Json {
  return { httpGet: { path, port: PORTS.health, scheme: 'HTTP' }, periodSeconds, timeoutSeconds: 2, failureThreshold };
}

export function sidecarContainer(s: InjectionSettings): Json {
  const mounts: Json[] = [
    { name: VOLUMES.config, mountPath: POD_PATHS.configDir, readOnly: true },
    { name: VOLUMES.state, mountPath: POD_PATHS.stateDir },
    { name: VOLUMES.workloadApi, mountPath: POD_PATHS.workloadApiDir, readOnly: true },
  ];
  if (s.proxyTokenSecret !== undefined) mounts.push({ name: VOLUMES.callerToken, mountPath: POD_PATHS.callerTokenDir, readOnly: true });
  if (s.redisPasswordSecret !== undefined) mounts.push({ name: VOLUMES.redisPassword, mountPath: POD_PATHS.redisPasswordDir, readOnly: true });
  return {
    name: SIDECAR_NAME,
    image: s.image,
    args: ['run', '--config', POD_PATHS.configFile],
    env: [
      { name: 'POD_IP', valueFrom: { fieldRef: { fieldPath: 'status.podIP' } } },
      { name: 'SPIFFE_ENDPOINT_SOCKET', value: POD_PATHS.workloadApiSocket },
      { name: 'ATTEST_SIDECAR_STATE_DIR', value: POD_PATHS.stateDir },
    ],
    ports: [
      { name: 'attest-mtls', containerPort: PORTS.inbound, protocol: 'TCP' },
      { name: 'attest-health', containerPort: PORTS.health, protocol: 'TCP' },
    ],
    // Up to 2 minutes for the first SVID (SPIRE agent attestation of a new pod), then the
    // agent containers start; readiness then follows /readyz (503 while draining).
    startupProbe: httpProbe('/readyz', 1, 120),
    readinessProbe: httpProbe('/readyz', 5, 3),
    livenessProbe: httpProbe('/healthz', 10, 3),
    resources: {
      requests: { ...s.resources.requests },
      limits: { ...s.resources.limits },
    },
    securityContext: {
      allowPrivilegeEscalation: false,
      capabilities: { drop: ['ALL'] },
      readOnlyRootFilesystem: true,
      runAsNonRoot: true,
      runAsUser: SIDECAR_USER,
      runAsGroup: SIDECAR_USER,
      seccompProfile: { type: 'RuntimeDefault' },
    },
    volumeMounts: mounts,
    restartPolicy: 'Always',
  };
}

export function sidecarVolumes(s: InjectionSettings): Json[] {
  const volumes: Json[] = [
    { name: VOLUMES.config, configMap: { name: s.configMap } },
    { name: VOLUMES.state, emptyDir: {} },
    { name: VOLUMES.workloadApi, csi: { driver: 'csi.spiffe.io', readOnly: true } },
  ];
  if (s.proxyTokenSecret !== undefined) {
    volumes.push({ name: VOLUMES.callerToken, secret: { secretName: s.proxyTokenSecret, items: [{ key: POD_PATHS.callerTokenKey, path: POD_PATHS.callerTokenKey }] } });
  }
  if (s.redisPasswordSecret !== undefined) {
    volumes.push({ name: VOLUMES.redisPassword, secret: { secretName: s.redisPasswordSecret, items: [{ key: POD_PATHS.redisPasswordKey, path: POD_PATHS.redisPasswordKey }] } });
  }
  return volumes;
}

/** HTTP_PROXY/NO_PROXY (both cases); with a token Secret, the token in the proxy URL's password. */
export function proxyEnv(s: InjectionSettings): Json[] {
  const proxy = `127.0.0.1:${PORTS.outbound}`;
  const env: Json[] = [];
  let url = `http://${proxy}`;
  if (s.proxyTokenSecret !== undefined) {
    // Kubernetes expands $(VAR) from variables defined earlier in the same list.
    env.push({ name: 'ATTEST_SIDECAR_PROXY_TOKEN', valueFrom: { secretKeyRef: { name: s.proxyTokenSecret, key: POD_PATHS.callerTokenKey } } });
    url = `http://agent:$(ATTEST_SIDECAR_PROXY_TOKEN)@${proxy}`;
  }
  env.push(
    { name: 'HTTP_PROXY', value: url },
    { name: 'http_proxy', value: url },
    { name: 'NO_PROXY', value: NO_PROXY },
    { name: 'no_proxy', value: NO_PROXY },
  );
  return env;
}

function listOf(spec: Json, key: string, where: string): Json[] {
  const v = spec[key];
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v) || v.some((e) => e === null || typeof e !== 'object' || Array.isArray(e))) {
    throw new InjectionRefusal('injection_manifest_invalid', `${where}.${key} must be a list of objects`);
  }
  return v as Json[];
}

/** A container named attest-sidecar among the init or regular containers: the pod is left alone. */
export function hasSidecar(spec: Json, where: string): boolean {
  return [...listOf(spec, 'initContainers', where), ...listOf(spec, 'containers', where)].some((c) => c['name'] === SIDECAR_NAME);
}

function withProxyEnv(container: Json, env: readonly Json[], where: string): Json {
  const existing = listOf(container, 'env', where);
  for (const e of existing) {
    if ((PROXY_ENV_NAMES as readonly unknown[]).includes(e['name'])) {
      throw new InjectionRefusal('injection_conflict', `${where}.env ${String(e['name'])} already exists: the injector sets it to the sidecar's proxy (remove it, or opt the pod out with attest-sidecar.io/inject: "false")`);
    }
  }
  return { ...container, env: [...existing, ...env] };
}

/**
 * The spec with the sidecar added. The sidecar goes first among the init containers: native
 * sidecars start in list order and the next init container starts only once the sidecar's
 * startup probe passes, so every later init container already has the proxy and an SVID.
 * Those init containers and all regular containers get the proxy environment.
 */
export function injectPodSpec(spec: Json, settings: InjectionSettings, where: string): Json {
  const init = listOf(spec, 'initContainers', where);
  const containers = listOf(spec, 'containers', where);
  if (containers.length === 0) throw new InjectionRefusal('injection_manifest_invalid', `${where}.containers is empty`);
  if (spec['hostNetwork'] === true) {
    // On the node's network the proxy's loopback port would serve every process of the node,
    // and two such pods on one node would fight over the sidecar's ports.
    throw new InjectionRefusal('injection_conflict', `${where}.hostNetwork is true: the sidecar needs the pod's own network namespace (opt the pod out with attest-sidecar.io/inject: "false")`);
  }
  const volumes = listOf(spec, 'volumes', where);
  const added = sidecarVolumes(settings);
  for (const v of volumes) {
    if (added.some((a) => a['name'] === v['name'])) {
      throw new InjectionRefusal('injection_conflict', `${where}.volumes ${String(v['name'])} already exists: the name is reserved for the injected sidecar`);
    }
  }
  const env = proxyEnv(settings);
  return {
    ...spec,
    initContainers: [sidecarContainer(settings), ...init.map((c, i) => withProxyEnv(c, env, `${where}.initContainers[${i}]`))],
    containers: containers.map((c, i) => withProxyEnv(c, env, `${where}.containers[${i}]`)),
    volumes: [...volumes, ...added],
  };
}
