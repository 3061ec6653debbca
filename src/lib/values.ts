/**
 * Small value parsers shared by the config and policy loaders. Each returns a result
 * object instead of throwing, so callers can attach a file position to the message.
 */
import { isIP } from 'node:net';
import { ConfigError } from '../errors.js';

export type ValueResult<T> = { ok: true; value: T } | { ok: false; error: string };

const DURATION_UNITS_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
/** One `<number><unit>` term; several may follow each other ("1m30s"). */
const DURATION_TERM = /(\d+(?:\.\d+)?)(ms|s|m|h)/y;

/**
 * Duration in milliseconds from a number (seconds) or a string such as "500ms", "30s",
 * "5m", "1h" or "1m30s". Zero and negative durations are rejected: every timeout the
 * sidecar has must be able to fire.
 */
export function checkDuration(value: unknown): ValueResult<number> {
  let ms: number;
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) return { ok: false, error: 'must be a finite number of seconds' };
    ms = value * 1000;
  } else if (typeof value === 'string') {
    const text = value.trim();
    if (/^\d+(?:\.\d+)?$/.test(text)) {
      ms = Number(text) * 1000;
    } else {
      ms = 0;
      DURATION_TERM.lastIndex = 0;
      let matched = 0;
      while (DURATION_TERM.lastIndex < text.length) {
        const m = DURATION_TERM.exec(text);
        if (!m) break;
        ms += Number(m[1]) * DURATION_UNITS_MS[m[2]!]!;
        matched = DURATION_TERM.lastIndex;
      }
      if (text.length === 0 || matched !== text.length) {
        return { ok: false, error: `invalid duration '${value}' (use seconds or e.g. "500ms", "30s", "5m", "1h")` };
      }
    }
  } else {
    return { ok: false, error: 'must be a duration: seconds as a number, or e.g. "500ms", "30s", "5m"' };
  }
  if (!(ms > 0)) return { ok: false, error: 'must be greater than zero' };
  if (ms > 2_147_483_647) return { ok: false, error: 'is too long (at most about 24 days)' };
  return { ok: true, value: Math.round(ms) };
}

/** Like checkDuration, but throws ConfigError (for CLI flags and other unpositioned values). */
export function parseDurationMs(value: string | number): number {
  const checked = checkDuration(value);
  if (!checked.ok) throw new ConfigError(`duration ${JSON.stringify(value)}: ${checked.error}`);
  return checked.value;
}

export interface ListenAddress {
  host: string;
  port: number;
}

/** Hostname per RFC 1123 (labels of letters, digits and inner hyphens). */
const HOSTNAME = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

/**
 * `host:port` or `[v6]:port`. Port 0 is allowed (tests bind ephemeral ports). The host
 * must be explicit: an empty host would silently mean "every interface".
 */
export function checkListen(value: unknown): ValueResult<ListenAddress> {
  if (typeof value !== 'string') {
    return { ok: false, error: 'must be a string "host:port" (e.g. "127.0.0.1:15001" or "[::1]:15001")' };
  }
  let host: string;
  let portText: string;
  if (value.startsWith('[')) {
    const close = value.indexOf(']');
    if (close < 0 || value[close + 1] !== ':') {
      return { ok: false, error: `invalid listen address '${value}' (expected "[v6]:port")` };
    }
    host = value.slice(1, close);
    portText = value.slice(close + 2);
    if (isIP(host) !== 6) return { ok: false, error: `'${host}' is not an IPv6 address` };
  } else {
    const colon = value.lastIndexOf(':');
    if (colon < 0) return { ok: false, error: `invalid listen address '${value}' (expected "host:port")` };
    host = value.slice(0, colon);
    portText = value.slice(colon + 1);
    if (host.length === 0) {
      return { ok: false, error: `listen address '${value}' has no host (write e.g. "127.0.0.1${value}")` };
    }
    if (host.includes(':')) return { ok: false, error: `IPv6 addresses must be bracketed: "[${host}]:${portText}"` };
    if (isIP(host) === 0 && !HOSTNAME.test(host)) return { ok: false, error: `'${host}' is not a valid host` };
  }
  if (!/^\d{1,5}$/.test(portText) || Number(portText) > 65535) {
    return { ok: false, error: `invalid port '${portText}' (expected 0-65535)` };
  }
  return { ok: true, value: { host, port: Number(portText) } };
}

/** Like checkListen, but throws ConfigError. */
export function parseListen(value: string): ListenAddress {
  const checked = checkListen(value);
  if (!checked.ok) throw new ConfigError(`listen address ${JSON.stringify(value)}: ${checked.error}`);
  return checked.value;
}

/** True for addresses only this host can reach: 127.0.0.0/8, ::1 (also v4-mapped), localhost. */
export function isLoopbackHost(host: string): boolean {
  const h = host.toLowerCase();
  if (h === 'localhost' || h === '::1' || h === '0:0:0:0:0:0:0:1') return true;
  const v4 = h.startsWith('::ffff:') ? h.slice(7) : h;
  return isIP(v4) === 4 && v4.startsWith('127.');
}

/** Levenshtein distance, for "did you mean" hints on misspelled keys. */
export function editDistance(a: string, b: string): number {
  const prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0]!;
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const next = Math.min(prev[j]! + 1, prev[j - 1]! + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = prev[j]!;
      prev[j] = next;
    }
  }
  return prev[b.length]!;
}

/** The closest candidate within a small distance, or undefined. */
export function closestMatch(word: string, candidates: readonly string[]): string | undefined {
  // A truncated value ("sev" for "sev-snp") is a better hint than a short edit distance.
  if (word.length >= 3) {
    const prefixed = candidates.filter((c) => c.toLowerCase().startsWith(word.toLowerCase()));
    if (prefixed.length === 1) return prefixed[0];
  }
  let best: string | undefined;
  let bestDistance = Math.max(2, Math.floor(word.length / 3)) + 1;
  for (const c of candidates) {
    const distance = editDistance(word.toLowerCase(), c.toLowerCase());
    if (distance < bestDistance) {
      best = c;
      bestDistance = distance;
    }
  }
  return best;
}
