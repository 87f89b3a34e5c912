#!/usr/bin/env node
// fault-proxy: a fault-injecting HTTP/1.1 reverse proxy that sits between couchrepd (the client)
// and a CouchDB-compatible server (the upstream, e.g. couch-test-server.js), for couchrepd's
// fault-injection integration tests and soak script. Built-ins only.
//
//   node fault-proxy.js --upstream http://127.0.0.1:PORT [--port 0] [--host 127.0.0.1]
//                       [--control-port 0] [--tls-cert FILE --tls-key FILE]
//
// Once both listeners are up it prints one line on stdout:
//   fault-proxy listening on http://127.0.0.1:PORT/ control http://127.0.0.1:CPORT/
// (https:// for the first URL with --tls-cert/--tls-key: the client side is then HTTPS; the
// upstream side is always plain HTTP).
//
// Without an active fault it is a faithful proxy: request and response bodies are streamed chunk
// by chunk (a continuous _changes feed passes every heartbeat at once), keep-alive on both sides,
// headers, status codes and Content-Encoding passed through untouched (hop-by-hop headers
// excepted: Connection, Keep-Alive, Proxy-Connection, Upgrade, TE, Expect).
//
// Faults are driven through a separate plain-HTTP control port (JSON in, JSON out), which no
// fault ever affects: POST/GET/DELETE /faults (per-request rules: status, delay_ms,
// cut_after_bytes, reset, blackhole), POST /blackhole, POST /down, POST /cut, GET /stats,
// GET/DELETE /log. See the "fault-proxy" section of README.md beside this file.
'use strict';

const fs = require('fs');
const http = require('http');
const https = require('https');
const net = require('net');
const { URL } = require('url');

// ---------------------------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------------------------

function parseArgs(argv) {
  const opts = { upstream: null, port: 0, host: '127.0.0.1', controlPort: 0, tlsCert: null, tlsKey: null };
  for (let i = 0; i < argv.length; i += 2) {
    const value = argv[i + 1];
    if (value === undefined) throw new Error(`missing value for ${argv[i]}`);
    if (argv[i] === '--upstream') opts.upstream = value;
    else if (argv[i] === '--port') opts.port = Number(value);
    else if (argv[i] === '--host') opts.host = value;
    else if (argv[i] === '--control-port') opts.controlPort = Number(value);
    else if (argv[i] === '--tls-cert') opts.tlsCert = value;
    else if (argv[i] === '--tls-key') opts.tlsKey = value;
    else throw new Error(`unknown option ${argv[i]}`);
  }
  if (!opts.upstream) throw new Error('--upstream http://HOST:PORT is required');
  for (const p of [opts.port, opts.controlPort]) {
    if (!Number.isInteger(p) || p < 0 || p > 65535) throw new Error('bad port');
  }
  if (!opts.tlsCert !== !opts.tlsKey) throw new Error('--tls-cert and --tls-key go together');
  return opts;
}

let args;
let upstream;
try {
  args = parseArgs(process.argv.slice(2));
  upstream = new URL(args.upstream);
  if (upstream.protocol !== 'http:') throw new Error('--upstream must be an http:// URL');
} catch (err) {
  process.stderr.write(`fault-proxy: ${err.message}\n`);
  process.exit(2);
}
for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP']) process.on(sig, () => process.exit(0));
// A test proxy keeps running whatever happens to one exchange.
process.on('uncaughtException', (err) => {
  process.stderr.write(`fault-proxy: uncaught exception (kept running): ${err && err.stack || err}\n`);
});

const UP_HOST = upstream.hostname.replace(/^\[|\]$/g, '');
const UP_PORT = Number(upstream.port || 80);
const UP_PREFIX = upstream.pathname.replace(/\/+$/, '');  // usually ''
const TLS = Boolean(args.tlsCert);
const T0 = process.hrtime.bigint();

const MAX_LOG = 200000;
const LOG_SLACK = 10000;             // trimmed in batches; GET /log never shows more than MAX_LOG
const RETRY_BODY_LIMIT = 1024 * 1024; // request bodies kept for a stale-keep-alive retry
const CUT_FLUSH_WAIT_MS = 1000;       // a cut waits at most this long for its last bytes to flush
const RETRY_CODES = new Set(['ECONNRESET', 'EPIPE', 'ECONNABORTED']);

// Error names of injected status answers (the same table as couch-test-server's /_test/faults).
const FAULT_ERRORS = {
  400: 'bad_request', 401: 'unauthorized', 403: 'forbidden', 404: 'not_found', 408: 'request_timeout',
  409: 'conflict', 412: 'precondition_failed', 413: 'too_large', 415: 'bad_content_type',
  429: 'too_many_requests', 500: 'unknown_error', 502: 'bad_gateway', 503: 'service_unavailable',
  504: 'gateway_timeout',
};

const noop = () => {};

// ---------------------------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------------------------

let rules = [];                 // see parseRule()
let nextRuleId = 1;
let blackholeOn = false;
let downOn = false;
let front = null;               // the listening net.Server (null while down)
let frontPort = args.port;      // fixed after the first listen; /down off listens here again
const rawSockets = new Set();   // every open client TCP connection
const tlsSockets = new Set();   // their TLS sockets (TLS mode)
const heldSockets = new Set();  // connections accepted during the black hole, not yet read
const held = [];                // {ex, run}: steps waiting for the black hole to end
const active = new Set();       // exchanges whose client response is not finished/closed

const stats = {
  connections_accepted: 0, requests: 0, forwarded: 0,
  faults: { status: 0, delay: 0, cut: 0, reset: 0, blackhole: 0 },
  statuses: {},
};

let log = [];
let logBase = 0;                // index of log[0]; indexes never restart

function nowMs() {
  return Math.round(Number(process.hrtime.bigint() - T0) / 1e6);
}

function pushLog(entry) {
  log.push(entry);
  if (log.length > MAX_LOG + LOG_SLACK) {
    const drop = log.length - MAX_LOG;
    log = log.slice(drop);
    logBase += drop;
  }
}

function authOf(req) {
  const a = req.headers.authorization;
  if (typeof a === 'string' && /^\s*basic\s/i.test(a)) return 'basic';
  const c = req.headers.cookie;
  if (typeof c === 'string' && /(^|[;,]\s*)AuthSession=/.test(c)) return 'cookie';
  return 'none';
}

// ---------------------------------------------------------------------------------------------
// Upstream side
// ---------------------------------------------------------------------------------------------

// No socket limit. `timeout` makes the agent honour the upstream's Keep-Alive: timeout=N hint
// (Node only applies the hint when it is below the agent's own timeout) and drops idle sockets.
const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity, maxTotalSockets: Infinity,
                               maxFreeSockets: 1024, timeout: 60000 });

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'upgrade', 'te', 'expect']);

// Raw header pairs without hop-by-hop ones (and those the Connection header names).
function filterHeaders(raw, extraDrop) {
  const drop = new Set(HOP_BY_HOP);
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i].toLowerCase() === 'connection') {
      for (const t of String(raw[i + 1]).split(',')) if (t.trim()) drop.add(t.trim().toLowerCase());
    }
  }
  if (extraDrop) for (const d of extraDrop) drop.add(d);
  const out = [];
  for (let i = 0; i < raw.length; i += 2) {
    const k = raw[i].toLowerCase();
    if (k === 'transfer-encoding' || k === 'content-length') { out.push(raw[i], raw[i + 1]); continue; }
    if (!drop.has(k)) out.push(raw[i], raw[i + 1]);
  }
  return out;
}

function requestHeaders(req) {
  const out = filterHeaders(req.rawHeaders);
  if (!req.headers.host) out.push('Host', `${upstream.host}`);
  return out;
}

function responseHeaders(upRes) {
  const out = filterHeaders(upRes.rawHeaders);
  const conn = upRes.headers.connection;
  if (typeof conn === 'string' && /(^|,)\s*close\s*(,|$)/i.test(conn)) out.push('Connection', 'close');
  return out;
}

function upstreamPath(url) {
  let p = url;
  if (!p.startsWith('/')) {  // absolute-form (proxy style) request target
    try {
      const u = new URL(p);
      p = u.pathname + u.search;
    } catch (e) {
      p = '/' + p;
    }
  }
  return UP_PREFIX + p;
}

// ---------------------------------------------------------------------------------------------
// Streaming with the black-hole gate and back-pressure
// ---------------------------------------------------------------------------------------------

// Moves `src` chunks through write(chunk) -> bool (false = wait for onDrain(cb)), then end().
// Never buffers beyond the chunk in hand: the source is paused while the destination is full
// and while the black hole is on (pause(), not a single byte more).
function gatedPipe(ex, src, write, onDrain, end) {
  const p = { src, stash: [], ended: false, finished: false, waitingDrain: false, pump: null };
  const pump = () => {
    if (ex.stopped || p.finished) return;
    if (blackholeOn) {
      src.pause();
      return;
    }
    while (p.stash.length) {
      const c = p.stash.shift();
      if (!write(c)) {
        src.pause();
        if (ex.stopped) return;
        p.waitingDrain = true;
        onDrain(() => {
          p.waitingDrain = false;
          pump();
        });
        return;
      }
      if (ex.stopped) return;
    }
    if (p.ended) {
      p.finished = true;
      end();
      return;
    }
    src.resume();
  };
  p.pump = pump;
  src.on('data', (c) => {
    p.stash.push(c);
    if (blackholeOn || p.waitingDrain || ex.stopped) {
      src.pause();
      return;
    }
    pump();
  });
  src.on('end', () => {
    p.ended = true;
    if (!blackholeOn && !p.waitingDrain) pump();
  });
  ex.pipes.push(p);
  pump();
  return p;
}

// ---------------------------------------------------------------------------------------------
// Exchanges (one per client request)
// ---------------------------------------------------------------------------------------------

function onRequest(req, res) {
  stats.requests++;
  const entry = { i: logBase + log.length, t_ms: nowMs(), method: req.method, path: req.url,
                  auth: authOf(req), status: null, fault: null };
  pushLog(entry);
  const ex = {
    req, res, entry, method: req.method, path: req.url, closed: false, stopped: false,
    upReq: null, upRes: null, upFailed: false, retried: false, retryPending: false,
    copy: [], copyBytes: 0, reqEnded: false, reqPipe: null, pipes: [],
    timer: null, cutAfter: null, sent: 0, headSent: false,
  };
  active.add(ex);
  req.on('error', noop);
  res.on('error', noop);
  res.on('close', () => finish(ex));
  if (blackholeOn) {
    entry.fault = 'blackhole';
    stats.faults.blackhole++;
    hold(ex, () => dispatch(ex));
    return;
  }
  dispatch(ex);
}

// The client response is done or the client went away.
function finish(ex) {
  if (ex.closed) return;
  ex.closed = true;
  active.delete(ex);
  if (ex.timer) clearTimeout(ex.timer);
  ex.timer = null;
  if (ex.upReq && !(ex.upRes && ex.upRes.complete)) ex.upReq.destroy();
}

function clientGone(ex) {
  return ex.closed || ex.stopped || !ex.req.socket || ex.req.socket.destroyed;
}

function hold(ex, run) {
  held.push({ ex, run });
}

function socketsOf(ex) {
  const s = ex.req.socket;
  const out = [];
  if (s) out.push(s);
  if (s && s._parent) out.push(s._parent);  // TLS: the TCP socket under the TLS socket
  return out;
}

function destroyClient(ex) {
  ex.stopped = true;
  for (const s of socketsOf(ex)) if (!s.destroyed) s.destroy();
}

function resetClient(ex) {
  ex.stopped = true;
  const socks = socketsOf(ex);
  const raw = socks[socks.length - 1];
  if (raw && !raw.destroyed && typeof raw.resetAndDestroy === 'function') {
    try {
      raw.resetAndDestroy();  // TCP RST
    } catch (e) { /* fall through to destroy */ }
  }
  for (const s of socks) if (!s.destroyed) s.destroy();
}

function writeHead(ex, status, message, headers) {
  ex.headSent = true;
  ex.entry.status = status;
  stats.statuses[status] = (stats.statuses[status] || 0) + 1;
  if (message === null) ex.res.writeHead(status, headers);
  else ex.res.writeHead(status, message, headers);
}

function pickRule(ex) {
  for (let i = 0; i < rules.length; i++) {
    const r = rules[i];
    if (r.method !== '*' && r.method !== ex.method) continue;
    if (!r.re.test(ex.path)) continue;
    if (r.probability < 1 && !(Math.random() < r.probability)) continue;
    r.fired++;
    if (r.count !== null && r.fired >= r.count) rules.splice(i, 1);
    return r;
  }
  return null;
}

function dispatch(ex) {
  if (clientGone(ex)) return;
  const rule = pickRule(ex);
  if (!rule) {
    forward(ex);
    return;
  }
  const { req, res, entry } = ex;
  if (rule.action === 'status') {
    entry.fault = 'status';
    stats.faults.status++;
    const body = rule.body !== null ? rule.body :
      JSON.stringify({ error: FAULT_ERRORS[rule.status] || 'unknown_error', reason: 'injected by fault-proxy' }) + '\n';
    const headers = { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body),
                      'Cache-Control': 'must-revalidate' };
    if (rule.retry_after !== null) headers['Retry-After'] = String(rule.retry_after);
    afterRequestBody(ex, () => {
      writeHead(ex, rule.status, null, headers);
      res.end(body);
    });
  } else if (rule.action === 'reset') {
    entry.fault = 'reset';
    stats.faults.reset++;
    resetClient(ex);
  } else if (rule.action === 'blackhole') {
    entry.fault = 'blackhole';
    stats.faults.blackhole++;
    // Nothing: not read, not forwarded, not answered, until the client gives up.
  } else if (rule.action === 'delay') {
    entry.fault = 'delay';
    stats.faults.delay++;
    ex.timer = setTimeout(() => {
      ex.timer = null;
      forward(ex);
    }, rule.delay_ms);
  } else if (rule.action === 'cut') {
    entry.fault = 'cut';
    stats.faults.cut++;
    ex.cutAfter = rule.cut_after_bytes;
    forward(ex);
  }
}

function forward(ex) {
  if (clientGone(ex)) return;
  if (blackholeOn) {
    hold(ex, () => forward(ex));
    return;
  }
  stats.forwarded++;
  startUpstream(ex);
  ex.reqPipe = gatedPipe(ex, ex.req, (c) => reqWrite(ex, c), (cb) => ex.upReq.once('drain', cb),
                         () => reqEnd(ex));
}

function reqWrite(ex, c) {
  if (ex.copy) {
    ex.copy.push(c);
    ex.copyBytes += c.length;
    if (ex.copyBytes > RETRY_BODY_LIMIT) ex.copy = null;
  }
  if (ex.upFailed) return true;  // thrown away (kept in the copy for a retry)
  return ex.upReq.write(c);
}

function reqEnd(ex) {
  ex.reqEnded = true;
  if (ex.upFailed) {
    if (ex.retryPending) retryUpstream(ex);
    return;
  }
  const t = ex.req.rawTrailers;
  if (t && t.length) {
    try {
      ex.upReq.addTrailers(t.reduce((acc, v, i) => (i % 2 ? acc : acc.concat([[v, t[i + 1]]])), []));
    } catch (e) { /* not chunked: no trailers */ }
  }
  ex.upReq.end();
}

function startUpstream(ex) {
  const upReq = http.request({
    agent, host: UP_HOST, port: UP_PORT, method: ex.req.method, path: upstreamPath(ex.req.url),
    headers: requestHeaders(ex.req), setHost: false,
  });
  upReq.maxHeadersCount = 0;  // no limit: pass every header
  ex.upReq = upReq;
  ex.upFailed = false;
  upReq.on('socket', (s) => s.setNoDelay(true));
  upReq.on('response', (upRes) => onUpstreamResponse(ex, upReq, upRes));
  upReq.on('error', (err) => onUpstreamError(ex, upReq, err));
}

// A keep-alive socket the upstream closed just as it was reused: send the request again once on
// a new connection (only when the whole request body is still at hand).
function retryUpstream(ex) {
  ex.retryPending = false;
  if (clientGone(ex)) return;
  startUpstream(ex);
  for (const c of ex.copy) ex.upReq.write(c);
  ex.upReq.end();
}

function onUpstreamError(ex, upReq, err) {
  if (upReq !== ex.upReq || ex.closed) return;
  if (ex.upRes) {  // after the headers: the client sees its connection die, as it would have
    destroyClient(ex);
    return;
  }
  ex.upFailed = true;
  if (!ex.retried && upReq.reusedSocket && RETRY_CODES.has(err.code) && ex.copy) {
    ex.retried = true;
    if (ex.reqEnded) {
      retryUpstream(ex);
    } else {
      ex.retryPending = true;
      const p = ex.reqPipe;
      if (p && p.waitingDrain) {
        p.waitingDrain = false;
        p.pump();
      }
    }
    return;
  }
  badGateway(ex, err);
}

function badGateway(ex, err) {
  if (clientGone(ex)) return;
  if (blackholeOn) {
    hold(ex, () => badGateway(ex, err));
    return;
  }
  if (ex.headSent) {
    destroyClient(ex);
    return;
  }
  const body = JSON.stringify({ error: 'bad_gateway', reason: `fault-proxy: upstream ${err.message}` }) + '\n';
  afterRequestBody(ex, () => {
    writeHead(ex, 502, null, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
    ex.res.end(body);
  });
}

// Reads the rest of the request body, throws it away, then answers: the client has sent its
// whole request when the answer comes, so the connection stays usable (keep-alive).
function afterRequestBody(ex, answer) {
  const { req } = ex;
  const go = () => {
    if (!clientGone(ex)) answer();
  };
  if (req.complete && req.readableEnded) {
    go();
    return;
  }
  req.once('end', go);
  const p = ex.reqPipe;
  if (p) {  // forwarding had begun: its writes are thrown away now (ex.upFailed)
    p.waitingDrain = false;
    p.pump();
  } else {
    req.resume();
  }
}

function onUpstreamResponse(ex, upReq, upRes) {
  upRes.on('error', noop);
  if (upReq !== ex.upReq || ex.closed) {
    upReq.destroy();
    return;
  }
  ex.upRes = upRes;
  ex.copy = null;
  upRes.on('close', () => {
    if (!upRes.complete && !ex.closed) destroyClient(ex);  // upstream died mid-body
  });
  const start = () => {
    if (clientGone(ex)) {
      upReq.destroy();
      return;
    }
    writeHead(ex, upRes.statusCode, upRes.statusMessage || '', responseHeaders(upRes));
    ex.res.flushHeaders();  // a feed's headers go out now, not with its first heartbeat
    gatedPipe(ex, upRes, (c) => resWrite(ex, c), (cb) => ex.res.once('drain', cb), () => {
      const t = upRes.rawTrailers;
      if (t && t.length) {
        try {
          ex.res.addTrailers(t.reduce((acc, v, i) => (i % 2 ? acc : acc.concat([[v, t[i + 1]]])), []));
        } catch (e) { /* not chunked: no trailers */ }
      }
      ex.res.end();
    });
  };
  if (blackholeOn) hold(ex, start);
  else start();
}

// Writes a response body chunk; counts body bytes for cut_after_bytes.
function resWrite(ex, c) {
  if (ex.cutAfter !== null && ex.sent + c.length > ex.cutAfter) {
    const room = ex.cutAfter - ex.sent;
    ex.stopped = true;
    if (room > 0) {
      ex.sent += room;
      const t = setTimeout(() => destroyClient(ex), CUT_FLUSH_WAIT_MS);
      ex.res.write(c.subarray(0, room), () => {
        clearTimeout(t);
        destroyClient(ex);
      });
    } else {
      destroyClient(ex);
    }
    return false;
  }
  ex.sent += c.length;
  return ex.res.write(c);
}

// ---------------------------------------------------------------------------------------------
// Client side: our own listener hands connections to the HTTP(S) server, so that the black hole
// can hold new connections unread and /down can close the port and listen again.
// ---------------------------------------------------------------------------------------------

const proxyServer = TLS ?
  https.createServer({ cert: fs.readFileSync(args.tlsCert), key: fs.readFileSync(args.tlsKey) }, onRequest) :
  http.createServer(onRequest);
// Like couch-test-server: long keep-alive, no request timeout, unlimited headers.
proxyServer.keepAliveTimeout = 120000;
proxyServer.headersTimeout = 125000;
proxyServer.requestTimeout = 0;
proxyServer.maxHeadersCount = 0;
proxyServer.on('clientError', (err, socket) => {
  if (socket.writable && !socket.destroyed) {
    socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
  }
  socket.destroy();
});
proxyServer.on('tlsClientError', noop);
proxyServer.on('secureConnection', (tls) => {
  tlsSockets.add(tls);
  tls.on('close', () => tlsSockets.delete(tls));
  tls.on('error', noop);
});

function handOver(sock) {
  proxyServer.emit('connection', sock);
  sock.resume();  // accepted with pauseOnConnect; the HTTP/TLS layer does not resume it itself
}

function onRawConnection(sock) {
  stats.connections_accepted++;
  rawSockets.add(sock);
  sock.on('error', noop);
  sock.on('close', () => {
    rawSockets.delete(sock);
    heldSockets.delete(sock);
  });
  sock.setNoDelay(true);
  if (blackholeOn) {
    heldSockets.add(sock);  // accepted, nothing read (no TLS handshake either)
    return;
  }
  handOver(sock);
}

function listenFront(cb) {
  const srv = net.createServer({ pauseOnConnect: true }, onRawConnection);
  const onError = (err) => cb(err);
  srv.once('error', onError);
  srv.listen(frontPort, args.host, () => {
    srv.removeListener('error', onError);
    srv.on('error', (err) => process.stderr.write(`fault-proxy: listener error: ${err.message}\n`));
    front = srv;
    frontPort = srv.address().port;
    cb(null);
  });
}

function setBlackhole(on) {
  if (on === blackholeOn) return;
  blackholeOn = on;
  if (on) {
    for (const ex of active) for (const p of ex.pipes) p.src.pause();
    return;
  }
  const socks = [...heldSockets];
  heldSockets.clear();
  for (const s of socks) if (!s.destroyed) handOver(s);
  const steps = held.splice(0);
  for (const { ex, run } of steps) if (!clientGone(ex)) run();
  for (const ex of active) for (const p of ex.pipes) if (!p.waitingDrain) p.pump();
}

// /down requests run one after the other (going up again waits for the listen).
let downQueue = Promise.resolve();
function setDown(on, cb) {
  downQueue = downQueue.then(() => new Promise((resolve) => {
    applyDown(on, (err) => {
      resolve();
      cb(err);
    });
  }));
}

function applyDown(on, cb) {
  if (on === downOn) {
    cb(null);
    return;
  }
  if (on) {
    downOn = true;
    if (front) front.close();
    front = null;
    held.length = 0;
    heldSockets.clear();
    for (const ex of [...active]) {
      ex.stopped = true;
      if (ex.upReq) ex.upReq.destroy();
      finish(ex);
    }
    for (const s of [...tlsSockets]) s.destroy();
    for (const s of [...rawSockets]) s.destroy();
    cb(null);
    return;
  }
  listenFront((err) => {
    if (!err) downOn = false;
    cb(err);
  });
}

// ---------------------------------------------------------------------------------------------
// Control API
// ---------------------------------------------------------------------------------------------

class BadInput extends Error {}

const RULE_KEYS = new Set(['path', 'method', 'probability', 'count', 'status', 'retry_after', 'body',
                           'delay_ms', 'cut_after_bytes', 'reset', 'blackhole']);
const ACTIONS = { status: 'status', delay_ms: 'delay', cut_after_bytes: 'cut', reset: 'reset', blackhole: 'blackhole' };

function compile(path) {
  if (typeof path !== 'string') throw new BadInput('path must be a string (a regular expression)');
  try {
    return new RegExp(path);
  } catch (e) {
    throw new BadInput(`bad regex ${JSON.stringify(path)}: ${e.message}`);
  }
}

function parseRule(o) {
  if (!o || typeof o !== 'object' || Array.isArray(o)) throw new BadInput('a rule must be a JSON object');
  for (const k of Object.keys(o)) if (!RULE_KEYS.has(k)) throw new BadInput(`unknown rule field "${k}"`);
  const r = {
    id: 0, path: o.path === undefined ? '.*' : o.path, re: null, method: '*', probability: 1,
    count: null, fired: 0, action: null, status: null, retry_after: null, body: null, delay_ms: null,
    cut_after_bytes: null,
  };
  r.re = compile(r.path);
  if (o.method !== undefined) {
    if (typeof o.method !== 'string' || !/^(\*|[A-Za-z]+)$/.test(o.method)) throw new BadInput('method must be a method name or "*"');
    r.method = o.method.toUpperCase();
  }
  if (o.probability !== undefined) {
    if (typeof o.probability !== 'number' || !(o.probability >= 0 && o.probability <= 1)) {
      throw new BadInput('probability must be a number from 0 to 1');
    }
    r.probability = o.probability;
  }
  if (o.count !== undefined && o.count !== null) {
    if (!Number.isInteger(o.count) || o.count < 1) throw new BadInput('count must be a positive integer');
    r.count = o.count;
  }
  const actions = Object.keys(ACTIONS).filter((k) => o[k] !== undefined);
  if (actions.length !== 1) {
    throw new BadInput(`a rule needs exactly one action of status, delay_ms, cut_after_bytes, reset, blackhole (got ${actions.length})`);
  }
  r.action = ACTIONS[actions[0]];
  if ((o.retry_after !== undefined || o.body !== undefined) && r.action !== 'status') {
    throw new BadInput('retry_after and body go only with status');
  }
  if (r.action === 'status') {
    if (!Number.isInteger(o.status) || o.status < 200 || o.status > 599) throw new BadInput('status must be an integer from 200 to 599');
    r.status = o.status;
    if (o.retry_after !== undefined) {
      if (!((Number.isInteger(o.retry_after) && o.retry_after >= 0) || typeof o.retry_after === 'string')) {
        throw new BadInput('retry_after must be a non-negative integer (seconds) or a string');
      }
      r.retry_after = o.retry_after;
    }
    if (o.body !== undefined) r.body = typeof o.body === 'string' ? o.body : JSON.stringify(o.body);
  } else if (r.action === 'delay') {
    if (typeof o.delay_ms !== 'number' || !(o.delay_ms >= 0) || !Number.isFinite(o.delay_ms)) {
      throw new BadInput('delay_ms must be a non-negative number');
    }
    r.delay_ms = o.delay_ms;
  } else if (r.action === 'cut') {
    if (!Number.isInteger(o.cut_after_bytes) || o.cut_after_bytes < 0) throw new BadInput('cut_after_bytes must be a non-negative integer');
    r.cut_after_bytes = o.cut_after_bytes;
  } else if (r.action === 'reset') {
    if (o.reset !== true) throw new BadInput('reset must be true');
  } else if (r.action === 'blackhole') {
    if (o.blackhole !== true) throw new BadInput('blackhole must be true');
  }
  return r;
}

function ruleView(r) {
  const v = { id: r.id, path: r.path, method: r.method, probability: r.probability, count: r.count,
              remaining: r.count === null ? null : r.count - r.fired, fired: r.fired };
  if (r.action === 'status') {
    v.status = r.status;
    if (r.retry_after !== null) v.retry_after = r.retry_after;
    if (r.body !== null) v.body = r.body;
  } else if (r.action === 'delay') v.delay_ms = r.delay_ms;
  else if (r.action === 'cut') v.cut_after_bytes = r.cut_after_bytes;
  else if (r.action === 'reset') v.reset = true;
  else if (r.action === 'blackhole') v.blackhole = true;
  return v;
}

function sendJson(res, status, value) {
  const body = JSON.stringify(value) + '\n';
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}

function onOff(body) {
  if (!body || typeof body !== 'object' || typeof body.on !== 'boolean') throw new BadInput('body must be {"on":true|false}');
  return body.on;
}

function statsView() {
  return {
    connections_accepted: stats.connections_accepted, open_connections: rawSockets.size,
    requests: stats.requests, forwarded: stats.forwarded, in_flight: active.size,
    faults: Object.assign({}, stats.faults), statuses: Object.assign({}, stats.statuses),
    blackhole: blackholeOn, down: downOn, rules: rules.length,
  };
}

function control(req, res, body, url) {
  const route = `${req.method} ${url.pathname.replace(/\/+$/, '') || '/'}`;
  switch (route) {
    case 'POST /faults': {
      const list = Array.isArray(body) ? body : [body];
      if (list.length === 0) throw new BadInput('no rule given');
      const parsed = list.map(parseRule);  // all or nothing
      for (const r of parsed) r.id = nextRuleId++;
      rules.push(...parsed);
      return sendJson(res, 201, { ok: true, faults: rules.length, ids: parsed.map((r) => r.id) });
    }
    case 'GET /faults':
      return sendJson(res, 200, { faults: rules.map(ruleView), blackhole: blackholeOn, down: downOn });
    case 'DELETE /faults': {
      rules = [];
      setBlackhole(false);
      return setDown(false, (err) => {
        if (err) return sendJson(res, 500, { error: 'listen_failed', reason: err.message });
        sendJson(res, 200, { ok: true, faults: 0, blackhole: false, down: false });
      });
    }
    case 'POST /blackhole': {
      const on = onOff(body);
      setBlackhole(on);
      return sendJson(res, 200, { ok: true, blackhole: blackholeOn });
    }
    case 'POST /down': {
      const on = onOff(body);
      return setDown(on, (err) => {
        if (err) return sendJson(res, 500, { error: 'listen_failed', reason: `port ${frontPort}: ${err.message}` });
        sendJson(res, 200, { ok: true, down: downOn });
      });
    }
    case 'POST /cut': {
      const re = compile(body && body.path !== undefined ? body.path : '.*');
      let n = 0;
      for (const ex of [...active]) {
        if (ex.stopped || !re.test(ex.path)) continue;
        n++;
        ex.entry.fault = 'cut';
        stats.faults.cut++;
        destroyClient(ex);
      }
      return sendJson(res, 200, { ok: true, cut: n });
    }
    case 'GET /stats':
      return sendJson(res, 200, statsView());
    case 'GET /log': {
      const since = url.searchParams.has('since') ? Number(url.searchParams.get('since')) : 0;
      if (!Number.isInteger(since) || since < 0) throw new BadInput('since must be a non-negative integer');
      const next = logBase + log.length;
      const from = Math.max(since, logBase, next - MAX_LOG);
      return sendJson(res, 200, { next, requests: log.slice(from - logBase) });
    }
    case 'DELETE /log':
      logBase += log.length;
      log = [];
      return sendJson(res, 200, { ok: true, next: logBase });
    case 'GET /':
      return sendJson(res, 200, { 'fault-proxy': 'control', upstream: args.upstream, port: frontPort, tls: TLS });
    default:
      return sendJson(res, 404, { error: 'not_found', reason: `no control endpoint ${route}` });
  }
}

const controlServer = http.createServer((req, res) => {
  const chunks = [];
  let size = 0;
  req.on('data', (c) => {
    size += c.length;
    if (size <= 10 * 1024 * 1024) chunks.push(c);
  });
  req.on('end', () => {
    try {
      if (size > 10 * 1024 * 1024) throw new BadInput('body too large');
      const url = new URL(req.url, 'http://control');
      const text = Buffer.concat(chunks).toString('utf8').trim();
      let body = null;
      if (text) {
        try {
          body = JSON.parse(text);
        } catch (e) {
          throw new BadInput(`body is not JSON: ${e.message}`);
        }
      }
      control(req, res, body, url);
    } catch (err) {
      if (err instanceof BadInput) sendJson(res, 400, { error: 'bad_request', reason: err.message });
      else sendJson(res, 500, { error: 'internal_error', reason: String(err && err.stack || err) });
    }
  });
  req.on('error', noop);
  res.on('error', noop);
});
controlServer.keepAliveTimeout = 120000;

// ---------------------------------------------------------------------------------------------
// Start
// ---------------------------------------------------------------------------------------------

function startFailed(what, err) {
  process.stderr.write(`fault-proxy: cannot listen (${what}) on ${args.host}: ${err.message}\n`);
  process.exit(1);
}

listenFront((err) => {
  if (err) startFailed(`port ${args.port}`, err);
  controlServer.once('error', (e) => startFailed(`control port ${args.controlPort}`, e));
  controlServer.listen(args.controlPort, args.host, () => {
    const cport = controlServer.address().port;
    process.stdout.write(`fault-proxy listening on ${TLS ? 'https' : 'http'}://${args.host}:${frontPort}/ ` +
                         `control http://${args.host}:${cport}/\n`);
  });
});
