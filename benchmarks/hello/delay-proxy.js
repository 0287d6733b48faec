/**
 * A TCP proxy that delays every chunk of data by a fixed time in each direction (RTT/2), counting
 * the bytes it forwards. The kernel here has no sch_netem, so this is how the hello benchmark adds
 * latency; HTB on the veth limits the rate. It ends TCP itself (handshakes and slow start do not
 * see the delay), but every HTTP request and response pays the round trip.
 *
 *   node delay-proxy.js LISTEN_HOST:PORT UPSTREAM_HOST:PORT ONE_WAY_DELAY_MS
 *
 * Prints `listening` on stdout when ready. Each line `stats` on stdin is answered with one JSON line
 * `{"down":N,"up":N,"connections":N}` (down: upstream -> client bytes, cumulative). Exits on stdin
 * EOF or SIGTERM.
 */
import { createConnection, createServer } from 'node:net';
import { createInterface } from 'node:readline';

const [listen, upstream, delayArg] = process.argv.slice(2);
if (!listen || !upstream || delayArg === undefined) {
  process.stderr.write('usage: delay-proxy.js LISTEN_HOST:PORT UPSTREAM_HOST:PORT ONE_WAY_DELAY_MS\n');
  process.exit(2);
}
const delayMs = Number(delayArg);

/** @param {string} hostPort */
function split(hostPort) {
  const i = hostPort.lastIndexOf(':');
  return { host: hostPort.slice(0, i), port: Number(hostPort.slice(i + 1)) };
}

const stats = { down: 0, up: 0, connections: 0 };

/**
 * Forwards `from` to `to`, each chunk `delayMs` late (timers of equal delay fire in order). Reading
 * pauses while more than 8 MiB wait (in timers or in `to`'s buffer), so a slow client does not make
 * the proxy buffer a whole blob.
 * @param {import('node:net').Socket} from
 * @param {import('node:net').Socket} to
 * @param {'down' | 'up'} direction
 */
function pipeDelayed(from, to, direction) {
  const LIMIT = 8 << 20;
  let delayed = 0;
  let ended = false;
  let inFlight = 0;
  const backlog = () => delayed + to.writableLength;
  const maybeResume = () => {
    if (from.isPaused() && backlog() <= LIMIT) from.resume();
  };
  to.on('drain', maybeResume);
  from.on('data', (chunk) => {
    delayed += chunk.length;
    inFlight++;
    if (backlog() > LIMIT) from.pause();
    setTimeout(() => {
      inFlight--;
      delayed -= chunk.length;
      stats[direction] += chunk.length;
      if (!to.destroyed) to.write(chunk);
      maybeResume();
      if (ended && inFlight === 0) to.end();
    }, delayMs);
  });
  from.on('end', () => {
    ended = true;
    if (inFlight === 0) setTimeout(() => to.end(), delayMs);
  });
  from.on('error', () => to.destroy());
  from.on('close', () => {
    if (!ended) setTimeout(() => to.destroy(), delayMs);
  });
}

const up = split(upstream);
const server = createServer((client) => {
  stats.connections++;
  client.setNoDelay(true);
  const remote = createConnection({ host: up.host, port: up.port });
  remote.setNoDelay(true);
  pipeDelayed(client, remote, 'up');
  pipeDelayed(remote, client, 'down');
});
const at = split(listen);
server.listen(at.port, at.host, () => process.stdout.write('listening\n'));

const input = createInterface({ input: process.stdin });
input.on('line', (line) => {
  if (line.trim() === 'stats') process.stdout.write(`${JSON.stringify(stats)}\n`);
});
input.on('close', () => process.exit(0));
process.on('SIGTERM', () => process.exit(0));
