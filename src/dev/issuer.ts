/**
 * DEVELOPMENT ONLY: an embedded SPIFFE Workload API server backed by the in-memory DevCa.
 *
 * It serves the real Workload API (proto/workload.proto) with @grpc/grpc-js, one Unix socket per
 * workload: in development the socket path IS the attestation (whoever can open the socket gets
 * that identity), which is exactly why this must never run in production.
 *
 * Behaviour follows SPIRE's agent where clients can tell (docs/dev-issuer.md lists what differs):
 * exactly one `workload.spiffe.io: true` header or InvalidArgument, "no identity issued"
 * PermissionDenied, SVIDs in entry ID order, federated bundles per entry, rotation checked on
 * sync ticks at a jittered half-life, cached JWT-SVIDs. WIT RPCs are Unimplemented.
 */
import { createHash } from 'node:crypto';
import { mkdir, chmod, unlink } from 'node:fs/promises';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { SidecarError, errorMessage } from '../errors.js';
import { parseSpiffeId, parseTrustDomain } from '../spiffe/id.js';
import type { X509Bundle } from '../spiffe/bundle/x509-bundle.js';
import { workloadApiService, type JwtBundlesResponse, type X509BundlesResponse, type X509SvidResponse } from '../spiffe/workload-api/proto.js';
import { DevCa } from './ca.js';
import { JWT_SVID_DEFAULT_TTL_SECONDS, type IssuedSvid } from './ca-keys.js';
import { MAX_SOCKET_PATH, NO_IDENTITY_ISSUED, removeStaleSocket, rotationDue, safeWrite, status } from './issuer-util.js';
import { workloadApiHandlers } from './issuer-handlers.js';
import { JwtSvidCache, jwtCacheKey } from './issuer-jwt.js';
import type { Logger } from '../lib/log.js';
import {
  federatedTrustDomains,
  makeIdentity,
  workloadIdentities,
  x509SvidResponse,
  type DevIssuerOptions,
  type Identity,
  type RegisterWorkloadOptions,
  type RegisteredWorkload,
  type WorkloadEntry,
} from './issuer-entry.js';

export class DevIssuer {
  readonly ca: DevCa;
  readonly socketDir: string;
  readonly svidTtlSeconds: number;
  readonly jwtSvidTtlSeconds: number;
  readonly syncIntervalMs: number;
  private readonly rotationJitter: boolean;
  private readonly logger: Logger | undefined;
  private readonly workloads = new Map<string, WorkloadEntry>();
  /** 'spiffe://td' -> concatenated DER roots. */
  private readonly federated = new Map<string, Buffer>();
  private readonly jwtCache = new JwtSvidCache();
  /** Bumped when every SVID must be reissued now (rotateCa, taint, pushAll). */
  private epoch = 0;
  private syncTimer: NodeJS.Timeout | undefined;
  private stopped = false;

  private constructor(ca: DevCa, socketDir: string, opts: Required<Pick<DevIssuerOptions, 'svidTtlSeconds' | 'jwtSvidTtlSeconds' | 'syncIntervalMs' | 'rotationJitter'>>, logger?: Logger) {
    this.ca = ca;
    this.socketDir = socketDir;
    this.svidTtlSeconds = opts.svidTtlSeconds;
    this.jwtSvidTtlSeconds = opts.jwtSvidTtlSeconds;
    this.syncIntervalMs = opts.syncIntervalMs;
    this.rotationJitter = opts.rotationJitter;
    this.logger = logger;
    // SPIRE's agent checks its SVIDs on sync ticks; so does this issuer.
    this.syncTimer = setInterval(() => this.sync(), this.syncIntervalMs);
    this.syncTimer.unref();
  }

  /** DEVELOPMENT ONLY. Creates the CA (unless given) and the socket folder. */
  static async start(opts: DevIssuerOptions): Promise<DevIssuer> {
    const td = parseTrustDomain(opts.trustDomain);
    const timing = {
      svidTtlSeconds: opts.svidTtlSeconds ?? 60,
      jwtSvidTtlSeconds: opts.jwtSvidTtlSeconds ?? JWT_SVID_DEFAULT_TTL_SECONDS,
      syncIntervalMs: opts.syncIntervalMs ?? 1000,
      rotationJitter: opts.rotationJitter ?? true,
    };
    for (const [name, v, min] of [['svidTtlSeconds', timing.svidTtlSeconds, 1], ['jwtSvidTtlSeconds', timing.jwtSvidTtlSeconds, 1], ['syncIntervalMs', timing.syncIntervalMs, 10]] as const) {
      if (!Number.isFinite(v) || v < min) throw new SidecarError('dev_issuer_invalid', `${name} must be >= ${min}`);
    }
    if (opts.ca && !opts.ca.trustDomain.equals(td)) {
      throw new SidecarError('dev_issuer_invalid', `the given CA is for ${opts.ca.trustDomain.name}, not ${td.name}`);
    }
    if (opts.ca && opts.chain && opts.ca.chain !== opts.chain) {
      throw new SidecarError('dev_issuer_invalid', `the given CA makes '${opts.ca.chain}' chains, not '${opts.chain}'`);
    }
    const socketDir = path.resolve(opts.socketDir);
    await mkdir(socketDir, { recursive: true, mode: 0o700 });
    const ca = opts.ca ?? (await DevCa.create({ trustDomain: td, ...(opts.chain ? { chain: opts.chain } : {}) }));
    opts.logger?.warn(
      { trustDomain: td.name, socketDir },
      'DEVELOPMENT issuer started: in-memory CA, socket-path attestation; never use in production',
    );
    return new DevIssuer(ca, socketDir, timing, opts.logger);
  }

  /** Deterministic per SPIFFE ID, so a restarted issuer serves the same path. */
  socketPathFor(spiffeId: string): string {
    const name = createHash('sha256').update(parseSpiffeId(spiffeId).toString()).digest('hex').slice(0, 20);
    return path.join(this.socketDir, `${name}.sock`);
  }

  /** Serves `spiffeId` (and any extra entries) on its own socket, or replaces the entries of a registered one. */
  async registerWorkload(spiffeId: string, opts: RegisterWorkloadOptions = {}): Promise<RegisteredWorkload> {
    this.assertRunning();
    const key = parseSpiffeId(spiffeId).toString();
    const identities = workloadIdentities(key, opts, this.ca.trustDomain, this.workloads);
    for (const d of identities.dropped) this.logger?.warn({ hint: d.hint, entryId: d.entryId }, 'dev issuer: ignoring entry with duplicate hint');
    const existing = this.workloads.get(key);
    if (existing) {
      await existing.ready;
      existing.identities = identities.kept;
      existing.svids = undefined;
      existing.registered = true;
      if (existing.x509Streams.size > 0) void this.pushX509(existing, true);
      this.pushBundles(existing);
      return { socketPath: existing.socketPath, endpoint: `unix://${existing.socketPath}` };
    }

    const socketPath = this.socketPathFor(key);
    if (Buffer.byteLength(socketPath) > MAX_SOCKET_PATH) {
      throw new SidecarError('dev_issuer_invalid', `socket path too long for a Unix socket: ${socketPath}`);
    }
    const server = new grpc.Server();
    const entry: WorkloadEntry = {
      identities: identities.kept,
      socketPath,
      server,
      ready: Promise.resolve(),
      registered: true,
      svids: undefined,
      issuing: undefined,
      x509Streams: new Set(),
      x509Pushes: 0,
      bundleStreams: new Set(),
      jwtBundleStreams: new Set(),
    };
    server.addService(
      workloadApiService().service,
      workloadApiHandlers(
        {
          ca: this.ca,
          logger: this.logger,
          x509Response: (e) => this.x509Response(e),
          bundlesResponse: (e) => this.bundlesResponse(e),
          jwtBundlesResponse: () => this.jwtBundlesResponse(),
          jwtSvidFor: (ident, audience) => this.jwtSvidFor(ident, audience),
        },
        entry,
      ),
    );
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
    this.logger?.info({ spiffeId: key, socketPath, entryIds: identities.kept.map((i) => i.entryId) }, 'dev issuer: workload registered');
    return { socketPath, endpoint: `unix://${socketPath}` };
  }

  /** `spire-server entry update -federatesWith`: which federated bundles the entry's workload receives. */
  setFederatesWith(spiffeId: string, trustDomains: string[]): void {
    const id = parseSpiffeId(spiffeId);
    let found = false;
    for (const entry of this.workloads.values()) {
      const idx = entry.identities.findIndex((i) => i.id.equals(id));
      if (idx < 0) continue;
      const old = entry.identities[idx]!;
      entry.identities[idx] = makeIdentity(id.toString(), { ...old, federatesWith: trustDomains, entryId: old.entryId, hint: old.hint }, this.ca.trustDomain, old.createdAtSec);
      found = true;
      if (!entry.registered) continue;
      void this.pushX509(entry, false);
      this.pushBundles(entry);
    }
    if (!found) throw new SidecarError('dev_issuer_invalid', `no entry for ${id.toString()}`);
  }

  /** Stops serving identities to this workload: open streams end with PermissionDenied, new calls get it too. */
  deregisterWorkload(spiffeId: string): void {
    const entry = this.workloads.get(parseSpiffeId(spiffeId).toString());
    if (!entry || !entry.registered) return;
    entry.registered = false;
    entry.svids = undefined;
    for (const set of [entry.x509Streams, entry.bundleStreams, entry.jwtBundleStreams]) {
      for (const s of set) s.emit('error', status(grpc.status.PERMISSION_DENIED, NO_IDENTITY_ISSUED));
      set.clear();
    }
    this.logger?.info({ spiffeId }, 'dev issuer: workload deregistered');
  }

  /** Sets (or with undefined removes) the X.509 bundle of a federated trust domain; pushes it to the entries that federate with it. */
  setFederatedBundle(trustDomain: string, bundle: X509Bundle | undefined): void {
    const td = parseTrustDomain(trustDomain);
    if (td.equals(this.ca.trustDomain)) throw new SidecarError('dev_issuer_invalid', 'cannot federate with the own trust domain');
    if (bundle && !bundle.trustDomain.equals(td)) {
      throw new SidecarError('dev_issuer_invalid', `bundle is for ${bundle.trustDomain.name}, not ${td.name}`);
    }
    if (bundle) this.federated.set(td.idString(), bundle.toDer());
    else this.federated.delete(td.idString());
    for (const entry of this.workloads.values()) {
      if (!entry.registered || !federatedTrustDomains(entry.identities).includes(td.idString())) continue;
      void this.pushX509(entry, false);
      this.pushBundles(entry);
    }
  }

  // ---- CA rotation, SPIRE's steps (`spire-server localauthority x509 ...`) ----

  /** prepare: a new authority; its root and JWT key are pushed in the bundles before it signs. Returns its ID. */
  async prepareCa(): Promise<string> {
    this.assertRunning();
    const id = await this.ca.prepareAuthority();
    this.pushBundlesToAll();
    return id;
  }

  /** activate: the prepared authority signs from now on; SVIDs move to it at their next rotation, as in SPIRE. */
  activateCa(authorityId?: string): void {
    this.assertRunning();
    this.ca.activateAuthority(authorityId);
  }

  /** taint: SVIDs and cached JWT-SVIDs signed by the old authority are replaced now; its root stays trusted. */
  async taintCa(authorityId: string): Promise<void> {
    this.assertRunning();
    this.ca.taintAuthority(authorityId);
    const kid = this.ca.listAuthorities().find((a) => a.id === authorityId)?.jwtKeyId;
    if (kid) this.jwtCache.dropKeys(new Set([kid]));
    const work: Promise<void>[] = [];
    for (const entry of this.workloads.values()) {
      if (!entry.registered || !entry.svids?.issued.some((s) => s.authorityId === authorityId)) continue;
      entry.svids = undefined;
      work.push(this.pushX509(entry, true));
    }
    await Promise.all(work);
  }

  /** revoke: the tainted authority leaves the X.509 and JWT bundles; pushed to every workload. */
  revokeCa(authorityId: string): void {
    this.assertRunning();
    this.ca.revokeAuthority(authorityId);
    this.pushBundlesToAll();
  }

  /** One step, not SPIRE's: prepare + activate, then every SVID is reissued and pushed (the old root stays until dropped/revoked). */
  async rotateCa(): Promise<void> {
    this.assertRunning();
    await this.ca.rotate();
    await this.pushAll();
  }

  /** Pushes the current bundles (e.g. after `ca.dropOldRoots()`); reissues SVIDs too. */
  async pushAll(): Promise<void> {
    this.epoch++;
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
    if (this.syncTimer) clearInterval(this.syncTimer);
    this.syncTimer = undefined;
    for (const entry of this.workloads.values()) {
      entry.registered = false;
      entry.server.forceShutdown();
      for (const set of [entry.x509Streams, entry.bundleStreams, entry.jwtBundleStreams]) set.clear();
      await unlink(entry.socketPath).catch(() => undefined);
    }
    this.workloads.clear();
    this.jwtCache.clear();
    this.logger?.info({ socketDir: this.socketDir }, 'dev issuer stopped');
  }

  // ---- internals ----

  private assertRunning(): void {
    if (this.stopped) throw new SidecarError('dev_issuer_stopped', 'dev issuer is stopped');
  }

  /** One sync tick: SVIDs past their jittered half-life (or from a tainted authority) are reissued; open streams get them. */
  private sync(): void {
    const now = Date.now();
    for (const entry of this.workloads.values()) {
      if (!entry.registered || !entry.svids || !this.svidsDue(entry.svids.issued, now, true)) continue;
      entry.svids = undefined;
      if (entry.x509Streams.size > 0) void this.pushX509(entry, true);
    }
  }

  /** `checkHalfLife` false: only what must never be served (expired, tainted) counts. */
  private svidsDue(issued: readonly IssuedSvid[], now: number, checkHalfLife: boolean): boolean {
    return issued.some(
      ({ svid, authorityId }) =>
        this.ca.isTainted(authorityId) ||
        (checkHalfLife ? rotationDue(now, svid.notBefore.getTime(), svid.notAfter.getTime(), this.rotationJitter) : now >= svid.notAfter.getTime()),
    );
  }

  /** The workload's SVIDs (with the entries they were issued for): cached between sync ticks, issued fresh when missing, expired, tainted or after a forced reissue. */
  private async currentSvids(entry: WorkloadEntry): Promise<{ identities: Identity[]; issued: IssuedSvid[] }> {
    const cur = entry.svids;
    const identities = entry.identities;
    if (cur && cur.epoch === this.epoch && cur.identities === identities && !this.svidsDue(cur.issued, Date.now(), false)) return cur;
    const epoch = this.epoch;
    // Share an in-flight issuance, unless a forced reissue or a re-registration happened since it started.
    if (entry.issuing && entry.issuing.epoch === epoch && entry.issuing.identities === identities) {
      return { identities, issued: await entry.issuing.promise };
    }
    const promise = Promise.all(
      identities.map((ident) => this.ca.issueX509Svid(ident.id, { ttlSeconds: ident.x509SvidTtlSeconds ?? this.svidTtlSeconds, hint: ident.hint })),
    );
    const issuing = { promise, epoch, identities };
    entry.issuing = issuing;
    try {
      const issued = await promise;
      // A slower issuance from before a forced reissue, or for replaced entries, must not be kept.
      if (epoch === this.epoch && identities === entry.identities) entry.svids = { issued, epoch, identities };
      this.logger?.debug(
        { spiffeId: identities[0]?.id.toString(), serial: issued[0]?.svid.certificates[0]!.serialNumber },
        'dev issuer: X.509-SVID issued',
      );
      return { identities, issued };
    } finally {
      if (entry.issuing === issuing) entry.issuing = undefined;
    }
  }

  /** Federated bundles this workload receives: those its entries federate with (SPIRE's union over matching entries). */
  private federatedFor(entry: WorkloadEntry): Record<string, Buffer> {
    const out: Record<string, Buffer> = {};
    for (const td of federatedTrustDomains(entry.identities)) {
      const der = this.federated.get(td);
      if (der) out[td] = der;
    }
    return out;
  }

  private async x509Response(entry: WorkloadEntry): Promise<X509SvidResponse> {
    const { identities, issued } = await this.currentSvids(entry);
    return x509SvidResponse(identities, issued, this.ca.bundleDer(), this.federatedFor(entry));
  }

  private bundlesResponse(entry: WorkloadEntry): X509BundlesResponse {
    return { crl: [], bundles: { ...this.federatedFor(entry), [this.ca.trustDomain.idString()]: this.ca.bundleDer() } };
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
    const msg = this.bundlesResponse(entry);
    for (const s of entry.bundleStreams) safeWrite(s, msg);
  }

  private pushJwtBundles(entry: WorkloadEntry): void {
    const msg = this.jwtBundlesResponse();
    for (const s of entry.jwtBundleStreams) safeWrite(s, msg);
  }

  /** A bundle changed (prepare, revoke): every stream gets the new state; SVIDs are not reissued. */
  private pushBundlesToAll(): void {
    for (const entry of this.workloads.values()) {
      if (!entry.registered) continue;
      void this.pushX509(entry, false);
      this.pushBundles(entry);
      this.pushJwtBundles(entry);
    }
  }

  /** A JWT-SVID per (SPIFFE ID, audience set), reused until its jittered half-life, as SPIRE's agent cache. */
  private async jwtSvidFor(ident: Identity, audience: string[]): Promise<string> {
    const key = jwtCacheKey(ident.id.toString(), audience);
    const cached = this.jwtCache.get(key, Date.now(), this.rotationJitter);
    if (cached) return cached;
    const token = await this.ca.signJwtSvid(ident.id, audience, ident.jwtSvidTtlSeconds ?? this.jwtSvidTtlSeconds);
    this.jwtCache.set(key, token);
    return token;
  }
}
