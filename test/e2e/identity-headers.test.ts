/**
 * What reaches the app besides the caller's own fields, over real sockets: a raw mTLS client with
 * a valid SVID straight to the inbound listener (exact control of every field), and agents through
 * their outbound sidecar. The app keeps only its first 30 request fields, as an app with a field
 * limit does (Node's own limit is about 1,000).
 */
import https from 'node:https';
import http from 'node:http';
import t from 'tap';
import { TestMesh, idOf } from '../helpers/mesh.js';
import type { AuditFields, MemoryAuditSink } from '../../src/audit/record.js';

const APP_FIELD_LIMIT = 30;
const mesh = await TestMesh.start();
t.teardown(() => mesh.close());
// Read by Node when the app accepts a connection: set before the first request.
mesh.app.server.maxHeadersCount = APP_FIELD_LIMIT;
const svid = await mesh.issuer.ca.issueX509Svid(idOf('orchestrator'));
const agentAudit = mesh.agents.get('orchestrator')!.audit as MemoryAuditSink;
const UUID_V8 = /^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

interface Reply {
  status: number;
  body: string;
}

function collect(req: http.ClientRequest, resolve: (r: Reply) => void, reject: (e: Error) => void): void {
  req.on('response', (res) => {
    let body = '';
    res.setEncoding('utf8').on('data', (c: string) => (body += c));
    res.on('end', () => resolve({ status: res.statusCode!, body }));
    res.on('error', reject);
  });
  req.on('error', reject);
  req.end();
}

/** Exactly these fields (flat name/value list) plus `Connection: close`, over mTLS with the orchestrator's SVID. */
function direct(method: string, path: string, fields: string[]): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = https.request(`${mesh.inboundUrl}${path}`, {
      method,
      cert: svid.certChainPem,
      key: svid.keyPem,
      ca: mesh.issuer.ca.rootPem(),
      checkServerIdentity: () => undefined,
      agent: false,
      headers: [...fields, 'Connection', 'close'],
    });
    collect(req, resolve, reject);
  });
}

/** Exactly these fields plus `Connection: close`, as an agent sends them to its outbound proxy. */
function viaOutbound(method: string, url: string, fields: string[], agent = 'orchestrator'): Promise<Reply> {
  const proxy = new URL(mesh.proxyOf(agent));
  return new Promise((resolve, reject) => {
    const req = http.request({ host: proxy.hostname, port: proxy.port, method, path: url, agent: false, headers: [...fields, 'Connection', 'close'] });
    collect(req, resolve, reject);
  });
}

/** `n` ordinary fields, short enough that 1,000 of them stay far below Node's 16 KiB header size limit. */
const filler = (n: number) => Array.from({ length: n }, (_, i) => [`f${i}`, 'v']).flat();

async function recordWith(audit: MemoryAuditSink, match: (r: AuditFields) => boolean): Promise<AuditFields> {
  for (let i = 0; i < 400; i++) {
    const found = audit.records.find(match);
    if (found) return found;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('no matching audit record within 20 s');
}

/** The app's view: lower-case names with every `_` read as `-` (how WSGI, Rack and PHP see them). */
function cgiNames(raw: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) out.push(raw[i]!.toLowerCase().replaceAll('_', '-'));
  return out;
}

t.test('a request with as many fields as allowed: an app keeping only 30 still gets the identity first', async (t) => {
  const before = mesh.app.seen.length;
  // Host + 98 + Connection = 100 fields, the default limit.
  const r = await direct('GET', '/agents', ['Host', 'control-plane', ...filler(98)]);
  t.equal(r.status, 200, r.body);
  t.equal(mesh.app.seen.length, before + 1);
  const seen = mesh.app.seen.at(-1)!;
  const raw = seen.rawHeaders;
  t.ok(raw.length <= 2 * (APP_FIELD_LIMIT + 1) && !raw.includes('f97'), `the app dropped the fields after its limit (kept ${raw.length / 2})`);
  // undici writes Host and Connection first; the sidecar's fields follow at once.
  const first = raw.indexOf('x-forwarded-client-cert');
  t.ok(first >= 0 && first <= 4, `identity at field ${first / 2}`);
  t.same(raw.slice(first, first + 10), [
    'x-forwarded-client-cert', seen.headers['x-forwarded-client-cert'],
    'x-spiffe-id', idOf('orchestrator'),
    'x-forwarded-proto', 'https',
    'x-forwarded-for', '127.0.0.1',
    'x-request-id', seen.headers['x-request-id'],
  ]);
  t.match(String(seen.headers['x-forwarded-client-cert']), new RegExp(`^By=${idOf('control-plane')};Hash=[0-9a-f]{64};URI=${idOf('orchestrator')}$`));
  t.match(seen.headers['x-request-id'], UUID_V8);
});

t.test('more fields than allowed are refused with 431 and never reach the app', async (t) => {
  for (const n of [99, 998]) {
    const before = mesh.app.seen.length;
    const r = await direct('GET', '/agents', ['Host', 'control-plane', ...filler(n)]);
    t.equal(r.status, 431, `${n + 2} fields`);
    t.same(JSON.parse(r.body), { error: 'Too many request headers (limit 100)' });
    t.equal(mesh.app.seen.length, before, 'nothing reached the app');
  }
  const rec = await recordWith(mesh.serverAudit, (r) => r.reason === 'request_headers_too_many');
  t.match(rec, { type: 'inbound_decision', decision: 'deny', status: 431, peer: idOf('orchestrator'), path: '/agents' });
  t.match(rec.request_id, UUID_V8);
});

t.test('method and URL override fields are refused, in any spelling', async (t) => {
  for (const name of ['X-HTTP-Method-Override', 'X-HTTP-Method', 'X-Method-Override', 'X-Original-URL', 'X-Rewrite-URL', 'x_http_method_override']) {
    const before = mesh.app.seen.length;
    const value = name.toLowerCase().includes('url') ? '/fuzzer/harness' : 'DELETE';
    const r = await viaOutbound('GET', 'http://control-plane/agents', ['Host', 'control-plane', name, value]);
    t.equal(r.status, 400, name);
    t.same(JSON.parse(r.body), { error: `Request header '${name}' is refused: it would make the app act on another method or path than the policy decided` });
    t.equal(mesh.app.seen.length, before, 'nothing reached the app');
  }
  t.match(await recordWith(mesh.serverAudit, (r) => r.reason === 'override_header_refused'), { status: 400, decision: 'deny', peer: idOf('orchestrator') });
});

t.test("the caller's identity, forwarding and look-alike fields are replaced by the sidecar's own", async (t) => {
  const r = await viaOutbound('GET', 'http://control-plane/agents', [
    'Host', 'control-plane',
    'x_spiffe_id', idOf('admin'),
    'X-Spiffe_Id', idOf('admin'),
    'X_Forwarded_Client_Cert', `By=spiffe://evil/x;URI=${idOf('admin')}`,
    'X-Forwarded-For', '6.6.6.6',
    'x_forwarded_for', '6.6.6.7',
    'X-Forwarded-Proto', 'http',
    'X-Forwarded-Host', 'evil.example',
    'X-Forwarded-Port', '80',
    'X-Forwarded-Prefix', '/admin',
    'Forwarded', 'for=6.6.6.6;proto=http;host=evil.example',
    'X-Real-IP', '6.6.6.6',
    'x_custom_field', 'kept',
  ]);
  t.equal(r.status, 200, r.body);
  const seen = mesh.app.seen.at(-1)!;
  const names = cgiNames(seen.rawHeaders);
  for (const name of ['x-spiffe-id', 'x-forwarded-client-cert', 'x-forwarded-for', 'x-forwarded-proto', 'x-request-id']) {
    t.equal(names.filter((n) => n === name).length, 1, `exactly one ${name}, under any spelling`);
  }
  for (const gone of ['x-forwarded-host', 'x-forwarded-port', 'x-forwarded-prefix', 'forwarded', 'x-real-ip']) t.notOk(names.includes(gone), gone);
  t.equal(seen.headers['x-spiffe-id'], idOf('orchestrator'));
  t.equal(seen.headers['x-forwarded-for'], '127.0.0.1', 'the address of the mTLS peer (the agent sidecar)');
  t.equal(seen.headers['x-forwarded-proto'], 'https');
  t.equal(seen.headers['x_custom_field'], 'kept', 'an underscore name that imitates nothing passes');
});

t.test('x-request-id travels agent -> outbound -> inbound -> app and is in both audit records', async (t) => {
  const sent = await viaOutbound('GET', 'http://control-plane/agents', ['Host', 'control-plane', 'X-Request-Id', 'agent-req-0001']);
  t.equal(sent.status, 200, sent.body);
  t.equal(JSON.parse(sent.body).headers['x-request-id'], 'agent-req-0001');
  t.match(await recordWith(mesh.serverAudit, (r) => r.request_id === 'agent-req-0001'), { reason: 'allowed', peer: idOf('orchestrator') });
  t.match(await recordWith(agentAudit, (r) => r.request_id === 'agent-req-0001'), { type: 'outbound_decision', reason: 'forwarded', route: 'control-plane' });

  for (const fields of [[], ['X-Request-Id', 'not a well-formed id'], ['x-request-id', 'a', 'x-request-id', 'b']]) {
    const r = await viaOutbound('GET', 'http://control-plane/agents', ['Host', 'control-plane', ...fields]);
    t.equal(r.status, 200, r.body);
    const id = String(JSON.parse(r.body).headers['x-request-id']);
    t.match(id, UUID_V8, `generated by the outbound sidecar for ${JSON.stringify(fields)}`);
    await recordWith(mesh.serverAudit, (rec) => rec.request_id === id);
    await recordWith(agentAudit, (rec) => rec.request_id === id);
  }

  const denied = await viaOutbound('POST', 'http://control-plane/fuzzer/harness', ['Host', 'control-plane', 'X-Request-Id', 'agent-req-0002', 'Content-Length', '0']);
  t.equal(denied.status, 403);
  t.match(await recordWith(mesh.serverAudit, (r) => r.request_id === 'agent-req-0002'), { reason: 'action_not_permitted', status: 403 });
});

t.test('the outbound proxy refuses more fields than it can forward under the peer limit', async (t) => {
  const inboundBefore = mesh.serverAudit.records.length;
  // Host + 89 + Connection = 91 fields: over the outbound default of 90.
  const over = await viaOutbound('GET', 'http://control-plane/agents', ['Host', 'control-plane', ...filler(89)]);
  t.equal(over.status, 431);
  t.same(JSON.parse(over.body), { error: 'Too many request headers (limit 90)' });
  t.equal(mesh.serverAudit.records.length, inboundBefore, 'the peer was never contacted');
  t.match(await recordWith(agentAudit, (r) => r.reason === 'request_headers_too_many'), { type: 'outbound_decision', status: 431 });
  const at = await viaOutbound('GET', 'http://control-plane/agents', ['Host', 'control-plane', ...filler(88)]);
  t.equal(at.status, 200, 'exactly the outbound limit passes the peer too');
  t.equal(JSON.parse(at.body).headers['x-spiffe-id'], idOf('orchestrator'));
});

t.test('percent-encoded paths: shortest-form UTF-8 passes unchanged, anything else is a 400', async (t) => {
  const ok = await viaOutbound('GET', 'http://control-plane/agents/caf%C3%A9/status', ['Host', 'control-plane']);
  t.equal(ok.status, 200, ok.body);
  t.equal(JSON.parse(ok.body).url, '/agents/caf%C3%A9/status');
  const cases: [string, string][] = [
    ['/agents/%C0%AE%C0%AE/status', 'overlong UTF-8 encoding (%C0%AE)'],
    ['/agents/%E0%80%AF/status', 'overlong UTF-8 encoding (%E0%80%AF)'],
    ['/agents/%ED%A0%80/status', 'encoded UTF-16 surrogate (%ED%A0%80)'],
    ['/agents/%F4%90%80%80/status', 'UTF-8 beyond U+10FFFF (%F4%90%80%80)'],
    ['/agents/caf%C3/status', 'truncated UTF-8 sequence (%C3)'],
    ['/agents/caf%E9/status', 'truncated UTF-8 sequence (%E9)'],
  ];
  for (const [path, what] of cases) {
    const before = mesh.app.seen.length;
    const r = await direct('GET', path, ['Host', 'control-plane']);
    t.equal(r.status, 400, path);
    t.same(JSON.parse(r.body), { error: `Malformed request path: ${what} in path` });
    t.equal(mesh.app.seen.length, before);
  }
  t.match(await recordWith(mesh.serverAudit, (r) => r.reason === 'path_not_canonical' && r.path === '/agents/caf%E9/status'), { status: 400 });
});
