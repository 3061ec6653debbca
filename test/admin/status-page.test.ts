/**
 * The status page of a real sidecar (dev issuer over gRPC, mTLS inbound, agent sidecars) in
 * headless Chromium: it loads from the admin port under its CSP, shows the sidecar's own SPIFFE
 * ID with a live countdown, shows a denial after one is made (a hostile path as plain text),
 * drives the kill switch against the real admin API, and never talks to any other origin.
 */
import { readFileSync } from 'node:fs';
import tls from 'node:tls';
import t from 'tap';
import { STATUS_PAGE_CSP, STATUS_PAGE_HTML } from '../../src/admin/status-page.js';
import type { Sidecar } from '../../src/sidecar.js';
import { chromiumSkip, launchChromium, recordPage, waitForText, waitUntil } from '../helpers/browser.js';
import { TestMesh, idOf, viaProxy } from '../helpers/mesh.js';

const DASH = '\u2014';

/** The admin bearer token the sidecar created in its 0600 token file. */
function adminToken(s: Sidecar): string {
  if (!s.adminTokenFile) throw new Error('the sidecar has no admin token file');
  return readFileSync(s.adminTokenFile, 'utf8').trim();
}

const skip = chromiumSkip();
if (skip) {
  t.skip(skip, () => {});
} else {
  const browser = await launchChromium();
  const mesh = await TestMesh.start({ agents: ['orchestrator', 'harness-writer'] });
  // Teardowns run in order: the page stops polling before the sidecars go away.
  t.teardown(() => browser.close());
  t.teardown(() => mesh.close());
  const admin = mesh.adminOf(mesh.server);
  const page = await (await browser.newContext()).newPage();
  const rec = recordPage(page, admin);
  const callServer = (agent: string, path: string) => viaProxy(mesh.proxyOf(agent), 'GET', `http://control-plane${path}`);

  /** One request straight to the inbound listener with a raw request line (bytes no HTTP client would send). */
  async function rawInboundRequest(agent: string, path: string): Promise<number> {
    const { certChainPem, keyPem } = await mesh.issuer.ca.issueX509Svid(idOf(agent));
    return new Promise((resolve, reject) => {
      const socket = tls.connect(
        { host: '127.0.0.1', port: mesh.server.inbound!.address()!.port, cert: certChainPem, key: keyPem, ca: mesh.issuer.ca.rootPem(), checkServerIdentity: () => undefined },
        () => socket.end(`GET ${path} HTTP/1.1\r\nhost: control-plane\r\nconnection: close\r\n\r\n`),
      );
      let data = '';
      socket.setEncoding('utf8');
      socket.on('data', (c: string) => (data += c));
      socket.on('end', () => resolve(Number(/^HTTP\/1\.1 (\d{3})/.exec(data)?.[1] ?? 0)));
      socket.on('error', reject);
    });
  }

  t.test('GET / on the admin port serves the page under its CSP', async (t) => {
    const res = await fetch(admin + '/');
    t.equal(res.status, 200);
    t.match(res.headers.get('content-type'), /^text\/html/);
    t.equal(res.headers.get('content-security-policy'), STATUS_PAGE_CSP);
    t.equal(await res.text(), STATUS_PAGE_HTML);
  });

  t.test('loads and shows the own SPIFFE ID with a live expiry countdown', async (t) => {
    await page.goto(admin + '/');
    t.equal(await waitForText(page.locator('#own-id'), (s) => s !== '' && s !== DASH, 'own ID'), idOf('control-plane'));
    t.equal(await page.textContent('#name'), 'control-plane');
    const first = await waitForText(page.locator('#expires-in'), (s) => /^in \d/.test(s), 'expiry countdown');
    const later = await waitForText(page.locator('#expires-in'), (s) => s !== first, 'the countdown to move');
    t.match(later, /^in \d/, `countdown moved: ${first} -> ${later}`);
    t.match(await page.textContent('#rotates-in'), /^(in|due)/, 'rotation countdown shown');
    t.match(await page.textContent('#trust-body'), 'agent-mesh.local');
    t.ok(await page.locator('#offline').isHidden(), 'connected');
  });

  t.test('a denied request shows up with its reason', async (t) => {
    t.equal((await callServer('orchestrator', '/agents')).status, 200, 'orchestrator may list agents');
    t.equal((await callServer('harness-writer', '/agents')).status, 403, 'harness-writer may not');
    const row = page.locator('#denials-body tbody tr', { hasText: 'action_not_permitted' });
    const text = await waitForText(row, (s) => s.includes(idOf('harness-writer')), 'the denial on the page');
    t.match(text, '/agents');
    t.match(text, '403');
    t.equal(await row.first().locator('td.reason').textContent(), 'action_not_permitted');
  });

  t.test('a hostile request path is shown as text, not markup', async (t) => {
    const hostile = '/agents/<img/src/onerror=alert(document.domain)>';
    const status = await rawInboundRequest('harness-writer', hostile);
    t.ok(status >= 400 && status < 500, `refused (${status})`);
    const cell = page.locator('#denials-body td.path', { hasText: 'onerror=' });
    const shown = await waitForText(cell, () => true, 'the hostile denial');
    if (shown.includes('<')) t.equal(shown, hostile, 'the raw path, verbatim');
    t.equal(await page.locator('#denials-body img, #denials-body svg').count(), 0, 'no element injected');
  });

  t.test('connected peers are listed with a kill button', async (t) => {
    // One row per session (connection); the same ID may have several.
    const row = page.locator(`#inbound-body tr[data-key="${idOf('orchestrator')}"]`).first();
    await waitForText(row, (s) => s.includes(idOf('orchestrator')), 'the orchestrator peer');
    t.equal(await row.locator('button[data-kill]').textContent(), 'Kill');
  });

  t.test('kill and restore through the real admin API', async (t) => {
    const id = idOf('orchestrator');
    const kill = page.locator(`#inbound-body button[data-kill="${id}"]`).first();
    const result = page.locator('#action-result');
    await kill.click();
    t.equal(await kill.textContent(), 'Confirm kill');
    await kill.click();
    t.match(await waitForText(result, (s) => s.includes('HTTP'), 'the refusal'), /failed: HTTP 401/, 'without the token: 401 shown');
    t.equal((await callServer('orchestrator', '/agents')).status, 200, 'nothing was revoked');

    await page.fill('#token', adminToken(mesh.server));
    await page.fill('#reason', 'status page test');
    await kill.click();
    await kill.click();
    t.equal(await waitForText(result, (s) => s.endsWith(': done') || s.includes('failed'), 'the kill'), `Kill ${id}: done`);
    t.not((await callServer('orchestrator', '/agents')).status, 200, 'the orchestrator is refused at once');
    const revoked = page.locator(`#revocations-body tr[data-key="${id}"]`);
    t.match(await waitForText(revoked, (s) => s.includes('status page test'), 'the revocation on the page'), 'status page test');

    const restore = revoked.locator('button[data-restore]');
    await restore.click();
    await restore.click();
    t.equal(await waitForText(result, (s) => s.endsWith(': done') || s.includes('failed'), 'the restore'), `Restore ${id}: done`);
    await waitUntil(async () => (await revoked.count()) === 0, 'the revocation to leave the page');
    t.equal((await callServer('orchestrator', '/agents')).status, 200, 'the orchestrator is served again');
  });

  t.test('the page only ever talked to the admin origin, without errors', async (t) => {
    t.ok(rec.requests.some((u) => u === `${admin}/status`), 'it polled /status');
    t.strictSame(rec.foreignRequests(), [], 'no request to any other host');
    t.strictSame(rec.pageErrors, [], 'no uncaught exceptions');
    t.strictSame(rec.unexpectedConsoleErrors([/status of 401/]), [], 'no console errors or CSP violations');
  });
}
