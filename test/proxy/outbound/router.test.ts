/**
 * The outbound chain's ends without sockets: refusals and failures answered and audited, and the
 * router handing an admitted request to its route's dispatcher (a recording stand-in here).
 */
import t from 'tap';
import type { Dispatcher } from 'undici';
import { refusal, refuse } from '../../../src/reasons.js';
import { ExchangeFailure } from '../../../src/proxy/forward.js';
import { OutboundRouter, type OutcomeLog } from '../../../src/proxy/outbound/router.js';
import { OutboundRequest } from '../../../src/proxy/outbound/context.js';
import { fakeRequest, fakeResponse, material, route, type Sent } from './fakes.js';
import { silentLogger } from '../../helpers/mesh.js';

function setup() {
  const records: unknown[][] = [];
  const upstreamErrors: string[] = [];
  const log: OutcomeLog = { record: (...args: unknown[]) => void records.push(args) };
  const router = new OutboundRouter({
    log,
    metrics: { upstreamError: (_d, reason) => void upstreamErrors.push(reason) },
    logger: silentLogger(),
    bodyProgressTimeoutMs: 30_000,
    spend: undefined,
    operationsMetrics: undefined,
  });
  const request = (url = '/tasks?secret=1'): { ctx: OutboundRequest; sent: Sent } => {
    const req = fakeRequest(url, { Host: 'control-plane', 'X-Trace': 't1' }, 'GET');
    const { res, sent } = fakeResponse(req);
    const ctx = new OutboundRequest(req, res, performance.now(), 'rid-1');
    ctx.route = route({ upstream: 'https://127.0.0.1:8443/base/' });
    ctx.routeName = 'control-plane';
    ctx.path = url;
    ctx.material = material();
    return { ctx, sent };
  };
  /** [decision, reason, status, method, path, peer, route, action, requestId] of each record. */
  const recorded = () => records.map((r) => r.slice(1));
  return { router, request, recorded, upstreamErrors };
}

t.test('refusals are answered with their JSON body and extra headers, and audited', async (t) => {
  const { router, request, recorded } = setup();
  const { ctx, sent } = request();
  router.refuse(ctx, refuse('caller_unauthenticated', 'Proxy authentication required', { 'proxy-authenticate': 'Basic realm="x"' }));
  t.equal(sent.status, 407);
  t.same(JSON.parse(sent.body!), { error: 'Proxy authentication required' });
  t.equal(sent.headers!['proxy-authenticate'], 'Basic realm="x"');
  t.equal(sent.headers!['content-type'], 'application/json');
  t.same(recorded(), [['deny', 'caller_unauthenticated', 407, 'GET', '', undefined, 'control-plane', undefined, 'rid-1']], 'no path before the request heads upstream');
});

t.test('a failing filter answers 500 internal_error', async (t) => {
  const { router, request, recorded } = setup();
  const { ctx, sent } = request();
  ctx.auditPath = '/tasks?secret=1';
  router.fail(ctx, new Error('bug'));
  t.equal(sent.status, 500);
  t.same(recorded(), [['error', 'internal_error', 500, 'GET', '/tasks', undefined, 'control-plane', undefined, 'rid-1']], 'the query is never audited');
});

t.test('a route whose pool went away answers no_svid', async (t) => {
  const { router, request, recorded } = setup();
  const { ctx, sent } = request();
  router.route(ctx);
  t.equal(sent.status, 503);
  t.equal(recorded()[0]![1], 'no_svid');
});

/** A dispatcher that answers from a script instead of a socket. */
function scripted(answer: (handler: Dispatcher.DispatchHandler) => void, seen: Dispatcher.DispatchOptions[]): Pick<Dispatcher, 'dispatch'> {
  return {
    dispatch(opts, handler) {
      seen.push(opts);
      answer(handler);
      return true;
    },
  };
}

t.test('the router forwards with our fields first and records the status', async (t) => {
  const { router, request, recorded } = setup();
  const { ctx, sent } = request();
  const seen: Dispatcher.DispatchOptions[] = [];
  ctx.route!.dispatcher = scripted((h) => {
    h.onConnect!(() => undefined);
    h.onHeaders!(201, [Buffer.from('content-length'), Buffer.from('0')], () => undefined, 'Created');
    h.onComplete!([]);
  }, seen);
  const writes: unknown[] = [];
  Object.assign(ctx.res, { write: (c: unknown) => writes.push(c), end: () => undefined });
  router.route(ctx);
  t.equal(seen[0]!.path, '/base/tasks?secret=1', 'the upstream base path is prepended');
  t.same((seen[0]!.headers as string[]).slice(0, 2), ['x-request-id', 'rid-1'], 'the request id goes first');
  t.ok((seen[0]!.headers as string[]).includes('X-Trace'), "the agent's own fields follow");
  t.equal(sent.status, 201);
  t.same(recorded(), [['allow', 'forwarded', 201, 'GET', '/tasks', undefined, 'control-plane', undefined, 'rid-1']]);
});

t.test('failures: upstream ones are counted, local ones and the agent\'s are not', async (t) => {
  const cases = [
    { err: Object.assign(new Error('refused'), { code: 'ECONNREFUSED' }), status: 503, reason: 'upstream_unavailable', decision: 'error', counted: true },
    { err: new ExchangeFailure({ status: 502, reason: 'attester_error', message: 'Attestation failed on this side: x', decision: 'error', local: true }), status: 502, reason: 'attester_error', decision: 'error', counted: false },
    { err: Object.assign(new Error('stalled'), { code: 'ERR_REQUEST_BODY_TIMEOUT' }), status: 408, reason: 'request_body_timeout', decision: 'deny', counted: false },
  ];
  for (const c of cases) {
    const { router, request, recorded, upstreamErrors } = setup();
    const { ctx, sent } = request();
    ctx.route!.dispatcher = scripted((h) => h.onError!(c.err), []);
    router.route(ctx);
    await new Promise<void>((resolve) => setImmediate(resolve));
    t.equal(sent.status, c.status, `${c.reason}: status`);
    t.equal(recorded()[0]![0], c.decision, `${c.reason}: decision`);
    t.equal(recorded()[0]![1], c.reason, `${c.reason}: reason`);
    t.same(upstreamErrors, c.counted ? [c.reason] : [], `${c.reason}: upstream error metric`);
    if (c.decision === 'deny') t.equal(sent.keepAlive, false, `${c.reason}: the connection closes`);
  }
});

t.test('a refusal from the catalogue is one frozen object', async (t) => {
  t.equal(refusal('no_svid'), refusal('no_svid'));
  t.ok(Object.isFrozen(refusal('no_svid')));
});
