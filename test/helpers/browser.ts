/**
 * Headless Chromium (Debian's /usr/bin/chromium driven by playwright-core) for page tests, and
 * a recorder for what a page does: every request it makes, console errors (CSP violations show
 * up there) and uncaught exceptions.
 */
import { existsSync } from 'node:fs';
import { chromium, type Browser, type Locator, type Page } from 'playwright-core';
import { skipFor } from './needs.js';

export const CHROMIUM_PATH = '/usr/bin/chromium';

const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** Why the browser tests cannot run here, or false (a failure when CI=true: see needs.ts). */
export function chromiumSkip(): string | false {
  return skipFor(existsSync(CHROMIUM_PATH) ? undefined : `not installed: ${CHROMIUM_PATH} (apt-get install chromium)`);
}

/**
 * Launches Chromium with a fresh profile (plus `extraArgs`, e.g. `--proxy-server=...`). Inside a
 * test that checked chromiumSkip(): a launch awaited at the top level of a file can outlast the
 * tests before it, and tap refuses tests added after the root ended.
 */
export async function launchChromium(extraArgs: readonly string[] = []): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM_PATH, args: [...CHROMIUM_ARGS, ...extraArgs], headless: true });
}

export interface PageRecorder {
  /** Every URL the page requested, in order. */
  readonly requests: string[];
  readonly consoleErrors: string[];
  readonly pageErrors: string[];
  /** Requested URLs whose origin is not `origin` (data: URLs never leave the browser). */
  foreignRequests(): string[];
  /** Console errors not matching any of `allowed` (e.g. the expected 401 of a refused action). */
  unexpectedConsoleErrors(allowed?: RegExp[]): string[];
}

export function recordPage(page: Page, origin: string): PageRecorder {
  const requests: string[] = [];
  const consoleErrors: string[] = [];
  const pageErrors: string[] = [];
  page.on('request', (r) => requests.push(r.url()));
  page.on('console', (m) => {
    if (m.type() === 'error' || /Content.Security.Policy/i.test(m.text())) consoleErrors.push(`${m.text()} @ ${m.location().url}`);
  });
  page.on('pageerror', (err) => pageErrors.push(err.stack ?? err.message));
  return {
    requests,
    consoleErrors,
    pageErrors,
    foreignRequests: () => requests.filter((u) => !u.startsWith('data:') && new URL(u).origin !== origin),
    unexpectedConsoleErrors: (allowed = []) => consoleErrors.filter((e) => !allowed.some((re) => re.test(e))),
  };
}

export interface WaitOptions {
  timeoutMs?: number;
  /** Called about every 250 ms while waiting, e.g. to advance a page's fake clock to its next poll. */
  nudge?: () => Promise<void>;
}

/** Waits until `check` resolves true; throws naming `what` at the deadline (a deadline, not a duration assertion). */
export async function waitUntil(check: () => boolean | Promise<boolean>, what: string, opts: WaitOptions = {}): Promise<void> {
  const deadline = Date.now() + (opts.timeoutMs ?? 8000);
  for (let i = 1; !(await check()); i++) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
    if (opts.nudge && i % 5 === 0) await opts.nudge();
  }
}

/**
 * Polls a locator's text until `accept` returns true (the element may not exist yet); returns
 * the accepted text, or throws with the last text seen.
 */
export async function waitForText(locator: Locator, accept: (text: string) => boolean, what: string, opts: WaitOptions = {}): Promise<string> {
  let last: string | null = null;
  try {
    await waitUntil(
      async () => {
        last = (await locator.count()) > 0 ? await locator.first().textContent() : null;
        return last !== null && accept(last);
      },
      what,
      opts,
    );
  } catch (err) {
    throw new Error(`${(err as Error).message}; last text: ${JSON.stringify(last)}`);
  }
  return last!;
}
