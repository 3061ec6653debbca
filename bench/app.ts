/**
 * The benchmark's upstream app: a tiny keep-alive HTTP server answering every request with a
 * small JSON body. Usage: node dist/bench/app.js --port N
 */
import http from 'node:http';
import { parseArgs } from 'node:util';

const { values } = parseArgs({ options: { port: { type: 'string' } }, strict: true });
const port = Number(values.port);
if (!Number.isInteger(port) || port <= 0 || port > 65535) {
  process.stderr.write('bench app: --port N is required\n');
  process.exit(2);
}

const BODY = Buffer.from(JSON.stringify({ ok: true, service: 'bench', items: [1, 2, 3] }));

const server = http.createServer({ keepAliveTimeout: 60_000 }, (req, res) => {
  // Drain any request body before answering so the connection stays reusable.
  req.resume();
  req.on('end', () => {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': BODY.length });
    res.end(BODY);
  });
});

server.listen(port, '127.0.0.1');
const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
