#!/usr/bin/env node
// couch-test-server: the CouchDB-compatible HTTP server used by couchrepd's integration tests.
//
// It runs express-pouchdb 4.2.0 (from pouchdb-server 4.2.0) in 'fullCouchDB' mode on in-memory
// PouchDB databases (on-disk leveldb ones with --data-dir, see "Persistence" below), with the
// built-in replicator switched off, and works around every crash and defect listed in
// shared/reference/express-pouchdb-test-server-notes.md (sections 2.2 and 2.4).
// Each work-around below is marked "FIX:" with the defect it addresses. See README.md beside this
// file for the flags and the /_test/ control endpoints.
'use strict';

const crypto = require('crypto');
const fs = require('fs');
const path = require('path');
const querystring = require('querystring');
const vm = require('vm');
const zlib = require('zlib');

// ---------------------------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------------------------

const USAGE = `usage: node couch-test-server.js [options]
  --port N               port to listen on (default 5984; 0 = pick a free port)
  --host HOST            address to bind (default 127.0.0.1)
  --admin NAME:PASSWORD  create a server admin (default: admin party)
  --uuid HEX             server uuid shown by GET / (default: random 32 hex digits)
  --seq-mode int|opaque  integer sequences (default) or CouchDB-3-like opaque strings
  --session-timeout S    cookie session lifetime in seconds (default 600)
  --data-dir DIR         keep the databases on disk in DIR (leveldb), so that a restart with the
                         same DIR finds them again (default: in memory, nothing is written)
  --crash-on-error       do not install the uncaught-exception safety net
  --verbose              log every request to stderr
  --help                 show this text`;

function parseArgs(argv) {
  const opts = {
    port: 5984, host: '127.0.0.1', admin: null, uuid: null, seqMode: 'int',
    sessionTimeout: null, crashOnError: false, verbose: false, dataDir: null,
  };
  const needValue = (i) => {
    if (i + 1 >= argv.length) fail(`missing value for ${argv[i]}`);
    return argv[i + 1];
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    switch (a) {
      case '--port': opts.port = Number(needValue(i)); i++; break;
      case '--host': opts.host = needValue(i); i++; break;
      case '--admin': opts.admin = needValue(i); i++; break;
      case '--uuid': opts.uuid = needValue(i); i++; break;
      case '--seq-mode': opts.seqMode = needValue(i); i++; break;
      case '--session-timeout': opts.sessionTimeout = Number(needValue(i)); i++; break;
      case '--data-dir': opts.dataDir = needValue(i); i++; break;
      case '--crash-on-error': opts.crashOnError = true; break;
      case '--verbose': opts.verbose = true; break;
      case '--help': case '-h': process.stdout.write(USAGE + '\n'); process.exit(0); break;
      default: fail(`unknown argument: ${a}`);
    }
  }
  if (!Number.isInteger(opts.port) || opts.port < 0 || opts.port > 65535) fail('bad --port');
  if (opts.admin !== null && !/^[^:]+:.*$/.test(opts.admin)) fail('--admin must be NAME:PASSWORD');
  if (opts.uuid !== null && !/^[0-9a-fA-F]+$/.test(opts.uuid)) fail('--uuid must be hex');
  if (opts.seqMode !== 'int' && opts.seqMode !== 'opaque') fail('--seq-mode must be int or opaque');
  if (opts.sessionTimeout !== null && !(Number.isInteger(opts.sessionTimeout) &&
      opts.sessionTimeout > 0)) {
    fail('--session-timeout must be a positive integer');
  }
  if (opts.dataDir !== null) {
    if (opts.dataDir === '') fail('--data-dir must not be empty');
    opts.dataDir = path.resolve(opts.dataDir);
  }
  return opts;
}

function fail(msg) {
  process.stderr.write(`couch-test-server: ${msg}\n${USAGE}\n`);
  process.exit(2);
}

const args = parseArgs(process.argv.slice(2));

// ---------------------------------------------------------------------------------------------
// Persistence (--data-dir DIR)
// ---------------------------------------------------------------------------------------------
//
// Without --data-dir everything lives in memory and nothing is written. With it:
// - DIR/dbs/<name>: one leveldb database (pouchdb-adapter-leveldb) per PouchDB database, named
//   by express-pouchdb's sanitize-filename'd db name (no '/'; '$()+-_' are kept), including
//   `_users` and pouchdb-all-dbs' list `pouch__all_dbs__`. Documents, revision trees,
//   attachments, `_local` docs (`_security` is `_local/_security`) and the update sequence are
//   all in there: `_changes?since=N` goes on after a restart in both seq modes.
// - DIR/couch-test-server.json: what lives outside PouchDB: the names dbs were created with
//   (`a/_replicator` is stored as `a_replicator`), the uuid (used when --uuid is not given), the
//   cookie secret and the salted hash of the --admin password (kept while the password stays
//   the same), so that AuthSession cookies survive a restart, as with CouchDB's ini files.
// The state file is written synchronously before the answer that changed it goes out, and
// leveldb writes its log (to the OS, not fsync'ed) before PouchDB answers, so what a client saw
// acknowledged survives even SIGKILL. At start-up the all-dbs list is checked against the
// database directories (a SIGKILL may land between a db's creation and its entry in the list).
// Reset by a restart: the _db_updates log, /_test/ request log, fault rules, counters and the
// rest of /_config.

const dbDir = args.dataDir ? path.join(args.dataDir, 'dbs') : null;
const stateFile = args.dataDir ? path.join(args.dataDir, 'couch-test-server.json') : null;

function loadState() {
  if (!stateFile) return {};
  try {
    fs.mkdirSync(dbDir, {recursive: true});
  } catch (err) {
    fail(`cannot create --data-dir ${args.dataDir}: ${err.message}`);
  }
  let text;
  try {
    text = fs.readFileSync(stateFile, 'utf8');
  } catch (err) {
    if (err.code === 'ENOENT') return {};
    fail(`cannot read ${stateFile}: ${err.message}`);
  }
  try {
    const obj = JSON.parse(text);
    return obj && typeof obj === 'object' ? obj : {};
  } catch (err) {
    fail(`${stateFile} is not JSON: ${err.message}`);
  }
  return {};
}

const persisted = loadState();

// Writes `persisted` atomically (temporary file + rename); a no-op without --data-dir.
function saveState() {
  if (!stateFile) return;
  const tmp = `${stateFile}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify(persisted, null, 2) + '\n');
  fs.renameSync(tmp, stateFile);
}

const serverUuid = (args.uuid || (typeof persisted.uuid === 'string' && persisted.uuid) ||
  crypto.randomBytes(16).toString('hex')).toLowerCase();
const adminName = args.admin ? args.admin.slice(0, args.admin.indexOf(':')) : null;
const adminPassword = args.admin ? args.admin.slice(args.admin.indexOf(':') + 1) : null;
const opaqueSeqs = args.seqMode === 'opaque';

// SIGTERM/SIGINT/SIGHUP: in memory, exit at once. With --data-dir, stop serving, let
// pending all-dbs bookkeeping finish, close the leveldb databases, then exit (at most ~1.5 s;
// the data is safe without the close, it only makes the shutdown tidy).
let shutdownHook = null;
for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP']) {
  process.on(sig, () => {
    if (!shutdownHook) process.exit(0);
    const hook = shutdownHook;
    shutdownHook = null;
    setTimeout(() => process.exit(0), 1500).unref();
    Promise.resolve().then(hook).catch((err) => {
      process.stderr.write(`couch-test-server: shutdown: ${err && err.stack || err}\n`);
    }).then(() => process.exit(0));
  });
}

// ---------------------------------------------------------------------------------------------
// Modules. Everything comes from pouchdb-server's dependency tree (pinned by package-lock.json).
// ---------------------------------------------------------------------------------------------

const serverDir = path.dirname(require.resolve('pouchdb-server/package.json'));
const epDir = path.dirname(require.resolve('express-pouchdb/package.json', {paths: [serverDir]}));
const dep = (name) => require(require.resolve(name, {paths: [serverDir, epDir, __dirname]}));
const epFile = (rel) => require.resolve(path.join(epDir, 'lib', rel));

const express = dep('express');
const rawBody = dep('raw-body');
const wrappers = dep('pouchdb-wrappers');
const selectorCore = dep('pouchdb-selector-core');

// FIX (notes §2.4 #6, poisoned db-open queue): express-pouchdb serialises db opens and deletes
// on one promise chain; a rejected DELETE (e.g. 401) left the chain rejected for ever and the
// next request that opened any db died with an unhandled rejection. Replace both functions
// (before anything else loads the module) with versions whose chain recovers from failures.
{
  const createOrDelete = require(epFile('create-or-delete-dbs.js'));
  let chain = Promise.resolve();
  const sequentially = (fn) => {
    const result = chain.then(fn);
    chain = result.catch(() => {});
    return result;
  };
  const cacheOf = (PouchDB) => PouchDB.__dbCacheMap || (PouchDB.__dbCacheMap = new Map());
  createOrDelete.getOrCreateDB = (PouchDB, dbName) => sequentially(() => {
    const cache = cacheOf(PouchDB);
    let db = cache.get(dbName);
    if (!db) {
      db = new PouchDB(dbName);
      watchWrites(db, dbName, cache);  // "updated" events for _db_updates (see below)
      cache.set(dbName, db);
    }
    return db;
  });
  createOrDelete.deleteDB = (PouchDB, dbName, opts) => sequentially(() => {
    const cache = cacheOf(PouchDB);
    const db = cache.get(dbName);
    if (!db) return PouchDB.destroy(dbName, opts);
    cache.delete(dbName);
    return db.destroy(opts);
  });
}

const epUtils = require(epFile('utils.js'));

// FIX (notes §2.4 #6, second half): setDBOnReq() had no .catch() on the db-open promise (an
// unhandled rejection kills node), and it mkdir'ed a directory in the cwd for every db name
// containing '/' (a leveldb work-around, pointless in memory). Same logic, without both.
epUtils.setDBOnReq = function (dbName, dbWrapper, req, res, next) {
  dbName = require(epFile('clean-filename.js'))(dbName);
  Promise.resolve(req.PouchDB.allDbs()).then((dbs) => {
    if (dbs.indexOf(dbName) === -1) {
      return epUtils.sendJSON(res, 404, {error: 'not_found', reason: 'no_db_file'});
    }
    return require(epFile('create-or-delete-dbs.js')).getOrCreateDB(req.PouchDB, dbName)
      .then((db) => dbWrapper.wrap(dbName, db))
      .then((db) => { req.db = db; next(); });
  }).catch((err) => sendErrorSafe(res, err));
};

// Replace (or wrap) one express-pouchdb route module before express-pouchdb loads it.
function overrideModule(rel, factory) {
  const file = epFile(rel);
  const original = require(file);
  require.cache[file].exports = factory(original);
}

function isServerAdmin(req) {
  const ctx = req.couchSession && req.couchSession.userCtx;
  return !!(ctx && Array.isArray(ctx.roles) && ctx.roles.indexOf('_admin') !== -1);
}

function notServerAdmin(res) {
  epUtils.sendJSON(res, 401, {error: 'unauthorized', reason: 'You are not a server admin.'});
}

// FIX: express-pouchdb stores a database under sanitize-filename(name), which drops '/', so
// `PUT /team%2F_replicator` is listed by `_all_dbs` as "team_replicator". Remember the names
// databases were created with and list those (CouchDB keeps names with '/' as they are).
// With --data-dir the map is kept in the state file, so it survives restarts.
const originalDbNames = new Map(  // cleaned name -> name as created
  Object.entries(persisted.db_names && typeof persisted.db_names === 'object' ? persisted.db_names : {}));
function saveDbNames() {
  if (!stateFile) return;
  persisted.db_names = Object.fromEntries(originalDbNames);
  saveState();
}
function cleanDbName(name) { return require(epFile('clean-filename.js'))(name); }
overrideModule('routes/all-dbs.js', () => function (app) {
  app.get('/_all_dbs', (req, res) => {
    Promise.resolve(req.PouchDB.allDbs()).then((dbs) => {
      const names = dbs.filter((n) => n !== 'pouch__auth_sessions__')
        .map((n) => originalDbNames.get(n) || n)
        .sort();
      epUtils.sendJSON(res, 200, names);
    }).catch((err) => sendErrorSafe(res, err));
  });
});

// Runs `fn` just before the response is written (not at 'finish', so that the bookkeeping is
// done before the client can see the answer and send its next request).
function beforeResponseEnd(res, fn) {
  const end = res.end;
  res.end = function (...a) {
    res.end = end;
    try { fn(); } catch (err) { process.stderr.write(`couch-test-server: ${err && err.stack || err}\n`); }
    return end.apply(this, a);
  };
}

overrideModule('routes/db.js', (original) => function (app) {
  app.put('/:db', (req, res, next) => {
    const name = req.params.db;
    beforeResponseEnd(res, () => {
      if (res.statusCode !== 201) return;
      if (name.indexOf('/') !== -1) {
        originalDbNames.set(cleanDbName(name), name);
        saveDbNames();
      }
      knownUpdateSeqs.set(cleanDbName(name), 0);
      recordDbEvent(name, 'created');
    });
    next();
  });
  app.delete('/:db', (req, res, next) => {
    const name = req.params.db;
    beforeResponseEnd(res, () => {
      if (res.statusCode !== 200) return;
      if (originalDbNames.delete(cleanDbName(name))) saveDbNames();
      knownUpdateSeqs.delete(cleanDbName(name));
      recordDbEvent(name, 'deleted');
    });
    next();
  });

  // FIX (notes §2.4 #7, pouchdb-server#374): an unauthorised `PUT /newdb` made PouchDB.new()
  // return a rejected promise instead of a db, and `db.info is not a function` killed node.
  // Check for a server admin first, as CouchDB does.
  app.put('/:db', (req, res, next) => (isServerAdmin(req) ? next() : notServerAdmin(res)));
  // FIX (notes §2.4 #6): refuse unauthorised `DELETE /db` before it reaches the db queue, and
  // answer 404 for a missing db like CouchDB (stock answered 200 {"ok":true}).
  app.delete('/:db', (req, res, next) => {
    if (!isServerAdmin(req)) return notServerAdmin(res);
    const name = require(epFile('clean-filename.js'))(req.params.db);
    Promise.resolve(req.PouchDB.allDbs()).then((dbs) => {
      if (dbs.indexOf(name) === -1) {
        return epUtils.sendJSON(res, 404, {error: 'not_found', reason: 'Database does not exist.'});
      }
      next();
    }).catch((err) => sendErrorSafe(res, err));
  });
  original(app);
});

overrideModule('routes/documents.js', (original) => function (app) {
  // FIX (notes §4.3, `PUT /db/doc?new_edits=false` answered `[]`): store the doc through
  // bulkDocs(new_edits:false) and answer 201 {"ok":true,"id":..,"rev":..} as CouchDB does.
  // (multipart/related bodies were already turned into JSON by multipartRelatedShim below.)
  app.put('/:db/:id(*)', epUtils.jsonParser, (req, res, next) => {
    if (req.query.new_edits !== false || /^_local\//.test(req.params.id)) return next();
    const doc = req.body;
    if (!doc || typeof doc !== 'object' || Array.isArray(doc)) {
      return epUtils.sendJSON(res, 400, {error: 'bad_request', reason: 'Document must be a JSON object'});
    }
    doc._id = doc._id || req.params.id;
    if (typeof doc._rev !== 'string' || !/^\d+-/.test(doc._rev)) {
      return epUtils.sendJSON(res, 400, {error: 'bad_request', reason: 'Invalid rev format'});
    }
    const opts = epUtils.makeOpts(req, {new_edits: false});
    Promise.resolve(req.db.bulkDocs({docs: [doc], new_edits: false}, opts)).then((results) => {
      const r = (results || [])[0];
      if (r && r.error) {
        const status = r.status || {forbidden: 403, unauthorized: 401, conflict: 409}[r.name] || 400;
        return epUtils.sendJSON(res, status, {error: r.name || String(r.error), reason: r.message || r.reason});
      }
      res.set('ETag', `"${doc._rev}"`);
      epUtils.setLocation(res, `${req.params.db}/${doc._id}`);
      epUtils.sendJSON(res, 201, {ok: true, id: doc._id, rev: doc._rev});
    }).catch((err) => sendErrorSafe(res, err));
  });
  original(app);
});

// FIX (notes §2.4 #1, #2, #5 and §2.2 item 7): express-pouchdb's _changes crashed node after
// answering 404 for a missing filter/ddoc/view (an 'error' event on the security wrapper's
// EventEmitter had no listener), ignored a POSTed selector, ignored `timeout` and `limit` on
// live feeds, always sent heartbeats, never ended continuous feeds with a last_seq line and
// leaked a live listener per disconnected client. The whole endpoint is reimplemented below
// (handleChanges) on top of PouchDB's db.changes().
overrideModule('routes/changes.js', () => function (app) {
  const handler = (req, res) => {
    handleChanges(req, res).catch((err) => sendErrorSafe(res, err));
  };
  app.get('/:db/_changes', handler);
  app.post('/:db/_changes', epUtils.jsonParser, handler);
});

// `_db_updates` (stock: 400 for every request) is reimplemented below (handleDbUpdates).
overrideModule('routes/db-updates.js', () => function (app) {
  app.all('/_db_updates', (req, res) => {
    handleDbUpdates(req, res).catch((err) => sendErrorSafe(res, err));
  });
});

const expressPouchDB = dep('express-pouchdb');
const PouchDB = dep('pouchdb-core')
  .plugin(dep('pouchdb-adapter-http'))
  .plugin(dep('pouchdb-replication'))
  .plugin(dep('pouchdb-mapreduce'))
  .plugin(require(require.resolve('pouchdb-adapter-memory', {paths: [__dirname, serverDir]})));
// The PouchDB constructor express-pouchdb serves: in-memory, or leveldb under DIR/dbs/ with
// --data-dir (the db name is appended to the prefix, so every db is one directory there).
const adapterName = args.dataDir ? 'leveldb' : 'memory';
if (args.dataDir) {
  PouchDB.plugin(require(require.resolve('pouchdb-adapter-leveldb', {paths: [__dirname, serverDir]})));
}
const StorePouchDB = args.dataDir ?
  PouchDB.defaults({adapter: 'leveldb', prefix: dbDir + path.sep}) :
  PouchDB.defaults({adapter: 'memory'});

const pouchApp = expressPouchDB({
  mode: 'fullCouchDB',
  // 'replicator': the built-in replicator must be off (notes §3), couchrepd owns _replicator.
  // 'compression': CouchDB never gzips JSON responses, and the compression middleware buffers
  // streamed responses, which would hold back continuous-feed rows and heartbeats from clients
  // that send Accept-Encoding: gzip (cpp-httplib does).
  overrideMode: {exclude: ['replicator', 'compression']},
  inMemoryConfig: true,
  logPath: '/dev/null',
});

// FIX (notes §2.4 #3): `GET /db/doc?latest=true&open_revs=[unknown rev]` threw inside
// pouchdb-merge ("Unable to resolve latest revision") and killed node. Ask PouchDB only for
// revisions that exist in the tree and answer {"missing": rev} for the others.
pouchApp.dbWrapper.registerWrapper((name, db, next) => {
  wrappers.installWrapperMethods(db, {
    get: (orig, a) => {
      const o = a.options || {};
      if (!o.latest || !Array.isArray(o.open_revs)) return orig();
      const wanted = o.open_revs;
      return a.base.get(a.docId, {open_revs: 'all', revs: true, userCtx: o.userCtx, secObj: o.secObj})
        .then((leaves) => {
          const known = new Set();
          for (const leaf of leaves) {
            const d = leaf.ok;
            if (!d || !d._revisions) continue;
            d._revisions.ids.forEach((h, i) => known.add(`${d._revisions.start - i}-${h}`));
          }
          return known;
        }, (err) => {
          if (err && err.status === 404) return new Set();
          throw err;
        })
        .then((known) => {
          const present = wanted.filter((r) => known.has(r));
          const missing = wanted.filter((r) => !known.has(r)).map((r) => ({missing: r}));
          if (present.length === 0) return missing;
          a.options.open_revs = present;
          return Promise.resolve(orig()).then((found) => found.concat(missing));
        });
    },
  });
  return next();
});

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

function sendErrorSafe(res, err) {
  if (res.headersSent) {
    process.stderr.write(`couch-test-server: error after headers were sent: ${err && err.stack || err}\n`);
    if (!res.writableEnded) res.end();
    return;
  }
  if (err instanceof HttpError) return epUtils.sendJSON(res, err.status, err.body);
  if (err && typeof err === 'object' && typeof err.status === 'number' && err.name) {
    return epUtils.sendError(res, err);
  }
  epUtils.sendJSON(res, 500, {
    error: 'unknown_error',
    reason: (err && (err.message || err.reason)) || String(err),
  });
}

class HttpError extends Error {
  constructor(status, error, reason) {
    super(reason);
    this.status = status;
    this.body = {error, reason};
  }
}

// Sequences leave the server as integers (int mode) or as CouchDB-3-like opaque strings
// "N-g1AAAA..." whose suffix is derived deterministically from N (opaque mode). `space` keeps
// the strings of different sequence spaces apart (_db_updates passes 'db_updates'), as in
// CouchDB, where one N never looks the same in two databases.
function formatSeq(n, space) {
  if (!opaqueSeqs || typeof n !== 'number') return n;
  const key = space ? `couch-test-server-seq:${space}:${n}` : `couch-test-server-seq:${n}`;
  const suffix = crypto.createHash('sha256').update(key).digest('base64url');
  return `${n}-g1AAAAB5eJzLYWBgYMpgTmEQTM4v${suffix}`;
}

// Accepts what formatSeq() produced (and a bare integer in both modes), or 'now'.
function parseSince(value) {
  if (value === undefined || value === null || value === '') return 0;
  if (typeof value === 'number' && Number.isInteger(value) && value >= 0) return value;
  const s = String(value).replace(/^"(.*)"$/, '$1');
  if (s === 'now') return 'now';
  if (/^\d+$/.test(s)) return Number(s);
  const m = /^(\d+)-[A-Za-z0-9_-]+$/.exec(s);
  if (opaqueSeqs && m) return Number(m[1]);
  throw new HttpError(400, 'bad_request', "Malformed sequence supplied in 'since' parameter.");
}

function rawQueryOf(req) {
  const i = req.originalUrl.indexOf('?');
  return i === -1 ? {} : querystring.parse(req.originalUrl.slice(i + 1));
}

const firstValue = (v) => (Array.isArray(v) ? v[v.length - 1] : v);

function boolParam(raw, name) {
  const v = firstValue(raw[name]);
  return v === 'true';
}

function intParam(raw, name, min) {
  const v = firstValue(raw[name]);
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v) || Number(v) < min) {
    throw new HttpError(400, 'query_parse_error', `Invalid value for integer: "${v}"`);
  }
  return Number(v);
}

// A sandbox like CouchDB's JavaScript query server offers (the parts filters usually need).
function newSandbox() {
  return vm.createContext({
    log: () => {},
    isArray: Array.isArray,
    toJSON: (v) => JSON.stringify(v),
    sum: (a) => a.reduce((x, y) => x + y, 0),
  });
}

function compileFunction(source, sandbox) {
  const src = String(source).trim().replace(/;+\s*$/, '');
  let fn;
  try {
    fn = vm.runInContext(`(${src}\n)`, sandbox);
  } catch (err) {
    throw new HttpError(500, 'compilation_error', `Compilation of the function failed: ${err.message}`);
  }
  if (typeof fn !== 'function') {
    throw new HttpError(500, 'compilation_error', 'Expression does not eval to a function.');
  }
  return fn;
}

// ---------------------------------------------------------------------------------------------
// _changes (see the FIX note at overrideModule('routes/changes.js') above)
// ---------------------------------------------------------------------------------------------

const PENDING_SCAN_CAP = 10000;  // `pending` is exact below this, else reported as this number
const openFeeds = new Set();       // sockets of open longpoll/continuous feeds (for close_feeds)
let liveListeners = 0;             // live db.changes() listeners (GET /_test/feeds)

function startLive(db, opts) {
  const feed = db.changes(opts);
  liveListeners++;
  let cancelled = false;
  return {
    on: (ev, fn) => feed.on(ev, fn),
    cancel: () => {
      if (cancelled) return;
      cancelled = true;
      liveListeners--;
      feed.cancel();
    },
  };
}

// Builds the filter part of the db.changes() options, validating the request the way CouchDB
// does before any byte of the response is sent.
async function buildFilter(req, raw, body) {
  const filter = firstValue(raw.filter);
  if (filter === undefined || filter === '') return {};
  const getDdoc = (name) => Promise.resolve(req.db.get(`_design/${name}`, epUtils.makeOpts(req)))
    .catch((err) => {
      if (err && err.status === 404) throw new HttpError(404, 'not_found', 'missing');
      throw err;
    });
  if (filter === '_doc_ids') {
    let ids = body.doc_ids !== undefined ? body.doc_ids : req.query.doc_ids;
    if (typeof ids === 'string') {
      try { ids = JSON.parse(ids); } catch (e) { /* rejected below */ }
    }
    if (!Array.isArray(ids) || !ids.every((x) => typeof x === 'string')) {
      throw new HttpError(400, 'bad_request', '`doc_ids` filter parameter is not a list of doc ids.');
    }
    // A function filter rather than PouchDB's doc_ids option: with doc_ids PouchDB's last_seq
    // stops at the last listed doc instead of covering the whole feed as CouchDB's does.
    const wanted = new Set(ids);
    return {filter: (doc) => wanted.has(doc._id)};
  }
  if (filter === '_selector') {
    let selector = body.selector !== undefined ? body.selector : req.query.selector;
    if (typeof selector === 'string') {
      try { selector = JSON.parse(selector); } catch (e) { /* rejected below */ }
    }
    if (!selector || typeof selector !== 'object' || Array.isArray(selector)) {
      throw new HttpError(400, 'bad_request', 'Selector must be specified in POST payload');
    }
    let massaged;
    try {
      massaged = selectorCore.massageSelector(selector);
      selectorCore.matchesSelector({_id: 'x'}, massaged);
    } catch (err) {
      throw new HttpError(400, 'bad_request', `Invalid selector: ${err.message}`);
    }
    return {filter: (doc) => selectorCore.matchesSelector(doc, massaged)};
  }
  if (filter === '_design') {
    return {filter: (doc) => typeof doc._id === 'string' && doc._id.startsWith('_design/')};
  }
  if (filter === '_view') {
    const view = String(firstValue(raw.view) || '');
    const slash = view.indexOf('/');
    if (slash <= 0 || slash === view.length - 1) {
      throw new HttpError(400, 'bad_request', '`view` filter parameter is not provided.');
    }
    const ddoc = await getDdoc(view.slice(0, slash));
    const viewName = view.slice(slash + 1);
    const map = ddoc.views && ddoc.views[viewName] && ddoc.views[viewName].map;
    if (!map) throw new HttpError(404, 'not_found', 'missing');
    const sandbox = newSandbox();
    const mapFn = compileFunction(map, sandbox);
    return {
      filter: (doc) => {
        let emitted = false;
        sandbox.emit = () => { emitted = true; };
        try { mapFn(doc); } catch (err) { return false; }
        return emitted;
      },
    };
  }
  if (filter.startsWith('_')) {
    throw new HttpError(400, 'bad_request', 'unknown builtin filter name');
  }
  const slash = filter.indexOf('/');
  if (slash <= 0 || slash === filter.length - 1) {
    throw new HttpError(400, 'bad_request', 'filter parameter must be of the form `designname/filtername`');
  }
  const ddoc = await getDdoc(filter.slice(0, slash));
  const name = filter.slice(slash + 1);
  const source = ddoc.filters && ddoc.filters[name];
  if (!source) throw new HttpError(404, 'not_found', 'missing');
  const fn = compileFunction(source, newSandbox());
  const userCtx = (req.couchSession && req.couchSession.userCtx) || {name: null, roles: []};
  const filterReq = {
    method: req.method,
    query: Object.assign({}, raw),  // query parameters as strings, like CouchDB's req.query
    headers: req.headers,
    body: req.body && Object.keys(req.body).length ? JSON.stringify(req.body) : 'undefined',
    path: req.path.split('/').filter(Boolean),
    peer: req.ip,
    userCtx,
    secObj: req.couchSecurityObj || {},
  };
  return {
    filter: (doc) => {
      try {
        return !!fn(doc, filterReq);
      } catch (err) {
        process.stderr.write(`couch-test-server: filter ${filter} threw: ${err}\n`);
        return false;
      }
    },
  };
}

// One non-live pass over the feed: {rows, lastSeq}. lastSeq covers filtered-out rows too.
function scanChanges(db, base, since, limit, descending) {
  return new Promise((resolve, reject) => {
    const opts = Object.assign({}, base, {since, live: false, return_docs: true, descending});
    if (limit) opts.limit = limit;
    const feed = db.changes(opts);
    feed.on('error', reject);
    feed.on('complete', (info) => resolve({rows: info.results || [], lastSeq: info.last_seq}));
  });
}

async function countPending(db, base, since) {
  const slim = Object.assign({}, base, {include_docs: false, attachments: false, conflicts: false});
  const r = await scanChanges(db, slim, since, PENDING_SCAN_CAP, false);
  return r.rows.length;
}

async function handleChanges(req, res) {
  const raw = rawQueryOf(req);
  const body = (req.method === 'POST' && req.body && typeof req.body === 'object') ? req.body : {};
  const feed = firstValue(raw.feed) || 'normal';
  if (!['normal', 'longpoll', 'continuous'].includes(feed)) {
    throw new HttpError(400, 'bad_request', `unsupported feed type: ${feed}`);
  }
  const requestedSince = parseSince(firstValue(raw.since));
  let limit = intParam(raw, 'limit', 0);
  if (limit === 0) limit = 1;
  const descending = boolParam(raw, 'descending');
  const includeDocs = boolParam(raw, 'include_docs');
  let heartbeat = null;
  const hb = firstValue(raw.heartbeat);
  if (hb !== undefined && hb !== 'false') {
    heartbeat = hb === 'true' ? 60000 : intParam(raw, 'heartbeat', 1);
  }
  const timeoutParam = intParam(raw, 'timeout', 1);
  const timeout = timeoutParam !== undefined ? timeoutParam : 60000;

  // Permission check (member of the db, like every other read) and the current update_seq.
  const info = await req.db.info(epUtils.makeOpts(req));
  const filterOpts = await buildFilter(req, raw, body);
  const since = requestedSince === 'now' ? info.update_seq : requestedSince;

  const base = epUtils.makeOpts(req, Object.assign({
    style: firstValue(raw.style) === 'all_docs' ? 'all_docs' : 'main_only',
    include_docs: includeDocs,
    conflicts: boolParam(raw, 'conflicts'),
    attachments: boolParam(raw, 'attachments'),
  }, filterOpts));
  const db = req.db;

  const row = (c) => {
    const r = {seq: formatSeq(c.seq), id: c.id, changes: c.changes};
    if (c.deleted) r.deleted = true;
    if (includeDocs) r.doc = c.doc;
    return r;
  };
  const rowJson = (c) => JSON.stringify(row(c));
  const tail = (lastSeq, pending) =>
    `"last_seq":${JSON.stringify(formatSeq(lastSeq))},"pending":${pending}}\n`;

  if (feed === 'normal' || (feed === 'longpoll' && descending)) {
    const r = await scanChanges(db, base, since, limit, descending);
    const pending = (limit && r.rows.length >= limit && !descending) ?
      await countPending(db, base, r.lastSeq) : 0;
    epUtils.setJsonOrPlaintext(res);
    res.status(200);
    res.end(`{"results":[\n${r.rows.map(rowJson).join(',\n')}\n],\n${tail(r.lastSeq, pending)}`);
    return;
  }

  // longpoll and continuous: stream. Register for /_test/close_feeds at once.
  const socket = req.socket;
  openFeeds.add(socket);
  let done = false;
  let live = null;
  let heartbeatTimer = null;
  let timeoutTimer = null;
  const cleanup = () => {
    done = true;
    openFeeds.delete(socket);
    if (heartbeatTimer) clearInterval(heartbeatTimer);
    if (timeoutTimer) clearTimeout(timeoutTimer);
    if (live) { live.cancel(); live = null; }
  };
  res.on('close', cleanup);  // client went away (or we finished): cancel the PouchDB listener

  if (feed === 'longpoll') {
    const first = await scanChanges(db, base, since, limit, false);
    if (done) return;
    if (first.rows.length > 0) {
      const pending = (limit && first.rows.length >= limit) ?
        await countPending(db, base, first.lastSeq) : 0;
      epUtils.setJsonOrPlaintext(res);
      res.status(200);
      res.end(`{"results":[\n${first.rows.map(rowJson).join(',\n')}\n],\n${tail(first.lastSeq, pending)}`);
      return;
    }
    epUtils.setJsonOrPlaintext(res);
    res.status(200);
    res.write('{"results":[\n');
    let lastSeq = first.lastSeq;
    const finish = async (rows) => {
      if (done) return;
      done = true;
      if (live) { live.cancel(); live = null; }
      let pending = 0;
      if (rows.length === 0) {
        // Timed out: one last scan, so that filtered-out changes still advance last_seq.
        const r = await scanChanges(db, base, lastSeq, limit, false);
        rows = r.rows;
        lastSeq = r.lastSeq;
        if (limit && rows.length >= limit) pending = await countPending(db, base, lastSeq);
      } else {
        lastSeq = rows[rows.length - 1].seq;
        pending = await countPending(db, base, lastSeq);
      }
      res.end(`${rows.map(rowJson).join(',\n')}${rows.length ? '\n' : ''}],\n${tail(lastSeq, pending)}`);
      cleanup();
    };
    const fail = (err) => { sendErrorSafe(res, err); cleanup(); };
    if (heartbeat) {
      heartbeatTimer = setInterval(() => { if (!done) res.write('\n'); }, heartbeat);
    } else {
      timeoutTimer = setTimeout(() => finish([]).catch(fail), timeout);
    }
    live = startLive(db, Object.assign({}, base, {since: lastSeq, live: true, return_docs: false}));
    live.on('change', (c) => { if (!done) finish([c]).catch(fail); });
    live.on('error', fail);
    live.on('complete', () => { if (!done) { cleanup(); res.end(); } });  // db deleted
    return;
  }

  // continuous
  epUtils.setJsonOrPlaintext(res);
  res.status(200);
  res.flushHeaders();
  let lastSeq = since;
  let sent = 0;
  const finish = async (scanFirst) => {
    if (done) return;
    done = true;
    if (live) { live.cancel(); live = null; }
    let pending = 0;
    if (scanFirst) {
      // Idle timeout: one last scan so that filtered-out changes still advance last_seq.
      const left = limit ? limit - sent : undefined;
      const r = await scanChanges(db, base, lastSeq, left, false);
      for (const c of r.rows) res.write(rowJson(c) + '\n');
      sent += r.rows.length;
      lastSeq = r.lastSeq;
      if (limit && sent >= limit) pending = await countPending(db, base, lastSeq);
    } else {
      pending = await countPending(db, base, lastSeq);
    }
    res.end(`{${tail(lastSeq, pending)}`);
    cleanup();
  };
  const fail = (err) => { sendErrorSafe(res, err); cleanup(); };
  const armTimeout = () => {
    if (heartbeat) return;  // with a heartbeat the feed never ends by itself (as CouchDB 3)
    if (timeoutTimer) clearTimeout(timeoutTimer);
    timeoutTimer = setTimeout(() => finish(true).catch(fail), timeout);
  };
  if (heartbeat) heartbeatTimer = setInterval(() => { if (!done) res.write('\n'); }, heartbeat);
  armTimeout();
  live = startLive(db, Object.assign({}, base, {since, live: true, return_docs: false}));
  live.on('change', (c) => {
    if (done) return;
    res.write(rowJson(c) + '\n');
    lastSeq = c.seq;
    sent++;
    if (limit && sent >= limit) {
      finish(false).catch(fail);
    } else {
      armTimeout();
    }
  });
  live.on('error', fail);
  live.on('complete', () => { if (!done) { cleanup(); res.end(); } });  // db deleted
}

// ---------------------------------------------------------------------------------------------
// _db_updates (CouchDB 3's global_changes, kept in memory)
// ---------------------------------------------------------------------------------------------
//
// CouchDB 3 writes each database event into the _global_changes database as the document
// "<type>:<db name>", so a feed read from since=0 lists every (type, db) pair once, at the seq
// of its LATEST event (shared/couchdb-3.4-recordings/49-*: "updated:_dbs", written at seqs 1, 3
// and 6, is listed once, at 6). This log
// does the same: dbUpdateEvents maps "<type>:<name>" to {db_name, type, seq} in seq order.
// Events: "created" (PUT /db answered 201), "deleted" (DELETE /db answered 200), "updated" (a
// write that raised the db's update_seq: docs, design docs, attachments, _bulk_docs,
// new_edits=false; _local docs do not raise it, as in CouchDB). No "_dbs" rows.

let dbUpdatesEnabled = true;     // POST /_test/db_updates {"enabled":false} -> 404 like CouchDB
let dbUpdatesSeq = 0;            // server-global sequence of the log
const dbUpdateEvents = new Map();
const dbUpdateListeners = new Set();  // live longpoll/continuous feeds
const knownUpdateSeqs = new Map();    // cleaned db name -> update_seq last reported as "updated"

function recordDbEvent(dbName, type) {
  const key = `${type}:${dbName}`;
  const ev = {db_name: dbName, type, seq: ++dbUpdatesSeq};
  dbUpdateEvents.delete(key);  // re-insert: Map order stays seq order
  dbUpdateEvents.set(key, ev);
  for (const fn of [...dbUpdateListeners]) {
    try { fn(ev); } catch (err) { process.stderr.write(`couch-test-server: ${err && err.stack || err}\n`); }
  }
}

// Hooks the adapter's _bulkDocs of a cached db (every document write of every request goes
// through it) and records "updated" when the write raised the db's update_seq. A write that
// changes nothing (all conflicts, a known revision with new_edits=false) records nothing.
function watchWrites(db, cleanName, cache) {
  const orig = db._bulkDocs;
  if (typeof orig !== 'function' || typeof db._info !== 'function') {
    process.stderr.write(`couch-test-server: cannot watch writes of ${cleanName}; no _db_updates events\n`);
    return;
  }
  db._bulkDocs = function (req, opts, callback) {
    const self = this;
    const run = () => orig.call(self, req, opts, (err, result) => {
      if (err) return callback(err, result);
      self._info((infoErr, info) => {
        const seq = info && info.update_seq;
        if (!infoErr && typeof seq === 'number' && seq > (knownUpdateSeqs.get(cleanName) || 0) &&
            cache.get(cleanName) === db) {  // not an instance of a since deleted db
          knownUpdateSeqs.set(cleanName, seq);
          recordDbEvent(originalDbNames.get(cleanName) || cleanName, 'updated');
        }
        callback(err, result);
      });
    });
    if (knownUpdateSeqs.has(cleanName)) return run();
    // A db this server did not create through PUT /db (e.g. _users): learn its seq first.
    self._info((infoErr, info) => {
      if (!knownUpdateSeqs.has(cleanName)) {
        knownUpdateSeqs.set(cleanName, infoErr || typeof info.update_seq !== 'number' ? 0 : info.update_seq);
      }
      run();
    });
  };
}

function nonNegParam(raw, name) {
  const v = firstValue(raw[name]);
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v)) throw new HttpError(400, 'bad_request', 'invalid_integer');
  return Number(v);
}

const CHANGES_TIMEOUT_MAX = 60000;  // CouchDB's chttpd changes_timeout: caps timeout and heartbeat

async function handleDbUpdates(req, res) {
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.set('Allow', 'GET');
    return epUtils.sendJSON(res, 405, {error: 'method_not_allowed', reason: 'Only GET allowed'});
  }
  if (!isServerAdmin(req)) return notServerAdmin(res);
  const raw = rawQueryOf(req);
  const feed = firstValue(raw.feed) || 'normal';
  if (!['normal', 'longpoll', 'continuous'].includes(feed)) {
    const reason = feed === 'eventsource' ? 'feed=eventsource is not supported by couch-test-server' :
      'Supported `feed` types: normal, continuous, longpoll, eventsource';
    throw new HttpError(400, 'bad_request', reason);
  }
  const limit = nonNegParam(raw, 'limit');
  let heartbeat = null;
  const hb = firstValue(raw.heartbeat);
  if (hb !== undefined && hb !== 'false') {
    heartbeat = Math.max(1, Math.min(CHANGES_TIMEOUT_MAX, hb === 'true' ? 60000 : nonNegParam(raw, 'heartbeat')));
  }
  const timeoutParam = nonNegParam(raw, 'timeout');
  const timeout = Math.min(CHANGES_TIMEOUT_MAX, timeoutParam !== undefined ? timeoutParam : 60000);
  const descending = boolParam(raw, 'descending');
  const requestedSince = parseSince(firstValue(raw.since));
  // CouchDB answers this when the _global_changes database does not exist (recording 47).
  if (!dbUpdatesEnabled) {
    return epUtils.sendJSON(res, 404, {error: 'not_found', reason: 'Database does not exist.'});
  }
  const since = requestedSince === 'now' ? dbUpdatesSeq : requestedSince;
  const after = (s) => [...dbUpdateEvents.values()].filter((e) => e.seq > s);
  const rowJson = (e) => JSON.stringify({db_name: e.db_name, type: e.type, seq: formatSeq(e.seq, 'db_updates')});
  const seqJson = (n) => JSON.stringify(formatSeq(n, 'db_updates'));
  // The body of a normal/longpoll answer, as global_changes_httpd writes it.
  const resultsBody = (rows, lastSeq) =>
    `{"results":[\n${rows.map(rowJson).join(',\r\n')}\n],\n"last_seq":${seqJson(lastSeq)}}\n`;
  // Rows to send now (limit applied) and the last_seq that goes with them.
  const pick = (s) => {
    let rows = after(s);
    if (descending) rows.reverse();
    let lastSeq = Math.max(s, dbUpdatesSeq);
    if (limit !== undefined && rows.length > limit) {
      rows = rows.slice(0, limit);
      lastSeq = rows.length ? rows[rows.length - 1].seq : s;
    }
    return {rows, lastSeq};
  };

  const first = pick(since);
  if (feed === 'normal' || limit === 0 || (feed === 'longpoll' && first.rows.length > 0)) {
    epUtils.setJsonOrPlaintext(res);
    res.status(200);
    res.end(resultsBody(first.rows, first.lastSeq));
    return;
  }

  // longpoll (nothing after since yet) and continuous: stream until an event, a timeout, the
  // limit or the client going away.
  const socket = req.socket;
  openFeeds.add(socket);
  let done = false;
  let listener = null;
  let heartbeatTimer = null;
  let timeoutTimer = null;
  const cleanup = () => {
    done = true;
    openFeeds.delete(socket);
    if (heartbeatTimer) clearTimeout(heartbeatTimer);
    if (timeoutTimer) clearTimeout(timeoutTimer);
    if (listener) { dbUpdateListeners.delete(listener); listener = null; }
  };
  res.on('close', cleanup);  // client went away (or we finished): drop the listener
  const write = (text) => {
    if (done) return;
    res.write(text);
    armHeartbeat();
  };
  // A bare newline after `heartbeat` ms without any output (CouchDB: maybe_send_heartbeat).
  function armHeartbeat() {
    if (!heartbeat || done) return;
    if (heartbeatTimer) clearTimeout(heartbeatTimer);
    heartbeatTimer = setTimeout(() => write('\n'), heartbeat);
  }
  const finish = (tail) => {
    if (done) return;
    res.end(tail);
    cleanup();
  };
  epUtils.setJsonOrPlaintext(res);
  res.status(200);

  if (feed === 'longpoll') {
    res.write('{"results":[\n');
    armHeartbeat();
    // With a heartbeat the timeout is ignored (CouchDB 3); the feed waits for an event.
    if (!heartbeat) {
      timeoutTimer = setTimeout(() => finish(`\n],\n"last_seq":${seqJson(since)}}\n`), timeout);
    }
    listener = () => {
      // Answer with everything after since (events recorded in the same tick come along).
      if (listener) { dbUpdateListeners.delete(listener); listener = null; }
      setImmediate(() => {
        const r = pick(since);
        finish(`${r.rows.map(rowJson).join(',\r\n')}\n],\n"last_seq":${seqJson(r.lastSeq)}}\n`);
      });
    };
    dbUpdateListeners.add(listener);
    return;
  }

  // continuous
  res.flushHeaders();
  let sent = 0;
  let lastSeq = since;
  const armTimeout = () => {
    if (heartbeat || done) return;  // with a heartbeat the feed never ends by itself (recording 48)
    if (timeoutTimer) clearTimeout(timeoutTimer);
    timeoutTimer = setTimeout(() => finish(`{"last_seq":${seqJson(Math.max(lastSeq, since))}}\n`), timeout);
  };
  const send = (e) => {
    write(rowJson(e) + '\n');
    lastSeq = e.seq;
    sent++;
    if (limit !== undefined && sent >= limit) {
      finish(`{"last_seq":${seqJson(lastSeq)}}\n`);
      return false;
    }
    armTimeout();
    return true;
  };
  for (const e of after(since)) {
    if (!send(e)) return;
  }
  armHeartbeat();
  armTimeout();
  listener = (e) => { if (!done && e.seq > lastSeq) send(e); };
  dbUpdateListeners.add(listener);
}

// ---------------------------------------------------------------------------------------------
// Outer app: request log/counter, fault injection, /_test/ endpoints, shims, then express-pouchdb
// ---------------------------------------------------------------------------------------------

const app = express();
app.disable('x-powered-by');
app.disable('etag');

const requestLog = [];  // {method, path, query} of every request except /_test/
let faults = [];        // active fault rules (POST /_test/faults)

const pathOf = (req) => req.originalUrl.split('?')[0];
const queryOf = (req) => {
  const i = req.originalUrl.indexOf('?');
  return i === -1 ? '' : req.originalUrl.slice(i + 1);
};
const isTestPath = (req) => /^\/_test(\/|$)/.test(pathOf(req));

app.use((req, res, next) => {
  if (!isTestPath(req)) requestLog.push({method: req.method, path: pathOf(req), query: queryOf(req)});
  if (args.verbose) {
    const start = Date.now();
    res.on('close', () => process.stderr.write(
      `couch-test-server: ${req.method} ${req.originalUrl} -> ${res.statusCode} (${Date.now() - start} ms)\n`));
  }
  next();
});

const FAULT_ERRORS = {
  400: 'bad_request', 401: 'unauthorized', 403: 'forbidden', 404: 'not_found', 408: 'request_timeout',
  409: 'conflict', 412: 'precondition_failed', 413: 'too_large', 415: 'bad_content_type',
  429: 'too_many_requests', 500: 'unknown_error', 502: 'bad_gateway', 503: 'service_unavailable',
  504: 'gateway_timeout',
};

app.use((req, res, next) => {
  if (isTestPath(req)) return next();
  const p = pathOf(req);
  const q = queryOf(req);
  const rule = faults.find((f) => (f.method === '*' || f.method === req.method) &&
    f.pathRe.test(p) && (!f.queryRe || f.queryRe.test(q)));
  if (!rule) return next();
  rule.count--;
  if (rule.count <= 0) faults = faults.filter((f) => f !== rule);
  const act = () => {
    if (rule.drop) return req.socket.destroy();
    if (rule.status === undefined) return next();  // delay only
    res.status(rule.status);
    res.set('Content-Type', 'application/json');
    for (const [k, v] of Object.entries(rule.headers)) res.set(k, v);
    res.end(rule.body !== undefined ? rule.body : JSON.stringify({
      error: FAULT_ERRORS[rule.status] || 'injected_fault', reason: 'injected by /_test/faults',
    }) + '\n');
  };
  if (rule.delay_ms > 0) setTimeout(act, rule.delay_ms); else act();
});

// Test-control endpoints. With --admin they need the admin's basic-auth credentials.
const testApi = express.Router();
testApi.use((req, res, next) => {
  if (!adminName) return next();
  const cred = dep('basic-auth')(req);
  if (cred && cred.name === adminName && cred.pass === adminPassword) return next();
  res.status(401).json({error: 'unauthorized', reason: 'You are not a server admin.'});
});
testApi.use(express.json({limit: '10mb'}));
testApi.post('/close_feeds', (req, res) => {
  const sockets = [...openFeeds];
  openFeeds.clear();
  for (const s of sockets) s.destroy();
  res.json({ok: true, closed: sockets.length});
});
testApi.post('/faults', (req, res) => {
  const rules = Array.isArray(req.body) ? req.body : [req.body];
  const parsed = [];
  for (const b of rules) {
    if (!b || typeof b !== 'object') return res.status(400).json({error: 'bad_request', reason: 'fault must be an object'});
    let pathRe;
    let queryRe = null;
    try {
      pathRe = new RegExp(b.path === undefined ? '.*' : String(b.path));
      if (b.query !== undefined) queryRe = new RegExp(String(b.query));
    } catch (err) {
      return res.status(400).json({error: 'bad_request', reason: `bad regex: ${err.message}`});
    }
    const count = b.count === undefined ? 1 : Number(b.count);
    if (!Number.isInteger(count) || count < 1) return res.status(400).json({error: 'bad_request', reason: 'count must be >= 1'});
    if (b.status === undefined && !b.drop && !(b.delay_ms > 0)) {
      return res.status(400).json({error: 'bad_request', reason: 'need status, drop or delay_ms'});
    }
    parsed.push({
      method: b.method === undefined ? '*' : String(b.method).toUpperCase(),
      path: b.path === undefined ? '.*' : String(b.path), pathRe,
      query: b.query, queryRe, count,
      status: b.status === undefined ? undefined : Number(b.status),
      body: b.body === undefined ? undefined : (typeof b.body === 'string' ? b.body : JSON.stringify(b.body)),
      drop: !!b.drop, delay_ms: Number(b.delay_ms) || 0,
      headers: (b.headers && typeof b.headers === 'object') ? b.headers : {},
    });
  }
  faults.push(...parsed);
  res.status(201).json({ok: true, faults: faults.length});
});
testApi.get('/faults', (req, res) => {
  res.json({faults: faults.map((f) => ({
    method: f.method, path: f.path, query: f.query, status: f.status, count: f.count,
    body: f.body, drop: f.drop, delay_ms: f.delay_ms, headers: f.headers,
  }))});
});
testApi.delete('/faults', (req, res) => { faults = []; res.json({ok: true}); });
testApi.get('/feeds', (req, res) => {
  res.json({open_feeds: openFeeds.size, live_listeners: liveListeners,
    db_updates_listeners: dbUpdateListeners.size});
});
// TCP connections accepted since start (or the last DELETE) and open now:
// tells whether a client reuses its keep-alive connections.
const connections = {accepted: 0, open: 0};
testApi.get('/connections', (req, res) => { res.json(connections); });
testApi.delete('/connections', (req, res) => { connections.accepted = 0; res.json({ok: true}); });
testApi.post('/db_updates', (req, res) => {
  const b = req.body;
  if (!b || typeof b !== 'object' || typeof b.enabled !== 'boolean') {
    return res.status(400).json({error: 'bad_request', reason: 'body must be {"enabled": true|false}'});
  }
  dbUpdatesEnabled = b.enabled;
  res.json({ok: true, enabled: dbUpdatesEnabled});
});
testApi.get('/db_updates', (req, res) => {
  res.json({enabled: dbUpdatesEnabled, seq: dbUpdatesSeq, events: dbUpdateEvents.size});
});
testApi.get('/requests', (req, res) => {
  let re;
  let qre = null;
  try {
    re = new RegExp(req.query.path === undefined ? '.*' : String(req.query.path));
    if (req.query.query !== undefined) qre = new RegExp(String(req.query.query));
  } catch (err) {
    return res.status(400).json({error: 'bad_request', reason: `bad regex: ${err.message}`});
  }
  const method = req.query.method ? String(req.query.method).toUpperCase() : null;
  const hits = requestLog.filter((r) => re.test(r.path) && (!qre || qre.test(r.query)) &&
    (!method || r.method === method));
  const out = {count: hits.length};
  if (req.query.list === 'true') out.requests = hits;
  res.json(out);
});
testApi.delete('/requests', (req, res) => { requestLog.length = 0; res.json({ok: true}); });
testApi.use((req, res) => res.status(404).json({error: 'not_found', reason: 'missing'}));
app.use('/_test', testApi);

// FIX (notes §2.2 item 8 / §4.1): GET / had no "couchdb":"Welcome" and a uuid with dashes from
// a lazily generated config value. Answer with the configured uuid.
app.get('/', (req, res) => {
  epUtils.sendJSON(res, 200, {
    'couchdb': 'Welcome',
    'version': '4.2.0',
    'express-pouchdb': 'Welcome!',
    'pouchdb-adapters': [adapterName],
    'uuid': serverUuid,
    'vendor': {name: 'PouchDB authors', version: '4.2.0'},
    'features': [],
  });
});

// FIX (notes §2.4 #4): a CouchDB-replicator-style `PUT /db/doc` with Content-Type
// multipart/related (JSON part first, then one raw part per attachment marked "follows":true,
// in order) crashed node with a SyntaxError. Convert it into the equivalent JSON PUT with
// base64 attachment data (gzip-encoded parts are decoded); ?new_edits=false is honoured by the
// documents route override above.
function parseMultipart(buf, boundary) {
  const delim = Buffer.from(`--${boundary}`);
  const parts = [];
  let pos = buf.indexOf(delim);
  if (pos === -1) throw new Error('multipart boundary not found');
  for (;;) {
    pos += delim.length;
    if (buf[pos] === 0x2d && buf[pos + 1] === 0x2d) break;  // closing delimiter "--"
    const headerEnd = buf.indexOf('\r\n\r\n', pos);
    if (headerEnd === -1) throw new Error('unterminated multipart headers');
    const headers = {};
    for (const line of buf.slice(pos, headerEnd).toString('latin1').split('\r\n')) {
      const c = line.indexOf(':');
      if (c > 0) headers[line.slice(0, c).trim().toLowerCase()] = line.slice(c + 1).trim();
    }
    const next = buf.indexOf(Buffer.from(`\r\n--${boundary}`), headerEnd + 4);
    if (next === -1) throw new Error('unterminated multipart body');
    parts.push({headers, body: buf.slice(headerEnd + 4, next)});
    pos = next + 2;
  }
  return parts;
}

app.use((req, res, next) => {
  const ct = req.headers['content-type'] || '';
  if (req.method !== 'PUT' || !/^multipart\/related/i.test(ct)) return next();
  const m = /boundary=(?:"([^"]+)"|([^;\s]+))/i.exec(ct);
  const reject = (reason) => epUtils.sendJSON(res, 400, {error: 'bad_request', reason});
  if (!m) return reject('multipart/related without boundary');
  rawBody(req, {length: req.headers['content-length']}, (err, buf) => {
    if (err) return reject(`could not read body: ${err.message}`);
    let doc;
    try {
      const parts = parseMultipart(buf, m[1] || m[2]);
      if (!parts.length) throw new Error('empty multipart body');
      doc = JSON.parse(parts[0].body.toString('utf8'));
      let i = 1;
      for (const name of Object.keys(doc._attachments || {})) {
        const att = doc._attachments[name];
        if (!att || !att.follows) continue;
        const part = parts[i++];
        if (!part) throw new Error(`no part for attachment ${name}`);
        let data = part.body;
        if (att.encoding === 'gzip') data = zlib.gunzipSync(data);
        if (!att.content_type && part.headers['content-type']) att.content_type = part.headers['content-type'];
        att.data = data.toString('base64');
        for (const k of ['follows', 'length', 'digest', 'encoding', 'encoded_length']) delete att[k];
      }
    } catch (e) {
      return reject(`bad multipart/related body: ${e.message}`);
    }
    const json = Buffer.from(JSON.stringify(doc));
    req.headers['content-type'] = 'application/json';
    req.headers['content-length'] = String(json.length);
    req.rawBody = json;
    req.body = doc;
    req._body = true;  // tells body-parser the body was already read
    next();
  });
});

// Per-request response shims: opaque update_seq in db info; Max-Age on the session cookie.
const sessionTimeout = args.sessionTimeout || 600;
app.use((req, res, next) => {
  // FIX (brief, --seq-mode opaque): db info (and all_docs/view update_seq) leave as opaque strings.
  if (opaqueSeqs && (req.method === 'GET' || req.method === 'POST') &&
      /^\/[^/]+\/?$|\/_all_docs$|\/_view\//.test(pathOf(req))) {
    res.send = function (body) {
      delete res.send;
      if (res.statusCode === 200 && (Buffer.isBuffer(body) || typeof body === 'string') &&
          body.indexOf('_seq"') !== -1) {
        try {
          const obj = JSON.parse(body.toString());
          let changed = false;
          for (const k of ['update_seq', 'purge_seq']) {
            if (obj && typeof obj[k] === 'number') { obj[k] = formatSeq(obj[k]); changed = true; }
          }
          if (changed) body = Buffer.from(JSON.stringify(obj) + '\n');
        } catch (e) { /* not JSON: leave it */ }
      }
      return res.send(body);
    };
  }
  // FIX (brief/notes §2.3): express-pouchdb's AuthSession cookie had no Max-Age/Expires (and
  // its allow_persistent_cookies option passed seconds where express wants milliseconds).
  // Give it CouchDB 3's attributes, with the configured session timeout.
  res.cookie = function (name, value, options) {
    const proto = Object.getPrototypeOf(res);
    if (name === 'AuthSession' && value) {
      options = Object.assign({}, options, {maxAge: sessionTimeout * 1000, path: '/', httpOnly: true});
    }
    return proto.cookie.call(res, name, value, options);
  };
  next();
});

app.use(pouchApp);

// FIX (notes §2.2 item 8): errors thrown by express-pouchdb handlers came back as Express's
// HTML error page; answer CouchDB-style JSON instead.
app.use((err, req, res, next) => {  // eslint-disable-line no-unused-vars
  sendErrorSafe(res, err);
});

// ---------------------------------------------------------------------------------------------
// Start
// ---------------------------------------------------------------------------------------------

function configSet(section, key, value) {
  return new Promise((resolve, reject) => {
    pouchApp.couchConfig.set(section, key, value, (err) => (err ? reject(err) : resolve()));
  });
}

// --data-dir: the uuid, the cookie secret and the admin's salted hash come from the state file
// (see "Persistence" above). The admin is still the one of --admin: a stored hash is reused only
// while it matches that password, and no --admin means admin party, as without --data-dir.
async function restoreAuthConfig() {
  const authDir = path.dirname(require.resolve('pouchdb-auth/package.json', {paths: [serverDir, epDir, __dirname]}));
  const authUtils = require(path.join(authDir, 'lib', 'utils.js'));
  if (typeof persisted.secret !== 'string' || !persisted.secret) {
    persisted.secret = crypto.randomBytes(16).toString('hex');
  }
  await configSet('couch_httpd_auth', 'secret', persisted.secret);
  const stored = persisted.admins && typeof persisted.admins === 'object' ? persisted.admins : {};
  let hash = null;
  if (adminName) {
    const m = /^-pbkdf2-([\da-f]+),([\da-f]+),([0-9]+)$/.exec(stored[adminName] || '');
    if (m && await authUtils.hashPassword(adminPassword, m[2], Number(m[3])) === m[1]) {
      hash = stored[adminName];
    }
    await configSet('admins', adminName, hash || adminPassword);  // a password is hashed here
    hash = pouchApp.couchConfig.get('admins', adminName);
  }
  persisted.uuid = serverUuid;
  persisted.admins = adminName ? {[adminName]: hash} : {};
  saveState();
}

// --data-dir: pouchdb-all-dbs writes a new db into its list (the db `pouch__all_dbs__`, one doc
// "db_<name>" per db) after the db exists, and removes a deleted one after its directory is
// gone; a SIGKILL in between must not lose (or resurrect) a database. Before anything else opens
// a database, make the list match the database directories under DIR/dbs/.
async function reconcileAllDbs(P) {
  const LIST = 'pouch__all_dbs__';
  const PREFIX = 'db_';
  const onDisk = fs.readdirSync(dbDir, {withFileTypes: true})
    .filter((e) => e.isDirectory() && fs.existsSync(path.join(dbDir, e.name, 'CURRENT')))
    .map((e) => e.name)
    .filter((n) => n !== LIST && n.indexOf('-mrview-') === -1);
  if (onDisk.length === 0 && !fs.existsSync(path.join(dbDir, LIST))) return;  // a new DIR
  const list = new P(LIST);
  try {
    const rows = (await list.allDocs({startkey: PREFIX, endkey: `${PREFIX}\uffff`})).rows;
    const listed = new Map(rows.map((r) => [r.id.slice(PREFIX.length), r]));
    for (const n of onDisk) {
      if (listed.has(n)) continue;
      process.stderr.write(`couch-test-server: database ${n} was missing from the all-dbs list; added\n`);
      await list.put({_id: PREFIX + n});
    }
    for (const [n, r] of listed) {
      if (onDisk.indexOf(n) !== -1) continue;
      process.stderr.write(`couch-test-server: database ${n} has no data directory; removed from the list\n`);
      await list.remove(r.id, r.value.rev);
    }
  } finally {
    await list.close();
  }
}

// --data-dir, on SIGTERM: no new requests, finish the all-dbs bookkeeping, close every db.
async function closeStore(server, P) {
  server.close();
  if (typeof server.closeAllConnections === 'function') server.closeAllConnections();
  await P.allDbs();
  const cache = P.__dbCacheMap || new Map();
  await Promise.all([...cache.values()].map((db) => Promise.resolve(db.close()).catch(() => {})));
}

async function main() {
  // FIX (safety net, notes §2.2 item 8): an unknown crash path must not kill the whole test
  // server. Log it to stderr and keep serving. --crash-on-error turns this off. (Installed here,
  // after start-up, so that a broken installation still fails loudly.)
  if (!args.crashOnError) {
    process.on('uncaughtException', (err) => {
      process.stderr.write(`couch-test-server: uncaught exception (kept running): ${err && err.stack || err}\n`);
    });
    process.on('unhandledRejection', (err) => {
      process.stderr.write(`couch-test-server: unhandled rejection (kept running): ${err && err.stack || err}\n`);
    });
  }
  await configSet('couchdb', 'uuid', serverUuid);
  if (args.sessionTimeout) await configSet('couch_httpd_auth', 'timeout', args.sessionTimeout);
  if (args.dataDir) {
    await restoreAuthConfig();
  } else if (adminName) {
    await configSet('admins', adminName, adminPassword);  // hashed by pouchdb-auth
  }
  if (args.dataDir) await reconcileAllDbs(StorePouchDB);
  await pouchApp.setPouchDB(StorePouchDB);
  const server = app.listen(args.port, args.host);
  if (args.dataDir) shutdownHook = () => closeStore(server, StorePouchDB);
  server.on('connection', (socket) => {
    connections.accepted++;
    connections.open++;
    socket.on('close', () => { connections.open--; });
  });
  server.keepAliveTimeout = 120000;
  server.headersTimeout = 125000;
  server.requestTimeout = 0;
  server.on('error', (err) => {
    process.stderr.write(`couch-test-server: cannot listen on ${args.host}:${args.port}: ${err.message}\n`);
    process.exit(1);
  });
  server.on('listening', () => {
    const port = server.address().port;
    process.stdout.write(`couch-test-server listening on http://${args.host}:${port}/ pid=${process.pid} ` +
      `uuid=${serverUuid} seq_mode=${args.seqMode}\n`);
  });
}

main().catch((err) => {
  process.stderr.write(`couch-test-server: start-up failed: ${err && err.stack || err}\n`);
  process.exit(1);
});
