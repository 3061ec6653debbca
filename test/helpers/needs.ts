/**
 * What a test needs from the machine (a tool, a browser, conformance data) and what happens when
 * it is absent: locally the test is a real tap skip that names the reason; under CI=true it is a
 * failure, because CI installs everything (.ci/run) and a silent skip there would hide a test
 * that never ran. Conditions that are not something to install (not root, not Linux, no
 * non-loopback interface) are plain `{ skip: reason }` and stay skips in CI.
 *
 *   t.test('openssl agrees', { skip: skipFor(toolsMissing(['openssl'], 'openssl')) }, ...)
 *
 *   const skip = skipFor(toolsMissing(['swtpm'], 'swtpm'));
 *   if (skip) t.skip(skip, () => {});
 *   else { ...the file's tests... }
 */
import { accessSync, constants } from 'node:fs';
import path from 'node:path';

/** Why something is absent (with how to install it), or undefined when it is there. */
export type Missing = string | undefined;

function onPath(tool: string): boolean {
  if (tool.includes('/')) return executable(tool);
  return (process.env.PATH ?? '').split(path.delimiter).some((dir) => dir !== '' && executable(path.join(dir, tool)));
}

function executable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** Which of `tools` (names looked up on PATH, or absolute paths) are not executable here, as a reason naming the Debian `packages`. */
export function toolsMissing(tools: readonly string[], packages: string): Missing {
  const absent = tools.filter((tool) => !onPath(tool));
  return absent.length === 0 ? undefined : `not installed: ${absent.join(', ')} (apt-get install ${packages})`;
}

/**
 * The first of `missing` as a tap skip reason, or false when nothing is missing: use it as
 * `{ skip: skipFor(...) }` or `if (skip) t.skip(skip, () => {})`. Under CI=true a missing need throws,
 * which fails the test file with the reason.
 */
export function skipFor(...missing: Missing[]): string | false {
  const reason = missing.find((m) => m !== undefined);
  if (reason === undefined) return false;
  if (process.env.CI === 'true') throw new Error(`${reason}: required when CI=true`);
  return reason;
}
