/**
 * An RFC 6902 JSON Patch from one JSON value to another, for the admission webhook's answer.
 * Objects are compared member by member; arrays of the same length element by element; an array
 * whose length changed is replaced whole (the injector's lists are small, and a whole-list
 * replacement cannot be misapplied the way index-shifted inserts can).
 */

export type PatchOperation =
  | { op: 'add'; path: string; value: unknown }
  | { op: 'replace'; path: string; value: unknown }
  | { op: 'remove'; path: string };

/** RFC 6901: '~' -> '~0', '/' -> '~1'. */
export function pointerSegment(key: string): string {
  return key.replace(/~/g, '~0').replace(/\//g, '~1');
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function same(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((x, i) => same(x, b[i]));
  if (isObject(a) && isObject(b)) {
    const ka = Object.keys(a);
    return ka.length === Object.keys(b).length && ka.every((k) => Object.hasOwn(b, k) && same(a[k], b[k]));
  }
  return false;
}

function diffAt(from: unknown, to: unknown, path: string, out: PatchOperation[]): void {
  if (same(from, to)) return;
  if (isObject(from) && isObject(to)) {
    for (const k of Object.keys(from)) if (!Object.hasOwn(to, k)) out.push({ op: 'remove', path: `${path}/${pointerSegment(k)}` });
    for (const [k, v] of Object.entries(to)) {
      const at = `${path}/${pointerSegment(k)}`;
      if (Object.hasOwn(from, k)) diffAt(from[k], v, at, out);
      else out.push({ op: 'add', path: at, value: v });
    }
    return;
  }
  if (Array.isArray(from) && Array.isArray(to) && from.length === to.length) {
    to.forEach((v, i) => diffAt(from[i], v, `${path}/${i}`, out));
    return;
  }
  out.push({ op: 'replace', path, value: to });
}

/** The operations that turn `from` into `to` (both plain JSON values; `from` a non-root-replaced object). */
export function jsonPatch(from: unknown, to: unknown): PatchOperation[] {
  const out: PatchOperation[] = [];
  diffAt(from, to, '', out);
  return out;
}
