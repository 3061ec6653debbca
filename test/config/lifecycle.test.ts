/** Config keys of the pod lifecycle: `health` (the probe listener) and `drain_timeout`. */
import t from 'tap';
import { ConfigFileError, parseConfig } from '../../src/config/load.js';
import type { Problem } from '../../src/lib/yaml-reader.js';

const DEV = 'identity: { source: dev, spiffe_id: spiffe://td/me }\n';
const K8S = { KUBERNETES_SERVICE_HOST: '10.96.0.1', POD_IP: '10.244.1.7' };

function problems(text: string, env: NodeJS.ProcessEnv = {}): Problem[] {
  try {
    parseConfig(text, 'c.yaml', env);
  } catch (err) {
    if (err instanceof ConfigFileError) return [...err.problems];
    throw err;
  }
  throw new Error('expected a ConfigFileError');
}

t.test('health: no listener outside Kubernetes, the pod IP on 15021 inside', async (t) => {
  t.equal(parseConfig(DEV, 'c.yaml', {}).health, undefined, 'no env: none');
  t.equal(parseConfig(DEV, 'c.yaml', { POD_IP: '10.244.1.7' }).health, undefined, 'POD_IP alone is not Kubernetes');
  t.equal(parseConfig(DEV, 'c.yaml', { KUBERNETES_SERVICE_HOST: '10.96.0.1' }).health, undefined, 'no POD_IP: none');
  t.same(parseConfig(DEV, 'c.yaml', K8S).health, { listen: { host: '10.244.1.7', port: 15021 } });
  t.same(parseConfig(DEV, 'c.yaml', { ...K8S, POD_IP: 'fd00::7' }).health, { listen: { host: 'fd00::7', port: 15021 } }, 'IPv6 pod IP');
  t.same(parseConfig(`${DEV}health: {}\n`, 'c.yaml', K8S).health, { listen: { host: '10.244.1.7', port: 15021 } }, 'empty section: the default');
});

t.test('health.listen: an address, or off', async (t) => {
  t.same(parseConfig(`${DEV}health: { listen: "0.0.0.0:9102" }\n`, 'c.yaml', {}).health, { listen: { host: '0.0.0.0', port: 9102 } });
  t.same(parseConfig(`${DEV}health: { listen: "[::]:15021" }\n`, 'c.yaml', {}).health, { listen: { host: '::', port: 15021 } });
  t.equal(parseConfig(`${DEV}health: { listen: off }\n`, 'c.yaml', K8S).health, undefined, 'off wins over the Kubernetes default');
  t.equal(parseConfig(`${DEV}health: { listen: "off" }\n`, 'c.yaml', K8S).health, undefined, 'quoted off too');
});

t.test('health: bad values are reported with their position', async (t) => {
  t.match(problems(`${DEV}health: { listen: "nowhere" }\n`), [{ file: 'c.yaml', line: 2, column: 19, key: 'health.listen', message: /invalid listen address/ }]);
  t.match(problems(`${DEV}health: { listen: 127.0.0.1:15021, admin: yes }\n`), [{ line: 2, key: 'health.admin', message: /unknown key/i }]);
  t.match(problems(`${DEV}health: on\n`), [{ line: 2, key: 'health' }]);
  t.match(problems(DEV, { ...K8S, POD_IP: 'pod-7' }), [{ file: 'c.yaml', line: 0, message: /POD_IP 'pod-7' is not an IP address.*health\.listen/ }]);
});

t.test('drain_timeout: 25s by default, a duration, bounded', async (t) => {
  t.equal(parseConfig(DEV, 'c.yaml', {}).drainTimeoutMs, 25_000);
  t.equal(parseConfig(`${DEV}drain_timeout: 5s\n`, 'c.yaml', {}).drainTimeoutMs, 5_000);
  t.equal(parseConfig(`${DEV}drain_timeout: 1m30s\n`, 'c.yaml', {}).drainTimeoutMs, 90_000);
  t.match(problems(`${DEV}drain_timeout: soon\n`), [{ line: 2, column: 16, key: 'drain_timeout' }]);
  t.match(problems(`${DEV}drain_timeout: 2h\n`), [{ line: 2, key: 'drain_timeout', message: /at most 1h/ }]);
});
