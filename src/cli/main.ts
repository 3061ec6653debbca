/**
 * attest-sidecar command line. Each command is a small function; `main` only dispatches.
 */
import path from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { ConfigError, SidecarError, errorMessage } from '../errors.js';
import { loadConfigFile } from '../config/load.js';
import { parseDurationMs } from '../lib/values.js';
import { checkPolicyCommand } from '../policy/check.js';
import { createLogger } from '../log.js';
import { Sidecar } from '../sidecar.js';
import { KILL_USAGE } from './kill.js';
import { SPIRE_VERSION, spireBinDir } from '../mesh/spire/binaries.js';

/** Each subcommand's usage: printed by `attest-sidecar CMD --help` (exit 0) and after a usage error (exit 2). */
const RUN_USAGE = `  attest-sidecar run --config FILE        run one sidecar (see docs/admin.md for the state directory)
`;
const DEV_USAGE = `  attest-sidecar dev [--svid-ttl 60s] [--mesh FILE] [--state-dir DIR] [--log-level LEVEL] [--fresh] [--free-ports]
                     [--spire [BIN_DIR]]
                                          DEVELOPMENT ONLY: embedded issuer + reference mesh
      --fresh       delete the dev state first (revocations, budget spend, admin token) and start clean
      --state-dir   default $ATTEST_SIDECAR_DEV_STATE, else ~/.attest-sidecar/dev
      --free-ports  listen on ports the OS picks instead of the mesh file's (the banner prints them)
      --spire       the same mesh on a real SPIRE server and agent instead of the embedded issuer: each
                    sidecar its own \`attest-sidecar run\` process with its own registration entry.
                    BIN_DIR holds spire-server and spire-agent; default $SPIRE_BIN_DIR, else
                    ~/.cache/attest-sidecar/spire-v${SPIRE_VERSION}/bin (build them with scripts/build-spire.sh).
                    \`attest-sidecar kill ... --spire-server-socket unix://PATH\` (the banner prints it)
                    also deletes the agent's entry, so that its SVID is not renewed
`;
const CHECK_POLICY_USAGE = `  attest-sidecar check-policy FILE        validate a policy file (exit 1 on error)
`;
const INSPECT_USAGE = `  attest-sidecar inspect-evidence FILE [--type T]
                                          decode a report/quote/envelope to JSON claims
`;
const VERIFY_USAGE = `  attest-sidecar verify-evidence FILE --type sev-snp [--cert VCEK_OR_VLEK] [--anchors DIR_OR_PEM]
                 [--at ISO_TIME] [--policy FILE --agent NAME]
  attest-sidecar verify-evidence QUOTE --type tpm --signature SIG --pcrs PCRS.json --ak AK [--nonce HEX]
                                          verify offline; exit 0 only when verified
`;
const AUDIT_SUMMARY = `  attest-sidecar audit verify FILE [--expect-head HASH] [--expect-seq N] [--from SEQ:SHA256] [--mixed] [--chain ID] [--json]
                                          check an audit log's hash chain (exit 1 if broken)
`;

const KUBE_SUMMARY = `  attest-sidecar inject [-f FILE ...] [--image IMG] [--namespace-labels k=v]
                                          add the sidecar to Kubernetes manifests (docs/injector.md)
  attest-sidecar injector --listen ADDR --cert FILE --key FILE [--image IMG]
                                          mutating admission webhook: injects pods as they are created
`;

const USAGE = () => `attest-sidecar: SPIFFE identity, mTLS and policy for AI-agent workloads

Usage:
${RUN_USAGE}${DEV_USAGE}${CHECK_POLICY_USAGE}${INSPECT_USAGE}${VERIFY_USAGE}${AUDIT_SUMMARY}${KUBE_SUMMARY}  attest-sidecar help | version
  attest-sidecar COMMAND --help           that command's usage

Kill switch (talks to a running sidecar's admin API):
${KILL_USAGE}
From a checkout or an \`npm install\` of this package the command is \`npx attest-sidecar ...\`
(or bin/attest-sidecar); a global install (npm install -g) puts attest-sidecar on PATH.
`;

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
  // SIGHUP reloads what reads files; the process and its connections stay (also while starting).
  let sidecar: Sidecar | undefined;
  process.on('SIGHUP', () => {
    if (!sidecar) {
      process.stderr.write('attest-sidecar: SIGHUP while starting: ignored (the start reads every file anyway)\n');
      return;
    }
    process.stderr.write('attest-sidecar: SIGHUP, reloading policy, credentials, revocation lists, reference values and identity files\n');
    sidecar.reload().catch((err: unknown) => process.stderr.write(`attest-sidecar: reload failed: ${errorMessage(err)}\n`));
  });
  const started = await Sidecar.start({ config });
  sidecar = started;
  onShutdown(async () => {
    await started.drain();
    await started.close();
  });
  return 'running';
}

/**
 * `--spire` takes an optional value: alone (last, or before another option) it means the
 * default folder of the SPIRE binaries.
 */
function withSpireDefault(args: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--') return [...out, ...args.slice(i)];
    const next = args[i + 1];
    out.push(a === '--spire' && (next === undefined || next.startsWith('-')) ? `--spire=${spireBinDir()}` : a);
  }
  return out;
}

async function cmdDev(args: string[]): Promise<Exit> {
  const { values } = parseArgs({
    args: withSpireDefault(args),
    options: {
      'svid-ttl': { type: 'string' },
      mesh: { type: 'string' },
      'log-level': { type: 'string' },
      'state-dir': { type: 'string' },
      fresh: { type: 'boolean' },
      'free-ports': { type: 'boolean' },
      spire: { type: 'string' },
    },
    strict: true,
  });
  // Loaded on demand: `run` never carries the development issuer's code.
  const [{ DevMesh, loadDevMeshSpec }, { devMeshBanner }] = await Promise.all([import('../mesh/mesh.js'), import('./banner.js')]);
  const spec = loadDevMeshSpec(values.mesh ?? path.join(repoRoot, 'config/dev-mesh.yaml'));
  const ttlSeconds = values['svid-ttl'] ? Math.max(1, Math.round(parseDurationMs(values['svid-ttl']) / 1000)) : undefined;
  const logLevel = values['log-level'] ?? 'info';
  const logger = createLogger({ level: logLevel });
  const common = {
    logger,
    ...(ttlSeconds ? { svidTtlSeconds: ttlSeconds } : {}),
    ...(values['state-dir'] ? { stateDir: path.resolve(values['state-dir']) } : {}),
    ...(values.fresh ? { fresh: true } : {}),
    ...(values['free-ports'] ? { freePorts: true } : {}),
  };
  if (values.spire !== undefined) {
    const { SpireMesh } = await import('../mesh/spire-mesh.js');
    logger.warn('DEVELOPMENT ONLY: a throwaway SPIRE server and agent (temporary datastore, join token); never use this deployment in production');
    const mesh = new SpireMesh(spec, { ...common, binDir: path.resolve(values.spire), logLevel });
    // Before the start: a signal during it must still stop every child started so far.
    onShutdown(() => mesh.close());
    await mesh.start();
    void mesh.died.then(async (why) => {
      process.stderr.write(`attest-sidecar dev: ${why}\nattest-sidecar dev: stopping the mesh\n`);
      await mesh.close().catch(() => undefined);
      process.exit(1);
    });
    process.stdout.write(devMeshBanner(await mesh.view()));
    return 'running';
  }
  logger.warn('DEVELOPMENT ONLY: embedded SPIFFE issuer with an in-memory CA; never use it in production');
  const mesh = await DevMesh.start(spec, common);
  onShutdown(() => mesh.close());
  process.stdout.write(devMeshBanner(mesh.view()));
  return 'running';
}

function cmdCheckPolicy(args: string[]): Exit {
  const { positionals } = parseArgs({ args, options: {}, allowPositionals: true, strict: true });
  const file = positionals[0];
  if (!file || positionals.length > 1) {
    process.stderr.write(`attest-sidecar check-policy: ${file ? 'exactly one FILE' : 'FILE is required'}\n\nUsage:\n${CHECK_POLICY_USAGE}`);
    return 2;
  }
  const { exitCode, output } = checkPolicyCommand(file);
  (exitCode === 0 ? process.stdout : process.stderr).write(output.endsWith('\n') ? output : output + '\n');
  return exitCode;
}

function cmdVersion(args: string[]): Exit {
  parseArgs({ args, options: {}, strict: true });
  process.stdout.write('attest-sidecar 0.1.0\n');
  return 0;
}

function emit(out: { exitCode: number; stdout: string; stderr: string }): Exit {
  process.stdout.write(out.stdout);
  process.stderr.write(out.stderr);
  return out.exitCode;
}

function onShutdown(close: () => Promise<void>): void {
  let closing = false;
  const stop = (signal: string) => {
    if (closing) {
      // Second signal: give up waiting (what was not flushed is lost).
      process.stderr.write(`attest-sidecar: ${signal} again, exiting now\n`);
      process.exit(1);
    }
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

interface Command {
  /** A string, or a loader for commands whose module loads on demand. */
  usage: string | (() => Promise<string>);
  run(args: string[]): Exit | Promise<Exit>;
}

const killCommand = (cmd: 'kill' | 'killall' | 'restore'): Command => ({
  usage: KILL_USAGE,
  run: async (args) => emit(await (await import('./kill.js')).killCommand(cmd, args)),
});

const COMMANDS: Readonly<Record<string, Command>> = Object.assign(Object.create(null) as Record<string, Command>, {
  run: { usage: RUN_USAGE, run: cmdRun },
  dev: { usage: DEV_USAGE, run: cmdDev },
  'check-policy': { usage: CHECK_POLICY_USAGE, run: cmdCheckPolicy },
  'inspect-evidence': { usage: INSPECT_USAGE, run: async (args: string[]) => emit((await import('./evidence.js')).inspectEvidenceCommand(args)) },
  'verify-evidence': { usage: VERIFY_USAGE, run: async (args: string[]) => emit((await import('./evidence.js')).verifyEvidenceCommand(args)) },
  kill: killCommand('kill'),
  killall: killCommand('killall'),
  restore: killCommand('restore'),
  audit: { usage: async () => (await import('./audit.js')).AUDIT_USAGE, run: async (args: string[]) => (await import('./audit.js')).auditCommand(args, process.stdout, process.stderr) },
  inject: { usage: async () => (await import('./inject.js')).INJECT_USAGE, run: async (args: string[]) => emit(await (await import('./inject.js')).injectCommand(args)) },
  injector: {
    usage: async () => (await import('./inject.js')).INJECTOR_USAGE,
    run: async (args: string[]) => {
      onShutdown(await (await import('./inject.js')).startInjector(args));
      return 'running';
    },
  },
  version: { usage: '  attest-sidecar version\n', run: cmdVersion },
});

/** `--help` or `-h` among a command's arguments (not after `--`, where it is an operand). */
function asksForHelp(args: readonly string[]): boolean {
  for (const a of args) {
    if (a === '--') return false;
    if (a === '--help' || a === '-h') return true;
  }
  return false;
}

async function usageOf(command: Command): Promise<string> {
  const text = typeof command.usage === 'string' ? command.usage : await command.usage();
  return text.startsWith('Usage:') ? text : `Usage:\n${text}`;
}

function isParseArgsError(err: unknown): err is Error {
  return err instanceof Error && String((err as { code?: unknown }).code ?? '').startsWith('ERR_PARSE_ARGS');
}

export async function main(argv: string[]): Promise<Exit> {
  const [cmd, ...rest] = argv;
  if (cmd === undefined || cmd === 'help' || cmd === '--help' || cmd === '-h') {
    const topic = cmd === 'help' && rest[0] !== undefined ? COMMANDS[rest[0]] : undefined;
    process.stdout.write(topic ? await usageOf(topic) : USAGE());
    return cmd === undefined ? 2 : 0;
  }
  if (cmd === '--version') return COMMANDS.version!.run([]);
  const command = COMMANDS[cmd];
  if (!command) {
    process.stderr.write(`attest-sidecar: unknown command '${cmd}'\n\n${USAGE()}`);
    return 2;
  }
  if (asksForHelp(rest)) {
    process.stdout.write(await usageOf(command));
    return 0;
  }
  try {
    return await command.run(rest);
  } catch (err) {
    if (!isParseArgsError(err)) throw err;
    process.stderr.write(`attest-sidecar ${cmd}: ${err.message}\n\n${await usageOf(command)}`);
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
    } else {
      process.stderr.write(`attest-sidecar: fatal: ${(err as Error)?.stack ?? String(err)}\n`);
    }
    process.exit(1);
  },
);
