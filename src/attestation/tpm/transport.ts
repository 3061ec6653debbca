/**
 * Command/response transports to a TPM: the kernel resource manager device (/dev/tpmrm0)
 * or a TCP socket speaking raw TPM commands (swtpm `--server type=tcp`). One command is
 * in flight at a time; callers queue behind each other.
 */
import { open, type FileHandle } from 'node:fs/promises';
import net from 'node:net';
import { TpmTransportError } from './rc.js';

/** Response header: tag u16, responseSize u32, responseCode u32. */
const HEADER = 10;
const MAX_RESPONSE = 8192;

export interface TpmTransport {
  /** Sends one marshalled command and returns the complete response bytes. */
  transmit(command: Uint8Array): Promise<Buffer>;
  close(): Promise<void>;
}

/** Serialises transmit() calls: the TPM handles one command at a time. */
abstract class QueuedTransport implements TpmTransport {
  private tail: Promise<unknown> = Promise.resolve();
  protected closed = false;

  transmit(command: Uint8Array): Promise<Buffer> {
    const run = this.tail.then(() => {
      if (this.closed) throw new TpmTransportError('TPM transport is closed');
      return this.exchange(command);
    });
    this.tail = run.catch(() => undefined);
    return run;
  }

  protected abstract exchange(command: Uint8Array): Promise<Buffer>;
  abstract close(): Promise<void>;
}

function checkedSize(header: Buffer): number {
  const size = header.readUInt32BE(2);
  if (size < HEADER || size > MAX_RESPONSE) throw new TpmTransportError(`TPM response has invalid size ${size}`);
  return size;
}

/** /dev/tpmrm0 (or /dev/tpm0): one write per command, one read returns the whole response. */
export class DeviceTpmTransport extends QueuedTransport {
  private constructor(
    private readonly fh: FileHandle,
    readonly path: string,
  ) {
    super();
  }

  static async open(path = '/dev/tpmrm0'): Promise<DeviceTpmTransport> {
    try {
      return new DeviceTpmTransport(await open(path, 'r+'), path);
    } catch (err) {
      throw new TpmTransportError(`cannot open TPM device ${path}: ${(err as Error).message}`, { cause: err });
    }
  }

  protected async exchange(command: Uint8Array): Promise<Buffer> {
    try {
      await this.fh.write(command, 0, command.length);
      const buf = Buffer.alloc(MAX_RESPONSE);
      const { bytesRead } = await this.fh.read(buf, 0, buf.length, null);
      if (bytesRead < HEADER) throw new TpmTransportError(`short TPM response (${bytesRead} bytes) from ${this.path}`);
      const size = checkedSize(buf);
      if (size !== bytesRead) throw new TpmTransportError(`TPM response size ${size} but read ${bytesRead} bytes`);
      return buf.subarray(0, size);
    } catch (err) {
      if (err instanceof TpmTransportError) throw err;
      throw new TpmTransportError(`TPM device ${this.path}: ${(err as Error).message}`, { cause: err });
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.fh.close();
  }
}

/** A TCP TPM (swtpm): raw command bytes out; the response is framed by its header size. */
export class TcpTpmTransport extends QueuedTransport {
  private buffered = Buffer.alloc(0);
  private waiter: { resolve: (b: Buffer) => void; reject: (e: Error) => void } | undefined;
  private failure: Error | undefined;

  private constructor(
    private readonly socket: net.Socket,
    private readonly timeoutMs: number,
  ) {
    super();
    socket.on('data', (chunk: Buffer) => {
      this.buffered = Buffer.concat([this.buffered, chunk]);
      this.deliver();
    });
    const fail = (err: Error) => {
      this.failure ??= err;
      this.waiter?.reject(this.failure);
      this.waiter = undefined;
    };
    socket.on('error', (err) => fail(new TpmTransportError(`TPM socket error: ${err.message}`, { cause: err })));
    socket.on('close', () => fail(new TpmTransportError('TPM socket closed')));
  }

  static connect(host: string, port: number, timeoutMs = 30_000): Promise<TcpTpmTransport> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host, port });
      const onError = (err: Error) => {
        socket.destroy();
        reject(new TpmTransportError(`cannot connect to TPM at ${host}:${port}: ${err.message}`, { cause: err }));
      };
      socket.once('error', onError);
      // A TPM address that never answers the SYN must not hold startup (or a request) forever.
      const onTimeout = () => onError(new Error(`no connection within ${timeoutMs} ms`));
      socket.setTimeout(timeoutMs, onTimeout);
      socket.once('connect', () => {
        socket.off('error', onError);
        socket.setTimeout(0);
        socket.off('timeout', onTimeout);
        socket.setNoDelay(true);
        resolve(new TcpTpmTransport(socket, timeoutMs));
      });
    });
  }

  private deliver(): void {
    if (!this.waiter || this.buffered.length < HEADER) return;
    let size: number;
    try {
      size = checkedSize(this.buffered);
    } catch (err) {
      this.waiter.reject(err as Error);
      this.waiter = undefined;
      this.socket.destroy(); // framing is lost: nothing after this can be trusted
      return;
    }
    if (this.buffered.length < size) return;
    const response = Buffer.from(this.buffered.subarray(0, size));
    this.buffered = this.buffered.subarray(size);
    const w = this.waiter;
    this.waiter = undefined;
    w.resolve(response);
  }

  protected exchange(command: Uint8Array): Promise<Buffer> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise<Buffer>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = undefined;
        reject(new TpmTransportError(`TPM did not answer within ${this.timeoutMs} ms`));
        this.socket.destroy(); // a late answer would be taken for the next command's
      }, this.timeoutMs);
      this.waiter = {
        resolve: (b) => {
          clearTimeout(timer);
          resolve(b);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      };
      this.buffered = Buffer.alloc(0);
      this.socket.write(command);
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await new Promise<void>((resolve) => {
      if (this.socket.destroyed) return resolve();
      this.socket.once('close', () => resolve());
      this.socket.end();
      this.socket.destroy();
    });
  }
}
