/**
 * The SPIRE flags of `kill`/`restore` are checked before anything changes (usage errors, exit 2,
 * no admin call), and restore reads only a well-formed entries file of the agent it restores.
 */
import { mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t, { type Test } from 'tap';
import { killCommand } from '../../src/cli/kill.js';
import { ENTRIES_FILE_FORMAT, defaultEntriesFile, mergeEntries, parseEntriesFile, readEntriesFile } from '../../src/spire/entries-file.js';
import { parseSpireServerSocket } from '../../src/spire/entry-client.js';
import { parseSpiffeId } from '../../src/spiffe/id.js';

const AGENT = 'spiffe://example.org/ns/a/sa/orchestrator';

function tempDir(t: Test): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'kill-args-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** An admin API that counts calls: a usage error must make none. */
async function countingAdmin(t: Test): Promise<{ url: string; calls: () => number }> {
  let calls = 0;
  const server = http.createServer((req, res) => {
    calls++;
    req.resume();
    res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true,"revocations":{}}');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, calls: () => calls };
}

t.test('SPIRE flags are checked before anything is revoked', async (t) => {
  const dir = tempDir(t);
  const token = path.join(dir, 'token');
  writeFileSync(token, 'x'.repeat(43));
  const admin = await countingAdmin(t);
  const base = ['--admin', admin.url, '--token-file', token];
  const env = { ATTEST_SIDECAR_DEV_STATE: dir };
  const cases: [cmd: 'kill' | 'killall' | 'restore', args: string[], problem: RegExp][] = [
    ['kill', [AGENT, '--spire-server-socket', 'tcp://127.0.0.1:8081'], /invalid SPIRE server socket .*unix:\/\/\/absolute\/path/],
    ['kill', [AGENT, '--spire-server-socket', 'unix://host/tmp/api.sock'], /must not include an authority/],
    ['kill', [AGENT, '--spire-server-socket', 'unix:///tmp/'], /absolute socket file path/],
    ['kill', [AGENT, '--entries-file', path.join(dir, 'e.json')], /--entries-file needs --spire-server-socket/],
    ['kill', ['not-a-spiffe-id', '--spire-server-socket', 'unix:///tmp/api.sock'], /scheme/i],
    ['kill', ['spiffe://example.org', '--spire-server-socket', 'unix:///tmp/api.sock'], /names a trust domain, not an agent/],
    ['killall', ['--spire-server-socket', 'unix:///tmp/api.sock'], /killall never touches SPIRE entries/],
    ['restore', ['--all', '--spire-server-socket', 'unix:///tmp/api.sock'], /restore --all never touches SPIRE entries/],
  ];
  for (const [cmd, args, problem] of cases) {
    const out = await killCommand(cmd, [...args, ...base], env);
    t.equal(out.exitCode, 2, `${cmd} ${args.join(' ')}: usage error`);
    t.match(out.stderr, problem);
    t.match(out.stderr, 'Usage:');
  }
  t.equal(admin.calls(), 0, 'no admin call was made');
});

t.test('the server socket is unix:///absolute/path only', async (t) => {
  t.same(parseSpireServerSocket('unix:///tmp/spire-server/private/api.sock'), { uri: 'unix:///tmp/spire-server/private/api.sock', path: '/tmp/spire-server/private/api.sock', grpcTarget: 'unix:///tmp/spire-server/private/api.sock' });
  t.equal(parseSpireServerSocket('unix:///tmp/a%20b.sock').path, '/tmp/a b.sock');
  for (const bad of ['', '/tmp/api.sock', 'unix:api.sock', 'unix:///tmp/a.sock?x=1', 'unix:///tmp/a.sock#f', 'unix:///tmp/%zz', 'http://x/y']) {
    t.throws(() => parseSpireServerSocket(bad), { reason: 'spire_server_socket_invalid' } as unknown as Error, JSON.stringify(bad));
  }
});

const entry = (id: string, over: Record<string, unknown> = {}) => ({
  id,
  spiffe_id: { trust_domain: 'example.org', path: '/ns/a/sa/orchestrator' },
  parent_id: { trust_domain: 'example.org', path: '/spire/agent/x' },
  selectors: [{ type: 'unix', value: 'uid:1000' }],
  x509_svid_ttl: 45,
  federates_with: ['partner.test'],
  admin: false,
  downstream: true,
  expires_at: '0',
  dns_names: ['a.example'],
  revision_number: '3',
  store_svid: false,
  jwt_svid_ttl: 0,
  hint: 'main',
  created_at: '1796689159',
  ...over,
});
const doc = (entries: unknown[], over: Record<string, unknown> = {}) => ({ format: ENTRIES_FILE_FORMAT, spiffe_id: AGENT, server_socket: 'unix:///x', saved_at: '2026-12-08T00:00:00.000Z', entries, ...over });

t.test('an entries file restores only the named agent, with every field checked', async (t) => {
  const id = parseSpiffeId(AGENT);
  const ok = parseEntriesFile(doc([entry('e-1')]), 'f', id);
  t.same(ok.entries, [entry('e-1')], 'a saved entry reads back unchanged');
  const refused: [unknown, RegExp][] = [
    [[], /must be an object/],
    [doc([], { format: 'other' }), /format is not/],
    [doc([], { spiffe_id: 'spiffe://example.org/ns/a/sa/other' }), /saved for .*other.*not spiffe:\/\/example.org\/ns\/a\/sa\/orchestrator/],
    [doc([entry('e-1', { spiffe_id: { trust_domain: 'example.org', path: '/ns/a/sa/other' } })]), /entries\[0\]\.spiffe_id is not/],
    [doc([entry('e/1')]), /entries\[0\]\.id must be/],
    [doc([entry('e-1', { selectors: [] })]), /selectors is empty/],
    [doc([entry('e-1', { selectors: [{ type: 'unix' }] })]), /selectors must be/],
    [doc([entry('e-1', { x509_svid_ttl: 2 ** 31 })]), /x509_svid_ttl must be a 32-bit integer/],
    [doc([entry('e-1', { expires_at: 1900000000 })]), /expires_at must be an integer as a decimal string/],
    [doc([entry('e-1', { admin: 'yes' })]), /admin must be true or false/],
    [doc([entry('e-1', { dns_names: 'a.example' })]), /dns_names must be a list of strings/],
    [doc({} as never), /'entries' must be a list/],
  ];
  for (const [bad, why] of refused) {
    t.throws(() => parseEntriesFile(bad, 'f', id), { reason: 'spire_entries_file_invalid', message: why } as unknown as Error, String(why));
  }
});

t.test('reading the entries file: missing is undefined, a symlink or garbage is refused', async (t) => {
  const dir = tempDir(t);
  const id = parseSpiffeId(AGENT);
  t.equal(await readEntriesFile(path.join(dir, 'none.json'), id), undefined);
  const real = path.join(dir, 'real.json');
  writeFileSync(real, JSON.stringify(doc([entry('e-1')])));
  t.equal((await readEntriesFile(real, id))?.entries.length, 1);
  const link = path.join(dir, 'link.json');
  symlinkSync(real, link);
  await t.rejects(readEntriesFile(link, id), { reason: 'spire_entries_file_invalid' } as unknown as Error, 'a symlink is not followed');
  writeFileSync(real, '{"format":');
  await t.rejects(readEntriesFile(real, id), { reason: 'spire_entries_file_invalid', message: /not JSON/ });
});

t.test('default file: one per SPIFFE ID under the state dir; merge keeps earlier entries', async (t) => {
  const env = { ATTEST_SIDECAR_DEV_STATE: '/state' };
  const a = defaultEntriesFile(parseSpiffeId(AGENT), env);
  t.match(a, /^\/state\/spire-entries\/example\.org_ns_a_sa_orchestrator-[0-9a-f]{12}\.json$/);
  t.not(defaultEntriesFile(parseSpiffeId('spiffe://example.org/ns/a/sa/orchestrator2'), env), a);
  t.not(defaultEntriesFile(parseSpiffeId('spiffe://example.org/ns_a/sa/orchestrator'), env), a, 'names that read alike still differ');
  const merged = mergeEntries([entry('e-1', { hint: 'old' }), entry('e-2')] as never, [entry('e-1', { hint: 'new' }), entry('e-3')] as never);
  t.same(merged.map((e) => [e.id, e.hint]), [['e-1', 'new'], ['e-2', 'main'], ['e-3', 'main']]);
});
