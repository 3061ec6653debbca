import t from 'tap';
import { ConfigError } from '../../src/errors.js';
import {
  checkDuration,
  checkListen,
  closestMatch,
  isLoopbackHost,
  parseDurationMs,
  parseListen,
} from '../../src/lib/values.js';
import { checkTrustDomain, checkWorkloadSpiffeId } from '../../src/spiffe/id-check.js';

t.test('durations', async (t) => {
  const good: [unknown, number][] = [
    [30, 30_000],
    [0.5, 500],
    ['30', 30_000],
    ['500ms', 500],
    ['30s', 30_000],
    ['1.5s', 1_500],
    ['5m', 300_000],
    ['1h', 3_600_000],
    ['1m30s', 90_000],
    [' 2s ', 2_000],
  ];
  for (const [v, ms] of good) t.strictSame(checkDuration(v), { ok: true, value: ms }, String(v));
  const bad: [unknown, RegExp][] = [
    [0, /greater than zero/],
    [-1, /greater than zero/],
    ['0s', /greater than zero/],
    ['5 m', /invalid duration/],
    ['5min', /invalid duration/],
    ['s', /invalid duration/],
    ['', /invalid duration/],
    ['1d', /invalid duration/],
    [true, /must be a duration/],
    [Infinity, /finite/],
    [1e9, /too long/],
  ];
  for (const [v, re] of bad) {
    const r = checkDuration(v);
    t.equal(r.ok, false, String(v));
    if (!r.ok) t.match(r.error, re, String(v));
  }
  t.equal(parseDurationMs('250ms'), 250);
  t.throws(() => parseDurationMs('x'), ConfigError);
});

t.test('listen addresses', async (t) => {
  const good: [string, string, number][] = [
    ['127.0.0.1:15001', '127.0.0.1', 15001],
    ['0.0.0.0:0', '0.0.0.0', 0],
    ['[::1]:15000', '::1', 15000],
    ['[::]:65535', '::', 65535],
    ['localhost:8080', 'localhost', 8080],
    ['sidecar.internal:1', 'sidecar.internal', 1],
  ];
  for (const [v, host, port] of good) t.strictSame(checkListen(v), { ok: true, value: { host, port } }, v);
  const bad: [unknown, RegExp][] = [
    [15001, /must be a string "host:port"/],
    ['15001', /expected "host:port"/],
    [':15001', /has no host/],
    ['127.0.0.1:65536', /invalid port/],
    ['127.0.0.1:-1', /invalid port/],
    ['127.0.0.1:', /invalid port/],
    ['127.0.0.1:80x', /invalid port/],
    ['::1:80', /must be bracketed/],
    ['[::1]80', /expected "\[v6\]:port"/],
    ['[1.2.3.4]:80', /not an IPv6 address/],
    ['bad_host:80', /not a valid host/],
  ];
  for (const [v, re] of bad) {
    const r = checkListen(v);
    t.equal(r.ok, false, String(v));
    if (!r.ok) t.match(r.error, re, String(v));
  }
  t.strictSame(parseListen('[::1]:1'), { host: '::1', port: 1 });
  t.throws(() => parseListen('nope'), ConfigError);
});

t.test('loopback hosts', async (t) => {
  for (const h of ['127.0.0.1', '127.1.2.3', '::1', 'localhost', 'LOCALHOST', '::ffff:127.0.0.1']) t.ok(isLoopbackHost(h), h);
  for (const h of ['0.0.0.0', '::', '10.0.0.1', '128.0.0.1', 'example.com', '::ffff:10.0.0.1', '127.0.0.1.nip.io']) {
    t.notOk(isLoopbackHost(h), h);
  }
});

t.test('SPIFFE ID and trust domain values', async (t) => {
  t.strictSame(checkWorkloadSpiffeId('spiffe://td/a'), { ok: true, value: 'spiffe://td/a' });
  t.match(checkWorkloadSpiffeId('spiffe://td'), { ok: false, error: /names only a trust domain/ });
  t.match(checkWorkloadSpiffeId('spiffe://td/a/'), { ok: false, error: /invalid SPIFFE ID: path cannot have a trailing slash/ });
  t.strictSame(checkTrustDomain('example.org'), { ok: true, value: 'example.org' });
  t.strictSame(checkTrustDomain('spiffe://example.org'), { ok: true, value: 'example.org' });
  t.match(checkTrustDomain('spiffe://example.org/x'), { ok: false, error: /has a path/ });
  t.match(checkTrustDomain('Example.org'), { ok: false, error: /invalid trust domain/ });
});

t.test('did-you-mean hints', async (t) => {
  const keys = ['allowed_actions', 'attestation_requirements', 'access_control', 'name'];
  t.equal(closestMatch('alowed_actions', keys), 'allowed_actions');
  t.equal(closestMatch('Access_Control', keys), 'access_control');
  t.equal(closestMatch('attestation', keys), 'attestation_requirements');
  t.equal(closestMatch('zzz', keys), undefined);
  t.equal(closestMatch('sev', ['sev-snp', 'sgx', 'tdx']), 'sev-snp');
});
