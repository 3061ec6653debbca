/**
 * DEVELOPMENT ONLY: an embedded SPIFFE Workload API server backed by the in-memory DevCa.
 *
 * It serves the real Workload API (proto/workload.proto) with @grpc/grpc-js, one Unix socket per
 * workload: in development the socket path IS the attestation (whoever can open the socket gets
 * that identity), which is exactly why this must never run in production.
 *
 * Behaviour follows the SPIFFE Workload Endpoint spec: calls without `workload.spiffe.io: true`
 * get InvalidArgument, unknown/deregistered callers get PermissionDenied, WIT RPCs are
 * Unimplemented. X.509-SVIDs are re-issued at half-life and pushed to open streams.
 */
import { createHash } from 'node:crypto';
import { mkdir, chmod, unlink } from 'node:fs/promises';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { SidecarError, errorMessage } from '../errors.js';
import { parseSpiffeId, parseTrustDomain, type SpiffeId } from '../spiffe/id.js';
import type { X509Bundle } from '../spiffe/bundle/x509-bundle.js';
import {
  WORKLOAD_HEADER_KEY,
  toStructMessage,
  workloadApiService,
  type JwtBundlesResponse,
  type JwtSvidRequest,
  type JwtSvidResponse,
  type ValidateJwtSvidRequest,
  type ValidateJwtSvidResponse,
  type X509BundlesResponse,
  type X509SvidResponse,
} from '../spiffe/workload-api/proto.js';
import { DevCa } from './ca.js';
import type { IssuedSvid } from './ca-keys.js';
import { MAX_SOCKET_PATH, hasWorkloadHeader, removeStaleSocket, safeWrite, status, type AnyStream } from './issuer-util.js';
import type { Logger } from '../lib/log.js';
import { x509SvidResponse, type DevIssuerOptions, type Identity, type RegisterWorkloadOptions, type RegisteredWorkload, type WorkloadEntry } from './issuer-entry.js';

export class DevIssuer {
  readonly ca: DevCa;
  readonly socketDir: string;
  readonly svidTtlSeconds: number;
  private readonly logger: Logger | undefined;
  private readonly workloads = new Map<string, WorkloadEntry>();
  /** 'spiffe://td' -> concatenated DER roots. */
  private readonly federated = new Map<string, Buffer>();
  private caGeneration = 0;
  private stopped = false;

  private constructor(ca: DevCa, socketDir: string, ttl: number, logger?: Logger) {
    this.ca = ca;
    this.socketDir = socketDir;
    this.svidTtlSeconds = ttl;
    this.logger = logger;
  }

  /** DEVELOPMENT ONLY. Creates the CA (unless given) and the socket folder. */
  static async start(opts: DevIssuerOptions): Promise<DevIssuer> {
    const td = parseTrustDomain(opts.trustDomain);
    const ttl = opts.svidTtlSeconds ?? 60;
    if (!Number.isFinite(ttl) || ttl < 1) throw new SidecarError('dev_issuer_invalid', 'svidTtlSeconds must be >= 1');
    if (opts.ca && !opts.ca.trustDomain.equals(td)) {
      throw new SidecarError('dev_issuer_invalid', `the given CA is for ${opts.ca.trustDomain.name}, not ${td.name}`);
    }
    const socketDir = path.resolve(opts.socketDir);
    await mkdir(socketDir, { recursive: true, mode: 0o700 });
    if (opts.ca && opts.chain && opts.ca.chain !== opts.chain) {
      throw new SidecarError('dev_issuer_invalid', `the given CA makes '${opts.ca.chain}' chains, not '${opts.chain}'`);
    }
    const ca = opts.ca ?? (await DevCa.create({ trustDomain: td, ...(opts.chain ? { chain: opts.chain } : {}) }));
    opts.logger?.warn(
      { trustDomain: td.name, socketDir },
      'DEVELOPMENT issuer started: in-memory CA, socket-path attestation; never use in production',
    );
    return new DevIssuer(ca, socketDir, ttl, opts.logger);
  }

  /** Deterministic per SPIFFE ID, so a restarted issuer serves the same path. */
  socketPathFor(spiffeId: string): string {
    const name = createHash('sha256').update(parseSpiffeId(spiffeId).toString()).digest('hex').slice(0, 20);
    return path.join(this.socketDir, `${name}.sock`);
  }

  /** Serves `spiffeId` on its own socket (or re-enables a deregistered one). */
  async registerWorkload(spiffeId: string, opts: RegisterWorkloadOptions = {}): Promise<RegisteredWorkload> {
    this.assertRunning();
    const primary = parseSpiffeId(spiffeId);
    const identities: Identity[] = [primary, ...(opts.extraIdentities ?? []).map((e) => parseSpiffeId(e.spiffeId))].map((id, i) => ({
      id,
      hint: i === 0 ? (opts.hint ?? '') : (opts.extraIdentities![i - 1]!.hint ?? ''),
    }));
    for (const { id } of identities) {
      if (!id.memberOf(this.ca.trustDomain)) {
        throw new SidecarError('dev_issuer_invalid', `${id.toString()} is not in trust domain ${this.ca.trustDomain.name}`);
      }
    }
    const key = primary.toString();
    const existing = this.workloads.get(key);
    if (existing) {
      await existing.ready;
      existing.identities = identities;
      existing.svids = undefined;
      existing.registered = true;
      this.startRotation(existing);
      return { socketPath: existing.socketPath, endpoint: `unix://${existing.socketPath}` };
    }

    const socketPath = this.socketPathFor(key);
    if (Buffer.byteLength(socketPath) > MAX_SOCKET_PATH) {
      throw new SidecarError('dev_issuer_invalid', `socket path too long for a Unix socket: ${socketPath}`);
    }
    const server = new grpc.Server();
    const entry: WorkloadEntry = {
      identities,
      socketPath,
      server,
      ready: Promise.resolve(),
      registered: true,
      svids: undefined,
      issuing: undefined,
      rotationTimer: undefined,
      x509Streams: new Set(),
      x509Pushes: 0,
      bundleStreams: new Set(),
      jwtBundleStreams: new Set(),
    };
    server.addService(workloadApiService().service, this.handlers(entry));
    // Claim the ID before the first await so a concurrent registration waits instead of re-binding.
    this.workloads.set(key, entry);
    entry.ready = (async () => {
      await removeStaleSocket(socketPath);
      await new Promise<void>((resolve, reject) => {
        server.bindAsync(`unix://${socketPath}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve()));
      });
      // The folder is 0700 when we created it; tighten the socket itself regardless of umask.
      await chmod(socketPath, 0o600);
    })();
    try {
      await entry.ready;
    } catch (err) {
      this.workloads.delete(key);
      server.forceShutdown();
      throw err;
    }
    this.startRotation(entry);
    this.logger?.info({ spiffeId: key, socketPath }, 'dev issuer: workload registered');
    return { socketPath, endpoint: `unix://${socketPath}` };
  }

  /** Stops serving identities to this workload: open streams end with PermissionDenied, new calls get it too. */
  deregisterWorkload(spiffeId: string): void {
    const entry = this.workloads.get(parseSpiffeId(spiffeId).toString());
    if (!entry || !entry.registered) return;
    entry.registered = false;
    entry.svids = undefined;
    this.stopRotation(entry);
    for (const set of [entry.x509Streams, entry.bundleStreams, entry.jwtBundleStreams]) {
      for (const s of set) s.emit('error', status(grpc.status.PERMISSION_DENIED, 'workload is no longer registered'));
      set.clear();
    }
    this.logger?.info({ spiffeId }, 'dev issuer: workload deregistered');
  }

  /** Sets (or with undefined removes) the X.509 bundle of a federated trust domain; pushes it out. */
  setFederatedBundle(trustDomain: string, bundle: X509Bundle | undefined): void {
    const td = parseTrustDomain(trustDomain);
    if (td.equals(this.ca.trustDomain)) throw new SidecarError('dev_issuer_invalid', 'cannot federate with the own trust domain');
    if (bundle && !bundle.trustDomain.equals(td)) {
      throw new SidecarError('dev_issuer_invalid', `bundle is for ${bundle.trustDomain.name}, not ${td.name}`);
    }
    if (bundle) this.federated.set(td.idString(), bundle.toDer());
    else this.federated.delete(td.idString());
    for (const entry of this.workloads.values()) {
      if (!entry.registered) continue;
      void this.pushX509(entry, false);
      this.pushBundles(entry);
    }
  }

  /** New CA generation (old root stays in the bundle until `ca.dropOldRoots()`); reissues and pushes. */
  async rotateCa(): Promise<void> {
    this.assertRunning();
    await this.ca.rotate();
    this.caGeneration++;
    await this.pushAll();
  }

  /** Pushes the current bundles (e.g. after `ca.dropOldRoots()`); reissues SVIDs too. */
  async pushAll(): Promise<void> {
    const work: Promise<void>[] = [];
    for (const entry of this.workloads.values()) {
      if (!entry.registered) continue;
      entry.svids = undefined;
      work.push(this.pushX509(entry, true));
      this.pushBundles(entry);
      this.pushJwtBundles(entry);
    }
    await Promise.all(work);
  }

  /** Closes every socket and removes the socket files. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    for (const entry of this.workloads.values()) {
      this.stopRotation(entry);
      entry.registered = false;
      entry.server.forceShutdown();
      for (const set of [entry.x509Streams, entry.bundleStreams, entry.jwtBundleStreams]) set.clear();
      await unlink(entry.socketPath).catch(() => undefined);
    }
    this.workloads.clear();
    this.logger?.info({ socketDir: this.socketDir }, 'dev issuer stopped');
  }

  // ---- internals ----

  private assertRunning(): void {
    if (this.stopped) throw new SidecarError('dev_issuer_stopped', 'dev issuer is stopped');
  }

  private startRotation(entry: WorkloadEntry): void {
    this.stopRotation(entry);
    const halfLifeMs = (this.svidTtlSeconds * 1000) / 2;
    entry.rotationTimer = setInterval(() => {
      // Streams open: push a fresh SVID now. None: just let the next caller get a fresh one.
      entry.svids = undefined;
      if (entry.x509Streams.size > 0) void this.pushX509(entry, true);
    }, halfLifeMs);
  }

  private stopRotation(entry: WorkloadEntry): void {
    if (entry.rotationTimer) clearInterval(entry.rotationTimer);
    entry.rotationTimer = undefined;
  }

  /** The workload's SVIDs, issued fresh when missing, past half-life or from an older CA. */
  private async currentSvids(entry: WorkloadEntry): Promise<IssuedSvid[]> {
    const halfLifeMs = (this.svidTtlSeconds * 1000) / 2;
    const cur = entry.svids;
    if (cur && cur.caGeneration === this.caGeneration && Date.now() - cur.issuedAtMs < halfLifeMs) return cur.issued;
    const generation = this.caGeneration;
    // Share an in-flight issuance, unless the CA rotated since it started.
    if (entry.issuing && entry.issuing.generation === generation) return entry.issuing.promise;
    const promise = Promise.all(
      entry.identities.map((ident) => this.ca.issueX509Svid(ident.id, { ttlSeconds: this.svidTtlSeconds, hint: ident.hint })),
    );
    const issuing = { promise, generation };
    entry.issuing = issuing;
    try {
      const issued = await promise;
      // A slower issuance from an older CA generation must not overwrite a newer one.
      if (generation === this.caGeneration && (!entry.svids || entry.svids.caGeneration <= generation)) {
        entry.svids = { issued, issuedAtMs: Date.now(), caGeneration: generation };
      }
      this.logger?.debug(
        { spiffeId: entry.identities[0]!.id.toString(), serial: issued[0]!.svid.certificates[0]!.serialNumber },
        'dev issuer: X.509-SVID issued',
      );
      return issued;
    } finally {
      if (entry.issuing === issuing) entry.issuing = undefined;
    }
  }

  private async x509Response(entry: WorkloadEntry): Promise<X509SvidResponse> {
    const issued = await this.currentSvids(entry);
    return x509SvidResponse(entry.identities, issued, this.ca.bundleDer(), this.federated);
  }

  private bundlesResponse(): X509BundlesResponse {
    return { crl: [], bundles: { [this.ca.trustDomain.idString()]: this.ca.bundleDer(), ...Object.fromEntries(this.federated) } };
  }

  private jwtBundlesResponse(): JwtBundlesResponse {
    return { bundles: { [this.ca.trustDomain.idString()]: Buffer.from(this.ca.jwksJson()) } };
  }

  /** Sends the full X.509 state to every open FetchX509SVID stream of the workload. */
  private async pushX509(entry: WorkloadEntry, reissue: boolean): Promise<void> {
    if (entry.x509Streams.size === 0) return;
    if (reissue) entry.svids = undefined;
    try {
      const msg = await this.x509Response(entry);
      if (!entry.registered) return;
      entry.x509Pushes++;
      for (const s of entry.x509Streams) safeWrite(s, msg);
    } catch (err) {
      this.logger?.error({ err: errorMessage(err) }, 'dev issuer: cannot issue X.509-SVID');
    }
  }

  private pushBundles(entry: WorkloadEntry): void {
    const msg = this.bundlesResponse();
    for (const s of entry.bundleStreams) safeWrite(s, msg);
  }

  private pushJwtBundles(entry: WorkloadEntry): void {
    const msg = this.jwtBundlesResponse();
    for (const s of entry.jwtBundleStreams) safeWrite(s, msg);
  }

  /** Header and registration checks shared by every RPC; returns the error status to send, if any. */
  private admit(entry: WorkloadEntry, md: grpc.Metadata): Partial<grpc.StatusObject> | undefined {
    if (!hasWorkloadHeader(md)) {
      return status(grpc.status.INVALID_ARGUMENT, `security header missing from request (${WORKLOAD_HEADER_KEY}: true)`);
    }
    if (!entry.registered || this.stopped) return status(grpc.status.PERMISSION_DENIED, 'no identity issued');
    return undefined;
  }

  /** Registers a server stream in `set` until the client cancels it. */
  private track(set: Set<AnyStream>, call: AnyStream): void {
    set.add(call);
    const drop = (): void => {
      set.delete(call);
    };
    call.on('cancelled', drop);
    call.on('close', drop);
    call.on('error', drop);
  }

  private handlers(entry: WorkloadEntry): grpc.UntypedServiceImplementation {
    const unimplemented = (call: grpc.ServerWritableStream<unknown, unknown>): void => {
      call.emit('error', status(grpc.status.UNIMPLEMENTED, 'WIT-SVID profile is not implemented by the dev issuer'));
    };
    return {
      FetchX509SVID: (call: AnyStream) => {
        const denied = this.admit(entry, call.metadata);
        if (denied) return void call.emit('error', denied);
        this.track(entry.x509Streams, call);
        const pushesBefore = entry.x509Pushes;
        this.x509Response(entry).then(
          (msg) => {
            // If a push reached this stream meanwhile, it carried newer state than `msg`.
            if (entry.x509Streams.has(call) && entry.x509Pushes === pushesBefore) safeWrite(call, msg);
          },
          (err: unknown) => {
            this.logger?.error({ err: errorMessage(err) }, 'dev issuer: cannot issue X.509-SVID');
            entry.x509Streams.delete(call);
            call.emit('error', status(grpc.status.UNAVAILABLE, 'cannot issue an X.509-SVID right now'));
          },
        );
      },
      FetchX509Bundles: (call: AnyStream) => {
        const denied = this.admit(entry, call.metadata);
        if (denied) return void call.emit('error', denied);
        this.track(entry.bundleStreams, call);
        safeWrite(call, this.bundlesResponse());
      },
      FetchJWTBundles: (call: AnyStream) => {
        const denied = this.admit(entry, call.metadata);
        if (denied) return void call.emit('error', denied);
        this.track(entry.jwtBundleStreams, call);
        safeWrite(call, this.jwtBundlesResponse());
      },
      FetchJWTSVID: (call: grpc.ServerUnaryCall<JwtSvidRequest, JwtSvidResponse>, cb: grpc.sendUnaryData<JwtSvidResponse>) => {
        const denied = this.admit(entry, call.metadata);
        if (denied) return cb(denied);
        const audience = call.request.audience ?? [];
        if (audience.length === 0 || audience.some((a) => !a)) {
          return cb(status(grpc.status.INVALID_ARGUMENT, 'audience must be specified'));
        }
        let wanted = entry.identities;
        if (call.request.spiffe_id) {
          let id: SpiffeId;
          try {
            id = parseSpiffeId(call.request.spiffe_id);
          } catch (err) {
            return cb(status(grpc.status.INVALID_ARGUMENT, `bad spiffe_id: ${errorMessage(err)}`));
          }
          wanted = entry.identities.filter((i) => i.id.equals(id));
          if (wanted.length === 0) return cb(status(grpc.status.PERMISSION_DENIED, `no identity ${id.toString()} for this workload`));
        }
        Promise.all(wanted.map((i) => this.ca.signJwtSvid(i.id, audience, this.svidTtlSeconds))).then(
          (tokens) => cb(null, { svids: tokens.map((svid, k) => ({ spiffe_id: wanted[k]!.id.toString(), svid, hint: wanted[k]!.hint })) }),
          (err: unknown) => cb(status(grpc.status.INTERNAL, `cannot sign JWT-SVID: ${errorMessage(err)}`)),
        );
      },
      ValidateJWTSVID: (
        call: grpc.ServerUnaryCall<ValidateJwtSvidRequest, ValidateJwtSvidResponse>,
        cb: grpc.sendUnaryData<ValidateJwtSvidResponse>,
      ) => {
        const denied = this.admit(entry, call.metadata);
        if (denied) return cb(denied);
        if (!call.request.audience) return cb(status(grpc.status.INVALID_ARGUMENT, 'audience must be specified'));
        if (!call.request.svid) return cb(status(grpc.status.INVALID_ARGUMENT, 'svid must be specified'));
        this.ca.verifyJwtSvid(call.request.svid, call.request.audience).then(
          (v) => cb(null, { spiffe_id: v.spiffeId.toString(), claims: toStructMessage(v.claims as Record<string, unknown>) }),
          (err: unknown) => cb(status(grpc.status.INVALID_ARGUMENT, errorMessage(err))),
        );
      },
      FetchWITSVID: unimplemented,
      FetchWITBundles: unimplemented,
    };
  }
}
