/**
 * A browser that uses the outbound proxy (a browser-automation agent inherits HTTP_PROXY) visits
 * a page that makes it send image, script, stylesheet, iframe, prefetch, no-cors fetch, beacon
 * and form requests to `http://control-plane/...`. Chromium sends neither Origin nor Sec-Fetch-*
 * on most of those; the sidecar still refuses every one (`browser_request`) and none reaches the
 * app. A route with `allow_browser_requests` lets them through (which also shows that the page's
 * requests really go through the proxy).
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import t from 'tap';
import { chromiumSkip, launchChromium, waitUntil } from '../helpers/browser.js';
import { TestMesh, idOf } from '../helpers/mesh.js';
import type { SidecarConfig } from '../../src/config/types.js';

/** Each request carries `k=<kind>` so the app's log shows which got through. */
const REFUSED_KINDS = ['img', 'script', 'style', 'iframe', 'prefetch', 'nocors', 'nocors-noref', 'cors-post', 'beacon', 'form'];

const PAGE = `<!doctype html><html><body>
<img src="http://control-plane/agents?k=img">
<script src="http://control-plane/agents?k=script"></script>
<link rel="stylesheet" href="http://control-plane/agents?k=style">
<iframe src="http://control-plane/agents?k=iframe"></iframe>
<link rel="prefetch" href="http://control-plane/agents?k=prefetch">
<img src="http://cp-browser/agents?k=opt-out">
<iframe name="sink"></iframe>
<form id="f" method="POST" action="http://control-plane/tasks?k=form" target="sink"><input name="a" value="b"></form>
<script>
  fetch('http://control-plane/agents?k=nocors', { mode: 'no-cors' }).catch(() => {});
  fetch('http://control-plane/agents?k=nocors-noref', { mode: 'no-cors', referrerPolicy: 'no-referrer' }).catch(() => {});
  fetch('http://control-plane/tasks?k=cors-post', { method: 'POST', body: '{}' }).catch(() => {});
  navigator.sendBeacon('http://control-plane/tasks?k=beacon', '{}');
  document.getElementById('f').submit();
</script>
</body></html>`;

const mesh = await TestMesh.start({ agents: [] });
t.teardown(() => mesh.close());
const base = mesh.agentConfig('orchestrator', idOf('control-plane'));
const controlPlane = base.outbound!.routes[0]!;
const config: SidecarConfig = {
  ...base,
  outbound: { ...base.outbound!, routes: [controlPlane, { ...controlPlane, name: 'cp-browser', allowBrowserRequests: true }] },
};
const agent = await mesh.startSidecar('orchestrator', config);
const proxyPort = agent.outbound!.address()!.port;

const skip = chromiumSkip();
if (skip) {
  t.skip(skip, () => {});
} else {
  const browser = await launchChromium([`--proxy-server=http://127.0.0.1:${proxyPort}`]);
  t.teardown(() => browser.close());
  // The page is served on loopback, which Chromium fetches directly (loopback bypasses the proxy).
  const pages = http.createServer((req, res) => {
    const html = req.url === '/page.html';
    res.writeHead(html ? 200 : 404, { 'content-type': 'text/html' });
    res.end(html ? PAGE : '');
  });
  await new Promise<void>((r) => pages.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => new Promise<void>((r) => pages.close(() => r())));

  const refusedCount = async () => {
    const metrics = await (await fetch(`${mesh.adminOf(agent)}/metrics`)).text();
    const m = /attest_sidecar_requests_total\{direction="outbound",decision="deny",reason="browser_request",sidecar="orchestrator"\} (\d+)/.exec(metrics);
    return m ? Number(m[1]) : 0;
  };
  const kindsAtApp = () => mesh.app.seen.map((s) => new URL(s.url, 'http://x').searchParams.get('k'));

  t.test('a web page cannot make the proxied browser use the agent identity', async (t) => {
    const page = await (await browser.newContext()).newPage();
    // What became of each request, by kind: the status the browser got, or why it failed (Chromium
    // blocks a cross-origin JSON answer to an image, script or stylesheet before the page sees it).
    const answers = new Map<string, string>();
    const kindOf = (u: string) => (new URL(u).hostname === 'control-plane' ? new URL(u).searchParams.get('k') : null);
    page.on('response', (r) => {
      const k = kindOf(r.url());
      if (k) answers.set(k, String(r.status()));
    });
    page.on('requestfailed', (r) => {
      const k = kindOf(r.url());
      if (k && !answers.has(k)) answers.set(k, r.failure()?.errorText ?? 'failed');
    });
    await page.goto(`http://127.0.0.1:${(pages.address() as AddressInfo).port}/page.html`);
    await waitUntil(async () => (await refusedCount()) >= REFUSED_KINDS.length && kindsAtApp().includes('opt-out'), 'every page request to reach the sidecar', { timeoutMs: 30_000 });
    t.ok((await refusedCount()) >= REFUSED_KINDS.length, 'the page requests were refused as browser_request');
    t.same([...new Set(kindsAtApp())], ['opt-out'], 'only the route that allows browser requests reached the app');
    await waitUntil(() => ['img', 'script', 'style', 'iframe', 'nocors'].every((k) => answers.has(k)), 'the browser to report what became of its requests', { timeoutMs: 30_000 });
    for (const [kind, answer] of answers) t.notMatch(answer, /^2\d\d$/, `${kind}: no success reached the page (${answer})`);
    t.equal(answers.get('iframe'), '403', "the iframe shows the sidecar's refusal");
  });
}
