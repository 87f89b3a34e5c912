#!/usr/bin/env node
// Measurement half of scripts/bench-scheduler (issue 4): talks to a running
// test server and a running `couchrepd serve`, both started by the bash script,
// which also kills them. Node's standard library only.
//
// Phases, in this order (each bounded by a deadline; nothing waits forever):
//   1  N one-shot documents -> time until all are `completed`
//   2  C continuous documents PUT one at a time -> PUT->triggered latency
//   5  M idle continuous jobs (the C of phase 2 + M-C new ones) -> RSS and
//      CPU % of one core over a quiet window
//   3  DELETE of phase 2's C documents, one at a time, while the others keep
//      running -> latency until the job's source feed closes. Last, because
//      stopping jobs is what has crashed couchrepd so far: the other figures
//      are in by then.
//   4  couchrepd RSS / CPU at the end of every phase
'use strict';

const http = require('http');
const fs = require('fs');
const path = require('path');
const {performance} = require('perf_hooks');

// ------------------------------------------------------------------ options
const opt = {
  url: '', servePid: 0, serverPid: 0, serveLog: '', clkTck: 100,
  docs: 1000, sources: 20, docsPerSource: 10,
  continuous: 200, idleJobs: 500, idleSeconds: 60, settleSeconds: 35,
  phase1Timeout: 0, skip: '', perfSeconds: 3,
};
for (let i = 2; i < process.argv.length; i++) {
  const a = process.argv[i];
  const v = () => process.argv[++i];
  switch (a) {
    case '--url': opt.url = v().replace(/\/$/, ''); break;
    case '--serve-pid': opt.servePid = Number(v()); break;
    case '--server-pid': opt.serverPid = Number(v()); break;
    case '--serve-log': opt.serveLog = v(); break;
    case '--clk-tck': opt.clkTck = Number(v()); break;
    case '--docs': opt.docs = Number(v()); break;
    case '--sources': opt.sources = Number(v()); break;
    case '--docs-per-source': opt.docsPerSource = Number(v()); break;
    case '--continuous': opt.continuous = Number(v()); break;
    case '--idle-jobs': opt.idleJobs = Number(v()); break;
    case '--idle-seconds': opt.idleSeconds = Number(v()); break;
    case '--settle-seconds': opt.settleSeconds = Number(v()); break;
    case '--phase1-timeout': opt.phase1Timeout = Number(v()); break;
    case '--skip': opt.skip = v(); break;
    case '--perf-seconds': opt.perfSeconds = Number(v()); break;
    default: console.error(`bench-scheduler.js: unknown argument ${a}`); process.exit(2);
  }
}
// Generous: with 10,000 documents the state write-back drains long after the
// jobs ended (about 2,000 s here); phase 2 is only meaningful after that.
if (!opt.phase1Timeout) opt.phase1Timeout = Math.round(120 + opt.docs * 0.25);
const skip = new Set(opt.skip.split(',').filter(Boolean));
const base = new URL(opt.url);

// ------------------------------------------------------------------ helpers
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const now = () => performance.now();
const pad = (n, w = 5) => String(n).padStart(w, '0');
const fmtMs = (x) => (x === Infinity ? 'timeout' : x >= 1000 ? `${(x / 1000).toFixed(2)} s` : `${x.toFixed(1)} ms`);
const out = (s = '') => process.stdout.write(s + '\n');

function percentile(values, p) {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
}
function dist(values) {
  const finite = values.filter(Number.isFinite);
  return {
    n: values.length, timeouts: values.length - finite.length,
    min: Math.min(...values), p50: percentile(values, 50), p90: percentile(values, 90),
    p99: percentile(values, 99), max: Math.max(...values),
    mean: finite.reduce((a, b) => a + b, 0) / Math.max(1, finite.length),
  };
}
const distLine = (d) => `n=${d.n} min ${fmtMs(d.min)}  p50 ${fmtMs(d.p50)}  p90 ${fmtMs(d.p90)}  ` +
  `p99 ${fmtMs(d.p99)}  max ${fmtMs(d.max)}  mean ${fmtMs(d.mean)}` + (d.timeouts ? `  (${d.timeouts} timed out)` : '');

const agent = new http.Agent({keepAlive: true, maxSockets: 8});

function request(method, p, body, {timeout = 30000} = {}) {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? null : Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));
    const req = http.request({
      host: base.hostname, port: base.port, method, path: p, agent,
      headers: Object.assign({Accept: 'application/json'},
        data ? {'Content-Type': 'application/json', 'Content-Length': data.length} : {}),
    }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json = null;
        try { json = text ? JSON.parse(text) : null; } catch (_) { /* not JSON */ }
        resolve({status: res.statusCode, json, text});
      });
      res.on('error', reject);
    });
    req.setTimeout(timeout, () => req.destroy(new Error(`${method} ${p}: no answer in ${timeout} ms`)));
    req.on('error', reject);
    if (data) req.write(data);
    req.end();
  });
}
async function ok(method, p, body, o) {
  const r = await request(method, p, body, o);
  if (r.status >= 300) throw new Error(`${method} ${p}: HTTP ${r.status} ${r.text.slice(0, 200)}`);
  return r.json;
}
// Run `fn` over `items` with at most `n` in flight.
async function pool(items, n, fn) {
  let next = 0;
  const results = new Array(items.length);
  await Promise.all(Array.from({length: Math.min(n, items.length)}, async () => {
    while (next < items.length) { const i = next++; results[i] = await fn(items[i], i); }
  }));
  return results;
}

// ------------------------------------------------------------------ process stats
function procStats(pid) {
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const field = (k) => { const m = status.match(new RegExp(`^${k}:\\s+(\\d+)`, 'm')); return m ? Number(m[1]) : NaN; };
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');  // f[0] is field 3 (state)
    const cpu = (Number(f[11]) + Number(f[12])) / opt.clkTck;   // utime(14) + stime(15)
    let fds = NaN;
    try { fds = fs.readdirSync(`/proc/${pid}/fd`).length; } catch (_) { /* gone */ }
    return {rssMb: field('VmRSS') / 1024, hwmMb: field('VmHWM') / 1024, threads: field('Threads'), cpu, fds};
  } catch (e) {
    return null;
  }
}
// Context switches of every thread of `pid` (voluntary ones are wake-ups
// from sleeps and waits): {vol, invol, perThread: Map tid -> voluntary}.
function ctxSwitches(pid) {
  let vol = 0, invol = 0;
  const perThread = new Map();
  let tids = [];
  try { tids = fs.readdirSync(`/proc/${pid}/task`); } catch (_) { return {vol: NaN, invol: NaN, perThread}; }
  for (const t of tids) {
    try {
      const s = fs.readFileSync(`/proc/${pid}/task/${t}/status`, 'utf8');
      const v = Number((s.match(/^voluntary_ctxt_switches:\s+(\d+)/m) || [0, 0])[1]);
      vol += v;
      invol += Number((s.match(/^nonvoluntary_ctxt_switches:\s+(\d+)/m) || [0, 0])[1]);
      perThread.set(t, v);
    } catch (_) { /* thread ended */ }
  }
  return {vol, invol, perThread};
}
// CPU seconds per thread id.
function threadCpu(pid) {
  const m = new Map();
  let tids = [];
  try { tids = fs.readdirSync(`/proc/${pid}/task`); } catch (_) { return m; }
  for (const t of tids) {
    try {
      const stat = fs.readFileSync(`/proc/${pid}/task/${t}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      m.set(t, (Number(f[11]) + Number(f[12])) / opt.clkTck);
    } catch (_) { /* thread ended */ }
  }
  return m;
}

// Is couchrepd still running? (gone, or a zombie the shell has not reaped)
function serveAlive() {
  try {
    const stat = fs.readFileSync(`/proc/${opt.servePid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch (_) {
    return false;
  }
}
class ServeGone extends Error {}
function requireServe(where) {
  if (!serveAlive()) throw new ServeGone(`couchrepd serve (pid ${opt.servePid}) is no longer running (${where})`);
}
const loadavg = () => fs.readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');

const phaseMarks = [];  // {phase, wall, serve, server}
function printProc(label, t0Stats, wallSeconds) {
  const s = procStats(opt.servePid);
  const srv = procStats(opt.serverPid);
  if (!s || !serveAlive()) { out(`  couchrepd: process ${opt.servePid} is gone!`); return; }
  out(`  couchrepd  [${label}]: VmRSS ${s.rssMb.toFixed(1)} MB, VmHWM ${s.hwmMb.toFixed(1)} MB, ` +
      `CPU ${s.cpu.toFixed(2)} s total` +
      (t0Stats ? ` (+${(s.cpu - t0Stats.serve.cpu).toFixed(2)} s in this phase` +
        (wallSeconds ? `, ${(100 * (s.cpu - t0Stats.serve.cpu) / wallSeconds).toFixed(1)} % of one core` : '') + ')' : '') +
      `, ${s.threads} threads, ${s.fds} fds; load average ${loadavg()}`);
  if (srv) {
    out(`  test server[${label}]: VmRSS ${srv.rssMb.toFixed(1)} MB, CPU ${srv.cpu.toFixed(2)} s total` +
        (t0Stats && t0Stats.server ? ` (+${(srv.cpu - t0Stats.server.cpu).toFixed(2)} s in this phase` +
          (wallSeconds ? `, ${(100 * (srv.cpu - t0Stats.server.cpu) / wallSeconds).toFixed(1)} % of one core` : '') + ')' : ''));
  }
  phaseMarks.push({label, serve: s, server: srv});
}
const snapStats = () => ({serve: procStats(opt.servePid), server: procStats(opt.serverPid), t: now()});

// ------------------------------------------------------------------ serve log
function readServeLog() {
  try { return fs.readFileSync(opt.serveLog, 'utf8').split('\n'); } catch (_) { return []; }
}
let logCursor = 0;
// Lines logged since the previous call (for per-phase warnings).
function newLogLines() {
  const lines = readServeLog();
  // The last element is '' or a line still being written: leave it for next time.
  const end = Math.max(logCursor, lines.length - 1);
  const fresh = lines.slice(logCursor, end);
  logCursor = end;
  return fresh.filter(Boolean);
}
function summarizeLog(lines, label) {
  const byLevel = {};
  const samples = new Map();
  for (const l of lines) {
    const m = l.match(/^\S+Z (\w+) (.*)$/);
    if (!m) continue;
    byLevel[m[1]] = (byLevel[m[1]] || 0) + 1;
    if (m[1] === 'warning' || m[1] === 'warn' || m[1] === 'error' || m[1] === 'critical') {
      const key = m[2].replace(/\[[^\]]*\]/g, '[..]').replace(/\d+/g, 'N').slice(0, 140);
      samples.set(key, (samples.get(key) || 0) + 1);
    }
  }
  out(`  serve log [${label}]: ` + (Object.keys(byLevel).length ?
    Object.entries(byLevel).map(([k, v]) => `${v} ${k}`).join(', ') : 'no lines'));
  for (const [k, v] of [...samples.entries()].sort((a, b) => b[1] - a[1]).slice(0, 8)) {
    out(`    ${v}x ${k}`);
  }
}
// Wall-clock ms of the first "<prefix> started" line per document id.
function startedTimes(lines, db = '_replicator') {
  const m = new Map();
  const re = new RegExp(`^(\\S+Z) info \\[${db}/(\\S+) [0-9a-f]+\\] started$`);
  for (const l of lines) {
    const r = l.match(re);
    if (r && !m.has(r[2])) m.set(r[2], Date.parse(r[1]));
  }
  return m;
}

// ------------------------------------------------------------------ request log
function requestKind(r) {
  let p = r.path.split('?')[0];
  const seg = p.split('/').filter(Boolean).map(decodeURIComponent);
  if (seg.length === 0) return `${r.method} /`;
  const db = seg[0] === '_replicator' ? '_replicator' : seg[0].startsWith('_') ? seg[0] : '{db}';
  let rest = seg.slice(1);
  let kind;
  if (rest.length === 0) kind = '';
  else if (rest[0] === '_local') kind = '/_local/{id}';
  else if (rest[0].startsWith('_') && rest[0] !== '_design') kind = '/' + rest[0];
  else kind = '/{doc}';
  let extra = '';
  if (rest[0] === '_changes') {
    const q = new URLSearchParams(r.query || '');
    extra = ` feed=${q.get('feed') || 'normal'}`;
  }
  return `${r.method} /${db}${kind}${extra}`;
}
async function requestBreakdown(jobs, label) {
  const r = await ok('GET', '/_test/requests?list=true', undefined, {timeout: 120000});
  const counts = new Map();
  for (const x of r.requests || []) {
    const k = requestKind(x);
    counts.set(k, (counts.get(k) || 0) + 1);
  }
  out(`  requests to the test server [${label}]: ${r.count} total` +
      (jobs ? `, ${(r.count / jobs).toFixed(1)} per job` : ''));
  for (const [k, v] of [...counts.entries()].sort((a, b) => b[1] - a[1])) {
    out(`    ${String(v).padStart(7)}  ${jobs ? (v / jobs).toFixed(2).padStart(6) + '/job  ' : ''}${k}`);
  }
  return r.count;
}

// ------------------------------------------------------------------ _replicator watcher
// A continuous _changes feed of _replicator with include_docs: timestamps of
// every state each document shows, without polling documents.
class Watcher {
  constructor() {
    this.docs = new Map();    // id -> {rev, state, deleted}
    this.seen = new Map();    // id -> {state: {perf, wall}} first time seen
    this.waiters = [];
    this.req = null;
  }
  start() {
    return new Promise((resolve, reject) => {
      const p = '/_replicator/_changes?feed=continuous&include_docs=true&since=now&heartbeat=5000&style=main_only';
      this.req = http.get({host: base.hostname, port: base.port, path: p, agent: false}, (res) => {
        if (res.statusCode !== 200) return reject(new Error(`watcher: HTTP ${res.statusCode}`));
        let buf = '';
        res.setEncoding('utf8');
        res.on('data', (chunk) => {
          const t = now();
          const wall = Date.now();
          buf += chunk;
          let i;
          while ((i = buf.indexOf('\n')) >= 0) {
            const line = buf.slice(0, i).trim();
            buf = buf.slice(i + 1);
            if (!line) continue;
            let row;
            try { row = JSON.parse(line); } catch (_) { continue; }
            if (!row.id) continue;
            this.onRow(row, t, wall);
          }
        });
        res.on('error', () => {});
        resolve();
      });
      this.req.on('error', (e) => { if (!this.closing) reject(e); });
    });
  }
  onRow(row, t, wall) {
    const d = row.doc || {};
    const state = row.deleted ? '<deleted>' : (d._replication_state || '');
    this.docs.set(row.id, {rev: d._rev || (row.changes && row.changes[0] && row.changes[0].rev), state, doc: d});
    let s = this.seen.get(row.id);
    if (!s) { s = {}; this.seen.set(row.id, s); }
    if (!s[state]) s[state] = {perf: t, wall};
    this.waiters = this.waiters.filter((w) => {
      if (w.id === row.id && w.states.includes(state)) { w.resolve(state); clearTimeout(w.timer); return false; }
      return true;
    });
  }
  // Resolves with the state, or null after `ms`.
  waitFor(id, states, ms) {
    const cur = this.docs.get(id);
    if (cur && states.includes(cur.state)) return Promise.resolve(cur.state);
    return new Promise((resolve) => {
      const w = {id, states, resolve};
      w.timer = setTimeout(() => { this.waiters = this.waiters.filter((x) => x !== w); resolve(null); }, ms);
      this.waiters.push(w);
    });
  }
  stop() { this.closing = true; if (this.req) this.req.destroy(); }
}

// ------------------------------------------------------------------ setup
const results = {};
const srcDb = (i) => `bench_src_${pad(i, 3)}`;

async function setup() {
  // couchrepd creates _replicator and installs _design/_replicator at start.
  const deadline = now() + 30000;
  while (now() < deadline) {
    const r = await request('GET', '/_replicator/_design/_replicator').catch(() => null);
    if (r && r.status === 200) break;
    await sleep(100);
  }
  for (let s = 0; s < opt.sources; s++) {
    await ok('PUT', `/${srcDb(s)}`);
    const docs = [];
    for (let d = 0; d < opt.docsPerSource; d++) docs.push({_id: `doc_${pad(d, 4)}`, n: d, payload: 'x'.repeat(100)});
    await ok('POST', `/${srcDb(s)}/_bulk_docs`, {docs});
  }
  out(`setup: ${opt.sources} source databases x ${opt.docsPerSource} documents`);
}

// ------------------------------------------------------------------ phase 1
async function phase1() {
  const n = opt.docs;
  out('');
  out(`== Phase 1: ${n} one-shot replication documents (${opt.sources} sources x ${opt.docsPerSource} docs, ` +
      `one target per document, create_target) ==`);
  await ok('DELETE', '/_test/requests');
  newLogLines();
  const t0s = snapStats();
  const ids = [];
  const t0 = now();
  for (let b = 0; b < n; b += 1000) {
    const docs = [];
    for (let i = b; i < Math.min(n, b + 1000); i++) {
      const id = `once_${pad(i)}`;
      ids.push(id);
      docs.push({_id: id, source: `${opt.url}/${srcDb(i % opt.sources)}`, target: `${opt.url}/bench_tgt_${pad(i)}`,
                 create_target: true});
    }
    await ok('POST', '/_replicator/_bulk_docs', {docs}, {timeout: 120000});
  }
  const tPosted = now() - t0;
  const want = new Set(ids);
  const state = new Map();
  const firstTriggered = new Map();
  const completedAt = [];
  let since = '0';
  let polls = 0;
  const deadline = t0 + opt.phase1Timeout * 1000;
  let lastReport = t0;
  let lastStats = snapStats();
  let terminal = 0;
  const pollMs = [];
  while (now() < deadline) {
    requireServe('phase 1');
    const tp = now();
    const r = await ok('GET', `/_replicator/_changes?include_docs=true&style=main_only&since=${encodeURIComponent(since)}`,
      undefined, {timeout: 60000});
    pollMs.push(now() - tp);
    polls++;
    const t = now() - t0;
    since = r.last_seq;
    for (const row of r.results) {
      if (!want.has(row.id) || !row.doc) continue;
      const st = row.doc._replication_state || '';
      const prev = state.get(row.id);
      if (st === 'triggered' && !firstTriggered.has(row.id)) firstTriggered.set(row.id, t);
      if (prev !== st) {
        state.set(row.id, st);
        if (st === 'completed') completedAt.push(t);
      }
    }
    const counts = {};
    for (const st of state.values()) counts[st || '(none)'] = (counts[st || '(none)'] || 0) + 1;
    terminal = (counts.completed || 0) + (counts.error || 0) + (counts.failed || 0);
    if (now() - lastReport > 10000) {
      lastReport = now();
      const st = snapStats();
      const secs = (st.t - lastStats.t) / 1000;
      const pct = (k) => (st[k] && lastStats[k] ? (100 * (st[k].cpu - lastStats[k].cpu) / secs).toFixed(0) : '?');
      out(`  ${(t / 1000).toFixed(1)} s: ` + Object.entries(counts).map(([k, v]) => `${v} ${k}`).join(', ') +
          `  | last ${secs.toFixed(0)} s: couchrepd ${pct('serve')} % CPU (${st.serve ? st.serve.threads : '?'} threads), ` +
          `test server ${pct('server')} %, poll p50 ${fmtMs(percentile(pollMs.slice(-40), 50))} max ${fmtMs(Math.max(...pollMs.slice(-40)))}, load ${loadavg()}`);
      lastStats = st;
    }
    if ((counts.completed || 0) >= n || ((counts.failed || 0) + (counts.completed || 0) >= n)) break;
    await sleep(250);
  }
  const total = now() - t0;
  const counts = {};
  for (const id of ids) { const st = state.get(id) || '(no state yet)'; counts[st] = (counts[st] || 0) + 1; }
  const done = counts.completed || 0;
  completedAt.sort((a, b) => a - b);
  const at = (f) => completedAt.length >= Math.ceil(f * n) ? fmtMs(completedAt[Math.ceil(f * n) - 1]) : 'not reached';
  out(`  documents posted (_bulk_docs) in ${fmtMs(tPosted)}`);
  out(`  this benchmark's _changes polls (one at a time, 250 ms apart): ${distLine(dist(pollMs))}`);
  out(`  final states: ` + Object.entries(counts).map(([k, v]) => `${v} ${k}`).join(', ') + ` (${polls} polls of _changes)`);
  out(`  first triggered seen at ${firstTriggered.size ? fmtMs(Math.min(...firstTriggered.values())) : '-'}, ` +
      `all ${firstTriggered.size === n ? 'seen triggered by ' + fmtMs(Math.max(...firstTriggered.values())) : `${firstTriggered.size} seen triggered (the rest went to completed between polls)`}`);
  out(`  completed: 10 % at ${at(0.1)}, 50 % at ${at(0.5)}, 90 % at ${at(0.9)}, 100 % at ${at(1)}`);
  const ok1 = done === n;
  out(`  >>> time until all ${n} are completed: ${ok1 ? fmtMs(completedAt[n - 1]) : `NOT all completed within ${opt.phase1Timeout} s (${done} completed)`}` +
      (ok1 ? `  (${(n / (completedAt[n - 1] / 1000)).toFixed(1)} documents/s)` : ''));
  results.phase1 = {n, ok: ok1, ms: ok1 ? completedAt[n - 1] : Infinity, done};
  const wall = (now() - t0s.t) / 1000;
  printProc('end of phase 1', t0s, wall);
  await requestBreakdown(n, 'phase 1');
  const lines = newLogLines();
  summarizeLog(lines, 'phase 1');
  // Where the time goes: document -> job started (serve log), job started -> completed state.
  const started = startedTimes(lines);
  if (started.size) {
    const st = [...started.values()].sort((a, b) => a - b);
    out(`  serve log: ${started.size} jobs logged "started"; first ${new Date(st[0]).toISOString()}, ` +
        `last ${new Date(st[st.length - 1]).toISOString()} (spread ${fmtMs(st[st.length - 1] - st[0])})`);
    // Per job: "started" -> "starting at sequence" (setup: db infos, create target,
    // _local checkpoints) -> "completed" (changes, batches, final checkpoint).
    const byPrefix = new Map();  // 8-hex id prefix -> {started, setup, completed}
    for (const l of lines) {
      let m = l.match(/^(\S+Z) info \[_replicator\/once_\d+ ([0-9a-f]{8})\] (started|starting at)/);
      if (m) {
        const e = byPrefix.get(m[2]) || {};
        const k = m[3] === 'started' ? 'started' : 'setup';
        if (!e[k]) e[k] = Date.parse(m[1]);
        byPrefix.set(m[2], e);
        continue;
      }
      m = l.match(/^(\S+Z) info \[([0-9a-f]{8})[0-9a-f]*(?:\+[a-z_+]+)?\] completed/);
      if (m) { const e = byPrefix.get(m[2]) || {}; if (!e.completed) e.completed = Date.parse(m[1]); byPrefix.set(m[2], e); }
    }
    const a = [], b = [], c = [];
    for (const e of byPrefix.values()) {
      if (e.started && e.setup) a.push(e.setup - e.started);
      if (e.setup && e.completed) b.push(e.completed - e.setup);
      if (e.started && e.completed) c.push(e.completed - e.started);
    }
    out(`  per job, from the serve log:`);
    out(`    started -> "starting at sequence" (GET both dbs, PUT target, GET both _local): ${distLine(dist(a))}`);
    out(`    "starting at sequence" -> completed (changes, batches, checkpoint):         ${distLine(dist(b))}`);
    out(`    started -> completed:                                                       ${distLine(dist(c))}`);
  }
}

// ------------------------------------------------------------------ phase 2
async function phase2(watcher) {
  const n = opt.continuous;
  out('');
  out(`== Phase 2: PUT -> _replication_state "triggered", ${n} continuous documents PUT one at a time (free slots) ==`);
  if (results.phase1 && !results.phase1.ok) {
    out(`  NOTE: phase 1 did not finish; whatever it left queued in couchrepd (e.g. state write-backs) delays these figures`);
  }
  await ok('DELETE', '/_test/requests');
  newLogLines();
  const t0s = snapStats();
  const lat = [];
  const putMs = [];
  const wallPut = new Map();
  const wallTrig = new Map();
  const deadline = now() + Math.max(120, n * 2) * 1000;
  for (let i = 0; i < n; i++) {
    if (now() > deadline) { out(`  phase deadline reached after ${i} documents`); break; }
    requireServe(`phase 2, before document ${i}`);
    const id = `cont_${pad(i)}`;
    const doc = {source: `${opt.url}/${srcDb(i % opt.sources)}`, target: `${opt.url}/bench_ctgt_${pad(i)}`,
                 create_target: true, continuous: true};
    const w0 = Date.now();
    const t0 = now();
    await ok('PUT', `/_replicator/${id}`, doc);
    putMs.push(now() - t0);
    const st = await watcher.waitFor(id, ['triggered', 'error', 'failed'], 10000);
    if (st === 'triggered') {
      const seen = watcher.seen.get(id).triggered;
      lat.push(seen.perf - t0);
      wallPut.set(id, w0);
      wallTrig.set(id, seen.wall);
    } else {
      lat.push(Infinity);
      out(`  ${id}: ${st === null ? 'no triggered state within 10 s' : `state ${st}`}`);
    }
  }
  const d = dist(lat);
  out(`  PUT request itself: ${distLine(dist(putMs))}`);
  out(`  >>> PUT -> triggered: ${distLine(d)}`);
  results.phase2 = d;
  // Breakdown from the serve log ("<prefix> started", millisecond wall clock).
  const lines = newLogLines();
  const started = startedTimes(lines);
  const a = [], b = [];
  for (const [id, w0] of wallPut) {
    if (!started.has(id)) continue;
    a.push(started.get(id) - w0);
    b.push(wallTrig.get(id) - started.get(id));
  }
  if (a.length) {
    out(`  breakdown (serve log "started" line, 1 ms resolution, same clock):`);
    out(`    PUT sent -> job started (feed row, replication id, scheduler): ${distLine(dist(a))}`);
    out(`    job started -> triggered visible in _changes (state write-back): ${distLine(dist(b))}`);
  }
  const wall = (now() - t0s.t) / 1000;
  printProc('end of phase 2', t0s, wall);
  await requestBreakdown(n, 'phase 2');
  summarizeLog(lines, 'phase 2');
}

// ------------------------------------------------------------------ phase 3
async function openFeeds() { return (await ok('GET', '/_test/feeds')).open_feeds; }

async function phase3(watcher, others) {
  const n = opt.continuous;
  out('');
  out(`== Phase 3: DELETE of a running continuous document -> job stopped (${n} documents, one at a time, ` +
      `${others} other continuous jobs running) ==`);
  out(`  "stopped" = the job's continuous _changes feed on the source is closed (test server's open_feeds ` +
      `drops by one; polled every 10 ms), then verified by writing to the sources afterwards`);
  // Wait until every job has its continuous source feed open.
  const expect = n + others + 2;  // + couchrepd's _replicator feed + this watcher
  let feeds = 0;
  const wdl = now() + 60000;
  while (now() < wdl && (feeds = await openFeeds()) < expect) await sleep(200);
  out(`  open continuous feeds before: ${feeds} (expected ${expect})`);
  await ok('DELETE', '/_test/requests');
  newLogLines();
  const t0s = snapStats();
  const lat = [];
  const delMs = [];
  const deadline = now() + Math.max(120, n * 3) * 1000;
  const report = () => {
    const d = dist(lat);
    out(`  DELETE request itself: ${distLine(dist(delMs))}`);
    out(`  >>> DELETE -> job stopped (source feed closed): ${distLine(d)}`);
    results.phase3 = d;
  };
  try {
  for (let i = 0; i < n; i++) {
    if (now() > deadline) { out(`  phase deadline reached after ${i} documents`); break; }
    requireServe(`phase 3, before deleting document ${i}: cont_${pad(i - 1)} was the last one deleted`);
    const id = `cont_${pad(i)}`;
    const cur = await ok('GET', `/_replicator/${id}`);
    const f0 = await openFeeds();
    const t0 = now();
    await ok('DELETE', `/_replicator/${id}?rev=${encodeURIComponent(cur._rev)}`);
    delMs.push(now() - t0);
    let stopped = Infinity;
    while (now() - t0 < 5000) {
      const f = await openFeeds();
      if (f < f0) {
        stopped = now() - t0;
        // More than one feed gone at once: couchrepd itself went away.
        if (f < f0 - 1) {
          out(`  ${id}: ${f0 - f} feeds closed at once ${fmtMs(stopped)} after the DELETE (sample dropped)`);
          requireServe(`phase 3, ${fmtMs(stopped)} after deleting ${id}`);
          stopped = null;
        }
        break;
      }
      await sleep(10);
    }
    if (stopped === null) continue;
    if (stopped > 1000) out(`  ${id}: stopped ${fmtMs(stopped)} after the DELETE`);
    if (stopped === Infinity) {
      out(`  ${id}: source feed still open 5 s after the DELETE`);
      requireServe(`phase 3, after deleting ${id}`);
    }
    lat.push(stopped);
  }
  } catch (e) {
    if (e instanceof ServeGone && lat.length) {
      out(`  couchrepd died after ${lat.length} DELETEs; figures so far:`);
      report();
      results.phase3.crashedAfter = lat.length;
    }
    throw e;
  }
  report();
  // Verification: a write to every source now must not reach the deleted jobs' targets.
  const feedsAfter = await openFeeds();
  for (let s = 0; s < opt.sources; s++) {
    await ok('PUT', `/${srcDb(s)}/after_delete`, {written: 'after every continuous document was deleted'});
  }
  await sleep(3000);
  const arrived = await pool([...Array(n).keys()], 4, async (i) => {
    const r = await request('GET', `/bench_ctgt_${pad(i)}/after_delete`);
    return r.status === 200;
  });
  const leaked = arrived.filter(Boolean).length;
  out(`  verification: open feeds after ${feedsAfter} (expected ${others + 2}); a document written to every source ` +
      `reached ${leaked} of ${n} deleted jobs' targets within 3 s (expected 0)`);
  results.phase3.leaked = leaked;
  const wall = (now() - t0s.t) / 1000;
  printProc('end of phase 3', t0s, wall);
  await requestBreakdown(0, 'phase 3 (includes this benchmark\'s own polling of /_test/feeds, not counted)');
  summarizeLog(newLogLines(), 'phase 3');
}

// ------------------------------------------------------------------ phase 5
async function phase5(watcher, running) {
  const n = opt.idleJobs;
  const add = Math.max(0, n - running);
  out('');
  out(`== Phase 5: ${n} idle continuous jobs (${running} from phase 2 + ${add} new): RSS and CPU over ` +
      `${opt.idleSeconds} s with nothing changing ==`);
  await ok('DELETE', '/_test/requests');
  newLogLines();
  const t0s = snapStats();
  const ids = [];
  const t0 = now();
  for (let b = 0; b < add; b += 100) {
    const docs = [];
    for (let i = b; i < Math.min(add, b + 100); i++) {
      const id = `idle_${pad(i)}`;
      ids.push(id);
      docs.push({_id: id, source: `${opt.url}/${srcDb(i % opt.sources)}`, target: `${opt.url}/bench_itgt_${pad(i)}`,
                 create_target: true, continuous: true});
    }
    await ok('POST', '/_replicator/_bulk_docs', {docs}, {timeout: 120000});
  }
  // All triggered?
  const deadline = now() + 300000;
  let triggered = 0;
  while (now() < deadline) {
    requireServe('phase 5');
    triggered = ids.filter((id) => (watcher.docs.get(id) || {}).state === 'triggered').length;
    if (triggered === add) break;
    await sleep(250);
  }
  const tTrig = now() - t0;
  out(`  ${triggered} of ${add} new documents triggered after ${fmtMs(tTrig)} (posted with _bulk_docs, 100 per request)`);
  // Caught up: every target has as many documents as its source.
  const srcCount = [];
  for (let s = 0; s < opt.sources; s++) srcCount.push((await ok('GET', `/${srcDb(s)}`)).doc_count);
  let pending = [...ids.keys()];
  while (now() < deadline && pending.length) {
    const still = await pool(pending, 4, async (i) => {
      const r = await request('GET', `/bench_itgt_${pad(i)}`);
      return r.status === 200 && r.json.doc_count >= srcCount[i % opt.sources] ? null : i;
    });
    pending = still.filter((x) => x !== null);
    if (pending.length) await sleep(500);
  }
  const tCaught = now() - t0;
  out(`  ${add - pending.length} of ${add} new targets caught up after ${fmtMs(tCaught)}`);
  const feeds = await openFeeds();
  out(`  open continuous feeds on the test server: ${feeds} (expected ${n + 2})`);
  printProc('all triggered and caught up', t0s, (now() - t0s.t) / 1000);
  // Let the first periodic checkpoint (checkpoint_interval, default 30 s,
  // counted from each job's start) pass so the window below is really idle.
  out(`  settling ${opt.settleSeconds} s (first periodic checkpoints of the new jobs) ...`);
  await sleep(opt.settleSeconds * 1000);
  summarizeLog(newLogLines(), 'phase 5 start-up');
  await ok('DELETE', '/_test/requests');
  const a = snapStats();
  const ctxA = ctxSwitches(opt.servePid);
  const thA = threadCpu(opt.servePid);
  const w0 = now();
  await sleep(opt.idleSeconds * 1000);
  requireServe('phase 5, idle window');
  const secs = (now() - w0) / 1000;
  const b = snapStats();
  const ctxB = ctxSwitches(opt.servePid);
  const thB = threadCpu(opt.servePid);
  const cpu = b.serve.cpu - a.serve.cpu;
  const pct = 100 * cpu / secs;
  let busy = 0;
  const perThread = [];
  for (const [t, c] of thB) {
    const d = c - (thA.get(t) || 0);
    if (d > 0) busy++;
    perThread.push(d);
  }
  perThread.sort((x, y) => y - x);
  out(`  idle window: ${secs.toFixed(1)} s`);
  out(`  >>> idle CPU: ${cpu.toFixed(2)} CPU s = ${pct.toFixed(2)} % of one core; VmRSS ${b.serve.rssMb.toFixed(1)} MB ` +
      `(VmHWM ${b.serve.hwmMb.toFixed(1)} MB), ${b.serve.threads} threads, ${b.serve.fds} fds`);
  out(`  wake-ups: ${((ctxB.vol - ctxA.vol) / secs).toFixed(0)} voluntary + ${((ctxB.invol - ctxA.invol) / secs).toFixed(0)} ` +
      `involuntary context switches/s over all ${thB.size} threads`);
  // Which threads wake how often: a thread in a 100 ms timed wait shows ~10/s.
  const buckets = [[0, 0, 'never'], [0, 1, '< 1/s'], [1, 5, '1-5/s'], [5, 15, '5-15/s (~10/s: a 100 ms timed wait)'],
                   [15, 50, '15-50/s'], [50, Infinity, '>= 50/s']];
  const hist = buckets.map(() => 0);
  const histCpu = buckets.map(() => 0);
  const top = [];
  for (const [t, v] of ctxB.perThread) {
    if (!ctxA.perThread.has(t)) continue;
    const rate = (v - ctxA.perThread.get(t)) / secs;
    let k = rate === 0 ? 0 : buckets.findIndex(([lo, hi], i) => i > 0 && rate >= lo && rate < hi);
    if (k < 0) k = buckets.length - 1;
    const c = (thB.get(t) || 0) - (thA.get(t) || 0);
    hist[k]++;
    histCpu[k] += c;
    top.push({t, c, rate});
  }
  top.sort((x, y) => y.c - x.c);
  out(`  threads by wake-up rate (count, CPU s they used in the window):`);
  buckets.forEach(([, , label], i) => { if (hist[i]) out(`    ${String(hist[i]).padStart(5)} threads ${label.padEnd(38)} ${histCpu[i].toFixed(2)} CPU s`); });
  out(`  busiest threads: ` + top.slice(0, 5).map((x) => `tid ${x.t} ${x.c.toFixed(2)} s (${x.rate.toFixed(1)} wake-ups/s)`).join(', '));
  out(`  (per-thread CPU is sampled in ${Math.round(1000 / opt.clkTck)} ms ticks: ${busy} of ${thB.size} threads were charged any; ` +
      `sums over many threads are estimates)`);
  out(`  test server CPU in the window: ${(b.server.cpu - a.server.cpu).toFixed(2)} s ` +
      `(${(100 * (b.server.cpu - a.server.cpu) / secs).toFixed(2)} % of one core; heartbeats of ${feeds} feeds)`);
  results.phase5 = {pct, rss: b.serve.rssMb, n};
  perfProfile();
  await requestBreakdown(0, `idle window, ${secs.toFixed(0)} s`);
  printProc('end of phase 5', t0s, (now() - t0s.t) / 1000);
  summarizeLog(newLogLines(), 'phase 5 idle window');
}

// ------------------------------------------------------------------ perf
// Where an idle couchrepd spends its CPU: `perf record` for a few seconds
// after the idle window (not during it: perf itself costs CPU).
function perfProfile() {
  const {spawnSync} = require('child_process');
  if (!opt.perfSeconds || spawnSync('sh', ['-c', 'command -v perf'], {encoding: 'utf8'}).status !== 0) return;
  const data = path.join(path.dirname(opt.serveLog), 'perf-idle.data');
  // task-clock every 50 us of CPU: the idle CPU is many tiny slices that a
  // 99 Hz sampler misses. DWARF call chains: glibc has no frame pointers.
  const rec = spawnSync('perf', ['record', '-q', '-e', 'task-clock', '-c', '50000', '--call-graph', 'dwarf,16384',
    '-p', String(opt.servePid), '-o', data, '--', 'sleep', String(opt.perfSeconds)],
  {encoding: 'utf8', timeout: (opt.perfSeconds + 120) * 1000});
  if (rec.status !== 0) { out(`  perf record failed: ${(rec.stderr || '').trim().split('\n').pop()}`); return; }
  const report = (args) => (spawnSync('perf', ['report', '-i', data, '--stdio', '-g', 'none', '--sort', 'symbol', ...args],
    {encoding: 'utf8', timeout: 300000, maxBuffer: 256 << 20}).stdout || '').split('\n')
    .filter((l) => /^\s+\d+\.\d+%/.test(l)).map((l) => l.trim().replace(/\s+-\s+-\s*$/, '').replace(/\s+/g, ' '));
  const samples = report(['--no-children', '--percent-limit', '0']).length;
  out(`  perf, ${opt.perfSeconds} s after the window (task-clock, DWARF call chains; ${data}):`);
  out(`    self time, top symbols:`);
  for (const l of report(['--no-children', '--percent-limit', '3']).slice(0, 6)) out(`      ${l.slice(0, 160)}`);
  out(`    inclusive time (user-space frames):`);
  for (const l of report(['--children', '--percent-limit', '3'])
    .filter((x) => !/\[k\]|clone3|start_thread|\] 0x[0-9a-f]+$/.test(x)).slice(0, 16)) {
    out(`      ${l.slice(0, 160)}`);
  }
  if (!samples) out('    (no samples)');
}

// ------------------------------------------------------------------ main
async function main() {
  const v = await ok('GET', '/');
  out(`test server ${opt.url} (${v.vendor ? v.vendor.name : '?'} ${v.version}), couchrepd serve pid ${opt.servePid}`);
  printProc('start', null, 0);
  // Is there a status API (e.g. /_scheduler/jobs)? Only informational.
  const statusLine = readServeLog().find((l) => /status|listening/i.test(l) && /:\d+/.test(l));
  out(`  status API: ${statusLine ? 'serve log says: ' + statusLine.replace(/^\S+ \w+ /, '') : 'no listening line in the serve log (not started by this build)'}`);
  const m = statusLine && statusLine.match(/(127\.0\.0\.1|localhost|\[::1\]):(\d+)/);
  if (m) {
    const r = await new Promise((resolve) => {
      const req = http.get({host: m[1].replace(/[[\]]/g, ''), port: Number(m[2]), path: '/_scheduler/jobs', agent: false,
        timeout: 5000}, (res) => { let b = ''; res.on('data', (c) => { b += c; }); res.on('end', () => resolve(`HTTP ${res.statusCode} ${b.slice(0, 120)}`)); });
      req.on('error', (e) => resolve(`error ${e.message}`));
      req.on('timeout', () => req.destroy(new Error('timeout')));
    });
    out(`  GET http://${m[1]}:${m[2]}/_scheduler/jobs -> ${r.replace(/\s+/g, ' ')}`);
  }
  out(`  load average at start: ${loadavg()} (${require('os').cpus().length} cores; other processes share them)`);
  await setup();
  const watcher = new Watcher();
  let gone = null;
  try {
    if (!skip.has('1')) await phase1();
    await watcher.start();
    await sleep(300);
    const cont = skip.has('2') ? 0 : opt.continuous;
    if (!skip.has('2')) await phase2(watcher);
    if (!skip.has('5')) await phase5(watcher, cont);
    const others = skip.has('5') ? 0 : Math.max(0, opt.idleJobs - cont);
    if (!skip.has('2') && !skip.has('3')) await phase3(watcher, others);
  } catch (e) {
    if (!(e instanceof ServeGone)) throw e;
    gone = e.message;
    out('');
    out(`!!! ${gone}; remaining phases skipped. Last lines of its log:`);
    for (const l of readServeLog().filter(Boolean).slice(-8)) out(`    ${l}`);
  }
  watcher.stop();

  out('');
  out('== Summary (targets from issue 4) ==');
  const mark = (good) => (good ? 'met' : 'MISSED');
  if (results.phase1) {
    out(`  1,000s of documents: ${results.phase1.n} one-shot documents all completed in ` +
        `${results.phase1.ok ? fmtMs(results.phase1.ms) : `(not all: ${results.phase1.done})`}  (no target; reported)`);
  }
  if (results.phase2) {
    out(`  PUT -> triggered      p50 ${fmtMs(results.phase2.p50)}, p99 ${fmtMs(results.phase2.p99)}   target p99 < 200 ms: ` +
        mark(results.phase2.p99 < 200));
  }
  if (results.phase3) {
    out(`  DELETE -> stopped     p50 ${fmtMs(results.phase3.p50)}, p99 ${fmtMs(results.phase3.p99)}   target p99 < 1 s: ` +
        mark(results.phase3.p99 < 1000 && results.phase3.leaked === 0 && !results.phase3.crashedAfter) +
        (results.phase3.leaked ? ` (${results.phase3.leaked} targets still received writes)` : '') +
        (results.phase3.crashedAfter ? ` (couchrepd CRASHED after ${results.phase3.crashedAfter} of ${opt.continuous} DELETEs)` : ''));
  }
  if (results.phase5) {
    out(`  idle, ${results.phase5.n} continuous jobs: ${results.phase5.pct.toFixed(2)} % of one core, ` +
        `RSS ${results.phase5.rss.toFixed(1)} MB   target < 2 %: ${mark(results.phase5.pct < 2)}`);
  }
  if (gone) out(`  !!! ${gone}`);
  out('  couchrepd at the end of each phase:');
  for (const m of phaseMarks) {
    out(`    ${m.label.padEnd(30)} RSS ${m.serve.rssMb.toFixed(1).padStart(7)} MB  HWM ${m.serve.hwmMb.toFixed(1).padStart(7)} MB  ` +
        `CPU ${m.serve.cpu.toFixed(2).padStart(8)} s  threads ${String(m.serve.threads).padStart(5)}`);
  }
}

main().then(() => process.exit(serveAlive() ? 0 : 3), (e) => {
  console.error(`bench-scheduler.js: ${e && e.stack || e}`);
  process.exit(1);
});
