/**
 * Readiness checks, registered by the parts that know them (identity, policy, audit, the
 * listeners) and read by /readyz: the sidecar is ready when every check present is ok. A check
 * may return undefined to be absent (a condition that only shows up when something is wrong).
 */
export interface ReadinessCheck {
  ok: boolean;
  detail?: string;
}

export type ReadinessProbe = () => ReadinessCheck | undefined;

export class Readiness {
  private readonly probes = new Map<string, ReadinessProbe>();

  /** Adds a named check; names are unique (a second registration is a wiring mistake). */
  register(name: string, probe: ReadinessProbe): void {
    if (this.probes.has(name)) throw new Error(`readiness check '${name}' registered twice`);
    this.probes.set(name, probe);
  }

  registerAll(checks: Iterable<[string, ReadinessProbe]>): void {
    for (const [name, probe] of checks) this.register(name, probe);
  }

  /** The checks present now, in registration order. */
  report(): Record<string, ReadinessCheck> {
    const checks: Record<string, ReadinessCheck> = {};
    for (const [name, probe] of this.probes) {
      const check = probe();
      if (check) checks[name] = check;
    }
    return checks;
  }
}

/** `{ok: true}` while the listener is bound, else `{ok: false, detail: 'not listening'}`. */
export function listeningCheck(listener: { readonly listening: boolean }): ReadinessProbe {
  return () => (listener.listening ? { ok: true } : { ok: false, detail: 'not listening' });
}
