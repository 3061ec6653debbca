/**
 * Fair use of the inbound listener's app connections: every peer identity may have at most
 * `maxInFlightPerPeer` requests at the app at once, and all peers together at most the pool's
 * connections. A request over its identity's share waits in that identity's queue (bounded in
 * length and in time) and is refused with 429 beyond; when a connection frees, the waiting
 * identities take turns. One identity (however many connections it opens) can therefore never
 * hold the connections every other identity needs.
 *
 * Per request on the fast path: two counter compares and increments; the per-identity state
 * is found once per client connection.
 */
import type { EventEmitter } from 'node:events';
import { DEFAULT_BODY_PROGRESS_TIMEOUT_MS } from './request-body.js';
import { REASONS, refuse, type Refusal } from '../reasons.js';

export interface PeerAdmissionLimits {
  /** App requests one peer identity may have in flight at once. */
  maxInFlightPerPeer: number;
  /** Requests of one identity waiting for a turn; more are refused at once. */
  maxQueuedPerPeer: number;
  /** Longest a request waits for its turn before it is refused. */
  maxQueueWaitMs: number;
}

export const DEFAULT_PEER_ADMISSION: PeerAdmissionLimits = {
  maxInFlightPerPeer: 64,
  maxQueuedPerPeer: 64,
  maxQueueWaitMs: 10_000,
};

/** The data plane's per-request limits (inbound: all; outbound: bodyProgressTimeoutMs). */
export interface RequestLimits extends PeerAdmissionLimits {
  /** A request body that brings no byte for this long is abandoned with 408 (see forward.ts). */
  bodyProgressTimeoutMs: number;
}

export const DEFAULT_REQUEST_LIMITS: RequestLimits = { ...DEFAULT_PEER_ADMISSION, bodyProgressTimeoutMs: DEFAULT_BODY_PROGRESS_TIMEOUT_MS };

/** The refusal of a request over its identity's share: 429, retried after a second. */
export const PEER_BUSY: Refusal = refuse('peer_concurrency_exceeded', REASONS.peer_concurrency_exceeded.message, { 'retry-after': '1' });

/** One identity's share; shared by all its client connections. */
export interface PeerSlots {
  readonly id: string;
  inFlight: number;
  /** Open client connections holding this entry (it is dropped when none is left and it is idle). */
  connections: number;
  readonly queue: Waiter[];
}

interface Waiter {
  readonly slots: PeerSlots;
  readonly grant: () => void;
  readonly refuse: () => void;
  timer: NodeJS.Timeout | undefined;
  done: boolean;
}

export class PeerAdmission {
  private readonly peers = new Map<string, PeerSlots>();
  /** Identities with waiting requests, served in turn from `turn`. */
  private readonly waiting: PeerSlots[] = [];
  private turn = 0;
  private total = 0;

  constructor(
    /** Requests at the app at once over all identities (the app pool's connections). */
    private readonly capacity: number,
    private readonly limits: PeerAdmissionLimits,
  ) {}

  /** The shared entry of `id`, for one more client connection (give it back with detach). */
  attach(id: string): PeerSlots {
    let slots = this.peers.get(id);
    if (slots === undefined) this.peers.set(id, (slots = { id, inFlight: 0, connections: 0, queue: [] }));
    slots.connections++;
    return slots;
  }

  detach(slots: PeerSlots): void {
    slots.connections--;
    this.dropIfIdle(slots);
  }

  /** Takes a turn now when one is free (the caller must release it); false when it must wait. */
  tryAcquire(slots: PeerSlots): boolean {
    if (slots.inFlight >= this.limits.maxInFlightPerPeer || this.total >= this.capacity || slots.queue.length > 0) return false;
    slots.inFlight++;
    this.total++;
    return true;
  }

  /**
   * Queues a request that tryAcquire turned down: `grant` runs (later, in its own microtask)
   * once it holds a turn, which it must release; `refuse` runs when the queue is full (at once)
   * or the wait ran out. A request whose response (`res`) closes while waiting leaves the queue
   * silently.
   */
  wait(slots: PeerSlots, res: Pick<EventEmitter, 'once'>, grant: () => void, refuse: () => void): void {
    if (slots.queue.length >= this.limits.maxQueuedPerPeer) {
      refuse();
      return;
    }
    const waiter: Waiter = { slots, grant, refuse, timer: undefined, done: false };
    waiter.timer = setTimeout(() => this.leave(waiter, true), this.limits.maxQueueWaitMs);
    waiter.timer.unref();
    res.once('close', () => this.leave(waiter, false));
    if (slots.queue.push(waiter) === 1) this.waiting.push(slots);
    // Nothing may be in flight to release a turn later (e.g. only the queue rule held it back).
    this.grantWaiting();
  }

  release(slots: PeerSlots): void {
    slots.inFlight--;
    this.total--;
    if (this.waiting.length > 0) this.grantWaiting();
    this.dropIfIdle(slots);
  }

  private grantWaiting(): void {
    const max = this.limits.maxInFlightPerPeer;
    while (this.total < this.capacity && this.waiting.length > 0) {
      let granted = false;
      for (let n = 0; n < this.waiting.length; n++) {
        const i = (this.turn + n) % this.waiting.length;
        const slots = this.waiting[i]!;
        if (slots.inFlight >= max) continue;
        const waiter = slots.queue.shift()!;
        if (slots.queue.length === 0) this.waiting.splice(i, 1);
        this.turn = slots.queue.length === 0 ? i : i + 1;
        waiter.done = true;
        clearTimeout(waiter.timer);
        slots.inFlight++;
        this.total++;
        queueMicrotask(waiter.grant);
        granted = true;
        break;
      }
      if (!granted) return;
    }
  }

  private leave(waiter: Waiter, timedOut: boolean): void {
    if (waiter.done) return;
    waiter.done = true;
    clearTimeout(waiter.timer);
    const slots = waiter.slots;
    const at = slots.queue.indexOf(waiter);
    if (at !== -1) slots.queue.splice(at, 1);
    if (slots.queue.length === 0) {
      const w = this.waiting.indexOf(slots);
      if (w !== -1) this.waiting.splice(w, 1);
    }
    if (timedOut) waiter.refuse();
    this.dropIfIdle(slots);
  }

  private dropIfIdle(slots: PeerSlots): void {
    if (slots.connections <= 0 && slots.inFlight === 0 && slots.queue.length === 0 && this.peers.get(slots.id) === slots) this.peers.delete(slots.id);
  }
}
