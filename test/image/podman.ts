/**
 * Running podman from the image tests: the flags these machines need (runc, explicit ulimits),
 * building the image with scripts/build-image.sh, and requests through a published proxy port.
 */
import { execFile } from 'node:child_process';
import http from 'node:http';
import path from 'node:path';
import { skipFor, toolsMissing } from '../helpers/needs.js';
import { repoRoot } from '../helpers/paths.js';

export const IMAGE = process.env.ATTEST_SIDECAR_TEST_IMAGE ?? 'localhost/attest-sidecar:dev';
/** Global flags: runc, because crun fails on these machines (cgroups, setrlimit). */
export const PODMAN_GLOBAL = ['--runtime', 'runc', ...(process.env.PODMAN_FLAGS ?? '').split(/\s+/).filter(Boolean)];
export const RUN_FLAGS = ['--ulimit', 'nofile=1024:1024', '--ulimit', 'nproc=1024:1024'];
export const BUILD_TIMEOUT_MS = 30 * 60_000;
const COMMAND_TIMEOUT_MS = 120_000;

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

export function exec(file: string, args: string[], timeout = COMMAND_TIMEOUT_MS): Promise<Result> {
  return new Promise((resolve) => {
    execFile(file, args, { timeout, maxBuffer: 64 << 20, encoding: 'utf8' }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : null) : 0;
      resolve({ code, stdout, stderr: stderr + (err && code === null ? `\n${err.message}` : '') });
    });
  });
}

export const podman = (args: string[], timeout?: number) => exec('podman', [...PODMAN_GLOBAL, ...args], timeout);

/** One request through the outbound proxy in proxy form (`curl -x`): the absolute URL as the target. */
export function viaProxy(port: number, method: string, url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path: url, headers: { host: new URL(url).host }, timeout: 30_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`no answer from 127.0.0.1:${port} within 30 s`)));
    req.on('error', reject);
    req.end();
  });
}

export async function waitFor<T>(what: string, boundMs: number, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + boundMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

/** Why the image tests cannot run here (a skip reason; under CI=true a missing tool throws), or false. */
export function imageSkip(): string | false {
  if (process.getuid?.() !== 0) return 'not running as root: the base image is assembled with debootstrap and run with rootful podman';
  return skipFor(toolsMissing(['podman', 'runc', 'debootstrap'], 'podman runc debootstrap'));
}

/** Builds (or reuses) the image with scripts/build-image.sh; throws with the script's stderr tail when it fails. */
export async function buildImage(): Promise<{ ms: number; printed: string | undefined }> {
  const started = Date.now();
  const build = await exec(path.join(repoRoot, 'scripts/build-image.sh'), [], BUILD_TIMEOUT_MS);
  if (build.code !== 0) throw new Error(`scripts/build-image.sh failed (${build.code}):\n${build.stderr.slice(-4000)}`);
  return { ms: Date.now() - started, printed: build.stdout.trim().split('\n').pop() };
}
