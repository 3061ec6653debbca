/**
 * Seed material: third-party samples from ../shared/conformance (read in place, never copied;
 * absent files are skipped) and synthetic ones made with keys this process holds, so a target
 * can re-sign a mutated body and reach the checks behind the signature.
 */
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { conformanceDir, repoRoot } from '../test/helpers/paths.js';

/** The conformance files that exist, as bytes (hex text files decoded). */
export function conformanceFiles(...relative: string[]): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (const rel of relative) {
    const file = path.join(conformanceDir, rel);
    if (!existsSync(file)) continue;
    const bytes = readFileSync(file);
    out.push(rel.endsWith('.hex') ? Buffer.from(bytes.toString('latin1').replace(/\s+/g, ''), 'hex') : bytes);
  }
  return out;
}

/** Files of a repository folder (fixtures, config examples) with the given suffix. */
export function repoFiles(folder: string, suffix: string): Uint8Array[] {
  const dir = path.join(repoRoot, folder);
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((f) => f.endsWith(suffix))
    .sort()
    .map((f) => readFileSync(path.join(dir, f)));
}

export const utf8 = (s: string): Uint8Array => Buffer.from(s, 'utf8');
export const text = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('utf8');

/** Runs `make` once and keeps its promise: key generation is shared by a target's seeds and run. */
export function once<T>(make: () => Promise<T>): () => Promise<T> {
  let p: Promise<T> | undefined;
  return () => (p ??= make());
}
