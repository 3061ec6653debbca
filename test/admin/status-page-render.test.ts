/**
 * The status page against a scripted /status server (real HTTP, real headless Chromium): every
 * section renders from the documented JSON, hostile strings stay text even with the CSP
 * bypassed, malformed data never breaks the page, the connection-lost banner comes and goes, and
 * the kill switch buttons send exactly the documented admin API calls.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import vm from 'node:vm';
import t, { type Test } from 'tap';
import type { Browser, Page } from 'playwright-core';
import { STATUS_PAGE_CSP, STATUS_PAGE_HTML } from '../../src/admin/status-page.js';
import { chromiumSkip, launchChromium, recordPage, waitForText, waitUntil, type PageRecorder } from '../helpers/browser.js';

const DASH = '\u2014';
const TOKEN = 'good-token-0123456789';
const ID = (n: string) => `spiffe://example.org/ns/agents/sa/${n}`;
const inlineText = (tag: 'script' | 'style') => {
  const all = [...STATUS_PAGE_HTML.matchAll(new RegExp(`<${tag}>([\\s\\S]*?)</${tag}>`, 'g'))];
  return all.map((m) => m[1]!);
};

// ---- a scripted admin server --------------------------------------------------------------

interface Mutation {
  path: string;
  authorization: string | undefined;
  body: unknown;
}

class StubAdmin {
  status: (now: number) => unknown = () => ({});
  failing = false;
  /** Next mutation replies (status, body, headers); afterwards: 401 without the token, else 200. */
  replies: { status: number; body: unknown; headers?: Record<string, string> }[] = [];
  readonly mutations: Mutation[] = [];
  statusPolls = 0;
  private readonly server = http.createServer((req, res) => this.handle(req, res));
  origin = '';

  async start(): Promise<void> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', () => r()));
    this.origin = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const reply = (status: number, body: unknown, headers: Record<string, string> = {}) => {
      res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store', ...headers });
      res.end(JSON.stringify(body));
    };
    if (req.method === 'GET' && req.url === '/') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'content-security-policy': STATUS_PAGE_CSP });
      res.end(STATUS_PAGE_HTML);
    } else if (req.method === 'GET' && req.url === '/status') {
      this.statusPolls++;
      if (this.failing) reply(503, { error: 'down' });
      else reply(200, this.status(Date.now()));
    } else if (req.method === 'POST' && req.url?.startsWith('/v1/')) {
      let text = '';
      req.on('data', (c: Buffer) => (text += c));
      req.on('end', () => {
        this.mutations.push({ path: req.url!, authorization: req.headers.authorization, body: JSON.parse(text) });
        const next = this.replies.shift();
        if (next) reply(next.status, next.body, next.headers);
        else if (req.headers.authorization !== `Bearer ${TOKEN}`) reply(401, { error: 'Admin token required' });
        else reply(200, { ok: true });
      });
    } else reply(404, { error: 'no such endpoint' });
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}

const iso = (ms: number) => new Date(ms).toISOString();

function fullStatus(now: number, skewMs = 0): Record<string, unknown> {
  const server = now + skewMs;
  return {
    server_time: iso(server),
    name: 'control-plane',
    spiffe_id: ID('control-plane'),
    svid: { serial: '0a1b2c', not_before: iso(server - 30_000), not_after: iso(server + 90_500), seconds_to_expiry: 90, generation: 3 },
    trust_domains: ['example.org', 'partner.test'],
    bundles: [{ trust_domain: 'example.org', authorities: [{ subject: 'CN=Example Root', sha256: 'ab'.repeat(32), not_after: iso(server + 86_400_000) }] }],
    identity_source: { kind: 'workload-api', connected: true },
    routes: [
      { name: 'control-plane', upstream: 'https://cp.internal:8443', server_id: ID('control-plane') },
      { name: 'openai', upstream: 'https://api.openai.com', tls: 'public', metering: { provider: 'openai' }, injects_headers: ['authorization'] },
    ],
    inbound: {
      listen: { address: '127.0.0.1', family: 'IPv4', port: 8443 },
      app: 'http://127.0.0.1:8080',
      actions: 5,
      peers: [
        { spiffe_id: ID('orchestrator'), serial: '01', not_after: iso(server + 3_600_000) },
        {
          spiffe_id: ID('payments'),
          serial: '02',
          not_after: iso(server + 3_600_000),
          attestation: { type: 'sev-snp', claims: { measurement: 'a1'.repeat(48), tcb: { snp: 8 } }, verified_at: iso(server - 1000), session_expires_at: iso(server + 5000) },
        },
      ],
    },
    outbound: { listen: '127.0.0.1:15001', stopped: false },
    policy: { version: 7, file: '/etc/attest/policy.yaml', agents: ['orchestrator', 'payments'], loaded_at: iso(server - 60_000) },
    recent_denials: [
      { time: iso(server - 2000), direction: 'inbound', peer: ID('intruder'), method: 'GET', path: '/agents', reason: 'unknown_agent', status: 403 },
      { time: iso(server - 1000), direction: 'outbound', route: 'openai', method: 'POST', path: '/v1/chat', reason: 'budget_exceeded', status: 402, error: 'Budget exceeded' },
    ],
    budgets: [
      { agent: 'cheap', period: 'daily', period_id: '2026-01-02', spent_usd: 1, limit_usd: 10, resets_at: iso(server + 7_200_000) },
      { agent: 'close', period: 'monthly', period_id: '2026-01', spent_usd: 8.5, limit_usd: 10 },
      { agent: 'broke', period: 'total', period_id: 'total', spent_usd: 12, limit_usd: 10, resets_at: null },
    ],
    revocations: {
      all: null,
      entries: [
        { spiffe_id: ID('rogue'), reason: 'exfiltration', at: iso(server - 5000), by: 'token', source: 'local' },
        { spiffe_id: ID('old'), reason: 'retired', at: iso(server - 9000), by: 'shared:/etc/revoked.yaml', source: 'shared' },
      ],
    },
    some_future_field: { nested: [1, 2, 3] },
  };
}

const skip = chromiumSkip();
if (skip) {
  t.skip(skip, () => {});
} else {
  const browser: Browser = await launchChromium();
  t.teardown(() => browser.close());
  const stub = new StubAdmin();
  await stub.start();
  t.teardown(() => stub.close());

  async function open(opts: { bypassCSP?: boolean } = {}): Promise<{ page: Page; rec: PageRecorder }> {
    const context = await browser.newContext({ bypassCSP: opts.bypassCSP ?? false });
    // Time flows normally under the fake clock; tests only jump it ahead to skip to the next poll.
    await context.clock.install();
    const page = await context.newPage();
    const rec = recordPage(page, stub.origin);
    await page.goto(stub.origin + '/');
    return { page, rec };
  }
  // One page with the CSP enforced serves the subtests in order (a browser context costs ~1 s).
  stub.status = (now) => fullStatus(now, 3_600_000); // the server clock runs an hour ahead
  const { page, rec } = await open();
  t.teardown(() => page.context().close());
  const nudge = { nudge: () => page.clock.fastForward(1000) };
  const clean = (t: Test, rec: PageRecorder, allowed: RegExp[] = []) => {
    t.strictSame(rec.pageErrors, [], 'no uncaught exceptions');
    t.strictSame(rec.unexpectedConsoleErrors(allowed), [], 'no console errors or CSP violations');
    t.strictSame(rec.foreignRequests(), [], 'no request to any other origin');
  };

  t.test('renders every section of a full status, with the CSP enforced', async (t) => {
    t.equal(await waitForText(page.locator('#own-id'), (s) => s !== DASH, 'own ID'), ID('control-plane'));
    t.equal(await page.textContent('#name'), 'control-plane');
    t.match(await page.textContent('#expires-in'), /^in 1m [23]\ds$/, 'expiry countdown is corrected for clock skew');
    t.match(await page.textContent('#rotates-in'), /^in \d+s$/, 'rotation estimated at half-life when rotates_at is absent');
    // The page takes the server's time when the status arrives, so a slow response (over 0.5 s on
    // a VM that lost its CPU to other guests, once in CI) reads a second less.
    t.match(await page.textContent('#updated'), /clock skew 3(599|600) s corrected/);
    const trust = await page.textContent('#trust-body');
    t.match(trust, /example\.org, partner\.test/);
    t.match(trust, 'CN=Example Root');
    const routes = await page.textContent('#routes-body');
    t.match(routes, `id ${ID('control-plane')}`);
    t.match(routes, 'tls public');
    t.match(routes, 'openai');
    t.match(routes, '127.0.0.1:15001');
    const inbound = await page.textContent('#inbound-body');
    t.match(inbound, '127.0.0.1:8443');
    t.match(inbound, 'a1'.repeat(48), 'attestation claims shown');
    t.match(inbound, '{"snp":8}', 'nested claims as JSON text');
    t.ok(await page.locator('#inbound-body tr[data-key="spiffe://example.org/ns/agents/sa/payments"] .countdown.urgent').count(), 'session expiring in < 10 s is red');
    t.equal(await page.locator('#inbound-body button[data-kill]').count(), 2, 'a kill button per peer');
    const denialRows = page.locator('#denials-body tbody tr');
    t.equal(await denialRows.count(), 2);
    t.match(await denialRows.nth(0).textContent(), /route openai.*budget_exceeded.*402.*Budget exceeded/, 'newest denial first');
    t.match(await denialRows.nth(1).textContent(), /unknown_agent/);
    t.match(await page.textContent('#policy-body'), /7.*\/etc\/attest\/policy\.yaml/s);
    const fillClass = (agent: string) => page.locator(`#budgets-body tr[data-key="${agent}"] .fill`).getAttribute('class');
    t.equal(await fillClass('cheap'), 'fill');
    t.equal(await fillClass('close'), 'fill warn', 'amber at >= 80%');
    t.equal(await fillClass('broke'), 'fill over', 'red at >= 100%');
    t.match(await page.textContent('#budgets-body tr[data-key="close"] .spent'), '$8.50 / $10.00 (85%)');
    t.match(await page.textContent('#budgets-body tr[data-key="cheap"]'), /daily 2026-01-02resets in (1h 59m|2h 00m)/, 'period reset countdown');
    t.equal(await page.locator('#budgets-body tr[data-key="broke"] .fill').getAttribute('style'), 'width: 100%;', 'bar capped at full');
    t.equal(await page.locator('#budgets-body tr[data-key="close"] .fill').getAttribute('style'), 'width: 85%;');
    t.equal(await page.locator('#revocations-body button[data-restore]').count(), 1, 'restore only for local entries');
    t.match(await page.textContent('#revocations-body'), /retired.*shared list/s);
    t.ok(await page.locator('#offline').isHidden());
    t.ok(await page.locator('#stopped').isHidden());
    clean(t, rec);
  });

  t.test('attacker-controlled strings render as text even with the CSP bypassed', async (t) => {
    const img = '<img src=x onerror="window.__xss=1">';
    const script = '<script>window.__xss=2</script>';
    const svg = '"><svg onload="window.__xss=3">';
    stub.status = (now) => {
      const s = fullStatus(now);
      s.name = script;
      s.spiffe_id = `spiffe://example.org/${img}`;
      s.recent_denials = [{ time: iso(now), direction: 'inbound', peer: svg, method: img, path: `/agents/${img}`, action: script, reason: img, status: 403, error: svg }];
      s.inbound = { listen: img, app: script, actions: img, peers: [{ spiffe_id: svg, not_after: img, attestation: { type: img, claims: { [img]: script } } }] };
      s.budgets = [{ agent: img, period: svg, period_id: script, spent_usd: 1, limit_usd: 2 }];
      s.revocations = { all: { reason: img, at: svg, by: script }, entries: [{ spiffe_id: img, reason: svg, at: script, by: img, source: 'local' }] };
      s.routes = [{ name: img, upstream: svg, server_trust_domain: script, injects_headers: [img] }];
      s.policy = { version: img, file: svg, agents: [script], loaded_at: img };
      return s;
    };
    const { page, rec } = await open({ bypassCSP: true });
    t.teardown(() => page.context().close());
    t.teardown(() => void (stub.status = (now) => fullStatus(now)));
    t.equal(await waitForText(page.locator('#denials-body td.path'), (s) => s !== '', 'the hostile denial'), `/agents/${img}`);
    t.equal(await page.textContent('#denials-body td.reason'), img);
    t.equal(await page.textContent('#own-id'), `spiffe://example.org/${img}`);
    t.equal(await page.textContent('#name'), script);
    t.match(await page.textContent('#killed-all'), img);
    // Let at least two more polls render before looking for side effects.
    const polls = () => rec.requests.filter((u) => u.endsWith('/status')).length;
    const seen = polls();
    await waitUntil(() => polls() >= seen + 2, 'two more polls', { nudge: () => page.clock.fastForward(1000) });
    t.equal(await page.locator('body img, body svg, body iframe, main script, header script').count(), 0, 'no element was injected');
    t.equal(await page.evaluate('window.__xss'), undefined, 'no injected code ran');
    t.equal(await page.locator('button[data-kill]').getAttribute('data-kill'), svg, 'attribute carries the raw string');
    clean(t, rec);
  });

  t.test('malformed or missing fields render as dashes without breaking the page', async (t) => {
    stub.status = (now) => ({
      server_time: 'not a time',
      spiffe_id: null,
      svid: null,
      trust_domains: 'nope',
      bundles: [null, 3, { trust_domain: 'x', authorities: 'none' }],
      identity_source: null,
      routes: [null, 1, 'a', { name: 'r' }],
      inbound: { peers: 'no', listen: null },
      outbound: null,
      policy: null,
      recent_denials: { not: 'a list' },
      budgets: [{ agent: 'a', spent_usd: 'lots', limit_usd: null }, null],
      revocations: { entries: null },
      now: now,
    });
    await waitForText(page.locator('#identity-body'), (s) => s.includes('none held'), 'no-SVID state', nudge);
    t.equal(await page.textContent('#own-id'), DASH);
    t.match(await page.textContent('#budgets-body'), `${DASH} / ${DASH}`);
    t.match(await page.textContent('#denials-body'), 'no denials');
    t.match(await page.textContent('#policy-body'), 'no policy loaded');
    t.equal(await page.textContent('#routes-body td'), 'r', 'the one valid route');
    t.equal(await page.locator('.error').count(), 0, 'no section failed to render');
    stub.status = () => ['not', 'an', 'object'];
    await waitForText(page.locator('#offline-detail'), (s) => s.includes('not a JSON object'), 'the banner for a non-object', nudge);
    t.ok(await page.locator('#offline').isVisible());
    clean(t, rec);
  });

  t.test('connection lost: a banner while polling fails, gone when it recovers', async (t) => {
    stub.status = (now) => fullStatus(now);
    await waitForText(page.locator('#own-id'), (s) => s === ID('control-plane'), 'own ID', nudge);
    t.ok(await page.locator('#offline').isHidden(), 'recovered from the bad payload');
    stub.failing = true;
    t.teardown(() => void (stub.failing = false));
    await waitUntil(() => page.locator('#offline').isVisible(), 'the banner', nudge);
    t.match(await page.textContent('#offline-detail'), 'HTTP 503');
    const polls = stub.statusPolls;
    await waitUntil(() => stub.statusPolls >= polls + 2, 'the page keeps retrying', nudge);
    stub.failing = false;
    await waitUntil(() => page.locator('#offline').isHidden(), 'the banner to go', nudge);
    t.equal(await page.textContent('#own-id'), ID('control-plane'), 'last data stays on screen');
    clean(t, rec, [/status of 503/]);
  });

  t.test('kill switch buttons: two clicks, documented API calls, token only in the header', async (t) => {
    stub.status = (now) => {
      const s = fullStatus(now);
      (s.revocations as { all: unknown }).all = { reason: 'incident', at: iso(now), by: 'token' };
      return s;
    };
    stub.mutations.length = 0;
    const result = page.locator('#action-result');
    const peerKill = page.locator(`button[data-kill="${ID('orchestrator')}"]`);
    await peerKill.waitFor();

    await peerKill.click();
    t.equal(await peerKill.textContent(), 'Confirm kill', 'first click only arms');
    t.equal(stub.mutations.length, 0, 'nothing sent yet');
    // Peer rows carry moving times here, so every poll rebuilds them: the armed state must survive.
    const armedButton = await peerKill.elementHandle();
    // At most 2 s of page time (a poll is due every 1 s; the arming lasts 5 s), then real time:
    // on a loaded machine the poll's fetch can take longer than several nudges.
    let forwarded = 0;
    const toNextPolls = {
      nudge: async () => {
        if (forwarded >= 2) return;
        forwarded++;
        await page.clock.fastForward(1000);
      },
    };
    await waitUntil(async () => !(await armedButton!.evaluate((e: { isConnected: boolean }) => e.isConnected)), 'a rebuild', toNextPolls);
    t.equal(await peerKill.textContent(), 'Confirm kill', 'still armed after the row was rebuilt');
    await peerKill.click();
    t.match(await waitForText(result, (s) => s.includes('HTTP'), 'the refusal', nudge), `Kill ${ID('orchestrator')} failed: HTTP 401: Admin token required`);
    t.strictSame(stub.mutations[0], { path: '/v1/kill', authorization: undefined, body: { spiffe_id: ID('orchestrator'), reason: 'killed from the status page' } });

    await page.fill('#token', TOKEN);
    await page.fill('#reason', 'runaway agent');
    await peerKill.click();
    await peerKill.click();
    await waitForText(result, (s) => s.endsWith(': done'), 'success');
    t.strictSame(stub.mutations[1], { path: '/v1/kill', authorization: `Bearer ${TOKEN}`, body: { spiffe_id: ID('orchestrator'), reason: 'runaway agent' } });

    await page.fill('#kill-id', ID('typed'));
    stub.replies.push({ status: 429, body: { error: 'Too many failed attempts' }, headers: { 'retry-after': '30' } });
    await page.click('#kill-btn');
    await page.click('#kill-btn');
    t.match(await waitForText(result, (s) => s.includes('429'), 'rate limit'), 'HTTP 429: Too many failed attempts (retry after 30 s)');
    t.strictSame(stub.mutations[2]?.body, { spiffe_id: ID('typed'), reason: 'runaway agent' });

    await page.click('#killall-btn');
    await page.click('#killall-btn');
    await waitUntil(() => stub.mutations.length === 4, 'kill all');
    t.strictSame(stub.mutations[3], { path: '/v1/killall', authorization: `Bearer ${TOKEN}`, body: { reason: 'runaway agent' } });

    const restore = page.locator(`#revocations-body button[data-restore="${ID('rogue')}"]`);
    await restore.click();
    t.equal(await restore.textContent(), 'Confirm restore');
    await restore.click();
    await waitUntil(() => stub.mutations.length === 5, 'restore');
    t.strictSame(stub.mutations[4]?.body, { spiffe_id: ID('rogue') });
    await page.click('#killed-all button');
    await page.click('#killed-all button');
    await waitUntil(() => stub.mutations.length === 6, 'restore all');
    t.strictSame(stub.mutations[5], { path: '/v1/restore', authorization: `Bearer ${TOKEN}`, body: { all: true } });
    t.match(await page.textContent('#stopped'), 'Kill switch engaged: incident');

    t.notOk(rec.requests.some((u) => u.includes(TOKEN)), 'the token never appears in a URL');
    t.equal(await page.evaluate('localStorage.length + sessionStorage.length + document.cookie.length'), 0, 'nothing stored');
    clean(t, rec, [/status of (401|429|503)/]);
  });
}

// After the browser tests: every top-level await above runs before the first test starts (tap
// ends the root once its tests finish, even while a top-level await is pending).
t.test('the page is self-contained and its CSP allows exactly its inline script and style', async (t) => {
  const scripts = inlineText('script');
  const styles = inlineText('style');
  t.equal(scripts.length, 1, 'one inline script');
  t.equal(styles.length, 1, 'one inline style');
  t.equal((STATUS_PAGE_HTML.match(/<script/g) ?? []).length, 1, 'no other script element');
  const markup = STATUS_PAGE_HTML.replace(/<(script|style)>[\s\S]*?<\/\1>/g, '');
  t.notMatch(markup, /\s(?:src|href|action|formaction)\s*=\s*(?!["']?data:)/i, 'no src/href/action except data: URLs');
  t.match(markup, /<link rel="icon" href="data:,">/, 'no favicon request');
  t.notMatch(STATUS_PAGE_HTML, /https?:\/\//, 'no absolute URLs');
  t.notMatch(scripts[0]!, /\b(?:eval|Function|innerHTML|outerHTML|insertAdjacentHTML|document\.write|localStorage|sessionStorage|cookie)\b/, 'no eval, no HTML sinks, no storage');
  t.doesNotThrow(() => new vm.Script(scripts[0]!), 'the script parses');
  // Cross-check the hashes with the openssl CLI rather than the same node:crypto call the module makes.
  const opensslHash = (text: string) =>
    execFileSync('sh', ['-c', 'openssl dgst -sha256 -binary | openssl base64 -A'], { input: text }).toString().trim();
  const directives = new Map(STATUS_PAGE_CSP.split(';').map((d) => d.trim().split(/\s+/)).map(([k, ...v]) => [k!, v]));
  t.strictSame(directives.get('script-src'), [`'sha256-${opensslHash(scripts[0]!)}'`]);
  t.strictSame(directives.get('style-src'), [`'sha256-${opensslHash(styles[0]!)}'`]);
  t.strictSame(directives.get('default-src'), ["'none'"]);
  t.strictSame(directives.get('connect-src'), ["'self'"]);
  t.strictSame(directives.get('frame-ancestors'), ["'none'"]);
  t.notMatch(STATUS_PAGE_CSP, /unsafe|\*/, 'nothing unsafe, no wildcards');
  t.equal(createHash('sha256').update(scripts[0]!).digest('base64'), opensslHash(scripts[0]!));
});
