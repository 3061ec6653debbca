/**
 * What the inbound filters share: the per-connection state (kept on the TLS socket) and the
 * per-request context, one object per request, which the filters fill in as they pass it on.
 *
 * The context also serves as the forwarding options of the request (ForwardOptions' fields), so
 * that forwarding to the app allocates no options object of its own.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TLSSocket } from 'node:tls';
import type { ActionMappingConfig } from '../../policy/actions.js';
import type { CompiledPolicy, Decision } from '../../policy/types.js';
import type { AttestationRequirements } from '../../attestation/requirements.js';
import type { PolicyBudget } from '../../budget/period.js';
import type { Refusal } from '../../reasons.js';
import type { VerifiedPeer } from '../../spiffe/tls.js';
import type { AttestationSession } from '../attestation-gate.js';
import type { ForwardOptions } from '../forward.js';
import type { PeerSlots } from '../peer-admission.js';
import type { InboundScreen } from '../request-headers.js';

/** What the listener keeps per verified connection (one property on the socket: sockets are big). */
export interface Connection {
  readonly peer: VerifiedPeer;
  /** The peer as policy decisions see it (built once). */
  readonly identity: { spiffeId: string; extensions: VerifiedPeer['extensions'] };
  attestation?: AttestationSession;
  /** Set when the bundles changed and the peer's chain no longer verifies: refused from then on. */
  trustWithdrawn: boolean;
  /** The identity and forwarding pairs the app gets first (appLeadHeaders), and our SPIFFE ID they were built with. */
  appHeaders?: string[];
  appHeadersOwnId?: string;
  /** The last request target found canonical, and its path: a keep-alive peer usually repeats its target. */
  canonicalUrl?: string;
  canonicalPath?: string;
  /**
   * The last request target's route, reused while method, target and policy are the same
   * objects/strings. Decisions are pure functions of exactly these and the connection's peer,
   * so a hit is the same answer.
   */
  lastMethod?: string;
  lastUrl?: string;
  lastPolicy?: CompiledPolicy;
  lastRoute?: Route;
  /** The peer identity's share of the app connections (taken on its first forwarded request). */
  slots?: PeerSlots;
}

/** A request target that passed canonicalisation, as the policy decided it (cached per connection). */
export interface Route {
  readonly mapping: ActionMappingConfig | undefined;
  readonly decision: Decision;
  /** The answer when the request may not proceed: the denial, or an obligation nothing here can meet. */
  readonly refusal: Refusal | undefined;
  /** Obligations of an allowed request (from decision.obligations). */
  readonly attestation: AttestationRequirements | undefined;
  readonly budget: PolicyBudget | undefined;
}

/** A verified connection's state, every field present from the start (one shape for the filters). */
export function newConnection(peer: VerifiedPeer): Connection {
  return {
    peer,
    identity: { spiffeId: peer.id, extensions: peer.extensions },
    attestation: undefined,
    trustWithdrawn: false,
    appHeaders: undefined,
    appHeadersOwnId: undefined,
    canonicalUrl: undefined,
    canonicalPath: undefined,
    lastMethod: undefined,
    lastUrl: undefined,
    lastPolicy: undefined,
    lastRoute: undefined,
    slots: undefined,
  };
}

export const kConnection = Symbol('attest-sidecar.connection');
export type PeeredSocket = TLSSocket & { [kConnection]?: Connection };

export class InboundContext implements ForwardOptions {
  // Fields are `declare`d and set once in the constructor, in one order: one shape, one store each.
  declare readonly req: IncomingMessage;
  declare readonly res: ServerResponse;
  /** `performance.now()` on arrival (latency in the audit record and metrics). */
  declare readonly start: number;
  declare readonly socket: PeeredSocket;
  /** Undefined on a connection whose peer was not verified (the first filter refuses it). */
  declare readonly conn: Connection | undefined;
  declare readonly url: string;
  declare readonly method: string;
  /** The header screen's result, taken on arrival so that every record carries the request id. */
  declare readonly screen: InboundScreen;
  declare readonly requestId: string;
  /** The canonical path (canonical-path filter). */
  declare canonicalPath: string;
  /** The policy the route was decided under (policy filter). */
  declare policy: CompiledPolicy | undefined;
  declare route: Route | undefined;
  /** The mapped action, for the records (policy filter). */
  declare action: string | undefined;
  /** The identity's share of the app connections, and whether this request holds a turn of it. */
  declare slots: PeerSlots | undefined;
  declare holdsTurn: boolean;

  // ForwardOptions: the request as the app gets it.
  declare readonly path: string;
  declare headers: string[];
  declare readonly headersTimeoutMs: number;
  declare readonly bodyTimeoutMs: number;
  declare readonly bodyProgressTimeoutMs: number;
  declare readonly servername: string;

  constructor(req: IncomingMessage, res: ServerResponse, socket: PeeredSocket, screen: InboundScreen, forward: InboundForwarding) {
    this.req = req;
    this.res = res;
    this.start = performance.now();
    this.socket = socket;
    this.conn = socket[kConnection];
    this.url = req.url ?? '';
    this.method = req.method ?? 'GET';
    this.screen = screen;
    this.requestId = screen.requestId;
    this.canonicalPath = '';
    this.policy = undefined;
    this.route = undefined;
    this.action = undefined;
    this.slots = undefined;
    this.holdsTurn = false;
    this.path = this.url;
    this.headers = screen.ok ? screen.headers : NO_HEADERS;
    this.headersTimeoutMs = forward.requestTimeoutMs;
    this.bodyTimeoutMs = forward.requestTimeoutMs;
    this.bodyProgressTimeoutMs = forward.bodyProgressTimeoutMs;
    this.servername = forward.servername;
  }

  /** The verified peer (every filter after peer-verified may rely on it). */
  get peer(): VerifiedPeer {
    return this.conn!.peer;
  }
}

/** The listener-wide forwarding settings a context copies. */
export interface InboundForwarding {
  readonly requestTimeoutMs: number;
  readonly bodyProgressTimeoutMs: number;
  /**
   * undici's TLS server name for app requests. The app is plain HTTP (config), where undici
   * never uses it; given explicitly, undici skips deriving one from each request's Host.
   */
  readonly servername: string;
}

const NO_HEADERS: string[] = [];
