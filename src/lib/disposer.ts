/**
 * A stack of close functions: each part pushes its own as it opens, and closing runs them in
 * reverse order, so a part closes before the parts it was built on. A start-up that fails half
 * way closes exactly what it had opened, and a normal shutdown runs the same stack.
 *
 * One failing close does not stop the others (a listener that will not close must not keep the
 * budget store or the audit trail open); each failure goes to `onCloseError` and the first is
 * rethrown once all have run.
 */
export type CloseFn = () => unknown;

export class Disposer {
  private readonly stack: CloseFn[] = [];
  private closing: Promise<void> | undefined;

  constructor(private readonly onCloseError: (err: unknown) => void = () => undefined) {}

  /** True once close() has been called; later pushes are closed at once. */
  get closed(): boolean {
    return this.closing !== undefined;
  }

  /** Registers `close` to run when the stack closes (before everything registered earlier). */
  defer(close: CloseFn): void {
    if (this.closing) {
      // Opened while shutting down (a slow start racing close): do not leak it.
      void settle(close).then((failed) => failed && this.onCloseError(failed.err));
      return;
    }
    this.stack.push(close);
  }

  /** Registers `close(part)` and returns the part: `const x = parts.add(await open(), (x) => x.close())`. */
  add<T>(part: T, close: (part: T) => unknown): T {
    this.defer(() => close(part));
    return part;
  }

  /**
   * Runs `open` and returns its result; if it throws, everything registered so far is closed
   * (newest first) and the error of `open` is rethrown (close failures go to `onCloseError`).
   */
  async step<T>(open: () => T | Promise<T>): Promise<T> {
    try {
      return await open();
    } catch (err) {
      await this.close().catch(() => undefined);
      throw err;
    }
  }

  /** Closes everything registered, newest first, each awaited. Idempotent. */
  close(): Promise<void> {
    this.closing ??= this.unwind();
    return this.closing;
  }

  private async unwind(): Promise<void> {
    let first: { err: unknown } | undefined;
    while (this.stack.length > 0) {
      const close = this.stack.pop()!;
      const failed = await settle(close);
      if (!failed) continue;
      this.onCloseError(failed.err);
      first ??= failed;
    }
    if (first) throw first.err;
  }
}

/** Runs one close function; returns its error boxed (undefined when it succeeded). */
async function settle(close: CloseFn): Promise<{ err: unknown } | undefined> {
  try {
    await close();
    return undefined;
  } catch (err) {
    return { err };
  }
}
