/**
 * Keeps the policy current while the sidecar runs. Watches the policy file's *directory*
 * (so atomic replace-by-rename and Kubernetes ConfigMap symlink swaps are seen), re-reads
 * after a short debounce, and swaps the compiled policy only when the new text compiles.
 * A broken edit never replaces a good policy: the last good one stays in force. Reloads the
 * watcher triggers are parsed on a worker thread, so a large policy never stalls requests.
 */
import { EventEmitter } from 'node:events';
import { statSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { errorMessage } from '../errors.js';
import { watchFiles, type FileWatch } from '../lib/file-watch.js';
import { runParseJob, type ParseJob } from '../lib/parse-worker.js';
import { formatProblem } from '../lib/yaml-reader.js';
import type { ReadinessCheck } from '../lib/readiness.js';
import { loadPolicyFile, PolicyError, type Policy } from './compile.js';
import type { Logger } from '../lib/log.js';

/** Reloads parse on a worker thread: `loadPolicyJob` in compile.ts. */
const POLICY_PARSE_JOB: ParseJob = Object.freeze({ module: new URL('./compile.js', import.meta.url).href, exportName: 'loadPolicyJob' });

/** What the watcher counts: one call per reload, ok or rejected. */
export interface PolicyReloadMetrics {
  policyReload(ok: boolean): void;
}

/** A rejected reload logs this many problems, one line each, then a count (a broken file must not flood the log). */
export const MAX_LOGGED_PROBLEMS = 20;

export interface PolicyWatcherOptions {
  logger?: Logger;
  /** Quiet period after the last file event before re-reading; default 100 ms. */
  debounceMs?: number;
  /** Fallback check of the file's identity (inode, size, mtime); default 5000 ms, 0 turns it off. */
  pollIntervalMs?: number;
}

/** What the fallback poll compares: a replaced or rewritten file changes at least one. */
function fileStamp(stats: { ino: number; size: number; mtimeMs: number }): string {
  return `${stats.ino}:${stats.size}:${stats.mtimeMs}`;
}

export interface PolicyWatcher {
  on(event: 'reload', listener: (policy: Policy) => void): this;
  on(event: 'error', listener: (err: PolicyError) => void): this;
  once(event: 'reload', listener: (policy: Policy) => void): this;
  once(event: 'error', listener: (err: PolicyError) => void): this;
}

export class PolicyWatcher extends EventEmitter {
  readonly file: string;
  private policy: Policy;
  private reloadCount = 0;
  private reloadFailureCount = 0;
  private watch: FileWatch | undefined;
  private poll: NodeJS.Timeout | undefined;
  private stamp: string | undefined;
  private readonly logger: Logger | undefined;
  /** A background reload is running; `again`: another change arrived meanwhile. */
  private reloading = false;
  private again = false;
  private closed = false;

  /** Loads `file` now; throws PolicyError if it is invalid (the sidecar must not start without a policy). */
  constructor(file: string, options: PolicyWatcherOptions = {}) {
    super();
    this.file = resolve(file);
    this.logger = options.logger;
    // Stamped before it is read: a change between this read and the watch arming below (which
    // fs.watch cannot see) shows as a different stamp to the fallback poll.
    try {
      this.stamp = fileStamp(statSync(this.file));
    } catch {
      // loadPolicyFile below reports the unreadable file with its typed error.
    }
    this.policy = loadPolicyFile(this.file);
    this.watch = watchFiles([this.file], () => void this.reloadInBackground(), {
      debounceMs: options.debounceMs ?? 100,
      onError: (err) => {
        this.logger?.error({ file: this.file, err: errorMessage(err) }, 'policy watch failed; keeping current policy');
      },
    });
    // fs.watch misses changes made before it is armed, and events on some file systems: a
    // cheap stat every few seconds catches those, off the request path.
    const pollMs = options.pollIntervalMs ?? 5000;
    if (pollMs > 0) {
      this.poll = setInterval(() => void this.pollOnce(), pollMs);
      this.poll.unref();
    }
    this.logger?.info(
      { file: this.file, version: this.policy.version, agents: this.policy.agents.length },
      'policy loaded',
    );
  }

  /** Same as the constructor, for callers that prefer `await PolicyWatcher.open(...)`. */
  static async open(file: string, options: PolicyWatcherOptions = {}): Promise<PolicyWatcher> {
    return new PolicyWatcher(file, options);
  }

  current(): Policy | undefined {
    return this.policy;
  }

  /** Counts every reload from now on, ok or rejected (a rejected one keeps the last good policy). */
  countReloads(metrics: PolicyReloadMetrics): void {
    this.on('reload', () => metrics.policyReload(true));
    this.on('error', () => metrics.policyReload(false));
  }

  /** The readiness check /readyz shows: ok with the version in force. */
  readiness(): ReadinessCheck {
    const current = this.policy;
    return current ? { ok: true, detail: `version ${current.version}` } : { ok: false, detail: 'no policy loaded' };
  }

  /** Successful reloads since start (unchanged content does not count). */
  get reloads(): number {
    return this.reloadCount;
  }

  /** Changes that were rejected (unreadable or invalid file). */
  get reloadFailures(): number {
    return this.reloadFailureCount;
  }

  /**
   * Re-reads the file now. Returns true when a changed, valid policy was swapped in;
   * false when nothing changed or the new text was rejected (the old policy stays).
   */
  reload(): boolean {
    let next: Policy;
    try {
      next = loadPolicyFile(this.file);
    } catch (err) {
      return this.rejected(err);
    }
    return this.accept(next);
  }

  /**
   * What a file change triggers: the same as `reload`, but read and compiled on a worker
   * thread. Changes that arrive while one runs are coalesced into one more reload after it.
   */
  async reloadInBackground(): Promise<boolean> {
    if (this.reloading) {
      this.again = true;
      return false;
    }
    this.reloading = true;
    let swapped = false;
    try {
      do {
        this.again = false;
        // What this reload reads: the fallback poll then sees no change for it.
        await this.stampNow();
        let next: Policy | undefined;
        try {
          next = await runParseJob<Policy>(
            POLICY_PARSE_JOB,
            { file: this.file, now: Date.now() },
            (f) => new PolicyError(f.problems?.length ? f.problems : [{ file: this.file, line: 0, column: 0, message: f.message }]),
            'policy_invalid',
          );
        } catch (err) {
          if (!this.closed) this.rejected(err);
        }
        if (next && !this.closed) swapped = this.accept(freezePolicy(next)) || swapped;
      } while (this.again && !this.closed);
    } finally {
      this.reloading = false;
    }
    return swapped;
  }

  private rejected(err: unknown): false {
    this.reloadFailureCount++;
    const error =
      err instanceof PolicyError
        ? err
        : new PolicyError([{ file: this.file, line: 0, column: 0, message: errorMessage(err) }]);
    for (const p of error.problems.slice(0, MAX_LOGGED_PROBLEMS)) {
      this.logger?.error(
        { reason: error.reason, file: p.file, line: p.line, column: p.column, field: p.key, version: this.policy.version },
        `policy reload rejected, keeping version ${this.policy.version}: ${formatProblem(p)}`,
      );
    }
    if (error.problems.length > MAX_LOGGED_PROBLEMS) {
      this.logger?.error(
        { reason: error.reason, file: this.file, problems: error.problems.length, version: this.policy.version },
        `policy reload rejected: ${error.problems.length - MAX_LOGGED_PROBLEMS} more problems not logged (attest-sidecar check-policy lists them all)`,
      );
    }
    // An 'error' event without a listener would throw; a bad edit must not crash the sidecar.
    if (this.listenerCount('error') > 0) this.emit('error', error);
    return false;
  }

  private accept(next: Policy): boolean {
    if (next.version === this.policy.version) return false;
    const previous = this.policy.version;
    this.policy = next;
    this.reloadCount++;
    this.logger?.info({ file: this.file, version: next.version, previous, agents: next.agents.length }, 'policy reloaded');
    this.emit('reload', next);
    return true;
  }

  close(): void {
    this.closed = true;
    this.watch?.close();
    this.watch = undefined;
    clearInterval(this.poll);
    this.poll = undefined;
  }

  private async stampNow(): Promise<string | undefined> {
    try {
      return (this.stamp = fileStamp(await stat(this.file)));
    } catch {
      return undefined; // unreadable now: the next poll or event tells
    }
  }

  private async pollOnce(): Promise<void> {
    const before = this.stamp;
    const now = await this.stampNow();
    if (now !== undefined && before !== undefined && now !== before && !this.closed) void this.reloadInBackground();
  }
}

/** Structured clone (the worker's result) drops Object.freeze; policies are shared read-only. */
function freezePolicy(policy: Policy): Policy {
  for (const agent of policy.agents) Object.freeze(agent);
  Object.freeze(policy.agents);
  return Object.freeze(policy);
}
