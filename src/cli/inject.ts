/**
 * `attest-sidecar inject` (manifests in, injected manifests out) and `attest-sidecar injector`
 * (the mutating admission webhook). Both share src/kube/, so a pod gets the same sidecar either way.
 */
import { parseArgs } from 'node:util';
import { errorMessage } from '../errors.js';
import { createLogger } from '../log.js';
import { parseListen } from '../lib/values.js';
import { describeBytes, readYamlFileText } from '../lib/yaml-limits.js';
import { InjectionRefusal, NAMESPACE_LABEL, NAMESPACE_LABEL_VALUE } from '../kube/annotations.js';
import { MAX_MANIFEST_BYTES, injectManifests } from '../kube/manifests.js';

/** Image of the sidecar when neither --image nor the pod's attest-sidecar.io/image names one. */
export const DEFAULT_IMAGE = 'attest-sidecar:0.1.0';

export const INJECT_USAGE = `  attest-sidecar inject [-f FILE ...] [--image IMG] [--namespace-labels k=v[,k=v]]
                                          print Kubernetes manifests (multi-document YAML from FILEs, or stdin;
                                          -f - is stdin) with the sidecar added to opted-in pods and pod templates
      --image             sidecar image (default ${DEFAULT_IMAGE}; a pod's attest-sidecar.io/image wins)
      --namespace-labels  the labels of the namespace the manifests go to: with
                          ${NAMESPACE_LABEL}=${NAMESPACE_LABEL_VALUE} every pod not annotated
                          attest-sidecar.io/inject: "false" is injected; without it only pods annotated "true"
      Exit 1 naming the file and document when a pod is refused (bad annotation, conflict). Comments of
      injected documents are lost; other documents are printed as read. A summary goes to stderr.
`;

export const INJECTOR_USAGE = `  attest-sidecar injector --listen ADDR --cert FILE --key FILE [--image IMG] [--log-level LEVEL]
                                          mutating admission webhook (HTTPS): POST /mutate (AdmissionReview v1),
                                          GET /healthz; re-reads --cert/--key when they change
      --listen  HOST:PORT, e.g. 0.0.0.0:8443
      --image   sidecar image (default ${DEFAULT_IMAGE}; a pod's attest-sidecar.io/image wins)
      Every pod it is asked about counts as opted in by its namespace (the MutatingWebhookConfiguration's
      namespaceSelector must select ${NAMESPACE_LABEL}=${NAMESPACE_LABEL_VALUE}) unless annotated "false".
`;

export interface CommandOutput {
  exitCode: number;
  stdout: string;
  stderr: string;
}

function parseLabels(specs: readonly string[]): Map<string, string> {
  const labels = new Map<string, string>();
  for (const spec of specs) {
    for (const pair of spec.split(',')) {
      const eq = pair.indexOf('=');
      if (eq <= 0) throw new Error(`--namespace-labels: '${pair}' is not k=v`);
      labels.set(pair.slice(0, eq).trim(), pair.slice(eq + 1).trim());
    }
  }
  return labels;
}

/** Stdin up to the manifest size cap: a larger or endless input is refused, not buffered. */
function readStdin(max: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const stdin = process.stdin;
    stdin.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > max) {
        stdin.destroy();
        reject(new Error(`over the limit of ${describeBytes(max)}`));
        return;
      }
      chunks.push(chunk);
    });
    stdin.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    stdin.on('error', reject);
  });
}

/** A file (size checked on the open handle before reading) or stdin ("-"). */
function readSource(file: string): Promise<string> {
  return file === '-' ? readStdin(MAX_MANIFEST_BYTES) : Promise.resolve(readYamlFileText(file, MAX_MANIFEST_BYTES));
}

export async function injectCommand(args: string[], read: (file: string) => Promise<string> = readSource): Promise<CommandOutput> {
  const { values } = parseArgs({
    args,
    strict: true,
    options: {
      filename: { type: 'string', short: 'f', multiple: true },
      image: { type: 'string' },
      'namespace-labels': { type: 'string', multiple: true },
    },
  });
  let labels: Map<string, string>;
  try {
    labels = parseLabels(values['namespace-labels'] ?? []);
  } catch (err) {
    return { exitCode: 2, stdout: '', stderr: `attest-sidecar inject: ${errorMessage(err)}\n\nUsage:\n${INJECT_USAGE}` };
  }
  const options = { image: values.image ?? DEFAULT_IMAGE, namespaceOptedIn: labels.get(NAMESPACE_LABEL) === NAMESPACE_LABEL_VALUE };
  const parts: string[] = [];
  const summary: string[] = [];
  for (const file of values.filename ?? ['-']) {
    const source = file === '-' ? 'stdin' : file;
    try {
      const result = injectManifests(await read(file), source, options);
      if (result.text !== '') parts.push(result.text);
      for (const d of result.documents) summary.push(`attest-sidecar inject: ${source} document ${d.index} (${d.kind} ${d.name}): ${d.outcome}\n`);
    } catch (err) {
      const message = err instanceof InjectionRefusal ? `${err.message} (${err.reason})` : `${source}: ${errorMessage(err)}`;
      return { exitCode: 1, stdout: '', stderr: `attest-sidecar inject: ${message}\n` };
    }
  }
  return { exitCode: 0, stdout: parts.join('---\n'), stderr: summary.join('') };
}

/** Starts the webhook; resolves with a close function for the signal handler. */
export async function startInjector(args: string[]): Promise<() => Promise<void>> {
  const { values } = parseArgs({
    args,
    strict: true,
    options: {
      listen: { type: 'string' },
      cert: { type: 'string' },
      key: { type: 'string' },
      image: { type: 'string' },
      'log-level': { type: 'string' },
    },
  });
  for (const required of ['listen', 'cert', 'key'] as const) {
    if (!values[required]) throw Object.assign(new Error(`--${required} is required`), { code: 'ERR_PARSE_ARGS_INJECTOR' });
  }
  const at = parseListen(values.listen!);
  const logger = createLogger({ level: values['log-level'] ?? 'info' });
  const { InjectorServer } = await import('../kube/webhook-server.js');
  const server = await InjectorServer.start({ host: at.host, port: at.port, certFile: values.cert!, keyFile: values.key!, image: values.image ?? DEFAULT_IMAGE, logger });
  logger.info({ listen: `${at.host}:${server.port}` }, 'injector: listening');
  return () => server.close();
}
