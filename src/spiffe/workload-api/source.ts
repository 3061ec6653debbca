/**
 * X509Source backed by the Workload API's FetchX509SVID stream. The last good SVID is kept
 * across disconnects and agent restarts (expiry is the proxy's business); a new state is
 * published only when the SVID or the bundles actually changed.
 */
import { SidecarError } from '../../errors.js';
import { BaseX509Source } from '../source.js';
import type { BackoffOptions } from './backoff.js';
import { WorkloadApiClient, WorkloadApiError, type Watch } from './client.js';
import type { Logger } from '../../lib/log.js';

export interface WorkloadApiX509SourceOptions {
  /** `unix:///abs/path` or `tcp://IP:port`; default $SPIFFE_ENDPOINT_SOCKET. */
  endpoint?: string;
  hint?: string;
  logger?: Logger;
  backoff?: BackoffOptions;
}

export class WorkloadApiX509Source extends BaseX509Source {
  private readonly client: WorkloadApiClient;
  private watch: Watch | undefined;
  private closed = false;
  /** Set when the stream failed with a status the spec says not to retry. */
  private fatalError: WorkloadApiError | undefined;
  private readonly hint: string | undefined;
  /** The SPIFFE IDs last warned about (several SVIDs, no hint): one warning per distinct set. */
  private warnedIds: string | undefined;

  /** Throws SidecarError `workload_endpoint_invalid` / `workload_endpoint_missing`. */
  constructor(opts: WorkloadApiX509SourceOptions = {}) {
    super(opts.logger);
    this.hint = opts.hint || undefined;
    this.client = new WorkloadApiClient({
      ...(opts.endpoint !== undefined ? { endpoint: opts.endpoint } : {}),
      ...(opts.hint !== undefined ? { hint: opts.hint } : {}),
      ...(opts.backoff !== undefined ? { backoff: opts.backoff } : {}),
      ...(opts.logger !== undefined ? { logger: opts.logger } : {}),
    });
  }

  /** Opens the FetchX509SVID stream (idempotent). Use waitReady() for the first SVID. */
  start(): this {
    if (this.closed) throw new SidecarError('source_closed', 'Workload API source is closed');
    if (this.watch) return this;
    this.logger?.info({ endpoint: this.client.endpoint.uri }, 'watching the Workload API for X.509-SVIDs');
    this.watch = this.client.watchX509Context(
      (ctx) => {
        this.connected = true;
        this.warnIfAmbiguous(ctx.svids.map((s) => s.id.toString()), ctx.svid.id.toString());
        this.publish({ svid: ctx.svid, bundles: ctx.bundles });
      },
      (err) => {
        // Parse failures leave the stream up; status failures mean we are disconnected.
        if (err instanceof WorkloadApiError && err.code !== undefined) this.connected = false;
        const fatal = err instanceof WorkloadApiError && err.fatal;
        if (fatal) this.fatalError = err;
        this.fail(err, fatal);
      },
    );
    return this;
  }

  /** Without a hint the first SVID is used: the agent may list them in another order next time. */
  private warnIfAmbiguous(ids: string[], chosen: string): void {
    if (this.hint || ids.length < 2) return;
    const key = ids.join(' ');
    if (key === this.warnedIds) return;
    this.warnedIds = key;
    this.logger?.warn(
      { svids: ids, using: chosen },
      `the Workload API sent ${ids.length} SVIDs and no hint is configured: using the first; the identity can change silently if the agent reorders them (set identity.hint)`,
    );
  }

  /** The non-retryable error that stopped the stream, if any (InvalidArgument, Unimplemented). */
  fatal(): WorkloadApiError | undefined {
    return this.fatalError;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.connected = false;
    this.watch?.cancel();
    this.watch = undefined;
    this.client.close();
    this.clearListeners();
  }
}
