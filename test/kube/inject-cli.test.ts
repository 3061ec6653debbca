/**
 * `attest-sidecar inject` over multi-document YAML (files and stdin, through the real executable
 * where the wiring matters) and `attest-sidecar injector` started as a process: every printed
 * document validates against the Kubernetes schemas, untouched documents keep their comments,
 * injecting the output again prints the same bytes, a refusal names file and document.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { parseAllDocuments, stringify } from 'yaml';
import { injectCommand } from '../../src/cli/inject.js';
import { binPath } from '../helpers/paths.js';
import { webCertificate } from '../helpers/web-ca.js';
import { validateKubernetesObject } from '../helpers/kube.js';
import { KINDS, podTemplate } from './fixtures.js';

const dir = mkdtempSync(path.join(tmpdir(), 'attest-inject-cli-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

const WORKLOADS = KINDS.map((k) => stringify(k.make(podTemplate()))).join('---\n');
const BUNDLE = `# The agent's configuration
apiVersion: v1
kind: ConfigMap
metadata:
  name: agent-config # named by attest-sidecar.io/config
data:
  sidecar.yaml: |
    outbound: {}
---
${WORKLOADS}---
apiVersion: v1
kind: Service
metadata: {name: agent}
spec:
  ports: [{port: 80}]
---
`;
const bundleFile = path.join(dir, 'bundle.yaml');
writeFileSync(bundleFile, BUNDLE);

function documents(text: string): unknown[] {
  return parseAllDocuments(text).map((d) => {
    t.equal(d.errors.length, 0, 'the output parses');
    return d.toJS();
  });
}

t.test('every document printed, injected where opted in, schema-valid, idempotent', async (t) => {
  const r = await injectCommand(['-f', bundleFile, '--image', 'registry.example/sidecar:1']);
  t.equal(r.exitCode, 0, r.stderr);
  const docs = documents(r.stdout) as any[];
  t.same(docs.map((d) => d.kind), ['ConfigMap', ...KINDS.map((k) => k.kind), 'Service'], 'same documents, same order, the empty trailing one dropped');
  for (const d of docs) validateKubernetesObject(d);
  KINDS.forEach((k, i) => t.equal(k.template(docs[i + 1]).spec.initContainers[0].image, 'registry.example/sidecar:1', `${k.kind} injected`));
  t.match(r.stdout, /^# The agent's configuration\n/, 'an untouched document keeps its comments');
  t.match(r.stdout, /name: agent-config # named by attest-sidecar.io\/config/);
  t.equal(r.stdout.split('\n').filter((l) => l === '---').length, KINDS.length + 1, '--- between documents');
  t.match(r.stderr, /bundle\.yaml document 2 \(Pod agent\): injected/);
  t.match(r.stderr, /bundle\.yaml document 1 \(ConfigMap agent-config\): kind-not-injectable/);

  const againFile = path.join(dir, 'again.yaml');
  writeFileSync(againFile, r.stdout);
  const again = await injectCommand(['-f', againFile, '--image', 'registry.example/sidecar:1']);
  t.equal(again.exitCode, 0);
  t.equal(again.stdout, r.stdout, 'injecting the output again prints the same bytes');
  t.match(again.stderr, /document 2 \(Pod agent\): already-injected/);
});

t.test('--namespace-labels opts in pods without the inject annotation', async (t) => {
  const file = path.join(dir, 'ns.yaml');
  writeFileSync(file, stringify(KINDS[1]!.make(podTemplate({ 'attest-sidecar.io/config': 'agent-config' }))));
  const without = await injectCommand(['-f', file]);
  t.equal(without.exitCode, 0);
  t.equal(without.stdout, readFileSync(file, 'utf8'), 'not opted in: printed as read');
  t.match(without.stderr, /not-opted-in/);
  const withLabel = await injectCommand(['-f', file, '--namespace-labels', 'team=a,attest-sidecar.io/inject=enabled']);
  t.equal(withLabel.exitCode, 0);
  const [d] = documents(withLabel.stdout) as any[];
  validateKubernetesObject(d);
  t.equal(d.spec.template.spec.initContainers[0].image, 'attest-sidecar:0.1.0', 'the default image');
  t.equal((await injectCommand(['-f', file, '--namespace-labels', 'novalue'])).exitCode, 2, 'a label that is not k=v is a usage error');
});

t.test('a refusal exits 1 naming the file and the document; nothing is printed', async (t) => {
  const file = path.join(dir, 'bad.yaml');
  const bad = stringify(KINDS[1]!.make(podTemplate({ 'attest-sidecar.io/inject': 'true', 'attest-sidecar.io/config': 'Not_DNS' })));
  writeFileSync(file, `${WORKLOADS}---\n${bad}`);
  const r = await injectCommand(['-f', bundleFile, '-f', file]);
  t.equal(r.exitCode, 1);
  t.equal(r.stdout, '');
  t.match(r.stderr, new RegExp(`^attest-sidecar inject: ${file.replace(/[.]/g, '\\.')} document ${KINDS.length + 1}: Deployment agent: annotation 'attest-sidecar\\.io/config': "Not_DNS" is not a valid ConfigMap name`));
  t.match(r.stderr, /\(injection_annotation_invalid\)\n$/);
  writeFileSync(file, 'a: 1\n---\nkind: [unclosed\n');
  const yaml = await injectCommand(['-f', file]);
  t.equal(yaml.exitCode, 1);
  t.match(yaml.stderr, /bad\.yaml document 2: not valid YAML/);
  writeFileSync(file, '- just\n- a list\n');
  t.match((await injectCommand(['-f', file])).stderr, /document 1: the document is not an object/);
  const missing = await injectCommand(['-f', path.join(dir, 'missing.yaml')]);
  t.equal(missing.exitCode, 1);
  t.match(missing.stderr, /missing\.yaml: ENOENT/);
});

t.test('the executable reads stdin and prints the same as from a file', async (t) => {
  const fromFile = await injectCommand(['-f', bundleFile]);
  const r = spawnSync(process.execPath, [binPath, 'inject'], { input: BUNDLE, encoding: 'utf8', timeout: 60_000 });
  t.equal(r.status, 0, r.stderr);
  t.equal(r.stdout, fromFile.stdout);
  t.match(r.stderr, /stdin document 2 \(Pod agent\): injected/);
  const refused = spawnSync(process.execPath, [binPath, 'inject', '-f', '-'], { input: 'apiVersion: v1\nkind: Pod\nmetadata: {name: p, annotations: {attest-sidecar.io/inject: "true"}}\nspec: {containers: [{name: a, image: b}]}\n', encoding: 'utf8', timeout: 60_000 });
  t.equal(refused.status, 1);
  t.match(refused.stderr, /^attest-sidecar inject: stdin document 1: Pod p: annotation 'attest-sidecar\.io\/config': is required/);
});

t.test('attest-sidecar injector serves /healthz over HTTPS and exits 0 on SIGTERM', async (t) => {
  const { caFile, certPem, keyPem } = webCertificate(mkdtempSync(path.join(dir, 'ca-')));
  writeFileSync(path.join(dir, 'tls.crt'), certPem);
  writeFileSync(path.join(dir, 'tls.key'), keyPem);
  const child = spawn(process.execPath, [binPath, 'injector', '--listen', '127.0.0.1:0', '--cert', path.join(dir, 'tls.crt'), '--key', path.join(dir, 'tls.key')], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.teardown(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  let out = '';
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no listening line within 60 s: ${out}`)), 60_000);
    child.stdout.on('data', (c: Buffer) => {
      out += c.toString('utf8');
      const m = /"listen":"127\.0\.0\.1:(\d+)"/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    child.on('exit', () => reject(new Error(`injector exited: ${out}`)));
  });
  const status = await new Promise<number>((resolve, reject) => {
    https
      .get({ host: '127.0.0.1', port, path: '/healthz', servername: 'localhost', ca: readFileSync(caFile), agent: false, timeout: 30_000 }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      })
      .on('error', reject);
  });
  t.equal(status, 200);
  child.kill('SIGTERM');
  t.equal(await exited, 0, 'exit 0 on SIGTERM');
});
