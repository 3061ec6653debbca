/**
 * The logging surface every module depends on: structured fields first, then a message. pino's
 * Logger satisfies it (src/log.ts creates one); tests pass a recorder. Callers log identities,
 * serials and reasons, never key material or tokens.
 */
export interface Logger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}
