import t from 'tap';
import { Readiness, listeningCheck } from '../../src/lib/readiness.js';

t.test('report lists present checks in registration order; undefined means absent', (t) => {
  const checks = new Readiness();
  let sourceBroken = false;
  checks.register('svid', () => ({ ok: true, detail: 'spiffe://td/w' }));
  checks.register('identity_source', () => (sourceBroken ? { ok: false, detail: 'socket not found' } : undefined));
  checks.registerAll([['policy', () => ({ ok: true, detail: 'version abc' })]]);
  t.same(Object.keys(checks.report()), ['svid', 'policy']);
  sourceBroken = true;
  const report = checks.report();
  t.same(Object.keys(report), ['svid', 'identity_source', 'policy']);
  t.same(report.identity_source, { ok: false, detail: 'socket not found' });
  t.end();
});

t.test('checks are evaluated on every report (no cached verdict)', (t) => {
  const checks = new Readiness();
  let ok = false;
  checks.register('audit', () => ({ ok }));
  t.same(checks.report(), { audit: { ok: false } });
  ok = true;
  t.same(checks.report(), { audit: { ok: true } });
  t.end();
});

t.test('a name registered twice is a wiring mistake', (t) => {
  const checks = new Readiness();
  checks.register('policy', () => ({ ok: true }));
  t.throws(() => checks.register('policy', () => ({ ok: true })), /registered twice/);
  t.end();
});

t.test('listeningCheck follows the listener', (t) => {
  const listener = { listening: false };
  const probe = listeningCheck(listener);
  t.same(probe(), { ok: false, detail: 'not listening' });
  listener.listening = true;
  t.same(probe(), { ok: true });
  t.end();
});
