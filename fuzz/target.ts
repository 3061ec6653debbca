/**
 * A fuzz target: one parser of untrusted bytes, its seed inputs and how to call it. Targets are
 * data (see targets/index.ts); the runner treats them all alike.
 */
import { SidecarError } from '../src/errors.js';
import type { FormatHints } from './engine.js';

export interface FuzzTarget {
  name: string;
  /** What it parses, for --list. */
  about: string;
  /**
   * Makes the seed inputs (conformance samples and synthetic ones, generated with keys the
   * harness holds) and the function that calls the parser with one input. Returning (or
   * resolving) is `ok`; throwing must be the project's typed error.
   */
  prepare(): Promise<PreparedTarget>;
  hints?: FormatHints;
}

export interface PreparedTarget {
  seeds: Uint8Array[];
  run(input: Uint8Array): unknown;
}

export type OutcomeKind = 'ok' | 'typed' | 'untyped' | 'slow' | 'hang' | 'crash';

/** A reason code is snake_case: the audit log and metrics reuse it. */
const REASON = /^[a-z][a-z0-9_]*$/;

/** `typed` for the project's error with a reason code; `untyped` (a finding) for anything else. */
export function classifyThrown(err: unknown): { kind: 'typed'; reason: string } | { kind: 'untyped'; error: string } {
  if (err instanceof SidecarError && typeof err.reason === 'string' && REASON.test(err.reason)) return { kind: 'typed', reason: err.reason };
  const name = err instanceof Error ? err.constructor.name : typeof err;
  const message = err instanceof Error ? err.message : String(err);
  const where = err instanceof Error ? (err.stack ?? '').split('\n').slice(1, 4).map((l) => l.trim()).join(' | ') : '';
  return { kind: 'untyped', error: `${name}: ${message}${where ? ` [${where}]` : ''}` };
}

/** Groups findings: the same error at the same place is one finding however often it recurs. */
export function findingKey(target: string, kind: OutcomeKind, error: string): string {
  return `${target} ${kind} ${error.replace(/\d+/g, 'N').replace(/0xN[a-f]*/gi, '0xN').slice(0, 300)}`;
}

