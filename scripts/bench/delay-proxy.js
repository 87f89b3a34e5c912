#!/usr/bin/env node
// Helper of scripts/bench-replicate (a benchmark, not a test): a TCP proxy on loopback that
// adds a round-trip time between a client and a server and counts the bytes each way.
//
//   node delay-proxy.js --target HOST:PORT [--rtt MS] [--no-handshake] [--stats-file FILE]
//
//   --target HOST:PORT  where to forward every connection (the test server; loopback only)
//   --rtt MS            round-trip time to add (default 0). Every chunk read from either side
//                       is written to the other RTT/2 ms after it arrived, in order: per
//                       connection and direction, a queue of (send time, chunk) where a chunk's
//                       send time is max(arrival + RTT/2, the previous chunk's send time), so
//                       nothing is reordered and no chunk waits more than RTT/2 beyond the one
//                       before it. End-of-stream (FIN) travels through the same queue. With 0
//                       chunks are forwarded at once (the proxy then only counts bytes).
//   --no-handshake      do not charge new connections for the TCP handshake. By default the
//                       first bytes of a new connection reach the server no earlier than 1.5 RTT
//                       after the client connected (SYN, SYN-ACK, then the data), as on a real
//                       link, so a client that opens many connections pays for them.
//   --stats-file FILE   write the final stats (JSON) there on exit
//
// It listens on 127.0.0.1 on a free port and prints one line to stdout:
//   delay-proxy listening on 127.0.0.1:PORT stats http://127.0.0.1:SPORT/ rtt=MS
// GET on the stats port answers the counters so far (JSON): connections, open,
// bytes_client_to_server (what clients sent: requests with their bodies),
// bytes_server_to_client (responses), chunks each way, max_queued_bytes. SIGUSR2 prints the
// same JSON to stderr. SIGTERM/SIGINT print it to stderr (and --stats-file) and exit.
// No dependencies: plain `net` and `http`.
'use strict';

const net = require('net');
const http = require('http');
const fs = require('fs');
const { performance } = require('perf_hooks');

function fail(msg) {
  process.stderr.write(`delay-proxy: ${msg}\n`);
  process.exit(2);
}

const opts = { target: null, rtt: 0, handshake: true, statsFile: null };
{
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i++) {
    const val = () => {
      if (i + 1 >= argv.length) fail(`${argv[i]} needs a value`);
      return argv[++i];
    };
    switch (argv[i]) {
      case '--target': opts.target = val(); break;
      case '--rtt': opts.rtt = Number(val()); break;
      case '--no-handshake': opts.handshake = false; break;
      case '--stats-file': opts.statsFile = val(); break;
      case '-h': case '--help':
        process.stdout.write(fs.readFileSync(__filename, 'utf8').split('\n').slice(1)
          .filter((l) => l.startsWith('//')).map((l) => l.replace(/^\/\/ ?/, '')).join('\n') + '\n');
        process.exit(0);
        break;
      default: fail(`unknown argument ${argv[i]}`);
    }
  }
}
const m = /^([^:]+):(\d+)$/.exec(opts.target || '');
if (!m) fail('--target HOST:PORT is required');
if (!Number.isFinite(opts.rtt) || opts.rtt < 0) fail('--rtt must be a number >= 0');
const targetHost = m[1];
const targetPort = Number(m[2]);
const half = opts.rtt / 2;

const HIGH_WATER = 32 * 1024 * 1024;  // queued bytes of one direction that pause its reader
const LOW_WATER = 8 * 1024 * 1024;    // ... and resume it

const stats = {
  rtt_ms: opts.rtt, connections: 0, open: 0,
  bytes_client_to_server: 0, bytes_server_to_client: 0,
  chunks_client_to_server: 0, chunks_server_to_client: 0,
  max_queued_bytes: 0, errors: 0,
};
const END = Symbol('end');

// One direction of one connection: reads src, writes dst RTT/2 later, in order.
function pipeDelayed(src, dst, counterKey, chunkKey, firstSendAt) {
  const queue = [];      // {at, data} with at = performance.now() ms; data = Buffer or END
  let head = 0;          // index of the first unsent entry
  let lastAt = firstSendAt;
  let queued = 0;
  let timer = null;
  let pausedQueue = false;
  let pausedDrain = false;
  let ended = false;

  const resumeIfFree = () => {
    if (!pausedQueue && !pausedDrain && src.isPaused()) src.resume();
  };
  const write = (data) => {
    if (data === END) {
      ended = true;
      dst.end();
      return;
    }
    queued -= data.length;
    if (!dst.write(data) && !pausedDrain) {
      pausedDrain = true;
      src.pause();
      dst.once('drain', () => { pausedDrain = false; resumeIfFree(); });
    }
  };
  const flush = () => {
    timer = null;
    const now = performance.now();
    // setTimeout fires at whole milliseconds: send what is due within half a millisecond
    while (head < queue.length && queue[head].at <= now + 0.5) {
      const e = queue[head];
      queue[head++] = undefined;
      write(e.data);
      if (dst.destroyed) return;
    }
    if (head === queue.length) { queue.length = 0; head = 0; }
    else if (head > 1024) { queue.splice(0, head); head = 0; }
    if (pausedQueue && queued < LOW_WATER) { pausedQueue = false; resumeIfFree(); }
    schedule();
  };
  const schedule = () => {
    if (timer || head >= queue.length) return;
    timer = setTimeout(flush, Math.max(0, queue[head].at - performance.now()));
  };
  const push = (data) => {
    const now = performance.now();
    const at = Math.max(now + half, lastAt);
    lastAt = at;
    if (at <= now && head >= queue.length) {  // no delay due and nothing waiting: at once
      write(data);
      return;
    }
    if (data !== END) {
      queued += data.length;
      if (queued > stats.max_queued_bytes) stats.max_queued_bytes = queued;
      if (queued > HIGH_WATER && !pausedQueue) { pausedQueue = true; src.pause(); }
    }
    queue.push({ at, data });
    schedule();
  };
  src.on('data', (chunk) => {
    stats[counterKey] += chunk.length;
    stats[chunkKey]++;
    push(chunk);
  });
  src.on('end', () => push(END));
  return {
    cancel: () => { if (timer) clearTimeout(timer); timer = null; queue.length = 0; head = 0; },
    get ended() { return ended; },
  };
}

const server = net.createServer({ allowHalfOpen: true }, (client) => {
  const acceptedAt = performance.now();
  stats.connections++;
  stats.open++;
  client.setNoDelay(true);
  const upstream = net.connect({ host: targetHost, port: targetPort, allowHalfOpen: true });
  upstream.setNoDelay(true);
  // The handshake: the client's first bytes leave no earlier than 1 RTT after it connected
  // (SYN, SYN-ACK), and then take RTT/2 like every chunk.
  const first = opts.handshake ? acceptedAt + 3 * half : 0;
  const up = pipeDelayed(client, upstream, 'bytes_client_to_server', 'chunks_client_to_server', first);
  const down = pipeDelayed(upstream, client, 'bytes_server_to_client', 'chunks_server_to_client', 0);
  let closed = 0;
  const onClose = () => {
    if (++closed === 2) stats.open--;
  };
  const onError = () => {
    stats.errors++;
    up.cancel();
    down.cancel();
    client.destroy();
    upstream.destroy();
  };
  client.on('error', onError);
  upstream.on('error', onError);
  client.on('close', onClose);
  upstream.on('close', onClose);
  // When both directions have delivered their end, close both sockets.
  const done = () => { if (up.ended && down.ended) { client.destroy(); upstream.destroy(); } };
  client.on('finish', done);
  upstream.on('finish', done);
});
server.on('error', (err) => fail(`cannot listen: ${err.message}`));

const snapshot = () => JSON.stringify(stats);
const statsServer = http.createServer((req, res) => {
  res.writeHead(200, { 'Content-Type': 'application/json' });
  res.end(snapshot() + '\n');
});

const finish = () => {
  const s = snapshot();
  process.stderr.write(`delay-proxy: ${s}\n`);
  if (opts.statsFile) {
    try { fs.writeFileSync(opts.statsFile, s + '\n'); } catch (e) { /* nothing to do */ }
  }
  process.exit(0);
};
process.on('SIGTERM', finish);
process.on('SIGINT', finish);
process.on('SIGUSR2', () => process.stderr.write(`delay-proxy: ${snapshot()}\n`));

server.listen(0, '127.0.0.1', () => {
  statsServer.listen(0, '127.0.0.1', () => {
    process.stdout.write(`delay-proxy listening on 127.0.0.1:${server.address().port} ` +
      `stats http://127.0.0.1:${statsServer.address().port}/ rtt=${opts.rtt}\n`);
  });
});
