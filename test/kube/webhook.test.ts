/**
 * The admission webhook over real HTTPS: AdmissionReview v1 requests in, reviews out. The JSON
 * Patch it answers is checked and applied with fast-json-patch (RFC 6902) and must give exactly
 * what `inject` prints for the same pod; patched pods are validated against the Kubernetes schemas.
 */
import { mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { X509Certificate } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import t from 'tap';
import fastJsonPatch from 'fast-json-patch';
import { parse } from 'yaml';
import { InjectorServer, MAX_REVIEW_BYTES } from '../../src/kube/webhook-server.js';
import { injectManifests } from '../../src/kube/manifests.js';
import { capturingLogger } from '../helpers/logger.js';
import { webCertificate } from '../helpers/web-ca.js';
import { validateKubernetesObject } from '../helpers/kube.js';
import { OPTED_IN, pod, type Json } from './fixtures.js';

const IMAGE = 'registry.example/attest-sidecar:0.1.0';
const dir = mkdtempSync(path.join(tmpdir(), 'attest-injector-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const first = webCertificate(mkdtempSync(path.join(dir, 'ca1-')));
const certFile = path.join(dir, 'tls.crt');
const keyFile = path.join(dir, 'tls.key');
writeFileSync(certFile, first.certPem);
writeFileSync(keyFile, first.keyPem);
const logger = capturingLogger();
const server = await InjectorServer.start({ host: '127.0.0.1', port: 0, certFile, keyFile, image: IMAGE, logger });
t.teardown(() => server.close());

interface Answer {
  status: number;
  body: any;
  peerCert: X509Certificate | undefined;
}

function call(method: string, urlPath: string, body?: string | Buffer, opts: { ca?: string; contentType?: string } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        host: '127.0.0.1',
        port: server.port,
        servername: 'localhost',
        method,
        path: urlPath,
        ca: readFileSync(opts.ca ?? first.caFile, 'utf8'),
        agent: false,
        timeout: 30_000,
        headers: body === undefined ? {} : { 'content-type': opts.contentType ?? 'application/json', 'content-length': Buffer.byteLength(body) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          const raw = (res.socket as TLSSocket).getPeerX509Certificate?.();
          resolve({ status: res.statusCode ?? 0, body: text ? JSON.parse(text) : undefined, peerCert: raw });
        });
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', reject);
    req.end(body);
  });
}

function review(object: Json, overrides: Json = {}): Json {
  return {
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: {
      uid: 'e911857d-c318-11e8-bbad-025000000001',
      kind: { group: '', version: 'v1', kind: 'Pod' },
      resource: { group: '', version: 'v1', resource: 'pods' },
      namespace: 'agents',
      operation: 'CREATE',
      userInfo: { username: 'system:serviceaccount:kube-system:replicaset-controller' },
      object,
      dryRun: false,
      ...overrides,
    },
  };
}

const mutate = (body: unknown) => call('POST', '/mutate?timeout=10s', JSON.stringify(body));

t.test('GET /healthz', async (t) => {
  const r = await call('GET', '/healthz');
  t.equal(r.status, 200);
  t.same(r.body, { status: 'ok' });
});

t.test('an opted-in pod: allowed with a JSON Patch that gives exactly what inject prints', async (t) => {
  const cases: [string, Json][] = [
    ['namespace opt-in, config annotation only', pod({ 'attest-sidecar.io/config': 'agent-config' })],
    ['annotated, with a token Secret and an init container', pod({ ...OPTED_IN, 'attest-sidecar.io/proxy-token-secret': 'agent-token' }, { initContainers: [{ name: 'setup', image: 'busybox', env: [{ name: 'A', value: '1' }] }] })],
    ['generateName, no labels, an existing volume and env-less container', {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { generateName: 'agent-7d9f-', annotations: { 'attest-sidecar.io/config': 'c' } },
      spec: { containers: [{ name: 'a', image: 'a:1' }], volumes: [{ name: 'data', emptyDir: {} }] },
    }],
  ];
  for (const [name, object] of cases) {
    const r = await mutate(review(object));
    t.equal(r.status, 200, name);
    t.equal(r.body.apiVersion, 'admission.k8s.io/v1');
    t.equal(r.body.kind, 'AdmissionReview');
    t.equal(r.body.response.uid, 'e911857d-c318-11e8-bbad-025000000001', 'uid echoed');
    t.equal(r.body.response.allowed, true);
    t.equal(r.body.response.patchType, 'JSONPatch');
    const ops = JSON.parse(Buffer.from(r.body.response.patch, 'base64').toString('utf8'));
    t.equal(fastJsonPatch.validate(ops, structuredClone(object)), undefined, `${name}: the patch is valid RFC 6902 for the pod`);
    const patched = fastJsonPatch.applyPatch(structuredClone(object), ops, true, false).newDocument;
    validateKubernetesObject(patched);
    const printed = injectManifests(JSON.stringify(object), 'pod.json', { image: IMAGE, namespaceOptedIn: true });
    t.same(patched, parse(printed.text), `${name}: patch applied == inject's output`);
    t.equal(patched.spec.initContainers[0].name, 'attest-sidecar');
  }
});

t.test('pods the webhook lets through unchanged', async (t) => {
  const cases: [string, Json][] = [
    ['opted out', review(pod({ 'attest-sidecar.io/inject': 'false' }))],
    ['already injected', review(pod(undefined, { initContainers: [{ name: 'attest-sidecar', image: 'x', restartPolicy: 'Always' }] }))],
    ['an UPDATE', review(pod(), { operation: 'UPDATE', oldObject: pod() })],
    ['not a pod', review({ apiVersion: 'v1', kind: 'Service', metadata: { name: 's' } }, { kind: { group: '', version: 'v1', kind: 'Service' } })],
    ['a pod subresource', review(pod(), { subResource: 'binding' })],
  ];
  for (const [name, body] of cases) {
    const r = await mutate(body);
    t.equal(r.status, 200, name);
    t.same(r.body.response, { uid: 'e911857d-c318-11e8-bbad-025000000001', allowed: true }, `${name}: allowed, no patch`);
  }
});

t.test('a pod with a bad annotation is refused with a message naming it', async (t) => {
  const r = await mutate(review(pod({ ...OPTED_IN, 'attest-sidecar.io/memory-limit': 'a lot' })));
  t.equal(r.status, 200);
  t.equal(r.body.response.allowed, false);
  t.equal(r.body.response.uid, 'e911857d-c318-11e8-bbad-025000000001');
  t.equal(r.body.response.patch, undefined);
  t.equal(r.body.response.status.code, 400);
  t.match(r.body.response.status.message, /^attest-sidecar injector refused pod agent: annotation 'attest-sidecar\.io\/memory-limit': "a lot" is not a Kubernetes quantity/);
  t.match(r.body.response.status.message, /\(injection_annotation_invalid\)$/);
  t.ok(logger.lines.some((l) => l.level === 'warn' && /memory-limit/.test(l.msg ?? '')), 'logged');
});

t.test('malformed reviews are answered 400 with a JSON error', async (t) => {
  const good = review(pod());
  const cases: [string, string, RegExp][] = [
    ['not JSON', '{"apiVersion":', /^Body is not valid JSON/],
    ['an array', '[]', /must be a JSON object/],
    ['AdmissionReview v1beta1', JSON.stringify({ ...good, apiVersion: 'admission.k8s.io/v1beta1' }), /apiVersion \(expected admission.k8s.io\/v1\) is invalid/],
    ['no request', JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview' }), /request is missing/],
    ['no uid', JSON.stringify(review(pod(), { uid: undefined })), /request\.uid is missing/],
    ['uid not a string', JSON.stringify(review(pod(), { uid: 7 })), /request\.uid is invalid/],
    ['kind without version', JSON.stringify(review(pod(), { kind: { group: '', kind: 'Pod' } })), /request\.kind\.version is missing/],
    ['a pod CREATE without the object', JSON.stringify(review(pod(), { object: undefined })), /request\.object \(the pod\) is missing/],
    ['a duplicate member', JSON.stringify(good).replace('"kind":"AdmissionReview"', '"kind":"AdmissionReview","kind":"AdmissionReview"'), /duplicate member "kind"/],
  ];
  for (const [name, body, message] of cases) {
    const r = await call('POST', '/mutate', body);
    t.equal(r.status, 400, name);
    t.match(r.body.error, message, name);
    t.equal(r.body.reason, 'admission_review_invalid');
  }
  const typed = await call('POST', '/mutate', JSON.stringify(good), { contentType: 'text/plain' });
  t.equal(typed.status, 415);
  const big = await call('POST', '/mutate', Buffer.alloc(MAX_REVIEW_BYTES + 1, 0x20));
  t.equal(big.status, 413, 'over the body cap');
  t.match(big.body.error, /over \d+ bytes/);
  t.equal((await call('GET', '/mutate')).status, 405);
  t.equal((await call('GET', '/nowhere')).status, 404);
  t.equal((await call('GET', '/healthz')).status, 200, 'still serving');
});

t.test('the serving certificate is re-read when its files change; a bad pair keeps the current one', async (t) => {
  const second = webCertificate(mkdtempSync(path.join(dir, 'ca2-')));
  const before = await call('GET', '/healthz');
  t.ok(before.peerCert?.checkIssued(new X509Certificate(readFileSync(first.caFile))), 'first certificate served');
  // Replace by rename, as cert-manager's Secret volume update does (atomic swap).
  writeFileSync(keyFile + '.new', second.keyPem);
  writeFileSync(certFile + '.new', second.certPem);
  renameSync(keyFile + '.new', keyFile);
  renameSync(certFile + '.new', certFile);
  let served: Answer | undefined;
  for (let i = 0; i < 300; i++) {
    served = await call('GET', '/healthz', undefined, { ca: second.caFile }).catch(() => undefined);
    if (served?.status === 200) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  t.equal(served?.status, 200, 'the new certificate (second CA) is served');
  await t.rejects(call('GET', '/healthz', undefined, { ca: first.caFile }), 'the old CA no longer verifies it');

  writeFileSync(certFile, 'not a certificate');
  const logged = () => logger.lines.some((l) => l.level === 'warn' && /not reloaded/.test(l.msg ?? ''));
  for (let i = 0; i < 300 && !logged(); i++) await new Promise((r) => setTimeout(r, 100));
  t.ok(logged(), 'the bad file is logged');
  t.equal((await call('GET', '/healthz', undefined, { ca: second.caFile })).status, 200, 'the previous certificate stays');
});
