/**
 * Every listener of a running sidecar process (outbound, inbound over TLS and raw, admin, admin
 * mTLS over TLS and raw) gets CONNECT, an Upgrade, the HTTP/2 preface and random bytes, each
 * closed by the client with a TCP RST before, during and after the sidecar's answer. The
 * processes must survive all of it (an unhandled socket 'error' event would end them) and
 * still serve an allowed request.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import tls, { type ConnectionOptions } from 'node:tls';
import t, { type Test } from 'tap';
import { viaProxy } from '../helpers/mesh.js';
import { skipFor, toolsMissing } from '../helpers/needs.js';
import { SidecarProcesses, agentId } from '../helpers/sidecar-process.js';

const procs = await SidecarProcesses.start();
t.teardown(() => procs.close());

const PAYLOADS: Record<string, () => Buffer> = {
  connect: () => Buffer.from('CONNECT control-plane:443 HTTP/1.1\r\nHost: control-plane:443\r\n\r\n'),
  upgrade: () =>
    Buffer.from(
      'GET /things/1 HTTP/1.1\r\nHost: things\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n',
    ),
  h2_preface: () => Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'),
  garbage: () => Buffer.concat([randomBytes(300), Buffer.from('\r\n\r\n'), randomBytes(300)]),
};
type When = 'before' | 'during' | 'after';
const WHENS: When[] = ['before', 'during', 'after'];

/**
 * Sends `payload` on a fresh connection and resets it (SO_LINGER 0 close) at `when`: right after
 * writing, on the first byte of the answer, or after the answer (the server ended, or 50 ms later).
 * `tlsOptions`: speak TLS over the TCP socket first. Resolves when the socket is gone.
 */
function sendAndReset(port: number, payload: Buffer, when: When, tlsOptions?: ConnectionOptions): Promise<string> {
  return new Promise((resolve) => {
    const raw = net.connect(port, '127.0.0.1');
    let got = '';
    const done = () => resolve(got);
    const reset = () => {
      if (!raw.destroyed) raw.resetAndDestroy();
    };
    raw.on('error', () => undefined);
    raw.on('close', done);
    // Bound per exchange: a server that never answers is reset anyway (and the test then checks it lives).
    const bound = setTimeout(reset, 10_000);
    raw.on('close', () => clearTimeout(bound));
    const start = (io: net.Socket) => {
      io.on('data', (d: Buffer) => {
        if (got === '') got = d.subarray(0, 64).toString('latin1');
        if (when === 'during') reset();
        // A kept-alive answer never ends: "after" is then shortly after it arrived.
        if (when === 'after') setTimeout(reset, 50);
      });
      io.on('end', () => {
        if (when === 'after') reset();
      });
      io.write(payload);
      if (when === 'before') reset();
    };
    if (!tlsOptions) {
      raw.once('connect', () => start(raw));
      return;
    }
    const secure = tls.connect({ ...tlsOptions, socket: raw });
    secure.on('error', () => undefined);
    secure.once('secureConnect', () => start(secure));
  });
}

/** Resets a connection to a TLS port `delayMs` after starting the handshake (or once it is done). */
function resetMidHandshake(port: number, tlsOptions: ConnectionOptions, delayMs: number): Promise<void> {
  return new Promise((resolve) => {
    const raw = net.connect(port, '127.0.0.1');
    const reset = () => {
      if (!raw.destroyed) raw.resetAndDestroy();
    };
    raw.on('error', () => undefined);
    raw.on('close', () => resolve());
    raw.once('connect', () => {
      const secure = tls.connect({ ...tlsOptions, socket: raw });
      secure.on('error', () => undefined);
      secure.once('secureConnect', reset);
      setTimeout(reset, delayMs);
    });
  });
}

async function servesAllowedRequest(t: Test, label: string): Promise<void> {
  const r = await viaProxy(`http://127.0.0.1:${procs.ports.outbound}`, 'GET', 'http://things/things/1').catch((err: Error) => ({ status: 0, body: err.message }));
  t.equal(r.status, 200, `${label}: an allowed request is served (${r.body})`);
  const health = await fetch(`http://127.0.0.1:${procs.ports.adminIn}/healthz`).catch(() => ({ status: 0 }));
  t.equal(health.status, 200, `${label}: the admin listener answers`);
  t.equal(procs.alive(), true, `${label}: both sidecar processes still run`);
}

const client = await procs.clientTls(agentId('a1'));

const LISTENERS: { name: string; port: () => number; tls?: ConnectionOptions }[] = [
  { name: 'outbound', port: () => procs.ports.outbound },
  { name: 'inbound (TLS, valid SVID)', port: () => procs.ports.inbound, tls: client },
  { name: 'inbound (raw bytes before TLS)', port: () => procs.ports.inbound },
  { name: 'admin', port: () => procs.ports.adminIn },
  { name: 'admin on the agent', port: () => procs.ports.adminOut },
  { name: 'admin mTLS (TLS, valid SVID)', port: () => procs.ports.adminInMtls, tls: client },
  { name: 'admin mTLS (raw bytes before TLS)', port: () => procs.ports.adminInMtls },
];

for (const listener of LISTENERS) {
  t.test(`${listener.name}: CONNECT, Upgrade, HTTP/2 preface and garbage, each reset before, during and after the answer`, async (t) => {
    const exchanges: Promise<string>[] = [];
    for (const [name, payload] of Object.entries(PAYLOADS)) {
      for (const when of WHENS) {
        // Several of each at once: resets land at different points of the answer.
        for (let i = 0; i < 3; i++) exchanges.push(sendAndReset(listener.port(), payload(), when, listener.tls).then((got) => `${name}/${when}: ${got}`));
      }
    }
    if (listener.tls) for (let i = 0; i < 6; i++) exchanges.push(resetMidHandshake(listener.port(), listener.tls, i).then(() => 'mid-handshake reset'));
    const answers = await Promise.all(exchanges);
    t.equal(answers.length, exchanges.length);
    await servesAllowedRequest(t, listener.name);
  });
}

t.test('the outbound CONNECT refusal is a JSON 405 when the client reads it', async (t) => {
  const answer = await new Promise<string>((resolve) => {
    const s = net.connect(procs.ports.outbound, '127.0.0.1');
    let got = '';
    s.on('data', (d: Buffer) => (got += d.toString('latin1')));
    s.on('error', () => undefined);
    s.on('close', () => resolve(got));
    s.write(PAYLOADS.connect!());
  });
  t.match(answer, /^HTTP\/1\.1 405 /);
  t.match(answer, /"error":"CONNECT is not supported/);
  await servesAllowedRequest(t, 'after a read CONNECT refusal');
});

t.test('garbage is answered with a JSON 400 on plain listeners', async (t) => {
  for (const port of [procs.ports.outbound, procs.ports.adminIn]) {
    const answer = await new Promise<string>((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      let got = '';
      s.on('data', (d: Buffer) => (got += d.toString('latin1')));
      s.on('error', () => undefined);
      s.on('close', () => resolve(got));
      s.write('\x01\x02 not http\r\n\r\n');
    });
    t.match(answer, /^HTTP\/1\.1 400 /, `port ${port}`);
    t.match(answer, /\{"error":"Malformed HTTP request"\}/);
  }
});

t.test('curl -p -x (an https URL through HTTPS_PROXY) is refused and the sidecar lives', { skip: skipFor(toolsMissing(['curl'], 'curl')) }, async (t) => {
  const r = spawnSync('curl', ['-sS', '--max-time', '10', '-p', '-x', `http://127.0.0.1:${procs.ports.outbound}`, 'https://things/things/1'], { encoding: 'utf8' });
  t.not(r.status, 0, 'curl cannot tunnel');
  t.match(r.stderr, /405/, `curl reports the 405: ${r.stderr.trim()}`);
  await servesAllowedRequest(t, 'after curl -p');
});
