/**
 * Each outbound filter over a table of requests, without sockets: what it refuses (reason,
 * status, body) and what it leaves on the context for the filters after it.
 */
import t, { type Test } from 'tap';
import path from 'node:path';
import type { Pool } from 'undici';
import type { RequestFilter } from '../../../src/proxy/chain.js';
import type { OutboundRequest } from '../../../src/proxy/outbound/context.js';
import { callerAuthFilter } from '../../../src/proxy/outbound/filters/caller-auth.js';
import { browserGuardFilter, canonicalPathFilter, headerCountFilter, routeFilter } from '../../../src/proxy/outbound/filters/request.js';
import { identityReadyFilter, killSwitchFilter, upstreamRevokedFilter } from '../../../src/proxy/outbound/filters/identity.js';
import { credentialsFilter, meteringFilter } from '../../../src/proxy/outbound/filters/spend.js';
import type { RevocationState } from '../../../src/revocation/state.js';
import type { SpendGate } from '../../../src/proxy/spend.js';
import { CallerTokenCheck } from '../../../src/proxy/caller-auth.js';
import { refusal } from '../../../src/reasons.js';
import { silentLogger } from '../../helpers/mesh.js';
import { context, material, route } from './fakes.js';

interface Case {
  name: string;
  ctx: () => OutboundRequest;
  /** Reason code of the refusal; undefined: the filter continues. */
  reason?: string;
  status?: number;
  error?: string;
  after?: (ctx: OutboundRequest) => void;
}

async function table(filter: RequestFilter<OutboundRequest>, cases: Case[], parent: Test = t): Promise<void> {
  await parent.test(filter.name, async (t) => {
    for (const c of cases) {
      const ctx = c.ctx();
      const out = await filter.onRequest(ctx);
      t.equal(out?.reason, c.reason, `${c.name}: reason`);
      if (c.status !== undefined) t.equal(out?.status, c.status, `${c.name}: status`);
      if (c.error !== undefined) t.same(JSON.parse(out!.body), { error: c.error }, `${c.name}: body`);
      c.after?.(ctx);
    }
  });
}

const basic = (token: string) => `Basic ${Buffer.from(`agent:${token}`).toString('base64')}`;
const withRoute = (url = '/tasks', headers: Record<string, string> = {}, r = route()) => {
  const ctx = context(url, { Host: 'control-plane', ...headers });
  ctx.route = r;
  ctx.routeName = r.config.name;
  ctx.path = url;
  return ctx;
};

t.test('caller-auth', async (t) => {
  const dir = t.testdir({ token: 'right-token-0123456789\n' });
  const good = new CallerTokenCheck(path.join(dir, 'token'), silentLogger());
  const broken = new CallerTokenCheck(path.join(dir, 'absent'), silentLogger());
  t.teardown(() => {
    good.close();
    broken.close();
  });
  await table(
    callerAuthFilter(good),
    [
      { name: 'right token', ctx: () => context('/x', { 'proxy-authorization': basic('right-token-0123456789') }) },
      { name: 'no token', ctx: () => context('/x'), reason: 'caller_unauthenticated', status: 407 },
      { name: 'wrong token', ctx: () => context('/x', { 'proxy-authorization': basic('wrong-token-0123456789') }), reason: 'caller_unauthenticated', status: 407 },
      { name: 'not basic', ctx: () => context('/x', { 'proxy-authorization': 'Bearer right-token-0123456789' }), reason: 'caller_unauthenticated', status: 407 },
    ],
    t,
  );
  const out = await callerAuthFilter(good).onRequest(context('/x'));
  t.same(out?.headers, { 'proxy-authenticate': 'Basic realm="attest-sidecar"' }, 'the 407 asks for Basic proxy credentials');
  t.equal(out?.decision, 'deny');
  await table(callerAuthFilter(broken), [{ name: 'token file unusable', ctx: () => context('/x', { 'proxy-authorization': basic('right-token-0123456789') }), reason: 'caller_token_unavailable', status: 503 }], t);
});

const many = (n: number) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`x-h${i}`, 'v']));
await table(headerCountFilter(4), [
  { name: 'at the limit', ctx: () => context('/x', many(4)) },
  { name: 'one over', ctx: () => context('/x', many(5)), reason: 'request_headers_too_many', status: 431, error: 'Too many request headers (limit 4)' },
]);

const routes = new Map([['control-plane', route()]]);
await table(routeFilter(routes), [
  {
    name: 'origin form with Host and port',
    ctx: () => context('/tasks?x=1', { Host: 'Control-Plane:15001' }),
    after: (ctx) => {
      t.equal(ctx.route, routes.get('control-plane'));
      t.equal(ctx.routeName, 'control-plane');
      t.equal(ctx.path, '/tasks?x=1');
    },
  },
  { name: 'absolute form', ctx: () => context('http://control-plane/a/b'), after: (ctx) => t.equal(ctx.path, '/a/b') },
  { name: 'absolute form without path', ctx: () => context('http://control-plane?q=1'), after: (ctx) => t.equal(ctx.path, '/?q=1') },
  { name: 'origin form without Host', ctx: () => context('/tasks'), reason: 'no_route_named', status: 400 },
  { name: 'https absolute form', ctx: () => context('https://control-plane/a'), reason: 'no_route_named' },
  { name: 'userinfo', ctx: () => context('http://u@control-plane/a'), reason: 'no_route_named' },
  { name: 'fragment', ctx: () => context('http://control-plane/a#f'), reason: 'no_route_named' },
  {
    name: 'unknown route',
    ctx: () => context('http://elsewhere:80/a'),
    reason: 'unknown_route',
    status: 404,
    error: "Unknown route 'elsewhere'",
    after: (ctx) => t.equal(ctx.routeName, 'elsewhere', 'the unknown name is audited'),
  },
]);

const browsersAllowed = route({ allowBrowserRequests: true });
await table(browserGuardFilter, [
  { name: 'curl', ctx: () => withRoute('/x', { 'User-Agent': 'curl/8' }) },
  { name: 'browser user agent', ctx: () => withRoute('/x', { 'User-Agent': 'Mozilla/5.0' }), reason: 'browser_request', status: 403 },
  { name: 'origin header', ctx: () => withRoute('/x', { Origin: 'http://evil' }), reason: 'browser_request' },
  { name: 'sec-fetch-site', ctx: () => withRoute('/x', { 'Sec-Fetch-Site': 'cross-site' }), reason: 'browser_request' },
  { name: 'route allows browsers', ctx: () => withRoute('/x', { 'User-Agent': 'Mozilla/5.0' }, browsersAllowed) },
]);

await table(canonicalPathFilter, [
  { name: 'plain', ctx: () => withRoute('/tasks/1?x=%2F') },
  { name: 'dot segment', ctx: () => withRoute('/a/../b'), reason: 'path_not_canonical', status: 400 },
  { name: 'encoded slash', ctx: () => withRoute('/a%2Fb'), reason: 'path_not_canonical' },
  { name: 'double slash', ctx: () => withRoute('//a'), reason: 'path_not_canonical' },
]);

let current = material();
let clock = 1_000;
let stopped: string | undefined;
const identity = { material: () => current, now: () => clock, stoppedReason: () => stopped };
const pooled = () => {
  const r = route();
  r.pool = {} as Pool;
  return withRoute('/x', {}, r);
};
await table(identityReadyFilter(identity), [
  { name: 'valid SVID and pool', ctx: pooled, after: (ctx) => t.equal(ctx.material, current) },
  { name: 'no pool yet', ctx: () => withRoute('/x'), reason: 'no_svid', status: 503 },
  {
    name: 'expired SVID',
    ctx: () => {
      clock = 2_000;
      return pooled();
    },
    reason: 'no_svid',
    after: () => (clock = 1_000),
  },
  {
    name: 'no identity',
    ctx: () => {
      current = undefined as never;
      return pooled();
    },
    reason: 'no_svid',
    after: () => (current = material()),
  },
]);

await table(killSwitchFilter(identity), [
  { name: 'serving', ctx: pooled },
  {
    name: 'stopped',
    ctx: () => {
      stopped = 'kill-all: incident';
      return pooled();
    },
    reason: 'kill_switch',
    status: 503,
    after: () => (stopped = undefined),
  },
]);

const revoked = { byId: new Map([['spiffe://td/server', { reason: 'x' }]]) } as unknown as RevocationState;
await table(upstreamRevokedFilter(() => revoked), [
  { name: 'revoked server', ctx: () => withRoute('/x'), reason: 'upstream_revoked', status: 403 },
  { name: 'other server', ctx: () => withRoute('/x', {}, route({ serverId: 'spiffe://td/other' })) },
  { name: 'trust-domain route', ctx: () => withRoute('/x', {}, route({ serverId: undefined, serverTrustDomain: 'td' })) },
]);

t.test('credentials', async (t) => {
  const dir = t.testdir({ key: 'sk-secret\n' });
  const withKey = route({ injectHeaders: [{ name: 'x-api-key', file: path.join(dir, 'key'), prefix: '' }] });
  const missing = route({ injectHeaders: [{ name: 'x-api-key', file: path.join(dir, 'absent'), prefix: '' }] });
  t.teardown(() => {
    withKey.injector?.close();
    missing.injector?.close();
  });
  await table(credentialsFilter, [
    { name: 'route without credentials', ctx: () => withRoute('/x'), after: (ctx) => t.equal(ctx.injected, undefined) },
    {
      name: 'secret readable',
      ctx: () => withRoute('/v1?k=1', {}, withKey),
      after: (ctx) => {
        t.same(ctx.injected, ['x-api-key', 'sk-secret', 'accept-encoding', 'identity']);
        t.equal(ctx.auditPath, '/v1?k=1', 'the path is audited from here on');
      },
    },
    { name: 'secret file missing', ctx: () => withRoute('/x', {}, missing), reason: 'credential_unavailable', status: 503 },
  ], t);
});

t.test('metering', async (t) => {
  const metered = route({ tls: 'web', serverId: undefined, metering: { provider: 'openai', reserveUsd: 0.5 } as never });
  const admissions: unknown[] = [];
  const gate = (answer: unknown) =>
    ({
      admit: async (agent: string, _budget: unknown, amount: number) => {
        admissions.push([agent, amount]);
        return answer;
      },
    }) as unknown as SpendGate;
  const budget = { limitUsd: 10, period: 'day' } as never;
  const meteredCtx = () => {
    const ctx = withRoute('/v1/chat', {}, metered);
    ctx.material = material();
    return ctx;
  };
  const ownBudget = () => ({ agent: 'orchestrator', budget });
  await table(meteringFilter({ spend: gate({ ok: true, key: 'k1', chargedUsd: 0.5 }), ownBudget }), [
    { name: 'route without metering', ctx: () => withRoute('/x') },
    { name: 'charged', ctx: meteredCtx, after: (ctx) => t.same(ctx.reservation, { agent: 'orchestrator', budget, key: 'k1' }) },
  ], t);
  t.same(admissions, [['orchestrator', 0.5]], 'only the metered route was charged, with its reservation');
  await table(meteringFilter({ spend: gate({ ...refusal('budget_exceeded'), ok: false }), ownBudget }), [
    { name: 'budget exhausted', ctx: meteredCtx, reason: 'budget_exceeded', status: 402, error: 'Budget exceeded' },
  ], t);
  await table(meteringFilter({ spend: undefined, ownBudget }), [{ name: 'no ledger', ctx: meteredCtx, reason: 'budget_ledger_unavailable', status: 503 }], t);
  await table(meteringFilter({ spend: undefined, ownBudget: () => undefined }), [
    { name: 'agent without a budget', ctx: meteredCtx, after: (ctx) => t.equal(ctx.reservation, undefined) },
  ], t);
});
