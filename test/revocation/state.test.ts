import t from 'tap';
import { SidecarError } from '../../src/errors.js';
import {
  RevocationState,
  isoTime,
  newlyRevoked,
  revocationId,
  sameList,
  type RevocationEntry,
  type RevocationList,
} from '../../src/revocation/state.js';

const entry = (spiffeId: string, source: 'local' | 'shared' = 'local', reason = 'r'): RevocationEntry => ({
  spiffeId,
  reason,
  at: '2025-01-01T00:00:00.000Z',
  by: source === 'local' ? 'token' : 'shared:/f',
  source,
});
const list = (all: RevocationEntry | undefined, ...entries: RevocationEntry[]): RevocationList => ({
  all,
  byId: new Map(entries.map((e) => [e.spiffeId, e])),
});
const A = 'spiffe://td/a';
const B = 'spiffe://td/b';

t.test('isRevoked: exact ID match, revoke-all first', async (t) => {
  const s = RevocationState.merge(3, [list(undefined, entry(A))]);
  t.equal(s.version, 3);
  t.equal(s.isRevoked(A)?.spiffeId, A);
  t.equal(s.isRevoked(`${A}/child`), undefined, 'no prefix matching');
  t.equal(s.isRevoked('spiffe://td/A'), undefined, 'no case folding');
  t.equal(s.isRevoked('spiffe://td'), undefined);
  const all = entry('*');
  const k = RevocationState.merge(4, [list(all, entry(A))]);
  t.equal(k.isRevoked('spiffe://other/x'), all);
  t.equal(k.isRevoked(A), all);
  t.same(k.entries().map((e) => e.spiffeId), ['*', A]);
  t.same(k.toJSON(), { version: 4, all, revoked: [entry(A)] });
  t.equal(RevocationState.empty().isRevoked(A), undefined);
});

t.test('merge is a union; the first list wins on the same ID', async (t) => {
  const s = RevocationState.merge(1, [list(undefined, entry(A, 'local')), list(entry('*', 'shared'), entry(A, 'shared'), entry(B, 'shared'))]);
  t.equal(s.size, 2);
  t.equal(s.byId.get(A)?.source, 'local');
  t.equal(s.byId.get(B)?.source, 'shared');
  t.equal(s.all?.source, 'shared');
});

t.test('newlyRevoked and sameList', async (t) => {
  const empty = RevocationState.empty();
  const one = RevocationState.merge(1, [list(undefined, entry(A))]);
  const two = RevocationState.merge(2, [list(entry('*'), entry(A), entry(B))]);
  t.same(newlyRevoked(empty, one), [A]);
  t.same(newlyRevoked(one, two), ['*', B]);
  t.same(newlyRevoked(two, one), []);
  t.ok(sameList(list(undefined, entry(A)), list(undefined, entry(A))));
  t.notOk(sameList(list(undefined, entry(A)), list(undefined, entry(A, 'local', 'other'))));
  t.notOk(sameList(list(undefined, entry(A)), list(entry('*'), entry(A))));
  t.notOk(sameList(list(undefined, entry(A)), list(undefined, entry(B))));
});

t.test('input validation', async (t) => {
  t.equal(revocationId('spiffe://example.org/a/b'), 'spiffe://example.org/a/b');
  for (const bad of ['spiffe://example.org/a//b', 'SPIFFE://example.org/a', 'spiffe://example.org/%41', ' spiffe://example.org/a']) {
    t.throws(() => revocationId(bad), { reason: 'spiffe_id_invalid' } as unknown as Error, bad);
  }
  t.equal(isoTime('2025-01-02T03:04:05+02:00'), '2025-01-02T01:04:05.000Z');
  t.equal(isoTime('2025-01-02'), '2025-01-02T00:00:00.000Z');
  for (const bad of ['1', 'yesterday', '2025-13-45', 'Tue, 01 Jan 2025 00:00:00 GMT']) {
    t.throws(() => isoTime(bad), SidecarError, bad);
  }
});
