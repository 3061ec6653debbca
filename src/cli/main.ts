/**
 * attest-sidecar command line. Each command is a small function; `main` only dispatches.
 */
import path from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { ConfigError, SidecarError, errorMessage } from '../errors.js';
import { loadConfigFile } from '../config/load.js';
import { parseDurationMs } from '../config/values.js';
import { checkPolicyCommand } from '../policy/check.js';
import { createLogger } from '../log.js';
import { Sidecar } from '../sidecar.js';
import { KILL_USAGE } from './kill.js';

const USAGE = () => `attest-sidecar: SPIFFE identity, mTLS and policy for AI-agent workloads

Usage:
  attest-sidecar run --config FILE        run one sidecar
  attest-sidecar dev [--svid-ttl 60s] [--mesh FILE] [--state-dir DIR]
                                          DEVELOPMENT ONLY: embedded issuer + reference mesh
  attest-sidecar check-policy FILE        validate a policy file (exit 1 on error)
  attest-sidecar inspect-evidence FILE [--type T]
                                          decode a report/quote/envelope to JSON claims
  attest-sidecar verify-evidence FILE --type sev-snp [--cert VCEK_OR_VLEK] [--anchors DIR_OR_PEM]
                 [--at ISO_TIME] [--policy FILE --agent NAME]
  attest-sidecar verify-evidence QUOTE --type tpm --signature SIG --pcrs PCRS.json --ak AK [--nonce HEX]
                                          verify offline; exit 0 only when verified
  attest-sidecar audit verify FILE [--expect-head HASH] [--expect-seq N] [--json]
                                          check an audit log's hash chain (exit 1 if broken)
  attest-sidecar help | version

Kill switch (talks to a running sidecar's admin API):
${KILL_USAGE}`;

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

type Exit = number | 'running';

async function cmdRun(args: string[]): Promise<Exit> {
  const { values } = parseArgs({ args, options: { config: { type: 'string', short: 'c' } }, strict: true });
  if (!values.config) {
    process.stderr.write('attest-sidecar run: --config FILE is required\n');
    return 2;
  }
  const config = loadConfigFile(values.config, process.env, {
    onWarning: (w) => process.stderr.write(`attest-sidecar: warning: ${w.file}:${w.line}:${w.column}: ${w.key ? `${w.key}: ` : ''}${w.message}\n`),
  });
  const sidecar = await Sidecar.start({ config });
  onShutdown(() => sidecar.close());
  return 'running';
}

async function cmdDev(args: string[]): Promise<Exit> {
  const { values } = parseArgs({
    args,
    options: { 'svid-ttl': { type: 'string' }, mesh: { type: 'string' }, 'log-level': { type: 'string' }, 'state-dir': { type: 'string' } },
    strict: true,
  });
  // Loaded on demand: `run` never carries the development issuer's code.
  const [{ DevMesh, loadDevMeshSpec }, { devMeshBanner }] = await Promise.all([import('../dev/mesh.js'), import('./banner.js')]);
  const spec = loadDevMeshSpec(values.mesh ?? path.join(repoRoot, 'config/dev-mesh.yaml'));
  const ttlSeconds = values['svid-ttl'] ? Math.max(1, Math.round(parseDurationMs(values['svid-ttl']) / 1000)) : undefined;
  const logger = createLogger({ level: values['log-level'] ?? 'info' });
  logger.warn('DEVELOPMENT ONLY: embedded SPIFFE issuer with an in-memory CA; never use it in production');
  const mesh = await DevMesh.start(spec, {
    logger,
    ...(ttlSeconds ? { svidTtlSeconds: ttlSeconds } : {}),
    ...(values['state-dir'] ? { stateDir: path.resolve(values['state-dir']) } : {}),
  });
  onShutdown(() => mesh.close());
  process.stdout.write(devMeshBanner(mesh));
  return 'running';
}

function cmdCheckPolicy(args: string[]): Exit {
  const file = args[0];
  if (!file) {
    process.stderr.write('attest-sidecar check-policy: FILE is required\n');
    return 2;
  }
  const { exitCode, output } = checkPolicyCommand(file);
  (exitCode === 0 ? process.stdout : process.stderr).write(output.endsWith('\n') ? output : output + '\n');
  return exitCode;
}

function emit(out: { exitCode: number; stdout: string; stderr: string }): Exit {
  process.stdout.write(out.stdout);
  process.stderr.write(out.stderr);
  return out.exitCode;
}

function onShutdown(close: () => Promise<void>): void {
  let closing = false;
  const stop = (signal: string) => {
    if (closing) process.exit(1); // second signal: give up waiting
    closing = true;
    process.stderr.write(`attest-sidecar: ${signal}, shutting down\n`);
    close().then(
      () => process.exit(0),
      (err: unknown) => {
        process.stderr.write(`attest-sidecar: shutdown failed: ${errorMessage(err)}\n`);
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
}

export async function main(argv: string[]): Promise<Exit> {
  const [cmd, ...rest] = argv;
  switch (cmd) {
    case 'run':
      return cmdRun(rest);
    case 'dev':
      return cmdDev(rest);
    case 'check-policy':
      return cmdCheckPolicy(rest);
    case 'inspect-evidence':
      return emit((await import('./evidence.js')).inspectEvidenceCommand(rest));
    case 'verify-evidence':
      return emit((await import('./evidence.js')).verifyEvidenceCommand(rest));
    case 'kill':
    case 'killall':
    case 'restore':
      return emit(await (await import('./kill.js')).killCommand(cmd, rest));
    case 'audit':
      return (await import('./audit.js')).auditCommand(rest, process.stdout, process.stderr);
    case 'version':
    case '--version':
      process.stdout.write('attest-sidecar 0.1.0\n');
      return 0;
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(USAGE());
      return cmd === undefined ? 2 : 0;
    default:
      process.stderr.write(`attest-sidecar: unknown command '${cmd}'\n\n${USAGE()}`);
      return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code !== 'running') process.exitCode = code;
  },
  (err: unknown) => {
    if (err instanceof ConfigError || err instanceof SidecarError) {
      process.stderr.write(`attest-sidecar: ${err.message}\n`);
    } else if (err instanceof TypeError && (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`attest-sidecar: ${err.message}\n\n${USAGE()}`);
      process.exit(2);
    } else {
      process.stderr.write(`attest-sidecar: fatal: ${(err as Error)?.stack ?? String(err)}\n`);
    }
    process.exit(1);
  },
);
