/** Small readers the kinds' config sections share (paths lists, bounded integers). */
import { readPath } from '../lib/fields.js';
import type { MapView, YamlReader } from '../lib/yaml-reader.js';

/** A list of paths under `key`, resolved against the config file's directory; [] when absent. */
export function pathList(reader: YamlReader, m: MapView, key: string, baseDir: string): string[] {
  const f = m.get(key);
  return f ? (reader.list(f) ?? []).map((x) => readPath(reader, x, baseDir)).filter((p): p is string => p !== undefined) : [];
}

export function intIn(reader: YamlReader, m: MapView, key: string, min: number, max: number): number | undefined {
  const f = m.get(key);
  return f ? reader.int(f, { min, max }) : undefined;
}
