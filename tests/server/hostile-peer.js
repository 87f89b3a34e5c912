#!/usr/bin/env node
// hostile-peer: a CouchDB look-alike that misbehaves on purpose, chosen per request by the database
// name in the path (SPEC §10), for couchrepd's hostile-input integration tests. Built-ins only.
//
//   node hostile-peer.js --port 0 [--host 127.0.0.1] [--uuid HEX]
//
// Announces "hostile-peer listening on http://HOST:PORT/" on stdout once ready. Every database
// holds the same five documents doc-0..doc-4 (revision 1-md5(id)) unless its scenario says
// otherwise; it answers GET / (welcome + uuid), PUT/GET /db, _local (404 until written),
// _changes (normal and continuous), _revs_diff (everything missing), _bulk_get, open_revs,
// _bulk_docs and _ensure_full_commit well enough for `couchrepd replicate` to reach the hostile
// step. The scenarios (database names) are listed in SCENARIOS below.
//
// Control: GET /_peer/log?db=NAME answers {"requests":[{method,path,query,docs,ids,aborted,
// finished,bytes_sent}]} for that database (every request, in arrival order); GET /_peer/log lists all.
// Huge and endless bodies are generated on the fly with back-pressure and are never held in
// memory; the peer stops writing as soon as the client goes away.
'use strict';

const crypto = require('crypto');
const http = require('http');

// ---------------------------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------------------------

function parseArgs(argv) {
  const opts = { port: 0, host: '127.0.0.1', uuid: crypto.randomBytes(16).toString('hex') };
  for (let i = 0; i < argv.length; i += 2) {
    const value = argv[i + 1];
    if (value === undefined) throw new Error(`missing value for ${argv[i]}`);
    if (argv[i] === '--port') opts.port = Number(value);
    else if (argv[i] === '--host') opts.host = value;
    else if (argv[i] === '--uuid') opts.uuid = value;
    else throw new Error(`unknown option ${argv[i]}`);
  }
  return opts;
}

const args = parseArgs(process.argv.slice(2));
for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP']) process.on(sig, () => process.exit(0));

// ---------------------------------------------------------------------------------------------
// Sizes and shared pieces
// ---------------------------------------------------------------------------------------------

const MB = 1024 * 1024;
const HUGE_BYTES = 300 * MB;          // "hundreds of MB", generated on the fly
const BIG_ROW_BYTES = 80 * MB;        // a _changes row over the 64 MiB cap
const LONG_REASON_BYTES = 40 * 1024;  // issue 8, reproduction 4
const TOKEN_REASON_BYTES = 60 * 1024; // issue 8, reproduction 1
const DEEP_LEVELS = 100000;
const MANY_HEADERS = 5000;
const CHUNK = 64 * 1024;
// The "secret" repeated in the token reason: tests assert it never shows.
const TOKEN_HEX = 'deadbeefcafef00d';
const REASON_TAIL = 'END-OF-THE-LONG-REASON';

const DOC_IDS = ['doc-0', 'doc-1', 'doc-2', 'doc-3', 'doc-4'];

function md5(text) {
  return crypto.createHash('md5').update(text).digest('hex');
}
function revOf(id) {
  return `1-${md5(id)}`;
}
function docJson(id, rev = revOf(id), extra = '') {
  const hash = rev.slice(rev.indexOf('-') + 1);
  const gen = Number(rev.slice(0, rev.indexOf('-')));
  return `{"_id":${JSON.stringify(id)},"_rev":${JSON.stringify(rev)},` +
         `"_revisions":{"start":${gen},"ids":[${JSON.stringify(hash)}]},"n":${JSON.stringify(id)}${extra}}`;
}
function deepValue(levels) {
  return '['.repeat(levels) + ']'.repeat(levels);
}
function longText(bytes) {
  const word = 'lorem ipsum dolor sit amet ';
  return word.repeat(Math.ceil(bytes / word.length)).slice(0, bytes - REASON_TAIL.length) + REASON_TAIL;
}
const BAD_UTF8 = Buffer.from([0xff, 0xfe, 0xc3, 0x28, 0xed, 0xa0, 0x80]);
// `text` with every "%BAD%" replaced by bytes that are not UTF-8.
function withBadUtf8(text) {
  const parts = text.split('%BAD%').map((p) => Buffer.from(p));
  const out = [];
  parts.forEach((p, i) => { if (i) out.push(BAD_UTF8); out.push(p); });
  return Buffer.concat(out);
}

// ---------------------------------------------------------------------------------------------
// Request log
// ---------------------------------------------------------------------------------------------

const log = [];  // {db, method, path, query, docs, ids, aborted, finished, bytes_sent}

function record(req, db, path, query) {
  const entry = { db, method: req.method, path, query, docs: 0, ids: [], aborted: false, finished: false,
                  bytes_sent: 0 };
  log.push(entry);
  return entry;
}

// ---------------------------------------------------------------------------------------------
// Writing bodies
// ---------------------------------------------------------------------------------------------

function send(res, entry, status, body, headers = {}) {
  const buf = Buffer.isBuffer(body) ? body : Buffer.from(body);
  res.writeHead(status, Object.assign({ 'Content-Type': 'application/json',
                                        'Content-Length': buf.length }, headers));
  res.end(buf);
  entry.bytes_sent += buf.length;
}

function json(res, entry, status, value, headers) {
  send(res, entry, status, JSON.stringify(value), headers);
}

// Streams `head`, then `fill` bytes of `fillChar` (Infinity = endless), then `tail`, respecting
// back-pressure; stops when the client goes away. Content-Length is sent when the size is known.
function stream(res, entry, status, head, fill, tail, headers = {}) {
  const h = Object.assign({ 'Content-Type': 'application/json' }, headers);
  if (Number.isFinite(fill)) h['Content-Length'] = Buffer.byteLength(head) + fill + Buffer.byteLength(tail);
  res.writeHead(status, h);
  const block = Buffer.alloc(CHUNK, 'x');
  let left = fill;
  let gone = false;
  res.on('close', () => { gone = true; });
  const pump = () => {
    while (!gone) {
      if (left <= 0) {
        res.end(tail);
        entry.bytes_sent += Buffer.byteLength(tail);
        return;
      }
      const n = Math.min(left, CHUNK);
      left -= n;
      entry.bytes_sent += n;
      if (!res.write(n === CHUNK ? block : block.subarray(0, n))) {
        res.once('drain', pump);
        return;
      }
    }
  };
  res.write(head);
  entry.bytes_sent += Buffer.byteLength(head);
  pump();
}

// One byte per second.
function dribble(res, entry, status, body) {
  const buf = Buffer.from(body);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': buf.length });
  let at = 0;
  const timer = setInterval(() => {
    if (res.destroyed || at >= buf.length) {
      clearInterval(timer);
      if (!res.destroyed) res.end();
      return;
    }
    res.write(buf.subarray(at, at + 1));
    entry.bytes_sent += 1;
    at += 1;
  }, 1000);
  res.on('close', () => clearInterval(timer));
}

// ---------------------------------------------------------------------------------------------
// The ordinary CouchDB look-alike
// ---------------------------------------------------------------------------------------------

function dbInfo(db) {
  return { db_name: db, update_seq: DOC_IDS.length, instance_start_time: '0',
           doc_count: DOC_IDS.length, doc_del_count: 0, purge_seq: 0,
           sizes: { file: 1, external: 1, active: 1 }, props: {} };
}

function changeRow(i, extra = '') {
  const id = DOC_IDS[i];
  return `{"seq":${i + 1},"id":"${id}","changes":[{"rev":"${revOf(id)}"}]${extra}}`;
}

function sinceOf(query) {
  const n = parseInt(query.get('since') || '0', 10);
  return Number.isFinite(n) ? n : 0;
}

// A normal or continuous feed of `rows` (JSON texts, seq i+1), after `since`.
function changes(req, res, entry, query, rows) {
  const since = sinceOf(query);
  const todo = rows.map((r, i) => [i + 1, r]).filter(([seq]) => seq > since);
  if (query.get('feed') === 'continuous') {
    res.writeHead(200, { 'Content-Type': 'application/json' });
    for (const [, r] of todo) res.write(r + '\n');
    const beat = Math.max(200, parseInt(query.get('heartbeat') || '1000', 10) || 1000);
    const timer = setInterval(() => { if (!res.destroyed) res.write('\n'); }, beat);
    res.on('close', () => clearInterval(timer));
    return;
  }
  const body = `{"results":[\n${todo.map(([, r]) => r).join(',\n')}\n],\n"last_seq":${rows.length},"pending":0}\n`;
  send(res, entry, 200, body);
}

function revsDiff(body) {
  const out = {};
  for (const [id, revs] of Object.entries(body || {})) out[id] = { missing: revs };
  return out;
}

// _bulk_get results as JSON text pieces, one per requested {id, rev}.
function bulkGetResult(id, okDocJson) {
  return `{"id":${JSON.stringify(id)},"docs":[{"ok":${okDocJson}}]}`;
}

function defaultBulkGet(items) {
  return items.map((it) => bulkGetResult(it.id, docJson(it.id, it.rev || revOf(it.id))));
}

function openRevsRequested(query) {
  try {
    const v = JSON.parse(query.get('open_revs') || '[]');
    return Array.isArray(v) ? v : [];
  } catch (e) {
    return [];
  }
}

// ---------------------------------------------------------------------------------------------
// Scenarios: database name -> handlers that replace the ordinary ones. Each handler gets
// (req, res, entry, ctx) with ctx = {db, rest, query, body, items} and returns true when it
// answered.
// ---------------------------------------------------------------------------------------------

const SCENARIOS = {
  // A 401 whose reason is 60 KB starting with "x-auth-couchdb-token: " (issue 8, item 1).
  'token-401': {
    info: (req, res, entry) => {
      const reason = 'x-auth-couchdb-token: ' + TOKEN_HEX.repeat(TOKEN_REASON_BYTES / TOKEN_HEX.length);
      json(res, entry, 401, { error: 'unauthorized', reason });
      return true;
    },
  },
  // A 40 KB error reason from _changes (issue 8, item 4).
  'long-reason': {
    changes: (req, res, entry) => {
      json(res, entry, 400, { error: 'bad_request', reason: longText(LONG_REASON_BYTES) });
      return true;
    },
  },
  // Bodies of hundreds of MB for calls read whole.
  'huge-info': {
    info: (req, res, entry, ctx) => {
      stream(res, entry, 200, `{"db_name":"${ctx.db}","update_seq":5,"instance_start_time":"0","pad":"`,
             HUGE_BYTES, '"}');
      return true;
    },
  },
  'huge-revs-diff': {
    revs_diff: (req, res, entry, ctx) => {
      const first = Object.keys(ctx.body || {})[0] || 'doc-0';
      stream(res, entry, 200, `{${JSON.stringify(first)}:{"missing":${JSON.stringify(ctx.body[first] || [])},"pad":"`,
             HUGE_BYTES, '"}}');
      return true;
    },
  },
  // doc-2 is 300 MB: any _bulk_get or open_revs answer holding it is huge.
  'huge-bulk-get': {
    bulk_get: (req, res, entry, ctx) => {
      const others = ctx.items.filter((it) => it.id !== 'doc-2');
      if (others.length === ctx.items.length) return false;
      const head = `{"results":[${defaultBulkGet(others).map((r) => r + ',').join('')}` +
                   `{"id":"doc-2","docs":[{"ok":${docJson('doc-2').slice(0, -1)},"pad":"`;
      stream(res, entry, 200, head, HUGE_BYTES, '"}}]}]}');
      return true;
    },
    open_revs: (req, res, entry, ctx) => {
      if (ctx.rest !== 'doc-2') return false;
      stream(res, entry, 200, `[{"ok":${docJson('doc-2').slice(0, -1)},"pad":"`, HUGE_BYTES, '"}}]');
      return true;
    },
  },
  // An endless chunked body for a call read whole.
  'endless-chunked': {
    info: (req, res, entry, ctx) => {
      stream(res, entry, 200, `{"db_name":"${ctx.db}","update_seq":5,"instance_start_time":"0","pad":"`,
             Infinity, '');
      return true;
    },
  },
  // A _changes row of 80 MB (over the 64 MiB cap).
  'huge-change': {
    changes: (req, res, entry, ctx) => {
      if (ctx.query.get('feed') === 'continuous') return false;
      const head = `{"results":[\n${changeRow(0)},\n${changeRow(1).slice(0, -1)},"pad":"`;
      const tail = `"},\n${[2, 3, 4].map((i) => changeRow(i)).join(',\n')}\n],\n"last_seq":5,"pending":0}\n`;
      stream(res, entry, 200, head, BIG_ROW_BYTES, tail);
      return true;
    },
  },
  // 100,000 levels of nesting: in db info, in a _changes row, in a document.
  'deep-info': {
    info: (req, res, entry, ctx) => {
      send(res, entry, 200, `{"db_name":"${ctx.db}","update_seq":5,"instance_start_time":"0",` +
                            `"deep":${deepValue(DEEP_LEVELS)}}`);
      return true;
    },
  },
  'deep-changes': {
    changes: (req, res, entry, ctx) => {
      const rows = DOC_IDS.map((id, i) => changeRow(i, i === 1 ? `,"deep":${deepValue(DEEP_LEVELS)}` : ''));
      changes(req, res, entry, ctx.query, rows);
      return true;
    },
  },
  'deep-doc': {
    bulk_get: (req, res, entry, ctx) => {
      const results = ctx.items.map((it) => bulkGetResult(
          it.id, docJson(it.id, it.rev || revOf(it.id), it.id === 'doc-2' ? `,"deep":${deepValue(DEEP_LEVELS)}` : '')));
      send(res, entry, 200, `{"results":[${results.join(',')}]}`);
      return true;
    },
    open_revs: (req, res, entry, ctx) => {
      if (ctx.rest !== 'doc-2') return false;
      send(res, entry, 200, `[{"ok":${docJson('doc-2', revOf('doc-2'), `,"deep":${deepValue(DEEP_LEVELS)}`)}}]`);
      return true;
    },
  },
  // Thousands of response headers.
  'many-headers': {
    info: (req, res, entry, ctx) => {
      const raw = ['Content-Type', 'application/json'];
      for (let i = 0; i < MANY_HEADERS; ++i) raw.push(`X-Filler-${i}`, `value-${i}-${'v'.repeat(40)}`);
      const body = JSON.stringify(dbInfo(ctx.db));
      raw.push('Content-Length', String(Buffer.byteLength(body)));
      res.writeHead(200, raw);
      res.end(body);
      entry.bytes_sent += body.length;
      return true;
    },
  },
  // One byte per second.
  'slow-info': {
    info: (req, res, entry, ctx) => {
      dribble(res, entry, 200, JSON.stringify(dbInfo(ctx.db)));
      return true;
    },
  },
  // Invalid UTF-8 inside JSON strings: in an error reason, in a document, in a _changes id.
  'bad-utf8-reason': {
    changes: (req, res, entry) => {
      send(res, entry, 400, withBadUtf8('{"error":"bad_request","reason":"broken %BAD% bytes"}'));
      return true;
    },
  },
  'bad-utf8-doc': {
    bulk_get: (req, res, entry, ctx) => {
      const results = ctx.items.map((it) => bulkGetResult(
          it.id, docJson(it.id, it.rev || revOf(it.id), it.id === 'doc-2' ? ',"text":"%BAD%"' : '')));
      send(res, entry, 200, withBadUtf8(`{"results":[${results.join(',')}]}`));
      return true;
    },
    open_revs: (req, res, entry, ctx) => {
      if (ctx.rest !== 'doc-2') return false;
      send(res, entry, 200, withBadUtf8(`[{"ok":${docJson('doc-2', revOf('doc-2'), ',"text":"%BAD%"')}}]`));
      return true;
    },
  },
  'bad-utf8-changes': {
    changes: (req, res, entry, ctx) => {
      if (ctx.query.get('feed') === 'continuous') return false;
      const rows = DOC_IDS.map((id, i) => (i === 1 ? changeRow(i).replace('"doc-1"', '"doc-%BAD%"') : changeRow(i)));
      send(res, entry, 200, withBadUtf8(`{"results":[\n${rows.join(',\n')}\n],\n"last_seq":5,"pending":0}\n`));
      return true;
    },
  },
  // Wrong content types on open_revs: multipart/mixed announced, JSON sent (doc-1); multipart
  // without a boundary (doc-3).
  'wrong-ctype': {
    open_revs: (req, res, entry, ctx) => {
      if (ctx.rest === 'doc-1') {
        send(res, entry, 200, `[{"ok":${docJson('doc-1')}}]`,
             { 'Content-Type': 'multipart/mixed; boundary="abc123"' });
        return true;
      }
      if (ctx.rest === 'doc-3') {
        send(res, entry, 200, `[{"ok":${docJson('doc-3')}}]`, { 'Content-Type': 'multipart/mixed' });
        return true;
      }
      return false;
    },
  },
  // A 502 HTML error page (40 KB).
  'html-502': {
    info: (req, res, entry) => {
      const page = `<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body>` +
                   `<h1>Bad Gateway</h1><p>${longText(LONG_REASON_BYTES)}</p></body></html>`;
      send(res, entry, 502, page, { 'Content-Type': 'text/html' });
      return true;
    },
  },
  // A _changes line that is not JSON.
  'bad-changes-line': {
    changes: (req, res, entry, ctx) => {
      if (ctx.query.get('feed') === 'continuous') return false;
      send(res, entry, 200, `{"results":[\n${changeRow(0)},\n${changeRow(1)},\n` +
                            `this is not JSON at all <html>\n,${changeRow(3)}\n],\n"last_seq":5,"pending":0}\n`);
      return true;
    },
  },
  // _bulk_get leaves out doc-3.
  'bulk-get-missing': {
    bulk_get: (req, res, entry, ctx) => {
      const results = defaultBulkGet(ctx.items.filter((it) => it.id !== 'doc-3'));
      send(res, entry, 200, `{"results":[${results.join(',')}]}`);
      return true;
    },
  },
  // _bulk_get adds entries nobody asked for: another document, another revision of doc-1.
  'bulk-get-extra': {
    bulk_get: (req, res, entry, ctx) => {
      const results = defaultBulkGet(ctx.items);
      results.push(bulkGetResult('intruder', docJson('intruder')));
      results.push(bulkGetResult('doc-1', docJson('doc-1', `1-${md5('unrequested')}`)));
      send(res, entry, 200, `{"results":[${results.join(',')}]}`);
      return true;
    },
  },
  // _bulk_get answers doc-2 with an error that is neither not_found nor missing.
  'bulk-get-error': {
    bulk_get: (req, res, entry, ctx) => {
      const results = ctx.items.map((it) => (it.id === 'doc-2'
        ? `{"id":"doc-2","docs":[{"error":{"id":"doc-2","rev":"${it.rev}","error":"internal_error","reason":"disk on fire"}}]}`
        : bulkGetResult(it.id, docJson(it.id, it.rev || revOf(it.id)))));
      send(res, entry, 200, `{"results":[${results.join(',')}]}`);
      return true;
    },
  },
  // open_revs answers revisions nobody asked for: an unrelated sibling of doc-1 beside the
  // requested one; for doc-4 a document with another _id.
  'open-revs-extra': {
    open_revs: (req, res, entry, ctx) => {
      if (ctx.rest === 'doc-1') {
        send(res, entry, 200, `[{"ok":${docJson('doc-1')}},{"ok":${docJson('doc-1', `1-${md5('unrequested')}`)}}]`);
        return true;
      }
      if (ctx.rest === 'doc-4') {
        send(res, entry, 200, `[{"ok":${docJson('intruder', revOf('doc-4'))}}]`);
        return true;
      }
      return false;
    },
  },
};

// ---------------------------------------------------------------------------------------------
// Routing
// ---------------------------------------------------------------------------------------------

function readBody(req, limit, done) {
  const chunks = [];
  let size = 0;
  req.on('data', (c) => {
    size += c.length;
    if (size <= limit) chunks.push(c);
  });
  req.on('end', () => done(size <= limit ? Buffer.concat(chunks) : null));
  req.on('error', () => done(null));
}

function handle(req, res, raw) {
  const url = new URL(req.url, 'http://peer');
  const query = url.searchParams;
  const segments = url.pathname.split('/').slice(1).map((s) => decodeURIComponent(s));

  if (url.pathname === '/_peer/log') {
    const db = query.get('db');
    const requests = db === null ? log : log.filter((e) => e.db === db);
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify({ requests }));
    return;
  }
  if (url.pathname === '/') {
    const entry = record(req, '', '/', url.search);
    json(res, entry, 200, { couchdb: 'Welcome', version: '3.4.3', uuid: args.uuid,
                            vendor: { name: 'hostile peer' }, features: [] });
    return;
  }
  const db = segments[0];
  const rest = segments.slice(1).filter((s, i, all) => !(s === '' && i === all.length - 1)).join('/');
  const entry = record(req, db, '/' + rest, url.search);
  let body = null;
  if (raw && raw.length) {
    try {
      body = JSON.parse(raw.toString('utf8'));
    } catch (e) {
      body = null;
    }
  }
  let items = [];
  if (rest === '_bulk_get' && body && Array.isArray(body.docs)) items = body.docs;
  if (rest === '_bulk_docs' && body && Array.isArray(body.docs)) {
    entry.ids = body.docs.map((d) => d && d._id);
  }
  entry.docs = rest === '_revs_diff' ? Object.keys(body || {}).length
             : rest === '_bulk_docs' ? entry.ids.length : items.length;
  const ctx = { db, rest, query, body, items };
  const scenario = SCENARIOS[db] || {};
  const use = (name) => scenario[name] && scenario[name](req, res, entry, ctx);

  if (rest === '') {
    if (req.method === 'PUT') return json(res, entry, 412, { error: 'file_exists', reason: 'The database could not be created, the file already exists.' });
    if (req.method === 'GET' || req.method === 'HEAD') {
      if (use('info')) return;
      return json(res, entry, 200, dbInfo(db));
    }
  }
  if (rest.startsWith('_local/')) {
    if (req.method === 'GET') return json(res, entry, 404, { error: 'not_found', reason: 'missing' });
    if (req.method === 'PUT') return json(res, entry, 201, { ok: true, id: rest, rev: '0-1' });
  }
  if (rest === '_changes') {
    if (use('changes')) return;
    return changes(req, res, entry, query, DOC_IDS.map((id, i) => changeRow(i)));
  }
  if (rest === '_revs_diff' && req.method === 'POST') {
    if (use('revs_diff')) return;
    return json(res, entry, 200, revsDiff(body));
  }
  if (rest === '_bulk_get' && req.method === 'POST') {
    if (use('bulk_get')) return;
    return send(res, entry, 200, `{"results":[${defaultBulkGet(items).join(',')}]}`);
  }
  if (rest === '_bulk_docs' && req.method === 'POST') {
    if (use('bulk_docs')) return;
    return json(res, entry, 201, []);
  }
  if (rest === '_ensure_full_commit' && req.method === 'POST') {
    return json(res, entry, 201, { ok: true, instance_start_time: '0' });
  }
  if (req.method === 'GET' && rest !== '' && !rest.startsWith('_')) {
    if (query.has('open_revs')) {
      if (use('open_revs')) return;
      const wanted = openRevsRequested(query);
      const revs = wanted.length ? wanted : [revOf(rest)];
      return send(res, entry, 200, `[${revs.map((r) => `{"ok":${docJson(rest, r)}}`).join(',')}]`);
    }
    if (DOC_IDS.includes(rest)) return send(res, entry, 200, docJson(rest));
  }
  json(res, entry, 404, { error: 'not_found', reason: 'missing' });
}

const server = http.createServer((req, res) => {
  const finishedOrAborted = () => {
    const entry = res.peerEntry;
    if (!entry) return;
    if (res.writableFinished) entry.finished = true;
    else entry.aborted = true;
  };
  res.on('close', finishedOrAborted);
  readBody(req, 8 * MB, (raw) => {
    const before = log.length;
    try {
      handle(req, res, raw);
    } catch (e) {
      if (!res.headersSent) res.writeHead(500, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ error: 'peer_bug', reason: String(e && e.stack) }));
    }
    if (log.length > before) res.peerEntry = log[log.length - 1];
  });
});
server.keepAliveTimeout = 60000;
server.headersTimeout = 0;
server.requestTimeout = 0;
server.listen(args.port, args.host, () => {
  const { port } = server.address();
  process.stdout.write(`hostile-peer listening on http://${args.host}:${port}/ pid=${process.pid}\n`);
});
