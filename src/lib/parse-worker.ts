/**
 * Parses files that are re-read while the sidecar serves (policy reloads, shared revocation
 * lists) on a worker thread, so a large or hostile file costs that thread time, never the
 * event loop that forwards requests. The results are plain data (Maps, Sets, arrays) and
 * cross the thread boundary by structured clone; problems come back with their positions
 * and are rebuilt as the caller's typed error.
 *
 * One short-lived worker per parse: reloads are rare, and a worker that is terminated after
 * each job can leak nothing from one file into the next.
 *
 * A job names the module and the exported function the worker runs (`ParseJob`), so this file
 * knows no parser: each domain exports its own job function next to its parser.
 */
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { SidecarError, errorMessage } from '../errors.js';
import type { ReasonCode } from '../reasons.js';
import type { Problem } from './yaml-reader.js';

/** A parse that takes longer than this is abandoned (the worker is terminated). */
export const PARSE_WORKER_TIMEOUT_MS = 60_000;

/**
 * The function a worker runs: `module` is a file URL (`new URL('./x.js', import.meta.url).href`)
 * and `exportName` a function of that module taking the job's data (structured-cloned).
 */
export interface ParseJob {
  module: string;
  exportName: string;
}

interface JobFailure {
  message: string;
  reason?: string;
  problems?: Problem[];
}

type JobReply = { ok: true; value: unknown } | { ok: false; error: JobFailure };

/** Runs `job` on a fresh worker. Rejects with `rebuild(failure)` or a SidecarError(`reason`) if the worker fails. */
export function runParseJob<T>(job: ParseJob, data: unknown, rebuild: (failure: JobFailure) => Error, reason: ReasonCode): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let settled = false;
    const worker = new Worker(new URL(import.meta.url), {
      workerData: { job, data },
      // A hostile file may make the parser allocate; the worker dies, not the sidecar.
      resourceLimits: { maxOldGenerationSizeMb: 512 },
      stdout: false,
      stderr: false,
    });
    const settle = (fn: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      void worker.terminate();
      fn();
    };
    const timer = setTimeout(
      () => settle(() => reject(new SidecarError(reason, `parsing took longer than ${PARSE_WORKER_TIMEOUT_MS / 1000} s; abandoned`))),
      PARSE_WORKER_TIMEOUT_MS,
    );
    timer.unref();
    worker.unref();
    worker.once('message', (reply: JobReply) =>
      settle(() => (reply.ok ? resolve(reply.value as T) : reject(rebuild(reply.error)))),
    );
    worker.once('error', (err) => settle(() => reject(new SidecarError(reason, `parser thread failed: ${errorMessage(err)}`))));
    worker.once('exit', (code) => settle(() => reject(new SidecarError(reason, `parser thread exited (code ${code}) without a result`))));
  });
}

async function runJob(job: ParseJob, data: unknown): Promise<unknown> {
  const fn = ((await import(job.module)) as Record<string, unknown>)[job.exportName];
  if (typeof fn !== 'function') throw new Error(`${job.module} exports no function ${job.exportName}`);
  return (fn as (data: unknown) => unknown)(data);
}

if (!isMainThread && parentPort && (workerData as { job?: unknown } | null)?.job) {
  const port = parentPort;
  const { job, data } = workerData as { job: ParseJob; data: unknown };
  runJob(job, data).then(
    (value) => port.postMessage({ ok: true, value } satisfies JobReply),
    (err: unknown) => {
      const shape = err as { reason?: unknown; problems?: unknown };
      const error: JobFailure = { message: errorMessage(err) };
      if (typeof shape?.reason === 'string') error.reason = shape.reason;
      if (Array.isArray(shape?.problems)) error.problems = shape.problems as Problem[];
      port.postMessage({ ok: false, error } satisfies JobReply);
    },
  );
}
