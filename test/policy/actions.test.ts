import { createServer } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import t from 'tap';
import type { ActionMappingConfig } from '../../src/policy/actions.js';
import { actionPathError, canonicalRequestPath, compileActionMatcher } from '../../src/policy/actions.js';

const m = (method: string, path: string, action: string): ActionMappingConfig => ({ method, path, action });

t.test('action matcher', async (t) => {
  const match = compileActionMatcher([
    m('GET', '/agents', 'agent.list'),
    m('GET', '/agents/:id/status', 'agent.status'),
    m('POST', '/agents/:id', 'agent.update'),
    m('*', '/files/*', 'files.any'),
    m('GET', '/:tenant/reports', 'reports.read'),
    m('GET', '/admin/reports', 'admin.reports'), // shadowed by the line above for GET
    m('DELETE', '/admin/reports', 'admin.delete'),
    m('GET', '/', 'root'),
  ]);
  const cases: [string, string, string | undefined][] = [
    ['GET', '/agents', 'agent.list'],
    ['GET', '/agents/', undefined], // trailing slash is a different path
    ['POST', '/agents', undefined], // method must match
    ['get', '/agents', undefined], // exact upper-case match only
    ['GET', '/agents/42/status', 'agent.status'],
    ['GET', '/agents/42/status/x', undefined],
    ['GET', '/agents//status', undefined], // a param never matches an empty segment
    ['POST', '/agents/42', 'agent.update'],
    ['GET', '/files/a', 'files.any'],
    ['PUT', '/files/a/b/c.txt', 'files.any'],
    ['GET', '/files/', 'files.any'],
    ['GET', '/files', undefined], // '/*' needs the slash
    ['GET', '/acme/reports', 'reports.read'],
    ['GET', '/admin/reports', 'reports.read'], // first match wins across buckets
    ['DELETE', '/admin/reports', 'admin.delete'],
    ['GET', '/', 'root'],
    ['GET', '/unknown', undefined],
    ['GET', '', undefined],
  ];
  for (const [method, path, want] of cases) t.equal(match(method, path)?.action, want, `${method} ${path}`);

  const catchAll = compileActionMatcher([m('GET', '/health', 'health'), m('*', '/*', 'anything')]);
  t.equal(catchAll('GET', '/health')?.action, 'health');
  t.equal(catchAll('POST', '/health')?.action, 'anything');
  t.equal(catchAll('GET', '/')?.action, 'anything');
  t.equal(catchAll('GET', '/a/b')?.action, 'anything');

  const mapping = m('GET', '/x', 'x');
  t.equal(compileActionMatcher([mapping])('GET', '/x'), mapping, 'returns the mapping itself');
  t.equal(compileActionMatcher([])('GET', '/'), undefined);
  t.throws(() => compileActionMatcher([m('GET', '/a/../b', 'x')]), /dot segment/);
});

t.test('action path validation', async (t) => {
  for (const ok of ['/', '/*', '/a', '/a/:id', '/a/:id/b', '/files/*', '/a%20b', '/a:b@c']) {
    t.equal(actionPathError(ok), undefined, ok);
  }
  const bad: [string, RegExp][] = [
    ['a', /start with '\/'/],
    ['/a*', /only allowed as the whole last segment/],
    ['/*/a', /only allowed as the whole last segment/],
    ['/a/:', /invalid parameter segment/],
    ['/a/:1x', /invalid parameter segment/],
    ['/a?b=1', /query/],
    ['/a//b', /empty segment/],
    ['/a/./b', /dot segment/],
    ['/a%2Fb', /encoded '\/'/],
  ];
  for (const [p, re] of bad) t.match(actionPathError(p), re, p);
});

t.test('canonicalRequestPath accepts plain paths and splits the query', async (t) => {
  t.strictSame(canonicalRequestPath('/agents/42/status?x=1&y=%2F'), { ok: true, path: '/agents/42/status', search: '?x=1&y=%2F' });
  t.strictSame(canonicalRequestPath('/'), { ok: true, path: '/', search: '' });
  for (const p of ['/a/b/', '/a%20b', '/%C3%A9t%C3%A9', "/a-b_c~d!$&'()*+,;=:@", '/.well-known/x', '/a..b/...', '/v1.2/x']) {
    t.match(canonicalRequestPath(p), { ok: true, path: p }, p);
  }
});

t.test('canonicalRequestPath rejects every form that could bypass a mapping', async (t) => {
  const cases: [string, RegExp][] = [
    ['/a/../admin', /dot segment/],
    ['/a/./admin', /dot segment/],
    ['/..', /dot segment/],
    ['/a/..;/admin', /dot segment/],
    ['/a//admin', /empty segment/],
    ['//admin', /empty segment/],
    ['/a%2fadmin', /encoded '\/' \(%2f\)/],
    ['/a%2Fadmin', /encoded '\/' \(%2F\)/],
    ['/a%5cadmin', /encoded '\\' \(%5c\)/],
    ['/a%5Cadmin', /encoded '\\'/],
    ['/a/%2e%2e/admin', /encoded '\.'/],
    ['/a/%2E/admin', /encoded '\.'/],
    ['/a%252fadmin', /encoded '%' \(%25\)/],
    ['/%61dmin', /needlessly encoded character \(%61\)/],
    ['/a%00', /encoded control character/],
    ['/a%zz', /malformed percent-escape/],
    ['/a%2', /malformed percent-escape/],
    ['/a\\admin', /backslash/],
    ['/a\tb', /control character/],
    ['/a\x7fb', /control character/],
    ['/a\u00e9', /non-ASCII/],
    ['/a b', /character ' ' not allowed/],
    ['/a#frag', /character '#' not allowed/],
    ['/a"b', /character '"' not allowed/],
    ['admin', /must start with '\/'/],
    ['*', /must start with '\/'/],
    ['http://host/admin', /must start with '\/'/],
    ['', /must start with '\/'/],
    ['?x=1', /must start with '\/'/],
    ['/a?x=\u00e9', /query/],
    ['/a?x#y', /fragment/],
  ];
  for (const [raw, re] of cases) {
    const r = canonicalRequestPath(raw);
    t.equal(r.ok, false, JSON.stringify(raw));
    if (!r.ok) t.match(r.error, re, JSON.stringify(raw));
  }
});

t.test('percent-encoded UTF-8 in paths: shortest form only, never a control, surrogate or beyond U+10FFFF', async (t) => {
  for (const p of ['/caf%C3%A9', '/%C2%A0', '/%DF%BF', '/%E0%A0%80', '/%E2%82%AC', '/%ED%9F%BF', '/%EE%80%80', '/%EF%BF%BD', '/%F0%90%80%80', '/%F0%9F%98%80/x', '/%F4%8F%BF%BF', '/%e2%82%ac;v=1', '/%EF%BC%8E%EF%BC%8E']) {
    t.match(canonicalRequestPath(p), { ok: true, path: p }, p);
  }
  const cases: [string, string][] = [
    ['/a/%C0%AE%C0%AE/admin', 'overlong UTF-8 encoding (%C0%AE)'],
    ['/a%C0%AFadmin', 'overlong UTF-8 encoding (%C0%AF)'],
    ['/a%C1%9Cadmin', 'overlong UTF-8 encoding (%C1%9C)'],
    ['/a%C0', 'overlong UTF-8 encoding (%C0)'],
    ['/%E0%80%AE', 'overlong UTF-8 encoding (%E0%80%AE)'],
    ['/%E0%9F%BF', 'overlong UTF-8 encoding (%E0%9F%BF)'],
    ['/%F0%80%80%AF', 'overlong UTF-8 encoding (%F0%80%80%AF)'],
    ['/%F0%8F%BF%BF', 'overlong UTF-8 encoding (%F0%8F%BF%BF)'],
    ['/%ED%A0%80', 'encoded UTF-16 surrogate (%ED%A0%80)'],
    ['/%ED%BF%BF', 'encoded UTF-16 surrogate (%ED%BF%BF)'],
    ['/%F4%90%80%80', 'UTF-8 beyond U+10FFFF (%F4%90%80%80)'],
    ['/%F5%80%80%80', 'invalid UTF-8 byte (%F5)'],
    ['/%FF', 'invalid UTF-8 byte (%FF)'],
    ['/%80', 'stray UTF-8 continuation byte (%80)'],
    ['/caf%E9', 'truncated UTF-8 sequence (%E9)'],
    ['/%C3', 'truncated UTF-8 sequence (%C3)'],
    ['/%C3/x', 'truncated UTF-8 sequence (%C3)'],
    ['/%E2%82', 'truncated UTF-8 sequence (%E2%82)'],
    ['/%E2%82/', 'truncated UTF-8 sequence (%E2%82)'],
    ['/%E2%82%41', 'truncated UTF-8 sequence (%E2%82)'],
    ['/%F0%9F%98', 'truncated UTF-8 sequence (%F0%9F%98)'],
    ['/%C3%C3%A9', 'truncated UTF-8 sequence (%C3)'],
    ['/%C3%A9%A9', 'stray UTF-8 continuation byte (%A9)'],
    ['/%C2%85', 'encoded control character (%C2%85)'],
    ['/%C2%9F', 'encoded control character (%C2%9F)'],
    ['/%C3%zz', 'malformed percent-escape'],
    ['/%E2%8', 'malformed percent-escape'],
  ];
  for (const [raw, error] of cases) {
    const r = canonicalRequestPath(raw);
    t.strictSame(r, { ok: false, error: `${error} in path` }, raw);
  }
  // The message quotes only well-formed escapes, never the bytes that follow them.
  t.strictSame(canonicalRequestPath('/%C0\u0007x'), { ok: false, error: 'overlong UTF-8 encoding (%C0) in path' });
  t.strictSame(canonicalRequestPath('/%E0%80<script>'), { ok: false, error: 'overlong UTF-8 encoding (%E0%80) in path' });
});

t.test('a long path of multi-byte escapes is checked in one pass', async (t) => {
  const ok = '/' + '%E2%82%AC'.repeat(20_000);
  t.match(canonicalRequestPath(ok), { ok: true });
  t.strictSame(canonicalRequestPath(ok + '%E2%82'), { ok: false, error: 'truncated UTF-8 sequence (%E2%82) in path' });
});

/** Node's HTTP parser hands the request-target through untouched; the check must see it as sent. */
t.test('over a real socket, req.url reaches the check unnormalised', async (t) => {
  const server = createServer((req, res) => {
    const r = canonicalRequestPath(req.url ?? '');
    const body = r.ok ? r.path : r.error;
    res.writeHead(r.ok ? 200 : 400, { connection: 'close', 'content-length': Buffer.byteLength(body) }).end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const { port } = server.address() as AddressInfo;
  const send = (target: string) =>
    new Promise<string>((resolve, reject) => {
      const s = connect(port, '127.0.0.1', () => s.end(`GET ${target} HTTP/1.1\r\nHost: x\r\n\r\n`));
      let out = '';
      s.setEncoding('latin1').on('data', (d: string) => (out += d)).on('end', () => resolve(out)).on('error', reject);
    });
  t.match(await send('/agents/1?x=1'), /^HTTP\/1\.1 200[^]*\r\n\r\n\/agents\/1$/);
  t.match(await send('/a/../admin'), /^HTTP\/1\.1 400[^]*dot segment/);
  t.match(await send('/a/%2e%2e/admin'), /^HTTP\/1\.1 400[^]*encoded '\.'/);
  t.match(await send('/a//admin'), /^HTTP\/1\.1 400[^]*empty segment/);
  t.match(await send('/a/%C0%AE%C0%AE/admin'), /^HTTP\/1\.1 400[^]*overlong UTF-8 encoding \(%C0%AE\)/);
  t.match(await send('/caf%C3%A9'), /^HTTP\/1\.1 200[^]*\r\n\r\n\/caf%C3%A9$/);
  t.match(await send('/a\\admin'), /^HTTP\/1\.1 400[^]*backslash/);
});
