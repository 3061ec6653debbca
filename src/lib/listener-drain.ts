/**
 * Graceful drain of one HTTP(S) listener (SIGTERM): stop accepting, close connections with no
 * request in progress, let requests in progress finish (their answers say `Connection: close`
 * when their headers are still to be sent; the connection is closed after its last answer), and
 * cut whatever is left when the caller's deadline passes.
 *
 * guardListener creates one per server and feeds it every admitted request; the part that owns
 * the server calls `begin` and, at the deadline, `cut`.
 */
import type http from 'node:http';
import type { ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

const drains = new WeakMap<http.Server, ListenerDrain>();

/** The drain of a server guardListener set up; undefined for other servers. */
export function listenerDrain(server: http.Server | undefined): ListenerDrain | undefined {
  return server ? drains.get(server) : undefined;
}

export class ListenerDrain {
  /** Connections that carry HTTP (for TLS: the established TLS sockets). */
  private readonly sockets = new Set<Socket>();
  /** TLS listeners: accepted connections whose handshake is not done. */
  private readonly handshaking = new Set<Socket>();
  private readonly responses = new Set<ServerResponse>();
  private draining = false;
  private done: Promise<void> | undefined;
  private settle: (() => void) | undefined;

  /** `inFlight`: requests in progress on a connection (counted by guardListener). */
  constructor(
    private readonly server: http.Server,
    tls: boolean,
    private readonly inFlight: (socket: Socket) => number,
  ) {
    drains.set(server, this);
    if (tls) {
      server.on('connection', (raw: Socket) => this.hold(this.handshaking, raw));
      server.on('secureConnection', (socket: Socket & { _parent?: Socket }) => {
        if (socket._parent) this.handshaking.delete(socket._parent);
        this.hold(this.sockets, socket);
      });
    } else {
      server.on('connection', (socket: Socket) => this.hold(this.sockets, socket));
    }
  }

  /** Called for every request the listener admits, before its handlers run. */
  admit(res: ServerResponse): void {
    this.responses.add(res);
    if (this.draining) closeAfter(res);
  }

  /** Called when an admitted request's response closes; `left`: requests still in progress on `socket`. */
  release(res: ServerResponse, socket: Socket, left: number): void {
    this.responses.delete(res);
    // The answer is written: the connection closes once it is flushed.
    if (this.draining && left === 0) socket.destroySoon();
  }

  /**
   * Stops accepting and closes connections with no request in progress. Resolves once every
   * connection that carried a request has closed (its requests answered).
   */
  begin(): Promise<void> {
    if (this.done) return this.done;
    this.draining = true;
    this.done = new Promise<void>((resolve) => (this.settle = resolve));
    // Errors only when it was not listening: nothing to stop then.
    this.server.close(() => undefined);
    for (const socket of this.handshaking) socket.destroy();
    // No request in progress: a FIN, not a reset, so that a client does not take it for a failed request.
    for (const socket of this.sockets) if (this.inFlight(socket) === 0) socket.destroySoon();
    for (const res of this.responses) closeAfter(res);
    this.check();
    return this.done;
  }

  /** Destroys every connection still open; returns how many requests were still in progress. */
  cut(): number {
    const cut = this.responses.size;
    for (const socket of [...this.sockets, ...this.handshaking]) socket.destroy();
    return cut;
  }

  private hold(set: Set<Socket>, socket: Socket): void {
    // Accepted just before the listener closed: a new connection all the same.
    if (this.draining) {
      socket.destroy();
      return;
    }
    set.add(socket);
    socket.once('close', () => {
      set.delete(socket);
      this.check();
    });
  }

  private check(): void {
    if (this.draining && this.sockets.size === 0) this.settle?.();
  }
}

/** The answer of `res` closes its connection: said in its headers when they are still to be sent. */
function closeAfter(res: ServerResponse): void {
  if (!res.headersSent) res.shouldKeepAlive = false;
}
