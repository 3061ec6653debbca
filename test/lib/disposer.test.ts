import t from 'tap';
import { Disposer } from '../../src/lib/disposer.js';

t.test('close runs the close functions newest first, each awaited', async (t) => {
  const parts = new Disposer();
  const order: string[] = [];
  parts.defer(() => order.push('policy'));
  parts.defer(async () => {
    await new Promise((r) => setImmediate(r));
    order.push('store');
  });
  const listener = parts.add({ name: 'listener' }, (l) => order.push(l.name));
  t.equal(listener.name, 'listener', 'add returns the part');
  await parts.close();
  t.same(order, ['listener', 'store', 'policy']);
});

t.test('a failing close does not stop the others; the first error is rethrown', async (t) => {
  const parts = new Disposer();
  const order: string[] = [];
  parts.defer(() => order.push('first opened'));
  parts.defer(() => {
    throw new Error('older failure');
  });
  parts.defer(() => Promise.reject(new Error('newest failure')));
  parts.defer(() => order.push('last opened'));
  await t.rejects(parts.close(), { message: 'newest failure' });
  t.same(order, ['last opened', 'first opened'], 'every close ran');
});

t.test('close is idempotent: a second call runs nothing again', async (t) => {
  const parts = new Disposer();
  let closes = 0;
  parts.defer(() => closes++);
  const first = parts.close();
  const second = parts.close();
  await Promise.all([first, second]);
  await parts.close();
  t.equal(closes, 1);
  t.equal(parts.closed, true);
});

t.test('step: a failure closes what was opened before it, then rethrows', async (t) => {
  const parts = new Disposer();
  const order: string[] = [];
  await parts.step(async () => {
    parts.defer(() => order.push('a'));
    parts.defer(() => order.push('b'));
  });
  t.same(order, [], 'a successful step closes nothing');
  const err = new Error('port taken');
  await t.rejects(
    parts.step(async () => {
      parts.defer(() => order.push('c'));
      throw err;
    }),
    err,
    'the step error is rethrown, not a close error',
  );
  t.same(order, ['c', 'b', 'a']);
});

t.test('step rethrows its own error even when a close fails too', async (t) => {
  const parts = new Disposer();
  parts.defer(() => {
    throw new Error('close failed');
  });
  await t.rejects(
    parts.step(() => {
      throw new Error('open failed');
    }),
    { message: 'open failed' },
  );
});

t.test('something opened after close() is closed at once', async (t) => {
  const parts = new Disposer();
  await parts.close();
  let closed = false;
  parts.defer(() => {
    closed = true;
  });
  t.equal(closed, true);
});

t.test('every failed close is reported, also when a failed step hides them', async (t) => {
  const reported: unknown[] = [];
  const parts = new Disposer((err) => reported.push(err));
  const first = new Error('store would not close');
  const second = new Error('listener would not close');
  parts.defer(() => Promise.reject(first));
  parts.defer(() => Promise.reject(second));
  await t.rejects(parts.step(() => Promise.reject(new Error('bind failed'))), { message: 'bind failed' });
  t.same(reported, [second, first], 'newest first, none lost');
  parts.defer(() => Promise.reject(first));
  await new Promise((r) => setImmediate(r));
  t.equal(reported.length, 3, 'a late close that fails is reported too');
});
