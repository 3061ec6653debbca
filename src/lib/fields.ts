/** Config field readers built on YamlReader + values.ts (durations, listen addresses, paths, URLs). */
import { isAbsolute, resolve } from 'node:path';
import { checkDuration, checkListen, type ListenAddress } from './values.js';
import type { Field, YamlReader } from './yaml-reader.js';

/** Duration in ms; `fallback` when the field is absent, undefined (reported) when invalid. */
export function readDuration(reader: YamlReader, field: Field | undefined, fallback: number): number | undefined {
  if (!field) return fallback;
  const scalar = reader.scalar(field);
  if (!scalar) return undefined;
  const duration = checkDuration(scalar.value);
  if (!duration.ok) {
    reader.reportField(field, duration.error);
    return undefined;
  }
  return duration.value;
}

export function readListen(reader: YamlReader, field: Field | undefined, fallback: string): ListenAddress | undefined {
  if (!field) {
    const fallbackListen = checkListen(fallback);
    if (!fallbackListen.ok) throw new Error(`bad default listen address ${fallback}: ${fallbackListen.error}`);
    return fallbackListen.value;
  }
  const scalar = reader.scalar(field);
  if (!scalar) return undefined;
  const l = checkListen(scalar.value);
  if (!l.ok) {
    reader.reportField(field, l.error);
    return undefined;
  }
  return l.value;
}

/** A file path, resolved against `baseDir` (the config file's folder) when relative. */
export function readPath(reader: YamlReader, field: Field, baseDir: string): string | undefined {
  const text = reader.string(field);
  if (text === undefined) return undefined;
  if (text.includes('\0')) {
    reader.reportField(field, 'must not contain NUL characters');
    return undefined;
  }
  return isAbsolute(text) ? text : resolve(baseDir, text);
}

/** A string field that must parse as a URL: its text and the parsed URL, or a reported problem. */
export function readParsedUrl(reader: YamlReader, field: Field): { text: string; url: URL } | undefined {
  const text = reader.string(field);
  if (text === undefined) return undefined;
  try {
    return { text, url: new URL(text) };
  } catch {
    reader.reportField(field, `'${text}' is not a valid URL`);
    return undefined;
  }
}

/**
 * An http(s) URL naming an origin and optionally a base path: no credentials, query or
 * fragment (those would be silently attached to, or dropped from, every forwarded request).
 */
export function readUrl(
  reader: YamlReader,
  field: Field,
  protocols: readonly ('http:' | 'https:')[],
  opts: { allowPath?: boolean } = {},
): string | undefined {
  const parsed = readParsedUrl(reader, field);
  if (!parsed) return undefined;
  const { text: s, url } = parsed;
  const want = protocols.map((p) => p.slice(0, -1)).join(' or ');
  let error: string | undefined;
  if (!protocols.includes(url.protocol as 'http:')) error = `must be an ${want} URL, got '${s}'`;
  else if (url.username || url.password) error = 'must not contain credentials';
  else if (url.search || url.hash || s.includes('?') || s.includes('#')) error = 'must not contain a query or fragment';
  else if (!opts.allowPath && url.pathname !== '/') error = `must not have a path (got '${url.pathname}')`;
  if (error) {
    reader.reportField(field, error);
    return undefined;
  }
  return s;
}

const PCR_DIGEST_HEX_DIGITS = [40, 64, 96, 128];

/** `{ index: hex digest }` for TPM PCRs 0-23 (policies and reference values share this shape). */
export function readPcrs(reader: YamlReader, field: Field): Record<string, string> | undefined {
  const m = reader.map(field, null);
  if (!m) return undefined;
  const out: Record<string, string> = Object.create(null);
  for (const key of m.keys()) {
    const f = m.get(key)!;
    if (!/^(?:[0-9]|1[0-9]|2[0-3])$/.test(key)) {
      reader.report(f.keyNode, f.path, `PCR index must be 0-23, got '${key}'`);
      continue;
    }
    const hex = reader.hex(f, 'hex digest');
    if (hex === undefined) continue;
    if (!PCR_DIGEST_HEX_DIGITS.includes(hex.length)) {
      reader.reportField(f, `a PCR digest has 40, 64, 96 or 128 hex digits (SHA-1/256/384/512), got ${hex.length}`);
      continue;
    }
    out[key] = hex;
  }
  if (m.node.items.length === 0) reader.reportField(field, 'must name at least one PCR');
  return out;
}
