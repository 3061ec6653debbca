/** Helpers for the audit tests: temp dirs and chains written by the real sink. */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Test } from 'tap';
import { JsonLinesAuditSink } from '../../src/audit/sink.js';
import { type AuditRecord } from '../../src/audit/record.js';

export function tempDir(t: Test): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'audit-chain-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

export function decision(i: number): AuditRecord {
  return { type: 'inbound_decision', decision: i % 3 ? 'allow' : 'deny', reason: i % 3 ? 'allowed' : 'action_not_allowed', peer: `spiffe://td/agent-${i % 7}`, path: `/v1/tool/${i}`, status: 200, latency_ms: 0.25 };
}

/** Writes `count` records through a real sink (starting at `from` for distinct content) and closes it. */
export async function writeChain(file: string, count: number, from = 0, name = 'sc'): Promise<JsonLinesAuditSink> {
  const sink = new JsonLinesAuditSink(file, name);
  for (let i = from; i < from + count; i++) sink.record(decision(i));
  await sink.flush();
  return sink;
}

/** The file's lines (without newlines); the file must end with one. */
export function fileLines(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  if (!text.endsWith('\n')) throw new Error(`${file} does not end with a newline`);
  return text.slice(0, -1).split('\n');
}

export const joinLines = (lines: string[]) => lines.map((l) => `${l}\n`).join('');
