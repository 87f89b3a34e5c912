'use strict';
// The driving half of scripts/soak (Node built-ins only): starts the test server, the fault
// proxy and `couchrepd serve`, runs the writer, the churn of replication documents, the
// faults and the 10 s sampling for the run's duration, then waits for the targets, compares
// every live pair and the status API, prints the summary and exits 0 (all good), 1 (a check
// failed) or 3 (the set-up failed). Every process it starts is written to WORK/pids
// ("PID STARTTIME NAME") so that the bash script can kill leftovers whatever happens.
const http = require('http');
const net = require('net');
const fs = require('fs');
const path = require('path');
const crypto = require('crypto');
const {spawn, execFileSync} = require('child_process');
const {performance} = require('perf_hooks');

// ------------------------------------------------------------------ options
const opt = {
  repo: '', work: '', couchrepd: '', minutes: 30, pairs: 200, faultEvery: 0, strictFlat: false,
  churnEvery: 5, writeRate: 20, catchUp: 300, prefill: 20, clkTck: 100, faults: '', keepLogs: false,
};
{
  const a = process.argv.slice(2);
  for (let i = 0; i < a.length; i++) {
    const v = () => a[++i];
    switch (a[i]) {
      case '--repo': opt.repo = v(); break;
      case '--work': opt.work = v(); break;
      case '--couchrepd': opt.couchrepd = v(); break;
      case '--minutes': opt.minutes = Number(v()); break;
      case '--pairs': opt.pairs = Number(v()); break;
      case '--fault-every': opt.faultEvery = Number(v()); break;
      case '--strict-flat': opt.strictFlat = true; break;
      case '--churn-every': opt.churnEvery = Number(v()); break;
      case '--write-rate': opt.writeRate = Number(v()); break;
      case '--catch-up': opt.catchUp = Number(v()); break;
      case '--clk-tck': opt.clkTck = Number(v()); break;
      case '--faults': opt.faults = v(); break;
      case '--keep-logs': opt.keepLogs = true; break;
      default: console.error(`soak.js: unknown argument ${a[i]}`); process.exit(2);
    }
  }
}
const DURATION_MS = opt.minutes * 60000;
const FAULT_EVERY_MS = (opt.faultEvery > 0 ? opt.faultEvery : Math.max(30, opt.minutes * 60 / 12)) * 1000;
const WARMUP_MS = DURATION_MS * 0.1;
const SERVER_JS = path.join(opt.repo, 'tests/server/couch-test-server.js');
const PROXY_JS = path.join(opt.repo, 'tests/server/fault-proxy.js');
const ADMIN = 'admin';
const PASS = crypto.randomBytes(12).toString('hex');
const AUTH = 'Basic ' + Buffer.from(`${ADMIN}:${PASS}`).toString('base64');
const PIDS_FILE = path.join(opt.work, 'pids');
const CONFIG = path.join(opt.work, 'couchrepd.yaml');
const DATA_DIR = path.join(opt.work, 'data');

// ------------------------------------------------------------------ small helpers
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const now = () => performance.now();
const out = (s = '') => { if (!quiet) process.stdout.write(s + '\n'); };
let quiet = false;               // set once interrupted
const pad = (n, w = 5) => String(n).padStart(w, '0');
const rnd = (n) => Math.floor(Math.random() * n);
const pick = (arr) => arr[rnd(arr.length)];
const fmtS = (ms) => `${(ms / 1000).toFixed(1)} s`;
const loadavg = () => fs.readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
let T0 = 0;                                   // start of the run phase (perf ms)
const el = () => (T0 ? now() - T0 : 0);       // elapsed in the run phase
const stamp = () => `[${String(Math.round(el() / 1000)).padStart(5)} s]`;
const say = (s) => out(`${stamp()} ${s}`);

async function pool(items, n, fn) {
  let next = 0;
  const results = new Array(items.length);
  await Promise.all(Array.from({length: Math.min(n, items.length)}, async () => {
    while (next < items.length) { const i = next++; results[i] = await fn(items[i], i); }
  }));
  return results;
}

function stable(v) {
  if (Array.isArray(v)) return `[${v.map(stable).join(',')}]`;
  if (v && typeof v === 'object') {
    return `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${stable(v[k])}`).join(',')}}`;
  }
  return JSON.stringify(v);
}

// ------------------------------------------------------------------ HTTP
// Never throws: {status: 0, text: error} when there is no answer.
function request(base, method, p, body, o = {}) {
  return new Promise((resolve) => {
    const t0 = now();
    const data = body === undefined ? null : Buffer.from(JSON.stringify(body));
    const headers = {Accept: 'application/json'};
    if (data) { headers['Content-Type'] = 'application/json'; headers['Content-Length'] = data.length; }
    if (o.auth) headers.Authorization = o.auth;
    let done = false;
    const finish = (r) => { if (!done) { done = true; r.ms = now() - t0; resolve(r); } };
    const req = http.request({host: base.host, port: base.port, method, path: p, headers,
      agent: o.agent === undefined ? false : o.agent}, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json = null;
        try { json = text ? JSON.parse(text) : null; } catch (_) { /* not JSON */ }
        finish({status: res.statusCode, json, text});
      });
      res.on('error', (e) => finish({status: 0, text: e.message}));
      res.on('aborted', () => finish({status: 0, text: 'response aborted'}));
    });
    req.setTimeout(o.timeout || 60000, () => req.destroy(new Error(`no answer in ${o.timeout || 60000} ms`)));
    req.on('error', (e) => finish({status: 0, text: e.message}));
    if (data) req.write(data);
    req.end();
  });
}
const SERVER = {host: '127.0.0.1', port: 0};
const PROXY = {host: '127.0.0.1', port: 0};
const CONTROL = {host: '127.0.0.1', port: 0};
const serverAgent = new http.Agent({keepAlive: true, maxSockets: 24});
const couch = (method, p, body, o = {}) =>
  request(SERVER, method, p, body, Object.assign({auth: AUTH, agent: serverAgent}, o));
const ctl = (method, p, body) => request(CONTROL, method, p, body, {timeout: 10000});
const statusGet = (p, timeout = 15000) => request(serve.status, 'GET', p, undefined, {timeout});
// Every document (the status API pages by 100 by default).
const ALL_DOCS = '/_scheduler/docs?limit=1000000';
const brief = (r) => `${r.status || 'no answer'} ${String(r.text || '').replace(/\s+/g, ' ').slice(0, 160)}`;
async function must(method, p, body, o) {
  for (let attempt = 0; ; attempt++) {
    const r = await couch(method, p, body, o);
    if (r.status >= 200 && r.status < 300) return r.json;
    if (attempt >= 4 || (r.status >= 400 && r.status < 500 && r.status !== 409)) {
      throw new Error(`${method} ${p}: ${brief(r)}`);
    }
    await sleep(500 * (attempt + 1));
  }
}

// ------------------------------------------------------------------ processes
function startTime(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];  // field 22
  } catch (_) { return '0'; }
}
function recordPid(pid, name) {
  fs.appendFileSync(PIDS_FILE, `${pid} ${startTime(pid)} ${name}\n`);
}
function alive(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const st = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return st !== 'Z' && st !== 'X';
  } catch (_) { return false; }
}
// Spawns with stdout and stderr in files; returns {child, pid, exited: Promise<{code, signal}>}.
function launch(name, cmd, args, {stdoutFile, stderrFile, env} = {}) {
  const so = fs.openSync(stdoutFile, 'a');
  const se = stderrFile ? fs.openSync(stderrFile, 'a') : so;
  const child = spawn(cmd, args, {stdio: ['ignore', so, se], env: env || process.env, cwd: opt.work});
  fs.closeSync(so);
  if (se !== so) fs.closeSync(se);
  const p = {name, child, pid: child.pid, exit: null};
  p.exited = new Promise((resolve) => child.on('exit', (code, signal) => { p.exit = {code, signal}; resolve(p.exit); }));
  child.on('error', (e) => { p.exit = p.exit || {code: -1, signal: null, error: e.message}; });
  if (child.pid) recordPid(child.pid, name);
  return p;
}
async function waitForLine(file, re, proc, ms) {
  const deadline = now() + ms;
  while (now() < deadline) {
    let text = '';
    try { text = fs.readFileSync(file, 'utf8'); } catch (_) { /* not yet */ }
    const m = text.match(re);
    if (m) return m;
    if (proc.exit) return null;
    await sleep(100);
  }
  return null;
}
async function stopProc(p, signal, graceMs) {
  if (!p || p.exit) return p && p.exit;
  try { process.kill(p.pid, signal); } catch (_) { /* gone */ }
  const t = await Promise.race([p.exited, sleep(graceMs).then(() => null)]);
  if (t) return t;
  try { process.kill(p.pid, 'SIGKILL'); } catch (_) { /* gone */ }
  return p.exited;
}
const exitText = (e) => (!e ? 'still running' : e.signal ? `killed by ${e.signal}` : `exit status ${e.code}`);
function tail(file, n) {
  try { return fs.readFileSync(file, 'utf8').split('\n').filter(Boolean).slice(-n); } catch (_) { return []; }
}

// --- the test server
let server = null;
let serverStarts = 0;
let serverExpectedDown = false;
let dataDirSupported = false;
const unexpected = [];           // processes that ended when nothing stopped them
function serverArgs(port) {
  const a = [SERVER_JS, '--port', String(port), '--admin', `${ADMIN}:${PASS}`, '--session-timeout', '60'];
  if (dataDirSupported) a.push('--data-dir', DATA_DIR);
  return a;
}
async function startServer(port) {
  const n = ++serverStarts;
  const so = path.join(opt.work, `server-${n}.out`);
  const p = launch(`test-server-${n}`, process.execPath, serverArgs(port),
    {stdoutFile: so, stderrFile: path.join(opt.work, `server-${n}.log`)});
  const m = await waitForLine(so, /listening on http:\/\/127\.0\.0\.1:(\d+)/, p, 120000);
  if (!m) {
    await stopProc(p, 'SIGKILL', 1000);
    throw new Error(`the test server did not start (${exitText(p.exit)}): ${tail(path.join(opt.work, `server-${n}.log`), 5).join(' | ')}`);
  }
  SERVER.port = Number(m[1]);
  p.exited.then((e) => {
    if (!serverExpectedDown && !shuttingDown && !interrupted && server === p) {
      unexpected.push(`test server (pid ${p.pid}) ${exitText(e)} at ${Math.round(el() / 1000)} s`);
      say(`!!! the test server (pid ${p.pid}) ended by itself: ${exitText(e)}`);
    }
  });
  server = p;
  return p;
}

// --- the fault proxy
let proxy = null;
async function startProxy() {
  const so = path.join(opt.work, 'proxy.out');
  const p = launch('fault-proxy', process.execPath,
    [PROXY_JS, '--upstream', `http://127.0.0.1:${SERVER.port}`, '--port', '0', '--control-port', '0'],
    {stdoutFile: so, stderrFile: path.join(opt.work, 'proxy.log')});
  const m = await waitForLine(so, /listening on http:\/\/127\.0\.0\.1:(\d+)\/ control http:\/\/127\.0\.0\.1:(\d+)/, p, 30000);
  if (!m) throw new Error(`the fault proxy did not start: ${tail(path.join(opt.work, 'proxy.log'), 5).join(' | ')}`);
  PROXY.port = Number(m[1]);
  CONTROL.port = Number(m[2]);
  p.exited.then((e) => {
    if (!shuttingDown && !interrupted) {
      unexpected.push(`fault proxy (pid ${p.pid}) ${exitText(e)} at ${Math.round(el() / 1000)} s`);
      say(`!!! the fault proxy (pid ${p.pid}) ended by itself: ${exitText(e)}`);
    }
  });
  proxy = p;
}

// --- couchrepd
let serve = null;                // current instance: {pid, n, status:{host,port}, log, startedAt (el ms), ...}
const serves = [];               // every instance, in order
let serveExpectedDown = false;
let shuttingDown = false;
let interrupted = false;         // SIGINT/SIGTERM: everything stops, nothing more is reported
function writeConfig() {
  fs.writeFileSync(CONFIG, `# scripts/soak: the defaults of etc/couchrepd.yaml except these
server:
  url: http://127.0.0.1:${PROXY.port}
  username: ${ADMIN}
  auth: cookie          # the test server's sessions last 60 s (--session-timeout 60)
scheduler:
  max_jobs: ${Math.max(500, 2 * opt.pairs)}
replication:
  # The pools' sockets are bounded (one pool per credentials: the admin's cookie, the
  # documents' URL and auth-object credentials), so growth in fds is a leak, not a burst
  # of keep-alive connections that a busy moment opened and 30 s idle will close.
  host_connections: 4
status:
  listen: 127.0.0.1:0
log:
  level: info
`);
}
async function startServe() {
  const n = serves.length + 1;
  const log = path.join(opt.work, `couchrepd-${n}.log`);
  const p = launch(`couchrepd-${n}`, opt.couchrepd, ['serve', '--config', CONFIG],
    {stdoutFile: log, env: Object.assign({}, process.env, {COUCHREPD_SERVER_PASSWORD: PASS})});
  const s = {p, pid: p.pid, n, log, startedAt: el(), status: null};
  serves.push(s);
  p.exited.then((e) => {
    s.endedAt = el();
    if (!serveExpectedDown && !shuttingDown && !interrupted) {
      s.unexpected = true;
      unexpected.push(`couchrepd (pid ${s.pid}) ${exitText(e)} at ${Math.round(el() / 1000)} s`);
      say(`!!! couchrepd (pid ${s.pid}) ended by itself: ${exitText(e)}; last lines of ${path.basename(log)}:`);
      for (const l of tail(log, 15)) out(`      ${l}`);
    }
  });
  const m = await waitForLine(log, /status API on http:\/\/127\.0\.0\.1:(\d+)/, p, 60000);
  if (!m) throw new Error(`couchrepd did not start (${exitText(p.exit)}): ${tail(log, 8).join(' | ')}`);
  s.status = {host: '127.0.0.1', port: Number(m[1])};
  serve = s;
  return s;
}
async function waitHealthy(ms) {
  const deadline = now() + ms;
  let last = null;
  while (now() < deadline) {
    if (serve.p.exit) return {ok: false, last: 'couchrepd exited'};
    last = await statusGet('/health', 5000);
    if (last.status === 200) return {ok: true, last};
    await sleep(250);
  }
  return {ok: false, last: last ? brief(last) : 'no answer'};
}

// ------------------------------------------------------------------ /proc samples
function procStats(pid) {
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const field = (k) => { const m = status.match(new RegExp(`^${k}:\\s+(\\d+)`, 'm')); return m ? Number(m[1]) : NaN; };
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const cpu = (Number(f[11]) + Number(f[12])) / opt.clkTck;
    let fds = NaN;
    let sockets = 0;
    try {
      const list = fs.readdirSync(`/proc/${pid}/fd`);
      fds = list.length;
      for (const fd of list) {
        try { if (fs.readlinkSync(`/proc/${pid}/fd/${fd}`).startsWith('socket:')) sockets++; } catch (_) { /* closed */ }
      }
    } catch (_) { /* gone */ }
    return {rssMb: field('VmRSS') / 1024, hwmMb: field('VmHWM') / 1024, threads: field('Threads'), fds, sockets, cpu};
  } catch (_) { return null; }
}

// ------------------------------------------------------------------ the data model
// A pair: src-NNNNN -> tgt-NNNNN. A replication document points at it through the proxy.
const pairs = [];                // by number - 1
const live = new Map();          // replication doc id -> pair
const counters = {prefilled: 0, written: 0, writeOps: 0, writeFailed: 0, writeRefused: 0, churnDeleted: 0,
  churnCreated: 0, churnRecreated: 0, churnFailed: 0};
function newPair() {
  const no = pairs.length + 1;
  const p = {no, src: `src-${pad(no)}`, tgt: `tgt-${pad(no)}`, ids: [], gen: 0, docId: null, lastDocId: null,
    liveSince: null, history: [], targetRecreatedAt: null};
  pairs.push(p);
  return p;
}
function endpoint(p, db) {
  // Odd pairs carry credentials in the URL, even ones in the `auth` object.
  if (p.no % 2) return `http://${ADMIN}:${PASS}@127.0.0.1:${PROXY.port}/${db}`;
  return {url: `http://127.0.0.1:${PROXY.port}/${db}`, auth: {basic: {username: ADMIN, password: PASS}}};
}
const repDocBody = (p) => ({source: endpoint(p, p.src), target: endpoint(p, p.tgt), continuous: true,
  create_target: true});
const payload = () => crypto.randomBytes(16 + rnd(200)).toString('base64');
function attachment() {
  const big = Math.random() < 0.02;
  return {content_type: pick(['application/octet-stream', 'text/plain', 'image/png']),
    data: crypto.randomBytes(big ? 20000 + rnd(60000) : 32 + rnd(2000)).toString('base64')};
}
function newDoc(p) {
  const id = `d${pad(p.ids.length, 6)}-${crypto.randomBytes(3).toString('hex')}`;
  p.ids.push(id);
  const d = {_id: id, v: 1, payload: payload(), at: Date.now()};
  if (Math.random() < 0.2) d._attachments = {[`a${rnd(3)}.bin`]: attachment()};
  return d;
}
async function prefill(p, n) {
  await must('PUT', `/${p.src}`);
  const docs = Array.from({length: n}, () => newDoc(p));
  const res = await must('POST', `/${p.src}/_bulk_docs`, {docs});
  counters.prefilled += n;
  // A deleted document and a conflict in every source from the start.
  if (n >= 3) {
    const first = res[0];
    if (first && first.ok) await must('DELETE', `/${p.src}/${first.id}?rev=${first.rev}`);
    await must('POST', `/${p.src}/_bulk_docs`,
      {new_edits: false, docs: [{_id: p.ids[1], _rev: `1-${crypto.randomBytes(16).toString('hex')}`, v: 'branch'}]});
    counters.prefilled += 2;
  }
}
async function putRepDoc(p, id) {
  // `id` may be a deleted document (re-created): PUT without a rev works on a deleted id.
  const r = await couch('PUT', `/_replicator/${encodeURIComponent(id)}`, repDocBody(p));
  if (r.status !== 201 && r.status !== 202) return `PUT /_replicator/${id}: ${brief(r)}`;
  p.docId = id;
  p.lastDocId = id;
  p.liveSince = el();
  p.history.push(`live as ${id} from ${Math.round(el() / 1000)} s`);
  live.set(id, p);
  return null;
}
async function deleteRepDoc(p) {
  const id = p.docId;
  for (let attempt = 0; attempt < 5; attempt++) {
    const g = await couch('GET', `/_replicator/${encodeURIComponent(id)}`);
    if (g.status === 404) break;
    if (g.status !== 200) return `GET /_replicator/${id}: ${brief(g)}`;
    const d = await couch('DELETE', `/_replicator/${encodeURIComponent(id)}?rev=${g.json._rev}`);
    if (d.status === 200 || d.status === 202) break;
    if (d.status !== 409) return `DELETE /_replicator/${id}: ${brief(d)}`;
    if (attempt === 4) return `DELETE /_replicator/${id}: 409 five times`;
  }
  live.delete(id);
  p.docId = null;
  p.history.push(`deleted at ${Math.round(el() / 1000)} s`);
  return null;
}

// ------------------------------------------------------------------ the writer
let writing = false;
const writerInFlight = new Set();
async function writeOne() {
  const livePairs = [...live.values()];
  const p = Math.random() < 0.9 && livePairs.length ? pick(livePairs) : pick(pairs);
  const r = Math.random();
  const db = `/${p.src}`;
  let res;
  let n = 1;
  if (r < 0.42 || !p.ids.length) {
    const d = newDoc(p);
    res = await couch('PUT', `${db}/${d._id}`, d, {timeout: 30000});
    if (res.status === 201 && res.json) maybeProbe(p, d._id, res.json.rev);
  } else if (r < 0.72) {
    const id = pick(p.ids);
    const g = await couch('GET', `${db}/${id}`, undefined, {timeout: 30000});
    if (g.status === 200) {
      const d = g.json;
      d.v = (d.v | 0) + 1;
      d.payload = payload();
      const a = Math.random();
      if (a < 0.25) d._attachments = Object.assign(d._attachments || {}, {[`a${rnd(3)}.bin`]: attachment()});
      else if (a < 0.4) delete d._attachments;
      res = await couch('PUT', `${db}/${id}`, d, {timeout: 30000});
    } else if (g.status === 404) {
      res = await couch('PUT', `${db}/${id}`, {v: 1, payload: payload(), undeleted: true}, {timeout: 30000});
    } else {
      res = g;
    }
  } else if (r < 0.84) {
    const id = pick(p.ids);
    const g = await couch('GET', `${db}/${id}`, undefined, {timeout: 30000});
    res = g.status === 200 ? await couch('DELETE', `${db}/${id}?rev=${g.json._rev}`, undefined, {timeout: 30000}) : g;
    if (g.status === 404) { counters.writeRefused++; return; }
  } else if (r < 0.9) {
    const id = pick(p.ids);
    res = await couch('POST', `${db}/_bulk_docs`, {new_edits: false,
      docs: [{_id: id, _rev: `${1 + rnd(3)}-${crypto.randomBytes(16).toString('hex')}`, v: 'conflict', payload: payload()}]},
    {timeout: 30000});
  } else {
    n = 5;
    res = await couch('POST', `${db}/_bulk_docs`, {docs: Array.from({length: n}, () => newDoc(p))}, {timeout: 30000});
  }
  counters.writeOps++;
  if (res.status >= 200 && res.status < 300) counters.written += n;
  else if (res.status === 409 || res.status === 404) counters.writeRefused++;
  else counters.writeFailed++;
}
async function writerLoop() {
  // An operation writes 1.4 documents on average (10 % are 5-document _bulk_docs).
  const every = 1400 / opt.writeRate;
  let next = now();
  while (writing) {
    next += every;
    if (writerInFlight.size < 8) {
      const w = writeOne().catch(() => { counters.writeFailed++; }).finally(() => writerInFlight.delete(w));
      writerInFlight.add(w);
    }
    const wait = next - now();
    if (wait > 0) await sleep(wait); else next = now();
  }
  await Promise.all([...writerInFlight]);
}

// ------------------------------------------------------------------ lag probes
// Every 10 s one new document the writer created on a live pair becomes a probe: its target
// is asked every 2 s (_revs_diff, straight to the server) until it has that revision. A probe
// is dropped when its pair's replication document is deleted first.
const PROBE_EVERY_MS = 10000;
const LATE_MS = 300000;
const probes = [];
let lastProbeAt = 0;
let probing = false;
function maybeProbe(p, id, rev) {
  if (!p.docId || !rev || now() - lastProbeAt < PROBE_EVERY_MS) return;
  lastProbeAt = now();
  probes.push({t: now(), tEl: el(), p, docId: p.docId, id, rev, lag: null, dropped: false});
}
const waitingProbes = () => probes.filter((x) => x.lag === null && !x.dropped);
async function probeOnce() {
  for (const x of waitingProbes()) {
    if (x.p.docId !== x.docId) { x.dropped = true; continue; }
    // Arrived when a leaf of the target's document is that revision or descends from it
    // (the writer may have updated it meanwhile). Not _revs_diff: the test server calls an
    // ancestor it only knows from a _revisions history missing.
    const r = await couch('GET', `/${x.p.tgt}/${encodeURIComponent(x.id)}?open_revs=all&revs=true`, undefined, {timeout: 10000});
    if (r.status === 200 && Array.isArray(r.json)) {
      const n = parseInt(x.rev, 10);
      const h = x.rev.slice(x.rev.indexOf('-') + 1);
      const has = r.json.some((e) => e && e.ok && e.ok._revisions &&
        e.ok._revisions.start - n >= 0 && e.ok._revisions.ids[e.ok._revisions.start - n] === h);
      if (has) x.lag = now() - x.t;
    }
  }
}
async function probeLoop() {
  while (probing) {
    const t = now();
    await probeOnce().catch(() => {});
    const wait = 2000 - (now() - t);
    if (wait > 0) await sleep(wait);
  }
}
// For the 10 s line: the largest lag of the probes that arrived since the last line, and the
// probes still waiting for more than 30 s.
function probeLine() {
  const fresh = probes.filter((x) => x.lag !== null && !x.reported);
  for (const x of fresh) x.reported = true;
  const w = waitingProbes().filter((x) => now() - x.t > 30000);
  const oldest = w.length ? Math.max(...w.map((x) => now() - x.t)) : 0;
  return `lag ${fresh.length ? `max ${fmtS(Math.max(...fresh.map((x) => x.lag)))}` : '-'}` +
    `${w.length ? `, ${w.length} waiting > 30 s (oldest ${fmtS(oldest)})` : ''}`;
}

// ------------------------------------------------------------------ the churn
let churning = false;
async function churnOne() {
  // One deleted, one created; when an earlier creation failed (the server was away), only
  // a creation, so that the count of live documents comes back to --pairs.
  const victims = [...live.values()];
  let v = null;
  if (victims.length >= opt.pairs) {
    v = pick(victims);
    const e = await deleteRepDoc(v);
    if (e) { counters.churnFailed++; churnNote(e); return; }
    counters.churnDeleted++;
  }
  const dead = pairs.filter((p) => !p.docId && p !== v && !p.broken);
  let p;
  let id;
  if (dead.length && Math.random() < 0.3) {
    // A previously deleted pair comes back: the same document id half of the time.
    p = pick(dead);
    p.gen++;
    id = Math.random() < 0.5 ? p.lastDocId : `rep-${pad(p.no)}-${p.gen}`;
    counters.churnRecreated++;
  } else {
    p = newPair();
    try { await prefill(p, 5); } catch (err) { p.broken = true; counters.churnFailed++; churnNote(err.message); return; }
    id = `rep-${pad(p.no)}-0`;
    counters.churnCreated++;
  }
  const pe = await putRepDoc(p, id);
  if (pe) { counters.churnFailed++; churnNote(pe); }
}
let churnNotes = 0;
function churnNote(e) { if (++churnNotes <= 5) say(`churn: ${e}`); }
async function churnLoop() {
  while (churning) {
    const t = now();
    await churnOne().catch((e) => { counters.churnFailed++; churnNote(e.message); });
    const wait = opt.churnEvery * 1000 - (now() - t);
    if (wait > 0) await sleep(wait);
  }
}

// ------------------------------------------------------------------ sampling
const samples = [];              // {t, pid, rssMb, fds, threads, flood, phase}
let sampling = false;
let floodActive = false;
let prevDocsWritten = null;      // Map key -> docs_written of the previous sample
let prevSampleT = 0;
let replicatedTotal = 0;
let lastWrittenCount = 0;
let statusFailures = 0;
async function sampleOnce(phase) {
  const s = serve;
  const st = s && !s.p.exit ? procStats(s.pid) : null;
  const t = el();
  if (st) samples.push({t, pid: s.pid, rssMb: st.rssMb, fds: st.fds, sockets: st.sockets, threads: st.threads, flood: floodActive, phase});
  let jobs = 'status API: ';
  let rate = '-';
  if (s && !s.p.exit) {
    const r = await statusGet(ALL_DOCS, 8000);
    if (r.status === 200 && r.json && Array.isArray(r.json.docs)) {
      const byState = {};
      const cur = new Map();
      for (const d of r.json.docs) {
        byState[d.state] = (byState[d.state] || 0) + 1;
        if (d.info && typeof d.info.docs_written === 'number') cur.set(`${s.pid}|${d.doc_id}|${d.id}`, d.info.docs_written);
      }
      if (prevDocsWritten) {
        let delta = 0;
        for (const [k, v] of cur) if (prevDocsWritten.has(k)) delta += Math.max(0, v - prevDocsWritten.get(k));
        replicatedTotal += delta;
        rate = `${(delta / ((t - prevSampleT) / 1000)).toFixed(1)}/s`;
      }
      prevDocsWritten = cur;
      prevSampleT = t;
      jobs = Object.entries(byState).sort((a, b) => b[1] - a[1]).map(([k, v]) => `${v} ${k}`).join(', ') || 'no documents';
    } else {
      statusFailures++;
      jobs += brief(r);
      prevDocsWritten = null;
    }
  } else {
    jobs = 'couchrepd not running';
    prevDocsWritten = null;
  }
  const wr = counters.written - lastWrittenCount;
  lastWrittenCount = counters.written;
  out(`${stamp()} ${st ? `RSS ${st.rssMb.toFixed(1)} MB, ${st.fds} fds, ${st.threads} threads` : 'couchrepd: no process'}` +
      ` | written ${counters.written} (+${wr}) | replicated ${rate} | ${probeLine()} | ${jobs}` +
      `${floodActive ? ' | (flood on)' : ''}${phase !== 'run' ? ` | ${phase}` : ''}`);
}
async function samplerLoop() {
  let next = now();
  while (sampling) {
    next += 10000;
    await sampleOnce(writing ? 'run' : 'final');
    while (sampling && now() < next) await sleep(Math.min(500, next - now()));
  }
}

// ------------------------------------------------------------------ faults
const faultLog = [];             // {kind, start, end, ok, detail}
let healthUnderFlood = [];       // {ms, status}
async function proxyFaultCounts() {
  const r = await ctl('GET', '/stats');
  return r.status === 200 ? r.json.faults : null;
}
const faultDelta = (a, b) => (a && b ? Object.keys(b).filter((k) => b[k] - a[k]).map((k) => `${b[k] - a[k]} ${k}`).join(', ') || 'none' : '?');
async function holdFor(ms) {
  const end = now() + ms;
  while (now() < end && !aborted) await sleep(Math.min(250, end - now()));
}
async function ctlOk(method, p, body) {
  const r = await ctl(method, p, body);
  if (r.status < 200 || r.status >= 300) throw new Error(`proxy control ${method} ${p}: ${brief(r)}`);
  return r.json;
}
const FAULTS = [
  {kind: 'blackhole', secs: 30, label: 'black hole 30 s (POST /blackhole)', async run() {
    const a = await proxyFaultCounts();
    await ctlOk('POST', '/blackhole', {on: true});
    await holdFor(30000);
    await ctlOk('POST', '/blackhole', {on: false});
    return `proxy faults: ${faultDelta(a, await proxyFaultCounts())}`;
  }},
  {kind: 'kill9', secs: 10, label: 'kill -9 of couchrepd, then a restart', async run() {
    const old = serve;
    serveExpectedDown = true;
    try { process.kill(old.pid, 'SIGKILL'); } catch (_) { /* gone */ }
    await old.p.exited;
    serveExpectedDown = false;
    const t = now();
    const s = await startServe();
    const h = await waitHealthy(120000);
    return `pid ${old.pid} ${exitText(old.p.exit)} (lived ${fmtS(old.endedAt - old.startedAt)}); new pid ${s.pid}, ` +
      `status API on :${s.status.port}, /health 200 ${h.ok ? `after ${fmtS(now() - t)}` : `NOT within 120 s (${h.last})`}`;
  }},
  {kind: '5xx', secs: 30, label: '30 % 500/503 for 30 s', async run() {
    const a = await proxyFaultCounts();
    // 15 % 500, then 15 % of all (0.15 / 0.85 of the rest) 503
    const res = await ctlOk('POST', '/faults', [{probability: 0.15, status: 500},
      {probability: 0.15 / 0.85, status: 503, retry_after: 1}]);
    await holdFor(30000);
    await ctlOk('DELETE', '/faults');
    return `proxy faults: ${faultDelta(a, await proxyFaultCounts())} (rules ${res.ids.join(',')})`;
  }},
  {kind: 'target', secs: 5, label: 'a target database deleted and re-created', async run() {
    // A pair whose job has checkpointed on its target: recreating a target before the job's
    // first checkpoint cannot be noticed (no checkpoint vanishes; CouchDB has the same hole),
    // so that case is not what this fault tests.
    let p = null;
    let note = 'its job has a checkpoint on it';
    const r = await statusGet(ALL_DOCS, 15000);
    const byDoc = new Map((r.status === 200 && r.json ? r.json.docs : []).map((d) => [d.doc_id, d]));
    const candidates = [...live.values()].sort(() => Math.random() - 0.5).slice(0, 40);
    for (const c of candidates) {
      const d = byDoc.get(c.docId);
      if (!d || d.state !== 'running' || !d.id) continue;
      const l = await couch('GET', `/${c.tgt}/_local/${d.id.split('+')[0]}`);
      if (l.status === 200) { p = c; break; }
    }
    if (!p) { p = pick([...live.values()]); note = 'NO candidate had a checkpoint: a random pair'; }
    const info = await couch('GET', `/${p.tgt}`);
    const d = await couch('DELETE', `/${p.tgt}`);
    const c = await couch('PUT', `/${p.tgt}`);
    p.targetRecreatedAt = el();
    p.history.push(`target deleted and re-created at ${Math.round(el() / 1000)} s`);
    return `${p.tgt} (pair ${p.no}, document ${p.docId}; ${note}; it had ${info.json ? info.json.doc_count : '?'} documents): ` +
      `DELETE ${d.status}, PUT ${c.status}`;
  }},
  {kind: 'flood', secs: 20, label: 'status API flood: 300 idle connections for 20 s, timing GET /health', async run() {
    const port = serve.status.port;
    const socks = [];
    let connected = 0;
    let failed = 0;
    for (let i = 0; i < 300; i++) {
      const sk = net.connect(port, '127.0.0.1');
      sk.on('connect', () => { connected++; if (i < 50) sk.write('GET /hea'); });
      sk.on('error', () => { failed++; });
      socks.push(sk);
    }
    floodActive = true;
    await sleep(500);
    const times = [];
    const end = now() + 19500;
    while (now() < end && !aborted) {
      const r = await request(serve.status, 'GET', '/health', undefined, {timeout: 10000});
      times.push({ms: r.ms, status: r.status});
      healthUnderFlood.push({ms: r.ms, status: r.status});
      await sleep(1000);
    }
    for (const sk of socks) sk.destroy();
    floodActive = false;
    const max = times.length ? Math.max(...times.map((x) => x.ms)) : NaN;
    const st = {};
    for (const x of times) st[x.status || 'no answer'] = (st[x.status || 'no answer'] || 0) + 1;
    return `${connected} of 300 connected (${failed} errors); /health ${times.length} times: max ${max.toFixed(0)} ms, ` +
      `statuses ${JSON.stringify(st)}${max > 1000 ? ' !!! over 1 s' : ''}`;
  }},
  {kind: 'restart', secs: 10, needsDataDir: true, label: 'test server restarted (SIGTERM, same port, same --data-dir)', async run() {
    const old = server;
    const port = SERVER.port;
    serverExpectedDown = true;
    const t = now();
    const e = await stopProc(old, 'SIGTERM', 15000);
    let err = null;
    for (let attempt = 0; attempt < 5; attempt++) {
      try { await startServer(port); err = null; break; } catch (x) { err = x; await sleep(1000); }
    }
    serverExpectedDown = false;
    serverAgent.destroy();
    if (err) throw err;
    return `pid ${old.pid} ${exitText(e)}; pid ${server.pid} listening again on :${port} after ${fmtS(now() - t)}`;
  }},
  {kind: '429', secs: 20, label: '429 storm 20 s (50 % of requests, Retry-After 1)', async run() {
    const a = await proxyFaultCounts();
    await ctlOk('POST', '/faults', [{probability: 0.5, status: 429, retry_after: 1}]);
    await holdFor(20000);
    await ctlOk('DELETE', '/faults');
    return `proxy faults: ${faultDelta(a, await proxyFaultCounts())}`;
  }},
  {kind: 'feedcut', secs: 30, label: '_replicator feed cut for 30 s (cut_after_bytes 400 + POST /cut every 3 s)', async run() {
    const a = await proxyFaultCounts();
    await ctlOk('POST', '/faults', [{path: '^/_replicator/_changes', cut_after_bytes: 400}]);
    let cuts = 0;
    const end = now() + 30000;
    while (now() < end && !aborted) {
      const r = await ctl('POST', '/cut', {path: '^/_replicator/_changes'});
      if (r.status === 200) cuts += r.json.cut;
      await sleep(Math.min(3000, Math.max(0, end - now())));
    }
    await ctlOk('DELETE', '/faults');
    return `proxy faults: ${faultDelta(a, await proxyFaultCounts())} (${cuts} by POST /cut)`;
  }},
];
let activeFaults = [];
let aborted = false;
async function faultLoop() {
  let k = 0;
  let slot = FAULT_EVERY_MS / 2;
  while (activeFaults.length) {
    const f = activeFaults[k % activeFaults.length];
    const start = Math.max(slot, el());
    if (start + f.secs * 1000 > DURATION_MS || aborted) break;
    while (el() < start && !aborted) await sleep(Math.min(500, start - el()));
    if (aborted) break;
    const n = faultLog.length + 1;
    const rec = {n, kind: f.kind, start: el(), end: 0, ok: false, detail: ''};
    faultLog.push(rec);
    say(`>>> fault ${n}: ${f.label}`);
    try {
      rec.detail = await f.run();
      rec.ok = true;
    } catch (e) {
      rec.detail = `FAILED: ${e.message}`;
    }
    rec.end = el();
    say(`<<< fault ${n} (${f.kind}) over after ${fmtS(rec.end - rec.start)}: ${rec.detail}`);
    if (!rec.ok && /did not start/.test(rec.detail)) { aborted = true; break; }
    k++;
    slot += FAULT_EVERY_MS;
  }
}

// ------------------------------------------------------------------ comparison
async function leaves(db) {
  const r = await couch('GET', `/${db}/_changes?style=all_docs`, undefined, {timeout: 300000});
  if (r.status !== 200 || !r.json || !Array.isArray(r.json.results)) return {error: brief(r)};
  const m = new Map();
  for (const row of r.json.results) m.set(row.id, row.changes.map((c) => c.rev).sort());
  return {map: m, lastSeq: r.json.last_seq};
}
function leafDiff(a, b) {
  const diffs = [];
  for (const [id, revs] of a) {
    const other = b.get(id);
    if (!other) diffs.push(`${id}: missing on the target (source leaves ${revs.join(' ')})`);
    else if (revs.join(' ') !== other.join(' ')) diffs.push(`${id}: leaves differ (source ${revs.join(' ')}; target ${other.join(' ')})`);
  }
  for (const id of b.keys()) if (!a.has(id)) diffs.push(`${id}: only on the target (${b.get(id).join(' ')})`);
  return diffs;
}
function canon(doc) {
  const d = Object.assign({}, doc);
  if (d._attachments) {
    const a = {};
    for (const [k, v] of Object.entries(d._attachments)) a[k] = {content_type: v.content_type, digest: v.digest, length: v.length};
    d._attachments = a;
  }
  return stable(d);
}
// Bodies of every (id, leaf rev) of `entries` on `db`: Map "id rev" -> canonical text or "!missing".
async function bodies(db, entries) {
  const m = new Map();
  for (let i = 0; i < entries.length; i += 200) {
    const batch = entries.slice(i, i + 200);
    const r = await couch('POST', `/${db}/_bulk_get?revs=true`, {docs: batch.map(([id, rev]) => ({id, rev}))}, {timeout: 300000});
    if (r.status !== 200 || !r.json) throw new Error(`POST /${db}/_bulk_get: ${brief(r)}`);
    for (const res of r.json.results) {
      for (const d of res.docs) {
        if (d.ok) m.set(`${d.ok._id} ${d.ok._rev}`, canon(d.ok));
        else if (d.missing) m.set(`${res.id} ${d.missing}`, '!missing');
        else if (d.error) m.set(`${res.id} ${d.error.rev}`, `!error ${stable(d.error)}`);
      }
    }
  }
  return m;
}
async function comparePair(p, full) {
  const [a, b] = await Promise.all([leaves(p.src), leaves(p.tgt)]);
  if (a.error) return {p, diffs: [`source ${p.src}: ${a.error}`], docs: 0, revs: 0};
  if (b.error) return {p, diffs: [`target ${p.tgt}: ${b.error}`], docs: a.map.size, revs: 0};
  const diffs = leafDiff(a.map, b.map);
  let revs = 0;
  for (const v of a.map.values()) revs += v.length;
  let trevs = 0;
  for (const v of b.map.values()) trevs += v.length;
  const sig = `${a.map.size}/${revs}/${b.map.size}/${trevs}`;
  if (full && !diffs.length) {
    const entries = [];
    for (const [id, rs] of a.map) for (const rev of rs) entries.push([id, rev]);
    const [sa, sb] = await Promise.all([bodies(p.src, entries), bodies(p.tgt, entries)]);
    for (const [id, rev] of entries) {
      const k = `${id} ${rev}`;
      const x = sa.get(k);
      const y = sb.get(k);
      if (x === undefined || x.startsWith('!')) diffs.push(`${k}: not readable on the source (${x || 'not returned'})`);
      else if (x !== y) diffs.push(`${k}: body differs\n          source ${x.slice(0, 300)}\n          target ${String(y).slice(0, 300)}`);
    }
  }
  return {p, diffs, docs: a.map.size, revs, sig, srcSeq: a.lastSeq};
}

// ------------------------------------------------------------------ the couchrepd log
function logSummary() {
  const byLevel = {};
  const samplesByKey = new Map();
  const alarming = [];
  for (const s of serves) {
    let lines = [];
    try { lines = fs.readFileSync(s.log, 'utf8').split('\n'); } catch (_) { /* none */ }
    for (const l of lines) {
      const m = l.match(/^\S+Z (\w+) (.*)$/);
      if (!m) {
        if (l.trim() && alarming.length < 20) alarming.push(`couchrepd-${s.n}: ${l.slice(0, 300)}`);
        continue;
      }
      byLevel[m[1]] = (byLevel[m[1]] || 0) + 1;
      if (/^(warn|warning|error|critical)$/.test(m[1])) {
        const key = `${m[1]} ${m[2].replace(/\[[^\]]*\]/g, '[..]').replace(/\b[0-9a-f]{32}\b/g, 'ID')
          .replace(/\d+/g, 'N').slice(0, 170)}`;
        const e = samplesByKey.get(key) || {n: 0, example: l};
        e.n++;
        samplesByKey.set(key, e);
      }
      if (/assert|abort|terminate|segfault|std::|exception|deadlock|stuck/i.test(m[2]) && alarming.length < 20) {
        alarming.push(`couchrepd-${s.n}: ${l.slice(0, 300)}`);
      }
    }
  }
  return {byLevel, top: [...samplesByKey.entries()].sort((a, b) => b[1].n - a[1].n).slice(0, 12), alarming};
}

// ------------------------------------------------------------------ flatness
// A sample is "quiet" when no fault was active in the 90 s before it: a fault's own spike (the
// threads waiting in a black hole) and its after-effects (jobs crashed by it restart after
// their 30 s backoff and catch up on connections that close after 30 s idle) are not growth.
// The status flood's samples are never used (its 300 connections are couchrepd's fds).
const RECOVERY_MS = 90000;
const disturbed = (s) => faultLog.some((f) => s.t >= f.start && s.t <= (f.end || Infinity) + RECOVERY_MS);
function thirds(use) {
  const lo = use[0].t;
  const span = use[use.length - 1].t - lo;
  const first = use.filter((s) => s.t <= lo + span / 3);
  const last = use.filter((s) => s.t >= lo + 2 * span / 3);
  const series = {};
  for (const k of ['rssMb', 'fds', 'threads']) {
    const a = Math.max(...first.map((s) => s[k]));
    const b = Math.max(...last.map((s) => s[k]));
    series[k] = {first: a, last: b, met: b <= a * 1.1};
  }
  // Of the fds at those maxima, how many were sockets (pooled keep-alive connections come and go).
  const at = (arr) => arr.reduce((m, s) => (s.fds > m.fds ? s : m), arr[0]);
  series.fds.socketsFirst = at(first).sockets;
  series.fds.socketsLast = at(last).sockets;
  return series;
}
function flatness() {
  // Per process: its samples of the run phase; the longest-lived one (most time covered) is judged.
  const byPid = new Map();
  for (const s of samples) {
    if (s.phase !== 'run') continue;
    if (!byPid.has(s.pid)) byPid.set(s.pid, []);
    byPid.get(s.pid).push(s);
  }
  const procs = [...byPid.entries()].map(([pid, ss]) => ({pid, ss, span: ss[ss.length - 1].t - ss[0].t}));
  procs.sort((a, b) => b.span - a.span || b.ss.length - a.ss.length);
  const judged = procs[0];
  const res = {procs, judged: judged ? judged.pid : null, series: {}, all: null, note: ''};
  if (!judged) { res.note = 'no samples'; return res; }
  const inst = serves.find((s) => s.pid === judged.pid);
  const from = Math.max(WARMUP_MS, (inst ? inst.startedAt : 0) + WARMUP_MS);
  const after = judged.ss.filter((s) => s.t >= from && !s.flood);
  const quiet = after.filter((s) => !disturbed(s));
  res.from = from;
  res.excludedFlood = judged.ss.filter((s) => s.t >= from && s.flood).length;
  if (after.length < 3) { res.note = `too few samples after the warm-up (${after.length})`; return res; }
  res.all = thirds(after);
  // Two quiet samples per third at least, else every sample after the warm-up.
  if (quiet.length >= 6) {
    const q = thirds(quiet);
    res.series = q;
    res.basis = `${quiet.length} quiet samples (no fault in the 90 s before; ${after.length - quiet.length} during faults and their after-effects left out)`;
  } else {
    res.series = res.all;
    res.all = null;
    res.basis = `all ${after.length} samples (only ${quiet.length} without a fault in the 90 s before)`;
  }
  return res;
}

// ------------------------------------------------------------------ main
async function shutdownAll(reason) {
  shuttingDown = true;
  writing = false; churning = false; sampling = false; probing = false; aborted = true;
  const tasks = [];
  if (serve && !serve.p.exit) tasks.push(stopProc(serve.p, 'SIGTERM', interrupted ? 5000 : 10000));
  await Promise.all(tasks);
  if (proxy && !proxy.exit) await stopProc(proxy, 'SIGTERM', 3000);
  serverExpectedDown = true;
  if (server && !server.exit) await stopProc(server, 'SIGTERM', 10000);
  if (reason) out(`stopped: ${reason}`);
}
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    if (interrupted) return;
    interrupted = true;
    out(`\n!!! ${sig}: stopping everything`);
    quiet = true;
    shutdownAll().finally(() => process.exit(130));
  });
}

async function main() {
  const tStart = now();
  // --data-dir is needed for the server restart fault.
  try {
    dataDirSupported = /--data-dir/.test(execFileSync(process.execPath, [SERVER_JS, '--help'], {encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe']}));
  } catch (e) {
    dataDirSupported = /--data-dir/.test(String(e.stdout || '') + String(e.stderr || ''));
  }
  if (opt.faults) {
    const names = opt.faults.split(',').map((x) => x.trim()).filter((x) => x && x !== 'none');
    for (const n of names) {
      if (!FAULTS.some((f) => f.kind === n)) {
        out(`soak: --faults: unknown fault '${n}' (${FAULTS.map((f) => f.kind).join(', ')})`);
        return 2;
      }
    }
    activeFaults = names.map((n) => FAULTS.find((f) => f.kind === n));
  } else {
    activeFaults = FAULTS.slice();
  }
  if (!dataDirSupported && activeFaults.some((f) => f.needsDataDir)) {
    out('note: the test server has no --data-dir: the server-restart fault is left out, data in memory');
  }
  activeFaults = activeFaults.filter((f) => !f.needsDataDir || dataDirSupported);
  const nFaults = (() => {
    let n = 0; let slot = FAULT_EVERY_MS / 2; let t = 0;
    while (activeFaults.length) { const f = activeFaults[n % activeFaults.length]; const s = Math.max(slot, t);
      if (s + f.secs * 1000 > DURATION_MS) break; t = s + f.secs * 1000; n++; slot += FAULT_EVERY_MS; }
    return n;
  })();
  out(`soak: ${opt.minutes} min, ${opt.pairs} continuous replications, writes ~${opt.writeRate} documents/s, churn every ` +
      `${opt.churnEvery} s, a fault every ${FAULT_EVERY_MS / 1000} s (about ${nFaults} faults; rotation: ` +
      `${activeFaults.map((f) => f.kind).join(', ')})`);
  out(`work directory ${opt.work}; ${require('os').cpus().length} cores, load ${loadavg()}`);

  if (dataDirSupported) fs.mkdirSync(DATA_DIR, {recursive: true});
  await startServer(0);
  await startProxy();
  writeConfig();
  await startServe();
  out(`test server http://127.0.0.1:${SERVER.port} (pid ${server.pid}${dataDirSupported ? `, --data-dir ${DATA_DIR}` : ''}), ` +
      `fault proxy :${PROXY.port} (control :${CONTROL.port}, pid ${proxy.pid}), couchrepd pid ${serve.pid} ` +
      `(status API :${serve.status.port}, server.auth cookie, sessions of 60 s)`);
  const h = await waitHealthy(60000);
  if (!h.ok) throw new Error(`couchrepd not healthy within 60 s: ${h.last}`);
  {
    const deadline = now() + 60000;
    while ((await couch('GET', '/_replicator/_design/_replicator')).status !== 200) {
      if (now() > deadline) throw new Error('_replicator/_design/_replicator not installed within 60 s');
      await sleep(200);
    }
  }
  let t = now();
  for (let i = 0; i < opt.pairs; i++) newPair();
  await pool(pairs, 8, (p) => prefill(p, opt.prefill));
  out(`set-up: ${opt.pairs} sources with ${opt.prefill} documents each (attachments on ~20 %, a deletion and a ` +
      `conflict in each) in ${fmtS(now() - t)}`);
  t = now();
  {
    const docs = pairs.map((p) => Object.assign({_id: `rep-${pad(p.no)}-0`}, repDocBody(p)));
    const res = await must('POST', '/_replicator/_bulk_docs', {docs}, {timeout: 300000});
    const bad = res.filter((x) => x.error);
    if (bad.length) throw new Error(`${bad.length} replication documents refused: ${JSON.stringify(bad[0])}`);
    for (const p of pairs) { p.docId = p.lastDocId = `rep-${pad(p.no)}-0`; p.liveSince = 0; p.history.push('live from the start'); live.set(p.docId, p); }
  }
  out(`set-up: ${opt.pairs} replication documents (continuous, create_target; odd pairs with credentials in the URL, ` +
      `even ones in "auth") in ${fmtS(now() - t)}; set-up took ${fmtS(now() - tStart)}`);
  out('');

  // --- the run
  T0 = now();
  writing = true; churning = true; sampling = true;
  probing = true;
  const loops = [writerLoop(), churnLoop()];
  const prober = probeLoop();
  const sampler = samplerLoop();
  const faults = faultLoop();
  while (el() < DURATION_MS && !aborted) {
    if (unexpected.length) { aborted = true; break; }
    await sleep(250);
  }
  const runMs = el();
  if (aborted) say(`!!! the run stops early: ${unexpected.join('; ') || 'a fault could not be completed'}`);
  await faults;
  await ctl('DELETE', '/faults');
  writing = false; churning = false;
  await Promise.all(loops);
  say(`run over: faults stopped, writer and churn stopped; ${counters.written} documents written in ` +
      `${counters.writeOps} operations (${counters.writeFailed} failed, ${counters.writeRefused} refused), ` +
      `churn: ${counters.churnDeleted} deleted, ${counters.churnCreated} new pairs, ${counters.churnRecreated} re-created, ` +
      `${counters.churnFailed} failed; ${live.size} live replication documents`);

  // --- what is live, according to the server
  const all = await must('GET', '/_replicator/_all_docs?include_docs=true', undefined, {timeout: 120000});
  const serverLive = new Map();
  for (const row of all.rows) {
    if (row.id.startsWith('_design/')) continue;
    serverLive.set(row.id, row.doc);
  }
  const bookkeeping = [];
  for (const id of live.keys()) if (!serverLive.has(id)) bookkeeping.push(`${id}: live for the script, missing on the server`);
  for (const id of serverLive.keys()) if (!live.has(id)) bookkeeping.push(`${id}: on the server, deleted for the script`);
  if (bookkeeping.length) {
    say(`note: the script's idea of the live documents differs from the server's (a write whose answer was lost): ` +
        `${bookkeeping.slice(0, 5).join('; ')}; the server's list is used`);
    for (const id of serverLive.keys()) {
      if (!live.has(id)) { const m = id.match(/^rep-(\d+)-/); if (m) live.set(id, pairs[Number(m[1]) - 1]); }
    }
    for (const id of [...live.keys()]) if (!serverLive.has(id)) live.delete(id);
  }
  const livePairs = [...live.entries()].map(([id, p]) => ({id, p}));

  // --- wait for the targets (leaf revisions equal on every live pair)
  const servedAlive = () => serve && !serve.p.exit;
  const tc = now();
  let pending = livePairs.map((x) => x.p);
  let lastReport = now();
  const catchUpMs = servedAlive() && !unexpected.length ? opt.catchUp * 1000 : 10000;
  // Gives up early when nothing moved for 60 s while every job of a differing pair says it is
  // up to date (running, nothing pending, through_seq = source_seq): waiting longer cannot help.
  let sig = '';
  let sigSince = now();
  let stuckNote = '';
  while (pending.length) {
    const res = await pool(pending, 4, (p) => comparePair(p, false));
    pending = res.filter((r) => r.diffs.length).map((r) => r.p);
    if (!pending.length || now() - tc > catchUpMs) break;
    const nsig = res.filter((r) => r.diffs.length).map((r) => `${r.p.no}:${r.sig}`).join(' ');
    if (nsig !== sig) { sig = nsig; sigSince = now(); }
    if (now() - sigSince > 60000 && servedAlive()) {
      const r = await statusGet(ALL_DOCS, 15000);
      const docs = r.status === 200 && r.json ? r.json.docs : [];
      const idle = pending.every((p) => {
        const d = docs.find((x) => x.doc_id === p.docId);
        return d && d.state === 'running' && d.info && !d.info.changes_pending &&
          String(d.info.through_seq) === String(d.info.source_seq);
      });
      if (idle) {
        stuckNote = `gave up after 60 s without any change: the job of every differing pair says it is up to date`;
        break;
      }
    }
    if (now() - lastReport > 30000) {
      say(`catching up: ${pending.length} of ${livePairs.length} targets still differ from their source`);
      lastReport = now();
    }
    await sleep(3000);
  }
  const caughtUpMs = now() - tc;
  say(pending.length ? `!!! ${pending.length} of ${livePairs.length} targets still differ after ${fmtS(caughtUpMs)} of waiting` +
      `${stuckNote ? ` (${stuckNote})` : ''}`
    : `every live target has its source's leaf revisions ${fmtS(caughtUpMs)} after the end of the writes`);
  const docStates = {};
  const stateOf = new Map();
  {
    const r = await couch('GET', '/_replicator/_all_docs?include_docs=true', undefined, {timeout: 120000});
    for (const row of (r.json && r.json.rows) || []) {
      if (row.id.startsWith('_design/') || !row.doc) continue;
      const k = row.doc._replication_state || '(none)';
      docStates[k] = (docStates[k] || 0) + 1;
      stateOf.set(row.id, k);
    }
  }
  sampling = false;
  await sampler;
  probing = false;
  await prober;
  await probeOnce().catch(() => {});

  // --- full comparison
  const tf = now();
  const results = await pool(livePairs.map((x) => x.p), 4, (p) => comparePair(p, true).catch((e) => ({p, diffs: [e.message], docs: 0, revs: 0})));
  const compareMs = now() - tf;
  const differing = results.filter((r) => r.diffs.length);
  const totalDocs = results.reduce((s, r) => s + r.docs, 0);
  const totalRevs = results.reduce((s, r) => s + r.revs, 0);

  // --- status API against the documents
  const statusIssues = [];
  let schedDocs = null;
  if (servedAlive()) {
    const r = await statusGet(ALL_DOCS, 30000);
    if (r.status === 200 && r.json && Array.isArray(r.json.docs)) schedDocs = r.json.docs;
    else statusIssues.push(`GET /_scheduler/docs: ${brief(r)}`);
  } else {
    statusIssues.push('couchrepd is not running: no status API');
  }
  const schedStates = {};
  if (schedDocs) {
    const seen = new Map();
    for (const d of schedDocs) {
      schedStates[d.state] = (schedStates[d.state] || 0) + 1;
      if (d.database !== '_replicator') { statusIssues.push(`unexpected database ${d.database} (${d.doc_id})`); continue; }
      if (seen.has(d.doc_id)) statusIssues.push(`${d.doc_id}: listed twice`);
      seen.set(d.doc_id, d);
      if (!live.has(d.doc_id)) statusIssues.push(`${d.doc_id}: listed (${d.state}) but the document is deleted`);
    }
    for (const {id} of livePairs) {
      const d = seen.get(id);
      if (!d) statusIssues.push(`${id}: live document missing from /_scheduler/docs`);
      // crashing is a job too, waiting for its retry (a server restart crashes every job at
      // its next checkpoint: instance_start_time changed); the comparison checked its data.
      else if (d.state !== 'running' && d.state !== 'pending' && d.state !== 'crashing') {
        statusIssues.push(`${id}: state ${d.state}${d.info && d.info.error ? ` (${String(d.info.error).slice(0, 200)})` : ''}` +
          ` error_count ${d.error_count}`);
      }
    }
  }

  // --- the end of couchrepd
  const stillRunning = servedAlive();
  const srv = server && !server.exit ? procStats(server.pid) : null;
  let stopLine = 'couchrepd was not running';
  if (stillRunning) {
    const ts = now();
    serveExpectedDown = true;
    const e = await stopProc(serve.p, 'SIGTERM', 40000);
    stopLine = `SIGTERM -> ${exitText(e)} after ${fmtS(now() - ts)}`;
  }

  // --- report
  const fl = flatness();
  const ls = logSummary();
  out('');
  out('== per-pair differences ==');
  if (!differing.length) out(`  none: all ${results.length} live pairs identical`);
  for (const r of differing.slice(0, 20)) {
    const sd = schedDocs && schedDocs.find((d) => d.doc_id === r.p.docId);
    out(`  pair ${r.p.no} ${r.p.src} -> ${r.p.tgt} (document ${r.p.docId}, _replication_state ${stateOf.get(r.p.docId)}; ` +
        `${r.p.history.join(', ')}; status API: ` +
        `${sd ? `${sd.state}, ${JSON.stringify(sd.info).slice(0, 300)}` : 'not listed'}): ${r.diffs.length} differences`);
    const missing = r.diffs.filter((d) => d.includes('missing on the target')).length;
    out(`      the source is at seq ${r.srcSeq}${sd && sd.info ? `, the job's source_seq ${sd.info.source_seq}, through_seq ${sd.info.through_seq}` : ''}` +
        `${missing ? `; ${missing} of the source's ${r.docs} documents are missing on the target` : ''}`);
    for (const d of r.diffs.slice(0, 5)) out(`      ${d}`);
    if (differing.indexOf(r) < 5) {
      const short = sd ? sd.id.slice(0, 8) : null;
      const lines = [];
      for (const s of serves) {
        for (const l of tail(s.log, 1e9)) {
          if (l.includes(`_replicator/${r.p.docId} `) || l.includes(`_replicator/${r.p.docId}:`) || (short && l.includes(`[${short}`))) {
            lines.push(`couchrepd-${s.n}: ${l}`);
          }
        }
      }
      out(`      its log lines (${lines.length}, the last 12):`);
      for (const l of lines.slice(-12)) out(`        ${l.slice(0, 320)}`);
    }
  }
  if (differing.length > 20) out(`  ... and ${differing.length - 20} more pairs`);
  out('== status API vs the replication documents ==');
  out(`  /_scheduler/docs: ${Object.entries(schedStates).map(([k, v]) => `${v} ${k}`).join(', ') || '-'}; ` +
      `_replication_state in the documents: ${Object.entries(docStates).map(([k, v]) => `${v} ${k}`).join(', ')}`);
  for (const s of statusIssues.slice(0, 20)) out(`  ${s}`);
  if (statusIssues.length > 20) out(`  ... and ${statusIssues.length - 20} more`);
  out('== couchrepd processes (samples of the run phase) ==');
  for (const s of serves) {
    const ss = samples.filter((x) => x.pid === s.pid && x.phase === 'run');
    const mm = (k) => (ss.length ? `${Math.min(...ss.map((x) => x[k])).toFixed(k === 'rssMb' ? 1 : 0)}..${Math.max(...ss.map((x) => x[k])).toFixed(k === 'rssMb' ? 1 : 0)}` : '-');
    out(`  couchrepd-${s.n} pid ${s.pid}: from ${Math.round(s.startedAt / 1000)} s to ` +
        `${s.endedAt !== undefined ? `${Math.round(s.endedAt / 1000)} s (${exitText(s.p.exit)}${s.unexpected ? ', UNEXPECTED' : ''})` : 'the end'}` +
        `; ${ss.length} samples: RSS ${mm('rssMb')} MB, fds ${mm('fds')}, threads ${mm('threads')}; log ${path.basename(s.log)}`);
  }
  out('== couchrepd log ==');
  out(`  ${Object.entries(ls.byLevel).map(([k, v]) => `${v} ${k}`).join(', ') || 'no lines'}`);
  for (const [k, v] of ls.top) out(`  ${String(v.n).padStart(6)}x ${k}\n          e.g. ${v.example.slice(0, 260)}`);
  for (const a of ls.alarming) out(`  !!! ${a}`);

  const secs = runMs / 1000;
  const lateProbes = probes.filter((x) => !x.dropped && (x.lag === null || x.lag > LATE_MS));
  const healthMax = healthUnderFlood.length ? Math.max(...healthUnderFlood.map((x) => x.ms)) : NaN;
  const healthBad = healthUnderFlood.filter((x) => x.ms > 1000 || !x.status).length;
  const flatOk = Object.values(fl.series).every((s) => s.met) && Object.keys(fl.series).length === 3;
  const faultKinds = [...new Set(faultLog.map((f) => f.kind))];
  const missingKinds = activeFaults.map((f) => f.kind).filter((k) => !faultKinds.includes(k));
  const failedFaults = faultLog.filter((f) => !f.ok);
  out('');
  out('== soak summary ==');
  out(`  run                ${fmtS(runMs)} of ${opt.minutes} min planned; ${opt.pairs} live replications; load now ${loadavg()}`);
  out(`  throughput         written ${counters.written} documents = ${(counters.written / secs).toFixed(1)}/s in ` +
      `${counters.writeOps} operations (${counters.writeFailed} failed, ${counters.writeRefused} refused; plus ` +
      `${counters.prefilled} pre-filled); replicated ${replicatedTotal} ` +
      `documents = ${(replicatedTotal / secs).toFixed(1)}/s (sum of docs_written increases in /_scheduler/docs)`);
  out(`  churn              ${counters.churnDeleted} documents deleted, ${counters.churnCreated} new pairs, ` +
      `${counters.churnRecreated} deleted pairs re-created, ${counters.churnFailed} failed`);
  out(`  faults             ${faultLog.length} injected: ${faultLog.map((f) => `${f.kind} at ${Math.round(f.start / 1000)} s${f.ok ? '' : ' (FAILED)'}`).join(', ') || 'none'}` +
      (missingKinds.length ? `; not reached in this run: ${missingKinds.join(', ')}` : ''));
  if (!healthUnderFlood.length) out('  /health in flood   not measured (no flood in this run)');
  else out(`  /health in flood   ${healthUnderFlood.length} requests, max ${healthMax.toFixed(0)} ms, ${healthBad} over 1 s or unanswered  ${healthBad ? 'NOT met' : 'met'}`);
  if (fl.note) out(`  flatness           ${fl.note}`);
  else {
    out(`  flatness           couchrepd pid ${fl.judged} (the longest-lived of ${fl.procs.length}) from ` +
        `${Math.round(fl.from / 1000)} s (warm-up: 10 % of the run after its start), ${fl.basis}` +
        `${fl.excludedFlood ? `, ${fl.excludedFlood} during the status flood left out` : ''}; last third's max vs first third's:`);
    for (const [k, s] of Object.entries(fl.series)) {
      const name = {rssMb: 'RSS MB', fds: 'fds', threads: 'threads'}[k];
      const f = (x) => (k === 'rssMb' ? x.toFixed(1) : String(x));
      const a = fl.all && fl.all[k];
      out(`    ${name.padEnd(16)} ${f(s.first)} -> ${f(s.last)} (${s.first ? ((100 * (s.last - s.first)) / s.first).toFixed(1) : '?'} %)  ` +
          `${s.met ? 'met' : 'NOT met'}${k === 'fds' ? `   (sockets ${s.socketsFirst} -> ${s.socketsLast})` : ''}` +
          `${a ? `   (with the fault samples: ${f(a.first)} -> ${f(a.last)})` : ''}`);
    }
  }
  {
    const lags = probes.filter((x) => x.lag !== null).map((x) => x.lag).sort((a, b) => a - b);
    const q = (f) => (lags.length ? fmtS(lags[Math.min(lags.length - 1, Math.ceil(f * lags.length) - 1)]) : '-');
    const w = waitingProbes();
    out(`  replication lag    ${probes.length} probes (a new document every ${PROBE_EVERY_MS / 1000} s, its target asked every 2 s): ` +
        `p50 ${q(0.5)}, p90 ${q(0.9)}, p99 ${q(0.99)}, max ${lags.length ? fmtS(lags[lags.length - 1]) : '-'}; ` +
        `${lateProbes.length} over ${LATE_MS / 1000} s or never${w.length ? ` (${w.length} never arrived)` : ''}, ` +
        `${probes.filter((x) => x.dropped).length} dropped (pair deleted first)  ${lateProbes.length ? 'NOT met' : 'met'}`);
    for (const x of lateProbes.slice(0, 8)) {
      out(`    pair ${x.p.no} (${x.docId}) ${x.id} ${x.rev} written at ${Math.round(x.tEl / 1000)} s: ` +
          `${x.lag === null ? 'never arrived' : `arrived after ${fmtS(x.lag)}`}`);
    }
  }
  out(`  catch-up           ${pending.length ? `NOT all: ${pending.length} targets still differed after ${fmtS(caughtUpMs)}` : `all targets caught up ${fmtS(caughtUpMs)} after the writes stopped`}`);
  out(`  comparison         ${results.length} live pairs compared (${totalDocs} documents, ${totalRevs} leaf revisions, bodies ` +
      `and attachment digests, ${fmtS(compareMs)}): ${differing.length} differing`);
  out(`  status API         ${statusIssues.length} mismatches against ${livePairs.length} live documents`);
  out(`  couchrepd          ${stillRunning ? 'still running at the end' : 'NOT running at the end'}; ${serves.length} processes ` +
      `(${serves.length - 1} restarts by the kill -9 fault); ${unexpected.length ? `unexpected ends: ${unexpected.join('; ')}` : 'no unexpected end'}; ${stopLine}`);
  if (srv) out(`  test server        RSS ${srv.rssMb.toFixed(0)} MB, ${srv.fds} fds at the end (pid ${server.pid}, ${serverStarts} starts)`);
  if (failedFaults.length) out(`  failed faults      ${failedFaults.map((f) => `${f.n} ${f.kind}: ${f.detail}`).join('; ')}`);
  // The proxy's request log, for a post-mortem (kept with the work directory).
  if (opt.keepLogs || !(!differing.length && !pending.length && !statusIssues.length && stillRunning)) {
    const r = await ctl('GET', '/log?since=0');
    if (r.status === 200 && r.json) {
      fs.writeFileSync(path.join(opt.work, 'proxy-requests.jsonl'), r.json.requests.map((x) => JSON.stringify(x)).join('\n') + '\n');
      out(`  proxy log          ${r.json.requests.length} requests in ${path.join(opt.work, 'proxy-requests.jsonl')} (t_ms: ms since the proxy started)`);
    }
  }
  const ok = !differing.length && !pending.length && !lateProbes.length && !statusIssues.length && stillRunning && !unexpected.length &&
    !healthBad && !failedFaults.length && !aborted && (flatOk || !opt.strictFlat);
  out(`  result             ${ok ? 'PASSED' : 'FAILED'}${!flatOk && !fl.note ? ` (flatness NOT met${opt.strictFlat ? ', --strict-flat' : ', reported only'})` : ''}`);
  await shutdownAll();
  return ok ? 0 : 1;
}

main().then((rc) => { if (!interrupted) process.exit(rc); }, async (e) => {
  if (interrupted) return;  // the signal handler exits
  out(`!!! soak: ${e && e.stack || e}`);
  await shutdownAll().catch(() => {});
  process.exit(3);
});
