#!/usr/bin/env node
// Helper of scripts/bench-replicate (a benchmark, not a test).
//
//   node bench.js seed   SERVER DB N [DOC_BYTES]  create DB and fill it with N small docs
//                                                  via _bulk_docs in batches of 1000
//   node bench.js count  SERVER DB                 print the doc_count of DB
//   node bench.js delete SERVER DB                 delete DB (a missing DB is fine)
//   node bench.js requests SERVER [reset]          print "TOTAL CHANGES": the requests the test
//                                                  server logged so far, and how many were _changes
//                                                  (GET /_test/requests); with reset, clear the log
//   node bench.js endpoints SERVER                 print one JSON line: the requests the test server
//                                                  logged so far by endpoint kind, {total, kinds:
//                                                  {changes, revs_diff, bulk_get, bulk_docs, local,
//                                                  ensure_full_commit, db_info, doc_get, other},
//                                                  other_detail: {"METHOD /pattern": n}} (the
//                                                  log's list; above 200000 requests one count per
//                                                  kind by regex instead, without other_detail)
//   node bench.js pouch  SOURCE_URL TARGET_URL BATCH_SIZE
//        run PouchDB.replicate(source, target, {batch_size}) over the http adapter
//        (pouchdb-core + pouchdb-adapter-http + pouchdb-replication) and print one
//        JSON line: {ok, docs_read, docs_written, doc_write_failures, elapsed_seconds}
//
// SERVER is a base URL such as http://127.0.0.1:5984. Every request goes to it only.
'use strict';

const BULK_BATCH = 1000;

function fail(msg) {
  process.stderr.write(`bench.js: ${msg}\n`);
  process.exit(1);
}

async function request(method, url, body) {
  const opts = { method, headers: { Accept: 'application/json' } };
  if (body !== undefined) {
    opts.headers['Content-Type'] = 'application/json';
    opts.body = typeof body === 'string' ? body : JSON.stringify(body);
  }
  const res = await fetch(url, opts);
  const text = await res.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch (e) {
    json = { raw: text };
  }
  return { status: res.status, json };
}

// Deterministic pseudo-random text, so payloads differ from doc to doc.
function makeRng(seed) {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    return x;
  };
}
const ALPHABET = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';
const TAGS = ['red', 'green', 'blue', 'alpha', 'beta', 'gamma', 'north', 'south', 'east', 'west'];
const TYPES = ['order', 'invoice', 'customer', 'event'];

function makeDoc(i, docBytes, rng) {
  const doc = {
    _id: 'doc-' + String(i).padStart(8, '0'),
    type: TYPES[i % TYPES.length],
    n: i,
    ts: new Date(Date.UTC(2024, 0, 1) + i * 1000).toISOString(),
    tags: [TAGS[rng() % TAGS.length], TAGS[rng() % TAGS.length], TAGS[rng() % TAGS.length]],
    payload: '',
  };
  // The payload is docBytes - 100 chars (100 at the default 200): the whole doc is then
  // about docBytes of JSON plus its _id (the seed prints the real average).
  const len = Math.max(0, docBytes - 100);
  let p = '';
  for (let k = 0; k < len; k++) p += ALPHABET[rng() % ALPHABET.length];
  doc.payload = p;
  return doc;
}

async function seed(server, db, n, docBytes) {
  const url = `${server}/${encodeURIComponent(db)}`;
  const put = await request('PUT', url);
  if (put.status !== 201 && put.status !== 202) {
    fail(`PUT ${db}: ${put.status} ${JSON.stringify(put.json)}`);
  }
  const rng = makeRng(0x9e3779b9 ^ n);
  const t0 = process.hrtime.bigint();
  let bytes = 0;
  for (let start = 0; start < n; start += BULK_BATCH) {
    const docs = [];
    for (let i = start; i < Math.min(n, start + BULK_BATCH); i++) docs.push(makeDoc(i, docBytes, rng));
    const body = JSON.stringify({ docs });
    bytes += body.length;
    const res = await request('POST', `${url}/_bulk_docs`, body);
    if (res.status !== 201) fail(`_bulk_docs: ${res.status} ${JSON.stringify(res.json).slice(0, 300)}`);
    const bad = res.json.filter((r) => r.error);
    if (bad.length) fail(`_bulk_docs: ${bad.length} errors, e.g. ${JSON.stringify(bad[0])}`);
  }
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  const avg = n ? Math.round(bytes / n) : 0;
  console.log(JSON.stringify({ ok: true, docs: n, seconds: +secs.toFixed(3), avg_doc_json_bytes: avg }));
}

async function count(server, db) {
  const res = await request('GET', `${server}/${encodeURIComponent(db)}`);
  if (res.status !== 200) fail(`GET ${db}: ${res.status} ${JSON.stringify(res.json)}`);
  console.log(res.json.doc_count);
}

async function del(server, db) {
  const res = await request('DELETE', `${server}/${encodeURIComponent(db)}`);
  if (res.status !== 200 && res.status !== 202 && res.status !== 404) {
    fail(`DELETE ${db}: ${res.status} ${JSON.stringify(res.json)}`);
  }
}

async function requests(server, reset) {
  if (reset === 'reset') {
    await request('DELETE', `${server}/_test/requests`);
    return;
  }
  const all = await request('GET', `${server}/_test/requests`);
  const changes = await request('GET', `${server}/_test/requests?path=${encodeURIComponent('/_changes$')}`);
  if (all.status !== 200 || changes.status !== 200) fail(`GET /_test/requests: ${all.status}`);
  console.log(`${all.json.count} ${changes.json.count}`);
}

// Endpoint kinds of the request counts (scripts/bench-replicate): the replication endpoints,
// checkpoints (_local docs), db info (GET /db), document GETs (open_revs) and everything else.
const KINDS = ['changes', 'revs_diff', 'bulk_get', 'bulk_docs', 'local', 'ensure_full_commit',
  'db_info', 'doc_get', 'other'];
const DB_ENDPOINTS = {
  _changes: 'changes', _revs_diff: 'revs_diff', _bulk_get: 'bulk_get', _bulk_docs: 'bulk_docs',
  _ensure_full_commit: 'ensure_full_commit',
};
const decode = (s) => { try { return decodeURIComponent(s); } catch (e) { return s; } };

// classify(method, path) -> [kind, pattern]; path as the server logged it (percent-encoded)
function classify(method, path) {
  const segs = path.split('/').slice(1).map(decode);
  const db = segs[0] || '';
  if (db === '' || db.startsWith('_')) return ['other', `${method} /${db}`];
  const rest = segs.slice(1).filter((x, i, a) => x !== '' || i < a.length - 1);
  if (rest.length === 0) return [method === 'GET' ? 'db_info' : 'other', `${method} /DB`];
  const first = rest[0];
  if (first === '_local' || first.startsWith('_local/')) return ['local', `${method} /DB/_local/ID`];
  if (DB_ENDPOINTS[first] && rest.length === 1) return [DB_ENDPOINTS[first], `${method} /DB/${first}`];
  const isDoc = !first.startsWith('_') || first === '_design' || first.startsWith('_design/');
  if (isDoc) return [method === 'GET' ? 'doc_get' : 'other', `${method} /DB/ID`];
  return ['other', `${method} /DB/${first}`];
}

// Regexes for counting without the list (one request per kind; 'other' is the rest)
const KIND_QUERIES = {
  changes: { path: '^/[^_/][^/]*/_changes$' },
  revs_diff: { path: '^/[^_/][^/]*/_revs_diff$' },
  bulk_get: { path: '^/[^_/][^/]*/_bulk_get$' },
  bulk_docs: { path: '^/[^_/][^/]*/_bulk_docs$' },
  local: { path: '^/[^_/][^/]*/_local(/|%2[Ff])' },
  ensure_full_commit: { path: '^/[^_/][^/]*/_ensure_full_commit$' },
  db_info: { path: '^/[^_/][^/]*/?$', method: 'GET' },
  doc_get: { path: '^/[^_/][^/]*/([^_/]|_design(/|%2[Ff]))', method: 'GET' },
};

async function endpoints(server) {
  const base = `${server}/_test/requests`;
  const all = await request('GET', base);
  if (all.status !== 200) fail(`GET /_test/requests: ${all.status}`);
  const total = all.json.count;
  const kinds = Object.fromEntries(KINDS.map((k) => [k, 0]));
  const out = { total, kinds };
  if (total <= 200000) {
    const list = await request('GET', `${base}?list=true`);
    if (list.status !== 200) fail(`GET /_test/requests?list=true: ${list.status}`);
    const detail = {};
    for (const r of list.json.requests) {
      const [kind, pattern] = classify(r.method, r.path);
      kinds[kind]++;
      if (kind === 'other') detail[pattern] = (detail[pattern] || 0) + 1;
    }
    out.total = list.json.requests.length;
    out.other_detail = detail;
  } else {
    let counted = 0;
    for (const [kind, q] of Object.entries(KIND_QUERIES)) {
      let url = `${base}?path=${encodeURIComponent(q.path)}`;
      if (q.method) url += `&method=${q.method}`;
      const res = await request('GET', url);
      if (res.status !== 200) fail(`GET /_test/requests (${kind}): ${res.status}`);
      kinds[kind] = res.json.count;
      counted += res.json.count;
    }
    kinds.other = Math.max(0, total - counted);
  }
  console.log(JSON.stringify(out));
}

async function pouch(source, target, batchSize) {
  const PouchDB = require('pouchdb-core')
    .plugin(require('pouchdb-adapter-http'))
    .plugin(require('pouchdb-replication'));
  const t0 = process.hrtime.bigint();
  const result = await PouchDB.replicate(source, target, { batch_size: batchSize });
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  console.log(JSON.stringify({
    ok: result.ok,
    status: result.status,
    docs_read: result.docs_read,
    docs_written: result.docs_written,
    doc_write_failures: result.doc_write_failures,
    elapsed_seconds: +secs.toFixed(3),
  }));
}

async function main() {
  const [cmd, ...args] = process.argv.slice(2);
  switch (cmd) {
    case 'seed':
      if (args.length < 3) fail('usage: seed SERVER DB N [DOC_BYTES]');
      return seed(args[0], args[1], parseInt(args[2], 10), parseInt(args[3] || '200', 10));
    case 'count':
      return count(args[0], args[1]);
    case 'delete':
      return del(args[0], args[1]);
    case 'requests':
      return requests(args[0], args[1]);
    case 'endpoints':
      return endpoints(args[0]);
    case 'pouch':
      if (args.length < 3) fail('usage: pouch SOURCE_URL TARGET_URL BATCH_SIZE');
      return pouch(args[0], args[1], parseInt(args[2], 10));
    default:
      fail('usage: bench.js seed|count|delete|requests|endpoints|pouch ...');
  }
}

main().catch((e) => fail(e && e.stack ? e.stack : String(e)));
