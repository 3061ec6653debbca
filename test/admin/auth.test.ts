import { spawnSync } from 'node:child_process';
import { chmodSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { networkInterfaces, tmpdir } from 'node:os';
import path from 'node:path';
import t, { type Test } from 'tap';
import {
  AdminAuthenticator,
  canonicalAddress,
  createAdminTokenFile,
  isLoopbackAddress,
  loadAdminToken,
  type AdminAuthResult,
} from '../../src/admin/auth.js';
import { SidecarError } from '../../src/errors.js';
import { capturingLogger } from '../helpers/logger.js';

const TOKEN = 'Zm9vYmFyYmF6cXV4LXRlc3QtdG9rZW4tMDEyMzQ1Njc4OQ';
const ADMIN = 'spiffe://example.org/ops/admin';

function tempDir(t: Test): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'admin-auth-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const loadReason = (file: string) =>
  loadAdminToken(file).then(
    () => 'loaded',
    (err: unknown) => (err instanceof SidecarError ? err.reason : String(err)),
  );

function setup(opts: { token?: string; admins?: Set<string>; maxFailures?: number; windowMs?: number; maxTrackedKeys?: number } = {}) {
  let now = 1_000_000;
  const logger = capturingLogger();
  const admins = opts.admins ?? new Set([ADMIN]);
  const auth = new AdminAuthenticator({
    ...('token' in opts ? { token: opts.token } : { token: TOKEN }),
    admins: () => admins,
    logger,
    now: () => now,
    ...(opts.maxFailures ? { maxFailures: opts.maxFailures } : {}),
    ...(opts.windowMs ? { windowMs: opts.windowMs } : {}),
    ...(opts.maxTrackedKeys ? { maxTrackedKeys: opts.maxTrackedKeys } : {}),
  });
  return { auth, logger, admins, advance: (ms: number) => (now += ms) };
}

const bearer = (token: string) => `Bearer ${token}`;
const failure = (r: AdminAuthResult) => (r.ok ? 'ok' : `${r.status} ${r.reason}`);

t.test('token file rules', async (t) => {
  const dir = tempDir(t);
  const good = path.join(dir, 'good');
  writeFileSync(good, `  ${TOKEN}\n`, { mode: 0o600 });
  t.equal(await loadAdminToken(good), TOKEN, 'trimmed token from a 0600 file');
  chmodSync(good, 0o400);
  t.equal(await loadAdminToken(good), TOKEN, '0400 is fine too');

  const cases: [string, (f: string) => void][] = [
    ['missing', () => undefined],
    ['0644', (f) => (writeFileSync(f, TOKEN), chmodSync(f, 0o644))],
    ['0640', (f) => (writeFileSync(f, TOKEN), chmodSync(f, 0o640))],
    ['0604', (f) => (writeFileSync(f, TOKEN), chmodSync(f, 0o604))],
    ['symlink to a 0600 file', (f) => symlinkSync(good, f)],
    ['short', (f) => writeFileSync(f, `${'x'.repeat(31)}\n`, { mode: 0o600 })],
    ['short after trimming', (f) => writeFileSync(f, `   ${'x'.repeat(20)}            \n\n`, { mode: 0o600 })],
    ['spaces inside', (f) => writeFileSync(f, `${'x'.repeat(20)} ${'y'.repeat(20)}`, { mode: 0o600 })],
    ['empty', (f) => writeFileSync(f, '', { mode: 0o600 })],
    ['a directory', (f) => mkdirSync(f, { mode: 0o700 })],
    ['a FIFO', (f) => spawnSync('mkfifo', ['-m', '600', f])],
  ];
  for (const [name, make] of cases) {
    const file = path.join(dir, name.replace(/\W+/g, '-'));
    make(file);
    t.equal(await loadReason(file), 'admin_token_unreadable', `${name} refused`);
  }
  const err = (await loadAdminToken(path.join(dir, '0644')).catch((e: unknown) => e)) as Error;
  t.match(err.message, /0644.*chmod 600/, 'says what is wrong and how to fix it');
  t.notMatch(err.message, TOKEN, 'never quotes the token');
});

t.test('createAdminTokenFile creates once, reuses, and replaces an insecure file', async (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'sub', 'admin.token');
  const token = await createAdminTokenFile(file);
  t.match(token, /^[A-Za-z0-9_-]{43}$/, '32 random bytes, base64url');
  t.equal(statSync(file).mode & 0o777, 0o600);
  t.equal(await loadAdminToken(file), token);
  t.equal(await createAdminTokenFile(file), token, 'a valid file is reused');

  chmodSync(file, 0o644);
  const replaced = await createAdminTokenFile(file);
  t.not(replaced, token, 'an exposed token is not reused');
  t.equal(statSync(file).mode & 0o777, 0o600);

  // A symlink is replaced by a private file; its target is left alone.
  const target = path.join(dir, 'target');
  writeFileSync(target, 'do not touch', { mode: 0o644 });
  const link = path.join(dir, 'link.token');
  symlinkSync(target, link);
  await createAdminTokenFile(link);
  t.ok(lstatSync(link).isFile());
  t.equal(readFileSync(target, 'utf8'), 'do not touch');
});

t.test('bearer token: loopback only, constant-time compared', async (t) => {
  const { auth } = setup({ maxFailures: 1000 });
  for (const remoteAddress of ['127.0.0.1', '127.10.20.30', '::1', '::ffff:127.0.0.1', '0:0:0:0:0:0:0:1']) {
    t.same(auth.authenticate({ authorization: bearer(TOKEN), remoteAddress }), { ok: true, principal: 'token' }, remoteAddress);
  }
  t.same(auth.authenticate({ authorization: `bearer   ${TOKEN}`, remoteAddress: '127.0.0.1' }).ok, true, 'scheme is case-insensitive');

  for (const remoteAddress of ['10.0.0.7', '::ffff:10.0.0.7', '192.168.1.1', 'fe80::1', '128.0.0.1', undefined]) {
    t.equal(failure(auth.authenticate({ authorization: bearer(TOKEN), remoteAddress })), '403 admin_not_loopback', String(remoteAddress));
  }
  const local = { remoteAddress: '127.0.0.1' };
  t.equal(failure(auth.authenticate({ ...local })), '401 admin_auth_missing');
  t.equal(failure(auth.authenticate({ ...local, authorization: '' })), '401 admin_auth_missing');
  t.equal(failure(auth.authenticate({ ...local, authorization: `Basic ${TOKEN}` })), '401 admin_auth_invalid');
  t.equal(failure(auth.authenticate({ ...local, authorization: TOKEN })), '401 admin_auth_invalid');
  t.equal(failure(auth.authenticate({ ...local, authorization: 'Bearer' })), '401 admin_auth_invalid');
  for (const wrong of [TOKEN.slice(0, -1) + 'X', TOKEN.slice(0, -1), `${TOKEN}X`, TOKEN.toLowerCase(), `${TOKEN} extra`]) {
    const r = auth.authenticate({ ...local, authorization: bearer(wrong) });
    t.equal(failure(r), '401 admin_auth_invalid', `near miss ${JSON.stringify(wrong.slice(-6))}`);
  }

  const { auth: noToken } = setup({ token: undefined });
  t.equal(failure(noToken.authenticate({ ...local, authorization: bearer(TOKEN) })), '401 admin_auth_invalid', 'token auth off');
  t.throws(() => setup({ token: 'short' }), { name: 'SidecarError' });
});

t.test('mTLS peer: allowed iff listed under admins (live set)', async (t) => {
  const { auth, admins } = setup();
  t.same(auth.authenticate({ peerSpiffeId: ADMIN, remoteAddress: '10.1.2.3' }), { ok: true, principal: ADMIN });
  const other = 'spiffe://example.org/ops/intern';
  t.equal(failure(auth.authenticate({ peerSpiffeId: other, remoteAddress: '10.1.2.4' })), '403 admin_not_listed');
  t.equal(
    failure(auth.authenticate({ peerSpiffeId: other, remoteAddress: '127.0.0.1', authorization: bearer(TOKEN) })),
    '403 admin_not_listed',
    'on the mTLS listener the identity decides, not a token',
  );
  t.equal(failure(auth.authenticate({ peerSpiffeId: '', remoteAddress: '10.1.2.5' })), '403 admin_not_listed');
  admins.add(other);
  t.equal(auth.authenticate({ peerSpiffeId: other, remoteAddress: '10.1.2.6' }).ok, true, 'policy change applies at once');
  admins.delete(ADMIN);
  t.equal(failure(auth.authenticate({ peerSpiffeId: ADMIN, remoteAddress: '10.1.2.7' })), '403 admin_not_listed');
});

t.test('throttling: failures past maxFailures get 429; the right token is always accepted', async (t) => {
  const { auth, logger, advance } = setup({ maxFailures: 5, windowMs: 60_000 });
  const local = { remoteAddress: '127.0.0.1' };
  for (let i = 0; i < 5; i++) {
    t.equal(failure(auth.authenticate({ ...local, authorization: bearer(`wrong-${i}`) })), '401 admin_auth_invalid');
    advance(1000);
  }
  const limited = auth.authenticate({ ...local, authorization: bearer('wrong-again') });
  t.equal(failure(limited), '429 admin_rate_limited', 'a further failure is throttled');
  t.equal(limited.ok ? 0 : limited.retryAfterSeconds, 55, 'retry after the oldest failure leaves the window');
  t.equal(failure(auth.authenticate({ remoteAddress: '::ffff:127.0.0.1' })), '429 admin_rate_limited', 'same address, other spelling');
  t.same(auth.authenticate({ ...local, authorization: bearer(TOKEN) }), { ok: true, principal: 'token' }, 'the right token while throttled');
  t.same(auth.authenticate({ remoteAddress: '::ffff:127.0.0.1', authorization: bearer(TOKEN) }), { ok: true, principal: 'token' });
  for (let i = 0; i < 20; i++) auth.authenticate({ ...local, authorization: bearer('x') });
  t.equal(logger.lines.filter((l) => (l.obj as { reason: string }).reason === 'admin_rate_limited').length, 1, 'a flood logs one line');
  t.equal(auth.authenticate({ ...local, authorization: bearer(TOKEN) }).ok, true, 'still accepted after the flood');

  advance(54_000);
  t.equal(failure(auth.authenticate({ ...local, authorization: bearer('wrong') })), '429 admin_rate_limited', 'not yet');
  advance(1000);
  // Sliding window: one slot freed, so one more failure is answered 401 and fills it again.
  t.equal(failure(auth.authenticate({ ...local, authorization: bearer('wrong') })), '401 admin_auth_invalid');
  t.equal(failure(auth.authenticate({ ...local, authorization: bearer('wrong') })), '429 admin_rate_limited');
});

t.test('throttling: successes do not reset failures; peer IDs are throttled across addresses, listed admins never', async (t) => {
  const { auth, advance } = setup({ maxFailures: 3, windowMs: 10_000 });
  const local = { remoteAddress: '127.0.0.1' };
  auth.authenticate({ ...local, authorization: bearer('a') });
  auth.authenticate({ ...local, authorization: bearer('b') });
  t.equal(auth.authenticate({ ...local, authorization: bearer(TOKEN) }).ok, true);
  auth.authenticate({ ...local, authorization: bearer('c') });
  t.equal(failure(auth.authenticate({ ...local, authorization: bearer('d') })), '429 admin_rate_limited');

  const intruder = 'spiffe://example.org/agent/x';
  for (let i = 0; i < 3; i++) auth.authenticate({ peerSpiffeId: intruder, remoteAddress: `10.0.0.${i + 1}` });
  t.equal(failure(auth.authenticate({ peerSpiffeId: intruder, remoteAddress: '10.0.0.99' })), '429 admin_rate_limited');
  for (let i = 0; i < 3; i++) auth.authenticate({ peerSpiffeId: intruder, remoteAddress: '10.0.0.7' });
  t.equal(auth.authenticate({ peerSpiffeId: ADMIN, remoteAddress: '10.0.0.7' }).ok, true, 'a listed admin from a throttled address');
  advance(10_000);
  t.equal(failure(auth.authenticate({ peerSpiffeId: intruder, remoteAddress: '10.0.0.99' })), '403 admin_not_listed');
});

t.test('failures are logged without the presented token; memory is bounded', async (t) => {
  const { auth, logger } = setup({ maxTrackedKeys: 100 });
  const secretGuess = 'guess-' + 'k'.repeat(40);
  auth.authenticate({ remoteAddress: '127.0.0.1', authorization: bearer(secretGuess) });
  auth.authenticate({ remoteAddress: '10.9.9.9', authorization: bearer(TOKEN) });
  t.equal(logger.lines.length, 2);
  t.match(logger.lines[0]!.obj, { reason: 'admin_auth_invalid', remote: '127.0.0.1', status: 401 });
  const logged = JSON.stringify(logger.lines);
  t.notMatch(logged, secretGuess);
  t.notMatch(logged, TOKEN);

  for (let i = 0; i < 1000; i++) auth.authenticate({ remoteAddress: `10.${i >> 8}.${i & 255}.1`, authorization: bearer('x') });
  t.ok(auth.trackedKeys <= 100, `${auth.trackedKeys} keys tracked`);
});

t.test('address canonicalisation', async (t) => {
  t.equal(canonicalAddress('::FFFF:7F00:1'), '127.0.0.1');
  t.equal(canonicalAddress('::ffff:127.0.0.1'), '127.0.0.1');
  t.equal(canonicalAddress('0:0:0:0:0:0:0:1'), '::1');
  t.equal(canonicalAddress('fe80::1%eth0'), 'fe80::1%eth0');
  t.equal(isLoopbackAddress('fe80::1%lo'), false);
  t.equal(isLoopbackAddress('::'), false);
  t.equal(isLoopbackAddress('localhost'), false, 'names are not addresses');
});

t.test('real sockets: the address Node reports for a loopback client is accepted, others are not', async (t) => {
  const { auth } = setup();
  const server = http.createServer((req, res) => {
    const r = auth.authenticate({ authorization: req.headers.authorization, remoteAddress: req.socket.remoteAddress });
    res.writeHead(r.ok ? 200 : r.status, { 'content-type': 'application/json', connection: 'close' });
    res.end(JSON.stringify(r));
  });
  // '::' is dual-stack: an IPv4 client shows up as ::ffff:127.0.0.1.
  await new Promise<void>((resolve) => server.listen(0, '::', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const port = (server.address() as AddressInfo).port;
  const call = async (host: string, token: string) => {
    const res = await fetch(`http://${host}:${port}/revocations`, { method: 'POST', headers: { authorization: bearer(token) } });
    return { status: res.status, body: (await res.json()) as AdminAuthResult };
  };
  t.same(await call('127.0.0.1', TOKEN), { status: 200, body: { ok: true, principal: 'token' } });
  t.same((await call('[::1]', TOKEN)).status, 200);
  t.same((await call('127.0.0.1', 'wrong-token')).status, 401);

  const external = Object.values(networkInterfaces())
    .flat()
    .find((i) => i && i.family === 'IPv4' && !i.internal);
  // An environment without a non-loopback interface is a skip, not a missing tool.
  if (!external) return void t.skip('no non-loopback IPv4 interface: the remote-address check cannot run', () => {});
  const remote = await call(external.address, TOKEN);
  t.equal(remote.status, 403, `a client via ${external.address} is not loopback`);
  t.match(remote.body, { reason: 'admin_not_loopback' });
});
