/**
 * The outbound chain's order, and that a feature the config leaves off is no filter at all.
 */
import t from 'tap';
import path from 'node:path';
import { FilterChain } from '../../../src/proxy/chain.js';
import { outboundFilters } from '../../../src/proxy/outbound/filters/index.js';
import type { OutboundRequest } from '../../../src/proxy/outbound/context.js';
import { RevocationState } from '../../../src/revocation/state.js';
import type { RouteRuntime } from '../../../src/proxy/outbound-routes.js';
import { route } from './fakes.js';

const ends = { route: () => undefined, refuse: () => undefined, fail: () => undefined };
const identity = { material: () => undefined, now: () => 0, stoppedReason: () => undefined };

function names(o: { token?: boolean; revocations?: boolean; routes: RouteRuntime[] }): string[] {
  const filters = outboundFilters({
    callerToken: o.token ? { check: () => undefined } : undefined,
    maxRequestHeaders: 90,
    routes: new Map(o.routes.map((r) => [r.config.name, r])),
    identity,
    revocations: o.revocations ? () => RevocationState.empty() : undefined,
    spend: undefined,
    ownBudget: undefined,
  });
  return new FilterChain<OutboundRequest>(filters, ends).names;
}

t.test('outbound chain order', async (t) => {
  const dir = t.testdir({ key: 'sk' });
  const credentialed = route({ name: 'model', tls: 'web', serverId: undefined, injectHeaders: [{ name: 'x-api-key', file: path.join(dir, 'key'), prefix: '' }] });
  const metered = route({ name: 'metered', tls: 'web', serverId: undefined, metering: { provider: 'openai', inputUsdPerMillion: 1, outputUsdPerMillion: 1, reserveUsd: 0.1 } });
  t.teardown(() => credentialed.injector?.close());
  const plain = route();

  t.same(names({ routes: [plain] }), ['header-count', 'route', 'browser-guard', 'canonical-path', 'identity-ready'], 'the minimal chain');
  t.same(
    names({ token: true, revocations: true, routes: [plain, credentialed, metered] }),
    ['caller-auth', 'header-count', 'route', 'browser-guard', 'canonical-path', 'identity-ready', 'kill-switch', 'upstream-revoked', 'credentials', 'metering'],
    'every filter',
  );
  t.same(names({ token: true, routes: [plain] })[0], 'caller-auth', 'caller auth comes first');
  t.same(names({ revocations: true, routes: [plain] }).slice(-2), ['kill-switch', 'upstream-revoked'], 'revocations add two');
  t.same(names({ routes: [plain, credentialed] }).slice(-1), ['credentials'], 'a credentialed route adds credentials only');
  t.same(names({ routes: [plain, metered] }).slice(-1), ['metering'], 'a metered route adds metering only');
});
