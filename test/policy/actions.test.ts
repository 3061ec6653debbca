import { createServer } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import t from 'tap';
import type { ActionMappingConfig } from '../../src/config/types.js';
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
  t.match(await send('/a\\admin'), /^HTTP\/1\.1 400[^]*backslash/);
});
