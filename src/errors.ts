import type { ReasonCode } from './reasons.js';

/**
 * Typed errors. Every error the sidecar raises on a decision path carries a stable
 * `reason` code: the audit log, the metrics labels and the JSON error body all reuse it,
 * so an operator can grep one string across all three.
 */
export class SidecarError extends Error {
  /** Stable, snake_case reason code from the catalogue (src/reasons.ts). */
  readonly reason: ReasonCode;

  constructor(reason: ReasonCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.reason = reason;
  }
}

/** Raised by configuration and policy loaders; names the file, position and key. */
export class ConfigError extends SidecarError {
  readonly file: string | undefined;
  readonly line: number | undefined;
  readonly column: number | undefined;
  readonly key: string | undefined;

  constructor(
    message: string,
    where: { file?: string; line?: number; column?: number; key?: string } = {},
    reason: ReasonCode = 'config_invalid',
  ) {
    const pos = where.file
      ? `${where.file}${where.line ? `:${where.line}${where.column ? `:${where.column}` : ''}` : ''}`
      : undefined;
    const full = [pos, where.key ? `${where.key}:` : undefined, message].filter(Boolean).join(' ');
    super(reason, full);
    this.file = where.file;
    this.line = where.line;
    this.column = where.column;
    this.key = where.key;
  }
}

/** Best-effort message of an unknown thrown value, for logs and JSON errors. */
export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
