/**
 * OpenMetrics 1.0 text exposition of a prom-client registry, for scrapers that ask for it
 * (`Accept: application/openmetrics-text`). prom-client can only switch a whole registry's
 * format, and doing so renames its counters in place, so this formats the registry's JSON
 * snapshot instead: counter families lose `_total`, their samples carry it.
 */
import type client from 'prom-client';

export const OPENMETRICS_CONTENT_TYPE = 'application/openmetrics-text; version=1.0.0; charset=utf-8';

/** True when an Accept header asks for OpenMetrics (Prometheus sends it first when it can parse it). */
export function wantsOpenMetrics(accept: string | undefined): boolean {
  return accept !== undefined && /\bapplication\/openmetrics-text\b/i.test(accept);
}

interface MetricSnapshot {
  name: string;
  help: string;
  type: string;
  values?: { labels?: Record<string, string | number>; value: number; metricName?: string }[];
}

export async function openMetricsText(registry: client.Registry): Promise<string> {
  const families = (await registry.getMetricsAsJSON()) as unknown as MetricSnapshot[];
  const out: string[] = [];
  for (const f of families) {
    const family = f.type === 'counter' ? f.name.replace(/_total$/, '') : f.name;
    out.push(`# HELP ${family} ${escape(f.help)}`, `# TYPE ${family} ${f.type}`);
    for (const v of f.values ?? []) {
      const sample = v.metricName ?? (f.type === 'counter' ? `${family}_total` : f.name);
      const labels = Object.entries(v.labels ?? {}).map(([k, val]) => `${k}="${escape(String(val))}"`);
      out.push(`${sample}${labels.length ? `{${labels.join(',')}}` : ''} ${numberText(v.value)}`);
    }
  }
  out.push('# EOF', '');
  return out.join('\n');
}

function escape(text: string): string {
  return text.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

function numberText(n: number): string {
  if (Number.isNaN(n)) return 'NaN';
  if (n === Infinity) return '+Inf';
  if (n === -Infinity) return '-Inf';
  return String(n);
}
