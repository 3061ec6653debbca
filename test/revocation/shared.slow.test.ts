import { chmodSync, mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t, { type Test } from 'tap';
import { SidecarError } from '../../src/errors.js';
import { parseSharedList } from '../../src/revocation/shared-file.js';
import { RevocationStore } from '../../src/revocation/store.js';
import type { RevocationState } from '../../src/revocation/state.js';
import { capturingLogger } from '../helpers/logger.js';

function tempDir(t: Test): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'revocation-shared-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Replaces `file` the way editors and config tools do: write a temp file, rename over. */
function replaceFile(file: string, text: string): void {
  const tmp = `${file}.${process.pid}.new`;
  writeFileSync(tmp, text);
  renameSync(tmp, file);
}

function nextEvent<T extends unknown[]>(store: RevocationStore, event: 'change' | 'error', limitMs = 30_000): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no '${event}' event within ${limitMs} ms`)), limitMs);
    store.once(event as 'change', (...args: unknown[]) => {
      clearTimeout(timer);
      resolve(args as T);
    });
  });
}

const A = 'spiffe://example.org/agent/a';
const B = 'spiffe://example.org/agent/b';
const C = 'spiffe://example.org/agent/c';
const reasonOf = (err: unknown) => (err instanceof SidecarError ? err.reason : String(err));
/** The reason code a promise rejects with ('resolved' when it does not reject). */
const rejection = (p: Promise<unknown>) => p.then(() => 'resolved', reasonOf);

t.test('shared file: hot reload by rename fires change with the new IDs', async (t) => {
  const dir = tempDir(t);
  const shared = path.join(dir, 'shared.yaml');
  writeFileSync(shared, `revoked:\n  - spiffe_id: ${A}\n    reason: leaked\n`);
  const logger = capturingLogger();
  const store = await RevocationStore.open({ sharedFiles: [shared], logger, debounceMs: 20 });
  t.teardown(() => store.close());
  const first = store.current().isRevoked(A);
  t.match(first, { spiffeId: A, reason: 'leaked', source: 'shared', by: `shared:${shared}` });

  let changed = nextEvent<[RevocationState, string[]]>(store, 'change');
  replaceFile(shared, `revoked:\n  - spiffe_id: ${A}\n    reason: leaked\n  - spiffe_id: ${B}\n    at: 2025-02-03T04:05:06Z\n`);
  const [state, ids] = await changed;
  t.same(ids, [B], 'only the newly revoked ID');
  t.equal(store.current(), state);
  t.equal(state.isRevoked(B)?.at, '2025-02-03T04:05:06.000Z');
  t.equal(state.isRevoked(A)?.at, first!.at, 'an entry without "at" keeps its first-seen time');

  // JSON works too (YAML is a superset), and removing an ID lifts it.
  changed = nextEvent(store, 'change');
  replaceFile(shared, JSON.stringify({ revoked: [{ spiffe_id: B }] }));
  const [after, none] = await changed;
  t.same(none, []);
  t.equal(after.isRevoked(A), undefined);
  t.ok(after.isRevoked(B));

  changed = nextEvent(store, 'change');
  replaceFile(shared, 'revoked: []\nall: { reason: mesh-wide incident }\n');
  const [killed, star] = await changed;
  t.same(star, ['*']);
  t.equal(killed.isRevoked(C)?.reason, 'mesh-wide incident');
  t.equal(store.reloadFailures, 0);
});

t.test('invalid reload keeps the last good content and reports it', async (t) => {
  const dir = tempDir(t);
  const shared = path.join(dir, 'shared.yaml');
  writeFileSync(shared, `revoked:\n  - spiffe_id: ${A}\n`);
  const logger = capturingLogger();
  const store = await RevocationStore.open({ sharedFiles: [shared], logger, debounceMs: 20 });
  t.teardown(() => store.close());

  for (const [name, text] of [
    ['bad ID', `revoked:\n  - spiffe_id: not-a-spiffe-id\n`],
    ['empty file (a truncated write)', ''],
    ['unknown key', `revoked:\n  - spiffe_id: ${B}\n    resaon: typo\n`],
    ['YAML syntax', `revoked: [\n`],
  ] as const) {
    const failed = nextEvent<[SidecarError]>(store, 'error');
    replaceFile(shared, text);
    const [err] = await failed;
    t.equal(err.reason, 'revocations_unreadable', name);
    t.match(err.message, shared, `${name}: names the file`);
    t.ok(store.current().isRevoked(A), `${name}: last good content still enforced`);
    t.equal(store.current().isRevoked(B), undefined);
  }
  // At least one failure per bad edit (a watcher may see one edit as two events).
  t.ok(store.reloadFailures >= 4, `${store.reloadFailures} reload failures`);
  t.ok(logger.lines.some((l) => l.level === 'error' && /keeping its last good content/.test(l.msg ?? '')));

  // A deleted file is a failure too, not "nobody revoked".
  const before = store.reloadFailures;
  unlinkSync(shared);
  t.equal(await store.reloadShared(), false, 'a missing file changes nothing');
  t.ok(store.current().isRevoked(A));
  t.ok(store.reloadFailures > before);

  // Without an 'error' listener a bad reload must not throw.
  writeFileSync(shared, 'revoked: 7\n');
  t.equal(await store.reloadShared(), false);

  // And a good file is picked up again (by this call, or by the watcher just before it).
  replaceFile(shared, `revoked:\n  - spiffe_id: ${C}\n`);
  await store.reloadShared();
  t.equal(store.current().isRevoked(A), undefined);
  t.ok(store.current().isRevoked(C));
});

t.test('reloadShared resolves true only when the effective state changed', async (t) => {
  const dir = tempDir(t);
  const shared = path.join(dir, 'shared.yaml');
  writeFileSync(shared, `revoked:\n  - spiffe_id: ${A}\n`);
  // A debounce longer than the test: only the explicit calls below reload.
  const store = await RevocationStore.open({ sharedFiles: [shared], logger: capturingLogger(), debounceMs: 600_000 });
  t.teardown(() => store.close());
  t.equal(await store.reloadShared(), false, 'unchanged');
  replaceFile(shared, `revoked:\n  - spiffe_id: ${A}\n  - spiffe_id: ${B}\n`);
  const v = store.current().version;
  t.equal(await store.reloadShared(), true);
  t.equal(store.current().version, v + 1);
  t.equal(await store.reloadShared(), false, 'the same content again');
  replaceFile(shared, `# comment only changes\nrevoked:\n  - spiffe_id: ${A}\n  - spiffe_id: ${B}\n`);
  t.equal(await store.reloadShared(), false, 'an edit with the same entries is not a change');
});

t.test('union of local and several shared files; restore only lifts local revocations', async (t) => {
  const dir = tempDir(t);
  const s1 = path.join(dir, 'one', 'list.yaml');
  const s2 = path.join(dir, 'two', 'list.json');
  mkdirSync(path.dirname(s1));
  mkdirSync(path.dirname(s2));
  writeFileSync(s1, `revoked:\n  - spiffe_id: ${A}\n`);
  writeFileSync(s2, JSON.stringify({ revoked: [{ spiffe_id: B, reason: 'from two' }] }));
  const stateFile = path.join(dir, 'state.json');
  const store = await RevocationStore.open({ stateFile, sharedFiles: [s1, s2], logger: capturingLogger(), debounceMs: 20 });
  t.teardown(() => store.close());

  await store.revoke(C, { reason: 'local', by: 'token' });
  await store.revoke(A, { reason: 'local too', by: 'token' });
  const s = store.current();
  t.same([...s.byId.keys()].sort(), [A, B, C]);
  t.equal(s.isRevoked(A)?.source, 'local', 'the local entry is shown first');
  t.equal(s.isRevoked(B)?.reason, 'from two');

  let err = await store.restore(B).catch((e: unknown) => e);
  t.equal(reasonOf(err), 'revoked_by_shared_list');
  t.match((err as Error).message, s2);
  t.ok(store.current().isRevoked(B));
  err = await store.restore(A).catch((e: unknown) => e);
  t.equal(reasonOf(err), 'revoked_by_shared_list', 'also refused when local and shared both revoke it');
  t.ok(store.current().isRevoked(A)?.source === 'local', 'and the local entry stays');
  t.equal(await store.restore(C), true);

  // The shared list is not copied into the local state file.
  const reopened = await RevocationStore.open({ stateFile, logger: capturingLogger() });
  t.teardown(() => reopened.close());
  t.same([...reopened.current().byId.keys()], [A]);

  // A shared revoke-all blocks restoreAll and every restore.
  const changed = nextEvent(store, 'change');
  replaceFile(s2, JSON.stringify({ all: {} }));
  await changed;
  t.equal(await rejection(store.restoreAll()), 'revoked_by_shared_list');
  t.equal(await rejection(store.restore(A)), 'revoked_by_shared_list');
  t.equal(store.current().isRevoked('spiffe://x.org/y')?.source, 'shared');
});

t.test('ConfigMap-style symlink swap is seen', async (t) => {
  const dir = tempDir(t);
  mkdirSync(path.join(dir, '..v1'));
  writeFileSync(path.join(dir, '..v1', 'revocations.yaml'), `revoked:\n  - spiffe_id: ${A}\n`);
  symlinkSync('..v1', path.join(dir, '..data'));
  symlinkSync('..data/revocations.yaml', path.join(dir, 'revocations.yaml'));
  const store = await RevocationStore.open({ sharedFiles: [path.join(dir, 'revocations.yaml')], logger: capturingLogger(), debounceMs: 20 });
  t.teardown(() => store.close());
  t.ok(store.current().isRevoked(A));

  const changed = nextEvent<[RevocationState, string[]]>(store, 'change');
  mkdirSync(path.join(dir, '..v2'));
  writeFileSync(path.join(dir, '..v2', 'revocations.yaml'), `revoked:\n  - spiffe_id: ${B}\n`);
  symlinkSync('..v2', path.join(dir, '..data_tmp'));
  renameSync(path.join(dir, '..data_tmp'), path.join(dir, '..data'));
  const [state, ids] = await changed;
  t.same(ids, [B]);
  t.equal(state.isRevoked(A), undefined);
});

t.test('a shared file that cannot be trusted at start refuses to open', async (t) => {
  const dir = tempDir(t);
  const cases: [string, (f: string) => void][] = [
    ['missing', () => undefined],
    ['invalid', (f) => writeFileSync(f, 'revoked:\n  - spiffe_id: spiffe://td/a/\n')],
    ['empty', (f) => writeFileSync(f, '# nothing\n')],
    ['no revoked key', (f) => writeFileSync(f, '{}\n')],
    ['world-writable', (f) => (writeFileSync(f, 'revoked: []\n'), chmodSync(f, 0o666))],
    ['bad time', (f) => writeFileSync(f, `revoked:\n  - spiffe_id: ${A}\n    at: "1"\n`)],
  ];
  for (const [name, make] of cases) {
    const file = path.join(dir, `${name.replace(/\W+/g, '-')}.yaml`);
    make(file);
    const err = await RevocationStore.open({ sharedFiles: [file], logger: capturingLogger() }).catch((e: unknown) => e);
    t.equal(reasonOf(err), 'revocations_unreadable', name);
    t.match((err as Error).message, file, `${name}: names the file`);
  }
});

t.test('shared parser: positions in messages and defaults', async (t) => {
  const now = () => Date.parse('2025-05-05T00:00:00Z');
  const list = parseSharedList(`revoked:\n  - spiffe_id: ${A}\n  - {spiffe_id: ${A}, reason: dup}\n`, '/f.yaml', { now });
  t.equal(list.byId.size, 1, 'a duplicate is harmless; the first entry stands');
  t.match(list.byId.get(A), { reason: /shared/, at: '2025-05-05T00:00:00.000Z', by: 'shared:/f.yaml' });
  const err = (() => {
    try {
      parseSharedList(`revoked:\n  - spiffe_id: ${A}\n  - spiffe_id: spiffe://td/x y\n`, '/f.yaml', { now });
    } catch (e) {
      return e;
    }
  })();
  t.match((err as Error).message, /^\/f\.yaml:3:16: revoked\[1\]\.spiffe_id: not a valid SPIFFE ID/);
});
