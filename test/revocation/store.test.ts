import { chmodSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t, { type Test } from 'tap';
import { SidecarError } from '../../src/errors.js';
import { RevocationStore } from '../../src/revocation/store.js';
import { RevocationState, type RevocationEntry } from '../../src/revocation/state.js';
import { capturingLogger } from '../helpers/logger.js';

function tempDir(t: Test): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'revocation-store-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

async function openStore(t: Test, stateFile: string, now?: () => number) {
  const logger = capturingLogger();
  const store = await RevocationStore.open({ stateFile, logger, ...(now ? { now } : {}) });
  t.teardown(() => store.close());
  return { store, logger };
}

const A = 'spiffe://example.org/agent/a';
const B = 'spiffe://example.org/agent/b';
const reasonOf = (err: unknown) => (err instanceof SidecarError ? err.reason : String(err));
/** The reason code a promise rejects with ('resolved' when it does not reject). */
const rejection = (p: Promise<unknown>) => p.then(() => 'resolved', reasonOf);

t.test('missing state file opens empty; revocations persist across reopen', async (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'sub', 'revocations.json');
  const clock = () => Date.parse('2025-03-01T12:00:00Z');
  const { store } = await openStore(t, file, clock);
  t.equal(store.current().size, 0);
  t.equal(store.current().isRevoked(A), undefined);

  const entry = await store.revoke(A, { reason: 'leaked key', by: 'token' });
  t.same(entry, { spiffeId: A, reason: 'leaked key', at: '2025-03-01T12:00:00.000Z', by: 'token', source: 'local' });
  await store.revoke(B, { reason: 'rotated', by: 'spiffe://example.org/admin' });
  t.equal(statSync(file).mode & 0o777, 0o600, 'state file is 0600');
  const doc = JSON.parse(readFileSync(file, 'utf8'));
  t.equal(doc.version, 1);
  t.equal(doc.all, null);
  t.same(doc.revoked.map((e: RevocationEntry) => e.spiffeId), [A, B]);
  await store.close();

  const { store: again } = await openStore(t, file);
  t.same(again.current().isRevoked(A), entry, 'same entry after a restart');
  t.equal(again.current().isRevoked(B)?.by, 'spiffe://example.org/admin');
  t.equal(again.current().isRevoked('spiffe://example.org/agent/c'), undefined);
});

t.test('a revocation is in force before its write completes, and change fires at once', async (t) => {
  const dir = tempDir(t);
  const { store } = await openStore(t, path.join(dir, 'r.json'));
  const events: [RevocationState, readonly string[]][] = [];
  store.on('change', (s, ids) => events.push([s, ids]));
  const pending = store.revoke(A, { reason: 'x', by: 'token' });
  t.ok(store.current().isRevoked(A), 'enforced synchronously');
  t.equal(events.length, 1);
  t.same(events[0]![1], [A]);
  t.equal(events[0]![0], store.current());
  await pending;
  t.equal(store.writes, 1);

  // Revoking again changes nothing (same entry, no event) but still makes sure it is on disk.
  const again = await store.revoke(A, { reason: 'other', by: 'token' });
  t.equal(again.reason, 'x');
  t.equal(events.length, 1);
});

t.test('a failed write rejects, keeps the revocation in force, and a later write catches up', async (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'r.json');
  const { store, logger } = await openStore(t, file);
  // A directory where the file should be: the atomic rename fails (also as root).
  mkdirSync(file);
  t.equal(await rejection(store.revoke(A, { reason: 'x', by: 'token' })), 'revocations_write_failed');
  t.ok(store.current().isRevoked(A), 'still revoked in memory (fail closed)');
  t.equal(store.writeFailures, 1);
  t.ok(logger.lines.some((l) => l.level === 'error' && /write failed/.test(l.msg ?? '')));
  t.same(readdirSync(dir), ['r.json'], 'the failed write left no temp file');

  rmSync(file, { recursive: true });
  await store.revoke(B, { reason: 'y', by: 'token' });
  const doc = JSON.parse(readFileSync(file, 'utf8'));
  t.same(doc.revoked.map((e: RevocationEntry) => e.spiffeId), [A, B], 'the next write carries the earlier revocation too');
});

t.test('rapid changes are coalesced and the file ends with the latest state', async (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'r.json');
  const { store } = await openStore(t, file);
  const ids = Array.from({ length: 50 }, (_, i) => `spiffe://example.org/agent/n${i}`);
  const results = await Promise.all(ids.map((id) => store.revoke(id, { reason: '', by: 'token' })));
  t.same(results.map((e) => e.spiffeId), ids);
  t.ok(store.writes < 50, `${store.writes} writes for 50 revocations`);
  t.same(JSON.parse(readFileSync(file, 'utf8')).revoked.length, 50);

  // Interleaved revoke/restore without waiting: the last one wins on disk.
  const p1 = store.restore(ids[0]!);
  const p2 = store.revoke(ids[0]!, { reason: 'again', by: 'token' });
  const p3 = store.restore(ids[1]!);
  t.same(await Promise.all([p1, p2, p3]), [true, { ...results[0], reason: 'again', at: (await p2).at }, true]);
  const onDisk = JSON.parse(readFileSync(file, 'utf8')).revoked.map((e: RevocationEntry) => e.spiffeId);
  t.equal(onDisk.length, 49);
  t.ok(onDisk.includes(ids[0]) && !onDisk.includes(ids[1]));
  t.equal(onDisk[48], ids[0], 're-revoked ID moved to the end');
});

t.test('restore and revokeAll / restoreAll', async (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'r.json');
  const { store } = await openStore(t, file);
  const events: (readonly string[])[] = [];
  store.on('change', (_s, ids) => events.push(ids));
  await store.revoke(A, { reason: 'x', by: 'token' });
  t.equal(await store.restore(A), true);
  t.equal(store.current().isRevoked(A), undefined);
  t.equal(await store.restore(A), false, 'nothing to restore');

  await store.revoke(B, { reason: 'individual', by: 'token' });
  const all = await store.revokeAll({ reason: 'incident 42', by: 'spiffe://example.org/admin' });
  t.equal(all.spiffeId, '*');
  t.equal(store.current().isRevoked('spiffe://other.org/anyone'), all, 'everyone is revoked');
  t.equal(store.current().isRevoked(B), all, 'revoke-all is reported first');
  t.same(events.at(-1), ['*']);
  t.equal(JSON.parse(readFileSync(file, 'utf8')).all.reason, 'incident 42');

  const { store: reopened } = await openStore(t, file);
  t.ok(reopened.current().all, 'revoke-all survives a restart');

  t.equal(await store.restoreAll(), true);
  t.equal(store.current().isRevoked('spiffe://other.org/anyone'), undefined);
  t.equal(store.current().isRevoked(B)?.reason, 'individual', 'individual revocations stay after restoreAll');
  t.equal(await store.restoreAll(), false);
  t.equal(JSON.parse(readFileSync(file, 'utf8')).all, null);
  t.ok(store.current().version >= 6, 'version counts every change');
});

t.test('invalid input is refused with typed errors and changes nothing', async (t) => {
  const dir = tempDir(t);
  const { store } = await openStore(t, path.join(dir, 'r.json'));
  for (const bad of ['', 'spiffe://Example.org/a', 'spiffe://example.org/a/', 'https://example.org/a', '*', 'spiffe://td/a/../b']) {
    const err = await store.revoke(bad, { reason: 'x', by: 'token' }).catch((e: unknown) => e);
    t.equal(reasonOf(err), 'spiffe_id_invalid', `refused ${JSON.stringify(bad)}`);
  }
  t.equal(await rejection(store.revoke(A, { reason: 'a\nb', by: 'token' })), 'revocation_invalid');
  t.equal(await rejection(store.revoke(A, { reason: 'x'.repeat(2000), by: 'token' })), 'revocation_invalid');
  t.equal(await rejection(store.revoke(A, { reason: 'x', by: '' })), 'revocation_invalid');
  t.equal(await rejection(store.restore('nope')), 'spiffe_id_invalid');
  t.equal(store.current().size, 0);
  t.equal(store.current().version, 1);
});

t.test('a state file that cannot be trusted refuses to open, naming the file', async (t) => {
  const dir = tempDir(t);
  const good = JSON.stringify({ version: 1, all: null, revoked: [{ spiffeId: A, reason: 'x', at: '2025-01-01T00:00:00Z', by: 'token' }] });
  const cases: [string, (f: string) => void][] = [
    ['group-writable', (f) => (writeFileSync(f, good), chmodSync(f, 0o620))],
    ['world-writable', (f) => (writeFileSync(f, good), chmodSync(f, 0o602))],
    ['truncated JSON', (f) => writeFileSync(f, good.slice(0, 40), { mode: 0o600 })],
    ['empty', (f) => writeFileSync(f, '', { mode: 0o600 })],
    ['wrong version', (f) => writeFileSync(f, good.replace('"version":1', '"version":2'), { mode: 0o600 })],
    ['invalid ID', (f) => writeFileSync(f, good.replace(A, 'spiffe://EXAMPLE/a'), { mode: 0o600 })],
    ['unknown key', (f) => writeFileSync(f, good.replace('"all"', '"extra":1,"all"'), { mode: 0o600 })],
    ['bad time', (f) => writeFileSync(f, good.replace('2025-01-01T00:00:00Z', 'yesterday'), { mode: 0o600 })],
    ['not UTF-8', (f) => writeFileSync(f, Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), { mode: 0o600 })],
    ['a directory', (f) => mkdirSync(f)],
    ['a symlink', (f) => (writeFileSync(f + '.target', good, { mode: 0o600 }), symlinkSync(f + '.target', f))],
  ];
  for (const [name, make] of cases) {
    const file = path.join(dir, `${name.replace(/\W+/g, '-')}.json`);
    make(file);
    const err = await RevocationStore.open({ stateFile: file, logger: capturingLogger() }).catch((e: unknown) => e);
    t.equal(reasonOf(err), 'revocations_unreadable', name);
    t.match((err as Error).message, file, `${name}: message names the file`);
  }
  // The same content with private permissions opens.
  const ok = path.join(dir, 'ok.json');
  writeFileSync(ok, good, { mode: 0o644 });
  const { store } = await openStore(t, ok);
  t.equal(store.current().isRevoked(A)?.at, '2025-01-01T00:00:00.000Z');
});

t.test('without a state file revocations work in memory and the gap is logged', async (t) => {
  const logger = capturingLogger();
  const store = await RevocationStore.open({ logger });
  t.teardown(() => store.close());
  t.ok(logger.lines.some((l) => l.level === 'warn' && /not survive a restart/.test(l.msg ?? '')));
  await store.revoke(A, { reason: 'x', by: 'token' });
  t.ok(store.current().isRevoked(A));
  t.equal(store.writes, 0);
});
