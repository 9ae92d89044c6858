//! The SQLite store: a pool of readers, one group-committing writer thread, and a hot cache
//! that other processes' writes invalidate through the events table.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde_json::{Map, Value};

use avm_core::address::is_within;
use avm_core::time::{Micros, now_micros};
use avm_core::{Attrs, Caller, Content, Error, ErrorKind, NodeKind, Result};

pub use crate::engine::{ChildEntry, Hit, Link, VersionInfo};
use crate::fts;
use crate::node::Node;
use crate::sqlite::db;
use crate::sqlite::write::{self, Outcome, WriteOp};

/// Tuning knobs (from `[store]` in config).
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// How long to wait for another process's write lock.
    pub busy_timeout: Duration,
    /// Nodes kept in the hot cache.
    pub cache_entries: usize,
    /// Read connections.
    pub readers: usize,
    /// Most writes per group commit.
    pub group_commit_max: usize,
    /// SQLite synchronous mode: normal, full or off.
    pub synchronous: String,
    /// Largest node content in bytes.
    pub max_node_bytes: u64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        let c = avm_core::config::StoreConfig::default();
        StoreOptions {
            busy_timeout: Duration::from_millis(c.busy_timeout_ms),
            cache_entries: c.cache_entries,
            readers: c.readers,
            group_commit_max: c.group_commit_max,
            synchronous: c.synchronous,
            max_node_bytes: avm_core::config::DEFAULT_MAX_NODE_BYTES,
        }
    }
}

pub(crate) struct Reader {
    conn: Connection,
    data_version: i64,
}

struct Cache {
    map: HashMap<String, Arc<Node>>,
    /// Last event seen; events after it invalidate cached paths.
    last_seq: i64,
    /// Bumped on every invalidation, so a read that raced a write does not cache stale data.
    epoch: u64,
    cap: usize,
}

impl Cache {
    fn invalidate(&mut self, path: &str) {
        self.map.remove(path);
        self.epoch += 1;
    }

    fn insert(&mut self, node: Arc<Node>) {
        if self.cap == 0 {
            return;
        }
        if self.map.len() >= self.cap {
            // Random eviction: HashMap iteration order is arbitrary, which is all we need.
            let victims: Vec<String> = self.map.keys().take(self.cap / 8 + 1).cloned().collect();
            for v in victims {
                self.map.remove(&v);
            }
        }
        self.map.insert(node.path.clone(), node);
    }
}

pub(crate) enum Job {
    Op(Box<WriteOp>, mpsc::Sender<Result<Outcome>>),
    Batch(Vec<WriteOp>, mpsc::Sender<Vec<Result<Outcome>>>),
    Sync(mpsc::Sender<()>),
}

pub(crate) struct Shared {
    pub(crate) path: PathBuf,
    /// The file as avm opens it (pragmas, error messages).
    pub(crate) file: db::DbFile,
    pub(crate) opts: StoreOptions,
    /// Read connections, opened on first need (a one-shot CLI command opens one, not the pool).
    readers: Vec<Mutex<Option<Reader>>>,
    cache: Mutex<Cache>,
    /// Nodes read since the last flush: id -> (path, time). accessed_at is written lazily.
    touches: Mutex<HashMap<i64, (String, Micros)>>,
    /// Writes nobody waits for (telemetry), committed with the next group or idle tick: a
    /// commit per recall would make every reader connection drop its page cache.
    deferred: Mutex<Vec<WriteOp>>,
    /// Document frequencies of common words, for search ([`crate::sqlite::topk`]).
    df: Mutex<crate::sqlite::topk::DfCache>,
}

/// The store. Cheap to share behind an `Arc`; dropping the last handle flushes and stops the
/// writer thread.
pub struct Store {
    shared: Arc<Shared>,
    tx: Mutex<Option<SyncSender<Job>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.shared.path)
            .finish()
    }
}

/// `query` compiled for FTS5 ([`fts::compile_with`]), or why it cannot be searched.
fn compiled(query: &str, drop_function_words: bool) -> Result<fts::Compiled> {
    fts::compile_with(query, drop_function_words)
        .ok_or_else(|| Error::invalid(format!("search query {query:?} has no words to look for")))
}

/// Whether a path is below one of `scopes`, outside the trash unless a scope is in it, and
/// kept by `extra`.
fn in_scope<'a>(
    scopes: &'a [String],
    extra: avm_core::storage::Keep<'a>,
) -> impl Fn(&str) -> bool + 'a {
    let in_trash = scopes.iter().any(|s| is_within(s, "/trash"));
    move |path: &str| {
        scopes.iter().any(|s| is_within(path, s))
            && (in_trash || !is_within(path, "/trash"))
            && extra(path)
    }
}

/// The best `limit` of the rows [`crate::sqlite::topk`] scored, best first (ties in path order), with
/// a snippet for `terms` where their content was kept.
fn best_hits(
    mut found: Vec<crate::sqlite::topk::Seen>,
    limit: usize,
    terms: &[String],
) -> Vec<Hit> {
    found.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| a.path.cmp(&b.path))
    });
    found.truncate(limit);
    found
        .into_iter()
        .map(|s| Hit {
            snippet: s
                .content
                .map_or_else(String::new, |c| fts::snippet(&c, terms)),
            path: s.path,
            score: s.score,
        })
        .collect()
}

/// Most memories holding every word of a recall query that are scored without FTS5's ranking.
const ALL_WORDS_SCORED: usize = 2_000;

pub(crate) const NODE_COLS: &str = "id, path, content, meta, tags, importance, author, created_at, updated_at, (SELECT at FROM access WHERE node_id = nodes.id), version, hash, expires_at, ftype, mode, uid, gid, mtime_ns, ctime_ns, atime_ns";

/// The hot query, spelled out so no string is built per read.
const NODE_BY_PATH: &str = "SELECT id, path, content, meta, tags, importance, author, created_at, updated_at, (SELECT at FROM access WHERE node_id = nodes.id), version, hash, expires_at, ftype, mode, uid, gid, mtime_ns, ctime_ns, atime_ns FROM nodes WHERE path = ?1";

/// Reads closer together than this record one access, not many.
const TOUCH_GRANULARITY: Micros = 60_000_000;

/// A content column (text, or a blob for binary content) as [`Content`].
pub(crate) fn content_at(r: &Row<'_>, i: usize) -> rusqlite::Result<Content> {
    use rusqlite::types::ValueRef;
    Ok(match r.get_ref(i)? {
        ValueRef::Blob(b) => Content::Bytes(b.to_vec()),
        ValueRef::Text(t) => match String::from_utf8(t.to_vec()) {
            Ok(s) => Content::Text(s),
            Err(e) => Content::Bytes(e.into_bytes()),
        },
        ValueRef::Null => Content::default(),
        ValueRef::Integer(n) => Content::Text(n.to_string()),
        ValueRef::Real(x) => Content::Text(x.to_string()),
    })
}

/// How [`Content`] is stored: text as TEXT, bytes as a BLOB (so `typeof(content)` tells them
/// apart and the full-text index never sees a blob).
pub(crate) fn content_sql(c: &Content) -> rusqlite::types::ToSqlOutput<'_> {
    use rusqlite::types::{ToSqlOutput, ValueRef};
    ToSqlOutput::Borrowed(match c {
        Content::Text(s) => ValueRef::Text(s.as_bytes()),
        Content::Bytes(b) => ValueRef::Blob(b),
    })
}

/// A mode, owner or group column (kept as a non-negative integer).
fn u32_at(r: &Row<'_>, i: usize) -> rusqlite::Result<Option<u32>> {
    Ok(r.get::<_, Option<i64>>(i)?
        .and_then(|v| u32::try_from(v).ok()))
}

pub(crate) fn node_from_row(r: &Row<'_>) -> rusqlite::Result<Node> {
    let meta: String = r.get(3)?;
    let tags: String = r.get(4)?;
    let ftype: Option<String> = r.get(13)?;
    Ok(Node {
        id: r.get(0)?,
        path: r.get(1)?,
        content: content_at(r, 2)?,
        kind: if ftype.as_deref() == Some("symlink") {
            NodeKind::Symlink
        } else {
            NodeKind::File
        },
        attrs: Attrs {
            mode: u32_at(r, 14)?,
            uid: u32_at(r, 15)?,
            gid: u32_at(r, 16)?,
            mtime: r.get(17)?,
            ctime: r.get(18)?,
            atime: r.get(19)?,
            nlink: None,
        },
        meta: serde_json::from_str::<Map<String, Value>>(&meta).unwrap_or_default(),
        tags: serde_json::from_str(&tags).unwrap_or_default(),
        importance: r.get(5)?,
        author: r.get(6)?,
        created_at: r.get(7)?,
        updated_at: r.get(8)?,
        accessed_at: r.get(9)?,
        version: r.get(10)?,
        hash: r.get(11)?,
        expires_at: r.get(12)?,
    })
}

/// `[lo, hi)` bounds covering every path strictly inside `dir`.
pub(crate) fn subtree_bounds(dir: &str) -> (String, String) {
    if dir == "/" {
        ("/".into(), "0".into())
    } else {
        (format!("{dir}/"), format!("{dir}0"))
    }
}

/// The agent a visibility filter is for: the parameter [`visible_sql`] takes (`None` for the
/// operator, who sees everything).
pub(crate) fn viewer(caller: &Caller) -> Option<String> {
    caller.agent().map(str::to_string)
}

/// The SQL condition that keeps the rows of `nodes` (columns prefixed with `t`, such as `n.`)
/// the [`viewer`] bound at parameter `?n` may see: [`avm_core::provider::visible_to`], the one
/// rule every front end and query applies, run inside SQLite as `avm_visible`.
pub(crate) fn visible_sql(t: &str, n: usize) -> String {
    format!("avm_visible({t}path, {t}author, {t}meta, ?{n})")
}

impl Store {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path, opts: StoreOptions) -> Result<Store> {
        let file = db::file(path, opts.busy_timeout, &opts.synchronous);
        let wconn = db::open(&file, false)?;
        db::init_schema(&wconn, &file)?;
        let readers = (0..opts.readers.max(1)).map(|_| Mutex::new(None)).collect();
        let last_seq: i64 = wconn
            .query_row("SELECT coalesce(max(seq), 0) FROM events", [], |r| r.get(0))
            .map_err(|e| file.err(e))?;
        let shared = Arc::new(Shared {
            path: path.to_path_buf(),
            file,
            cache: Mutex::new(Cache {
                map: HashMap::new(),
                last_seq,
                epoch: 0,
                cap: opts.cache_entries,
            }),
            opts,
            readers,
            touches: Mutex::new(HashMap::new()),
            deferred: Mutex::new(Vec::new()),
            df: Mutex::new(crate::sqlite::topk::DfCache::default()),
        });
        let (tx, rx) = mpsc::sync_channel::<Job>(4096);
        let w_shared = shared.clone();
        let handle = std::thread::Builder::new()
            .name("avm-writer".into())
            .spawn(move || writer_loop(wconn, rx, w_shared))
            .map_err(|e| Error::internal(format!("cannot start the writer thread: {e}")))?;
        Ok(Store {
            shared,
            tx: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(handle)),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// The options in force.
    pub fn options(&self) -> &StoreOptions {
        &self.shared.opts
    }

    fn err(&self, e: rusqlite::Error) -> Error {
        self.shared.file.err(e)
    }

    fn sender(&self) -> Result<SyncSender<Job>> {
        lock(&self.tx)?
            .clone()
            .ok_or_else(|| Error::new(ErrorKind::Unavailable, "the store is shut down"))
    }

    /// Applies one write through the group-commit writer and waits for it to commit.
    pub fn apply(&self, op: WriteOp) -> Result<Outcome> {
        let (rtx, rrx) = mpsc::channel();
        self.sender()?
            .send(Job::Op(Box::new(op), rtx))
            .map_err(|_| Error::new(ErrorKind::Unavailable, "the store's writer has stopped"))?;
        rrx.recv()
            .map_err(|_| Error::internal("the store's writer stopped before answering"))?
    }

    /// Queues one write without waiting for it (telemetry): it commits with the next group of
    /// writes, at the writer's next idle tick (within half a second), or at `sync`/close.
    pub fn apply_nowait(&self, op: WriteOp) {
        if let Ok(mut d) = self.shared.deferred.lock() {
            d.push(op);
        }
    }

    /// `agent`'s read marker on `path` (0 if none).
    pub fn mark_of(&self, agent: &str, path: &str) -> Result<i64> {
        self.read_conn(|c| {
            c.prepare_cached(
                "SELECT coalesce((SELECT m.version FROM marks m JOIN nodes n ON n.id = m.node_id \
                 WHERE m.agent = ?1 AND n.path = ?2), 0)",
            )?
            .query_row(params![agent, path], |r| r.get(0))
        })
    }

    /// Content bytes and node count below `dir` (all agents: quotas count everything).
    pub fn usage(&self, dir: &str) -> Result<(u64, u64)> {
        let (lo, hi) = subtree_bounds(dir);
        let now = now_micros();
        self.read_conn(|c| {
            c.prepare_cached(
                "SELECT count(*), coalesce(sum(length(CAST(content AS BLOB))),0) FROM nodes \
                 WHERE path >= ?1 AND path < ?2 AND (expires_at IS NULL OR expires_at > ?3)",
            )?
            .query_row(params![lo, hi, now], |r| {
                Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64))
            })
        })
    }

    /// Applies many writes in one transaction (each still succeeds or fails on its own).
    pub fn apply_many(&self, ops: Vec<WriteOp>) -> Vec<Result<Outcome>> {
        let n = ops.len();
        let fail = |e: Error| (0..n).map(|_| Err(e.clone())).collect();
        let (rtx, rrx) = mpsc::channel();
        let sender = match self.sender() {
            Ok(s) => s,
            Err(e) => return fail(e),
        };
        if sender.send(Job::Batch(ops, rtx)).is_err() {
            return fail(Error::new(
                ErrorKind::Unavailable,
                "the store's writer has stopped",
            ));
        }
        rrx.recv().unwrap_or_else(|_| {
            fail(Error::internal(
                "the store's writer stopped before answering",
            ))
        })
    }

    /// Waits until every queued write and access-time update is committed.
    pub fn sync(&self) -> Result<()> {
        let (rtx, rrx) = mpsc::channel();
        self.sender()?
            .send(Job::Sync(rtx))
            .map_err(|_| Error::new(ErrorKind::Unavailable, "the store's writer has stopped"))?;
        rrx.recv()
            .map_err(|_| Error::internal("the store's writer stopped"))
    }

    /// Runs `f` on a pooled read connection after bringing the cache up to date with other
    /// processes' writes.
    pub(crate) fn read_conn<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T> {
        // The first idle connection already open; else the first idle slot (opened now);
        // else wait for the first one.
        let slots = &self.shared.readers;
        let mut idle: Vec<MutexGuard<'_, Option<Reader>>> = Vec::new();
        let mut guard = None;
        for slot in slots {
            if let Ok(g) = slot.try_lock() {
                if g.is_some() {
                    guard = Some(g);
                    break;
                }
                if idle.is_empty() {
                    idle.push(g);
                }
            }
        }
        let mut reader = match (guard, idle.pop()) {
            (Some(g), _) | (None, Some(g)) => g,
            (None, None) => match slots.first() {
                Some(slot) => lock(slot)?,
                None => return Err(Error::internal("the store has no read connections")),
            },
        };
        if reader.is_none() {
            *reader = Some(Reader {
                conn: db::open(&self.shared.file, true)?,
                data_version: -1,
            });
        }
        let Some(reader) = reader.as_mut() else {
            return Err(Error::internal("a read connection did not open"));
        };
        // One read transaction covers the change check and the work, so SQLite takes its
        // locks once per call (each lock is a syscall) and both see the same snapshot.
        let conn = &reader.conn;
        conn.prepare_cached("BEGIN")
            .and_then(|mut s| s.execute([]))
            .map_err(|e| self.err(e))?;
        let result = (|| {
            let dv: i64 = conn
                .prepare_cached("PRAGMA data_version")
                .and_then(|mut s| s.query_row([], |r| r.get(0)))
                .map_err(|e| self.err(e))?;
            let stale = dv != reader.data_version;
            if stale {
                self.sync_cache(conn)?;
            }
            let out = f(conn).map_err(|e| self.err(e))?;
            Ok((out, stale.then_some(dv)))
        })();
        let end = conn
            .prepare_cached(if result.is_ok() { "COMMIT" } else { "ROLLBACK" })
            .and_then(|mut s| s.execute([]));
        let (out, new_dv) = result?;
        end.map_err(|e| self.err(e))?;
        if let Some(dv) = new_dv {
            reader.data_version = dv;
        }
        Ok(out)
    }

    /// Drops cached nodes that events newer than the last seen one touched.
    fn sync_cache(&self, conn: &Connection) -> Result<()> {
        let mut cache = lock(&self.shared.cache)?;
        let mut stmt = conn
            .prepare_cached(
                "SELECT seq, path, detail FROM events WHERE seq > ?1 ORDER BY seq LIMIT 10001",
            )
            .map_err(|e| self.err(e))?;
        let rows: Vec<(i64, String, Option<String>)> = stmt
            .query_map([cache.last_seq], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .and_then(|it| it.collect())
            .map_err(|e| self.err(e))?;
        if rows.len() > 10_000 {
            cache.map.clear();
            cache.epoch += 1;
            cache.last_seq = conn
                .query_row("SELECT coalesce(max(seq),0) FROM events", [], |r| r.get(0))
                .map_err(|e| self.err(e))?;
            return Ok(());
        }
        for (seq, path, detail) in rows {
            cache.invalidate(&path);
            if let Some(d) = detail {
                cache.invalidate(&d);
            }
            cache.last_seq = cache.last_seq.max(seq);
        }
        Ok(())
    }

    /// The live node at `path` (expired nodes count as missing). Marks it accessed.
    pub fn get(&self, path: &str) -> Result<Option<Arc<Node>>> {
        let node = self.peek(path)?;
        if let Some(n) = &node
            && n.accessed_at
                .is_none_or(|t| now_micros() - t >= TOUCH_GRANULARITY)
        {
            self.touch(n);
        }
        Ok(node)
    }

    /// Like [`Store::get`] without marking the node accessed.
    pub fn peek(&self, path: &str) -> Result<Option<Arc<Node>>> {
        enum Found {
            Cached(Arc<Node>),
            Fetched(Option<Box<Node>>, u64),
        }
        let now = now_micros();
        let caching = self.shared.opts.cache_entries > 0;
        // One pooled connection serves both the cache check (after syncing with other
        // processes' writes) and, on a miss, the query.
        let found = self.read_conn(|c| {
            let mut epoch = 0;
            if caching && let Ok(cache) = self.shared.cache.lock() {
                if let Some(n) = cache.map.get(path) {
                    return Ok(Found::Cached(n.clone()));
                }
                epoch = cache.epoch;
            }
            let n = c
                .prepare_cached(NODE_BY_PATH)?
                .query_row([path], node_from_row)
                .optional()?;
            Ok(Found::Fetched(n.map(Box::new), epoch))
        })?;
        let n = match found {
            Found::Cached(n) => n,
            Found::Fetched(None, _) => return Ok(None),
            Found::Fetched(Some(n), epoch) => {
                let n = Arc::new(*n);
                if caching
                    && let Ok(mut cache) = self.shared.cache.lock()
                    && cache.epoch == epoch
                {
                    cache.insert(n.clone());
                }
                n
            }
        };
        Ok((!n.is_expired(now)).then_some(n))
    }

    fn touch(&self, n: &Node) {
        if let Ok(mut t) = self.shared.touches.lock() {
            let now = now_micros();
            t.entry(n.id)
                .and_modify(|e| e.1 = now)
                .or_insert_with(|| (n.path.clone(), now));
        }
    }

    /// Is there an expired node at `path` that the writer has not purged yet?
    pub fn expired_pending(&self, path: &str) -> Result<bool> {
        let now = now_micros();
        self.read_conn(|c| {
            c.prepare_cached("SELECT 1 FROM nodes WHERE path = ?1 AND expires_at <= ?2")?
                .query_row(params![path, now], |_| Ok(()))
                .optional()
                .map(|o| o.is_some())
        })
    }

    /// File or directory at `path`; `None` when neither.
    pub fn kind(&self, path: &str) -> Result<Option<NodeKind>> {
        if path == "/" {
            return Ok(Some(NodeKind::Dir));
        }
        if self.peek(path)?.is_some() {
            return Ok(Some(NodeKind::File));
        }
        Ok(self.has_children(path)?.then_some(NodeKind::Dir))
    }

    /// Does any live node lie below `dir`?
    pub fn has_children(&self, dir: &str) -> Result<bool> {
        let (lo, hi) = subtree_bounds(dir);
        let now = now_micros();
        self.read_conn(|c| {
            c.prepare_cached(
                "SELECT 1 FROM nodes WHERE path >= ?1 AND path < ?2 AND (expires_at IS NULL OR expires_at > ?3) \
                 UNION ALL SELECT 1 FROM dirs WHERE path = ?4 OR (path >= ?1 AND path < ?2) LIMIT 1",
            )?
            .query_row(params![lo, hi, now, dir], |_| Ok(()))
            .optional()
            .map(|o| o.is_some())
        })
    }

    /// Explicit directories (made with mkdir) directly below `dir`.
    fn explicit_children(&self, dir: &str) -> Result<Vec<String>> {
        let (lo, hi) = subtree_bounds(dir);
        let rows: Vec<String> = self.read_conn(|c| {
            c.prepare_cached("SELECT path FROM dirs WHERE path >= ?1 AND path < ?2 ORDER BY path")?
                .query_map(params![lo, hi], |r| r.get(0))?
                .collect()
        })?;
        let mut out: Vec<String> = Vec::new();
        for p in rows {
            let rest = &p[lo.len()..];
            let first = rest.split('/').next().unwrap_or(rest);
            let child = format!("{lo}{first}");
            if out.last() != Some(&child) {
                out.push(child);
            }
        }
        Ok(out)
    }

    /// Immediate children of `dir` visible to `caller`: `(path, kind, size, version, updated)`.
    /// Stops after `offset + limit + 1` entries so the caller can tell whether more remain.
    pub fn children(
        &self,
        dir: &str,
        caller: &Caller,
        offset: usize,
        limit: Option<usize>,
    ) -> Result<Vec<ChildEntry>> {
        let (lo, hi) = subtree_bounds(dir);
        let vis = viewer(caller);
        let now = now_micros();
        let want = limit.map(|l| offset.saturating_add(l).saturating_add(1));
        self.read_conn(|c| {
            let mut out: Vec<ChildEntry> = Vec::new();
            let mut cur = lo.clone();
            let mut stmt = c.prepare_cached(&format!(
                "SELECT path, length(CAST(content AS BLOB)), version, updated_at, ftype FROM nodes \
                 WHERE path >= ?1 AND path < ?2 AND (expires_at IS NULL OR expires_at > ?3) AND {} \
                 ORDER BY path",
                visible_sql("", 4)
            ))?;
            'outer: loop {
                let mut rows = stmt.query(params![cur, hi, now, vis])?;
                while let Some(r) = rows.next()? {
                    if want.is_some_and(|w| out.len() >= w) {
                        break 'outer;
                    }
                    let path: String = r.get(0)?;
                    let rest = &path[lo.len()..];
                    match rest.find('/') {
                        Some(i) => {
                            let name = &rest[..i];
                            out.push(ChildEntry {
                                path: format!("{lo}{name}"),
                                kind: NodeKind::Dir,
                                size: 0,
                                version: None,
                                updated_at: None,
                            });
                            // Jump past everything inside this subdirectory.
                            cur = format!("{lo}{name}0");
                            continue 'outer;
                        }
                        None => out.push(ChildEntry {
                            path,
                            kind: if r.get::<_, Option<String>>(4)?.as_deref() == Some("symlink") {
                                NodeKind::Symlink
                            } else {
                                NodeKind::File
                            },
                            size: r.get::<_, i64>(1)? as u64,
                            version: Some(r.get(2)?),
                            updated_at: Some(r.get(3)?),
                        }),
                    }
                }
                break;
            }
            Ok(out)
        })
        .and_then(|mut out| {
            // Directories made empty on purpose show up too (paging stays by path order).
            let extra: Vec<String> = self
                .explicit_children(dir)?
                .into_iter()
                .filter(|p| caller.may_see(p) && !out.iter().any(|c| &c.path == p))
                .collect();
            if !extra.is_empty() {
                out.extend(extra.into_iter().map(|path| ChildEntry {
                    path,
                    kind: NodeKind::Dir,
                    size: 0,
                    version: None,
                    updated_at: None,
                }));
                out.sort_by(|a, b| a.path.cmp(&b.path));
                if let Some(w) = want {
                    out.truncate(w);
                }
            }
            Ok(out)
        })
    }

    /// Every live node below `dir` (or `dir` itself) visible to `caller`, in path order.
    /// Returns up to `limit + 1` nodes so the caller can tell whether more remain.
    pub fn descendants(
        &self,
        dir: &str,
        caller: &Caller,
        offset: usize,
        limit: Option<usize>,
    ) -> Result<Vec<Arc<Node>>> {
        self.descendants_page(dir, caller, None, offset, limit)
    }

    /// Like [`Store::descendants`], starting after the path `after` (keyset paging).
    pub fn descendants_after(
        &self,
        dir: &str,
        caller: &Caller,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Arc<Node>>> {
        self.descendants_page(dir, caller, after, 0, Some(limit))
    }

    fn descendants_page(
        &self,
        dir: &str,
        caller: &Caller,
        after: Option<&str>,
        offset: usize,
        limit: Option<usize>,
    ) -> Result<Vec<Arc<Node>>> {
        let (lo, hi) = subtree_bounds(dir);
        let vis = viewer(caller);
        let now = now_micros();
        let lim = limit.map_or(-1, |l| {
            i64::try_from(l).unwrap_or(i64::MAX - 1).saturating_add(1)
        });
        let after = after.unwrap_or("");
        self.read_conn(|c| {
            c.prepare_cached(&format!(
                "SELECT {NODE_COLS} FROM nodes WHERE ((path >= ?1 AND path < ?2) OR path = ?3) AND path > ?8 \
                 AND (expires_at IS NULL OR expires_at > ?4) AND {} ORDER BY path LIMIT ?6 OFFSET ?7",
                visible_sql("", 5)
            ))?
            .query_map(
                params![lo, hi, dir, now, vis, lim, i64::try_from(offset).unwrap_or(i64::MAX), after],
                node_from_row,
            )?
            .map(|r| r.map(Arc::new))
            .collect()
        })
    }

    /// Full-text search below `scope`, visible to `caller`, best first.
    ///
    /// FTS5 ranks its own top candidates (bm25, no join), then the candidates are checked
    /// against scope, visibility, trash and expiry. If filtering leaves fewer than `limit`
    /// and more candidates exist, the candidate window grows (×8) until it is exhausted, so
    /// results never come back short because of what the caller may not see.
    pub fn search(
        &self,
        scope: &str,
        caller: &Caller,
        query: &str,
        limit: usize,
    ) -> Result<Vec<Hit>> {
        self.search_within(&[scope.to_string()], caller, &|_| true, query, limit, true)
    }

    /// Like [`Store::search`] over several scopes, with an extra filter applied while the
    /// result fills (so it never comes back short), and snippets only when asked for.
    pub fn search_within(
        &self,
        scopes: &[String],
        caller: &Caller,
        extra: avm_core::storage::Keep<'_>,
        query: &str,
        limit: usize,
        snippets: bool,
    ) -> Result<Vec<Hit>> {
        let q = compiled(query, true)?;
        if let Some(words) = crate::sqlite::topk::words(&q) {
            return self.search_topk(scopes, caller, extra, &q, &words, limit, snippets);
        }
        self.search_compiled(scopes, caller, extra, &q, limit, snippets)
    }

    /// FTS5's own ranking of every row holding any word of `query`, function words included:
    /// how search ranked before [`crate::sqlite::topk`] (and what it costs), for benches to compare
    /// with. Not for serving: its cost grows with the store.
    pub fn search_reference(
        &self,
        scope: &str,
        caller: &Caller,
        query: &str,
        limit: usize,
    ) -> Result<Vec<Hit>> {
        let q = compiled(query, false)?;
        self.search_compiled(&[scope.to_string()], caller, &|_| true, &q, limit, false)
    }

    /// [`Store::search_within`] for queries of two or more plain words: the BM25 top `limit`,
    /// scoring only the rows that can reach it ([`crate::sqlite::topk`]), or FTS5's own ranking
    /// when the words are in few memories.
    #[allow(clippy::too_many_arguments)]
    fn search_topk(
        &self,
        scopes: &[String],
        caller: &Caller,
        extra: avm_core::storage::Keep<'_>,
        q: &fts::Compiled,
        words: &[String],
        limit: usize,
        snippets: bool,
    ) -> Result<Vec<Hit>> {
        let keep = in_scope(scopes, extra);
        let search = crate::sqlite::topk::TopK {
            keep: &keep,
            viewer: viewer(caller),
            now: now_micros(),
            snippets,
            df: &self.shared.df,
        };
        let limit = limit.min(100_000);
        let found = self.read_conn(|c| search.run(c, words, limit))?;
        self.save_counts();
        let Some(found) = found else {
            return self.search_compiled(scopes, caller, extra, q, limit, snippets);
        };
        Ok(best_hits(found, limit, &q.terms))
    }

    /// Queues the common words' document counts this process made since the last call, to be
    /// saved with the next group of writes (or at close) for the processes that come after.
    fn save_counts(&self) {
        let new = match self.shared.df.lock() {
            Ok(mut d) => d.take_new(),
            Err(_) => return,
        };
        if !new.is_empty() {
            self.apply_nowait(WriteOp::TermDf(new));
        }
    }

    /// Candidates for ranking elsewhere (recall): memories holding every query word first,
    /// then those holding the query's rarer words. bm25 over a word most memories contain is
    /// slow (it scores every one of them) and says little, so a word whose document count is
    /// more than 8 times the rarest word's (and over 500) only counts among memories that
    /// match the others. Plain search keeps exact bm25 top-k ([`Store::search`]).
    pub fn search_candidates(
        &self,
        scopes: &[String],
        caller: &Caller,
        extra: avm_core::storage::Keep<'_>,
        query: &str,
        limit: usize,
    ) -> Result<Vec<Hit>> {
        let q = compiled(query, true)?;
        if q.parts.len() < 2 || q.cjk.is_some() {
            return self.search_compiled(scopes, caller, extra, &q, limit, false);
        }
        // Document counts of the words (a quoted phrase counts as 0: always kept), common
        // words' counts remembered between searches ([`crate::sqlite::topk::DfCache`]).
        let dfs: Vec<i64> = self.read_conn(|c| {
            let Some((rows, tokens)) = crate::sqlite::topk::index_size(c)? else {
                return Ok(vec![0; q.parts.len()]);
            };
            let words: Vec<Option<String>> = q
                .parts
                .iter()
                .map(|p| {
                    p.strip_suffix('*')
                        .and_then(|w| w.strip_prefix('"'))
                        .and_then(|w| w.strip_suffix('"'))
                        .filter(|w| !w.contains(' '))
                        .map(str::to_lowercase)
                })
                .collect();
            let plain: Vec<String> = words.iter().flatten().cloned().collect();
            let mut counts =
                crate::sqlite::topk::doc_freqs(c, &plain, &self.shared.df, rows, tokens)?
                    .into_iter();
            Ok(words
                .iter()
                .map(|w| match w {
                    Some(_) => counts.next().map_or(0, |f| f.df as i64),
                    None => 0,
                })
                .collect())
        })?;
        let rarest = dfs.iter().copied().min().unwrap_or(0).max(1);
        let kept: Vec<String> = q
            .parts
            .iter()
            .zip(&dfs)
            .filter(|(_, df)| **df <= 500 || **df <= rarest * 8)
            .map(|(p, _)| p.clone())
            .collect();
        let all = fts::Compiled {
            main: Some(q.parts.join(" AND ")),
            ..q.clone()
        };
        // Memories holding every word: scored here when they are few (FTS5's bm25 would
        // first count every memory holding each common word), else ranked by FTS5.
        let scored = match crate::sqlite::topk::words(&q) {
            Some(words) => {
                let now = now_micros();
                let keep = in_scope(scopes, extra);
                let search = crate::sqlite::topk::TopK {
                    keep: &keep,
                    viewer: viewer(caller),
                    now,
                    snippets: false,
                    df: &self.shared.df,
                };
                self.read_conn(|c| search.all_words(c, &words, ALL_WORDS_SCORED))?
            }
            None => None,
        };
        self.save_counts();
        let mut hits = match scored {
            Some(found) => best_hits(found, limit, &q.terms),
            None => self.search_compiled(scopes, caller, extra, &all, limit, false)?,
        };
        if hits.len() < limit && kept.len() < q.parts.len() && !kept.is_empty() {
            let rare = fts::Compiled {
                main: Some(kept.join(" OR ")),
                ..q.clone()
            };
            let seen: std::collections::HashSet<String> =
                hits.iter().map(|h| h.path.clone()).collect();
            let more = self.search_compiled(scopes, caller, extra, &rare, limit, false)?;
            hits.extend(more.into_iter().filter(|h| !seen.contains(&h.path)));
        } else if hits.len() < limit {
            let seen: std::collections::HashSet<String> =
                hits.iter().map(|h| h.path.clone()).collect();
            let more = self.search_compiled(scopes, caller, extra, &q, limit, false)?;
            hits.extend(more.into_iter().filter(|h| !seen.contains(&h.path)));
        }
        hits.truncate(limit);
        Ok(hits)
    }

    fn search_compiled(
        &self,
        scopes: &[String],
        caller: &Caller,
        extra: avm_core::storage::Keep<'_>,
        q: &fts::Compiled,
        limit: usize,
        snippets: bool,
    ) -> Result<Vec<Hit>> {
        let now = now_micros();
        let keep = in_scope(scopes, extra);
        let vis = viewer(caller);
        let limit = limit.min(100_000);
        let mut window = (limit * 4).max(32);
        loop {
            // Candidates and their rows come from one snapshot.
            let (mut hits, exhausted) = self.read_conn(|c| {
                let mut scored: HashMap<i64, f64> = HashMap::new();
                let mut exhausted = true;
                for (table, m) in [("nodes_fts", &q.main), ("nodes_cjk", &q.cjk)] {
                    let Some(m) = m else { continue };
                    let rows: Vec<(i64, f64)> = c
                        .prepare_cached(&format!(
                            "SELECT rowid, -rank FROM {table} WHERE {table} MATCH ?1 ORDER BY rank LIMIT ?2"
                        ))?
                        .query_map(params![m, window as i64], |r| Ok((r.get(0)?, r.get(1)?)))?
                        .collect::<rusqlite::Result<_>>()?;
                    if rows.len() >= window {
                        exhausted = false;
                    }
                    for (id, score) in rows {
                        *scored.entry(id).or_insert(0.0) += score;
                    }
                }
                let mut ranked: Vec<(i64, f64)> = scored.into_iter().collect();
                ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
                let mut hits = Vec::new();
                let mut stmt = c.prepare_cached(&format!(
                    "SELECT path, {}, expires_at FROM nodes WHERE id = ?1 AND {}",
                    if snippets { "content" } else { "''" },
                    visible_sql("", 2)
                ))?;
                for (id, score) in &ranked {
                    if hits.len() >= limit {
                        break;
                    }
                    let row: Option<(String, String, Option<i64>)> = stmt
                        .query_row(params![id, vis], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                        .optional()?;
                    if let Some((path, content, expires)) = row
                        && expires.is_none_or(|t| t > now)
                        && keep(&path)
                    {
                        hits.push(Hit {
                            snippet: if snippets {
                                fts::snippet(&content, &q.terms)
                            } else {
                                String::new()
                            },
                            path,
                            score: *score,
                        });
                    }
                }
                Ok((hits, exhausted))
            })?;
            if hits.len() >= limit || exhausted {
                hits.sort_by(|a, b| {
                    b.score
                        .total_cmp(&a.score)
                        .then_with(|| a.path.cmp(&b.path))
                });
                return Ok(hits);
            }
            window = window.saturating_mul(8);
        }
    }

    /// The directory `dir` if it exists (something lies below it, or `mkdir` made it): its
    /// stored attributes, and how many subdirectories `caller` may see in it (its link count is
    /// 2 plus that). One read transaction; subdirectories are counted from `dir_attrs`, which
    /// has a row for every directory that exists.
    pub fn dir_info(&self, dir: &str, caller: &Caller) -> Result<Option<(Attrs, u64)>> {
        let (lo, hi) = subtree_bounds(dir);
        let now = now_micros();
        self.read_conn(|c| {
            let exists = dir == "/"
                || c.prepare_cached(
                    "SELECT 1 FROM nodes WHERE path >= ?1 AND path < ?2 AND (expires_at IS NULL OR expires_at > ?3) \
                     UNION ALL SELECT 1 FROM dirs WHERE path = ?4 OR (path >= ?1 AND path < ?2) LIMIT 1",
                )?
                .query_row(params![lo, hi, now, dir], |_| Ok(()))
                .optional()?
                .is_some();
            if !exists {
                return Ok(None);
            }
            let attrs = c
                .prepare_cached(
                    "SELECT mode, uid, gid, mtime_ns, ctime_ns, atime_ns FROM dir_attrs WHERE path = ?1",
                )?
                .query_row([dir], |r| {
                    Ok(Attrs {
                        mode: u32_at(r, 0)?,
                        uid: u32_at(r, 1)?,
                        gid: u32_at(r, 2)?,
                        mtime: r.get(3)?,
                        ctime: r.get(4)?,
                        atime: r.get(5)?,
                        nlink: None,
                    })
                })
                .optional()?
                .unwrap_or_default();
            let mut subdirs = 0u64;
            let mut stmt = c.prepare_cached(
                "SELECT path FROM dir_attrs WHERE path >= ?1 AND path < ?2 ORDER BY path",
            )?;
            let mut rows = stmt.query(params![lo, hi])?;
            while let Some(r) = rows.next()? {
                let p: String = r.get(0)?;
                let rest = &p[lo.len()..];
                if !rest.is_empty() && !rest.contains('/') && caller.may_see(&p) {
                    subdirs += 1;
                }
            }
            Ok(Some((attrs, subdirs)))
        })
    }

    /// Size and free space of the filesystem holding the database.
    pub fn capacity(&self) -> Result<avm_core::Capacity> {
        let dir = match self.shared.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let st = nix::sys::statvfs::statvfs(&dir).map_err(|e| {
            Error::new(
                ErrorKind::Unavailable,
                format!("cannot read the free space of {}: {e}", dir.display()),
            )
        })?;
        let unit = st.fragment_size();
        Ok(avm_core::Capacity {
            total: st.blocks().saturating_mul(unit),
            free: st.blocks_available().saturating_mul(unit),
        })
    }

    /// History of `path`, newest first.
    pub fn history(&self, path: &str, limit: usize) -> Result<Vec<VersionInfo>> {
        self.read_conn(|c| {
            c.prepare_cached(
                "SELECT version, kind, at, author, hash, length(CAST(content AS BLOB)), note FROM versions \
                 WHERE path = ?1 ORDER BY version DESC LIMIT ?2",
            )?
                        .query_map(params![path, limit as i64], info_row)?
            .collect()
        })
    }

    /// Content and info of `path` at `version`.
    pub fn version(&self, path: &str, version: i64) -> Result<Option<(VersionInfo, Content)>> {
        self.read_conn(|c| {
            c.prepare_cached(
                "SELECT version, kind, at, author, hash, length(CAST(content AS BLOB)), note, content FROM versions \
                 WHERE path = ?1 AND version = ?2",
            )?
            .query_row(params![path, version], version_row)
            .optional()
        })
    }

    /// The version of `path` in force at time `at`.
    pub fn version_at(&self, path: &str, at: Micros) -> Result<Option<(VersionInfo, Content)>> {
        self.read_conn(|c| {
            c.prepare_cached(
                "SELECT version, kind, at, author, hash, length(CAST(content AS BLOB)), note, content FROM versions \
                 WHERE path = ?1 AND at <= ?2 ORDER BY version DESC LIMIT 1",
            )?
            .query_row(params![path, at], version_row)
            .optional()
        })
    }

    /// Links from and to `path` that `caller` may see.
    pub fn links(&self, path: &str, caller: &Caller) -> Result<(Vec<Link>, Vec<Link>)> {
        // The far end of each link must be visible to the caller, by the same rule as the node
        // itself would be (a path with no node is judged by its path).
        let vis = viewer(caller);
        let rows: Vec<Link> = self.read_conn(|c| {
            c.prepare_cached(
                "SELECT l.source, l.target, l.kind, l.weight, l.created_at FROM links l \
                   LEFT JOIN nodes e ON e.path = l.target \
                   WHERE l.source = ?1 AND (e.expires_at IS NULL OR e.expires_at > ?2) \
                   AND avm_visible(l.target, e.author, e.meta, ?3) \
                 UNION ALL SELECT l.source, l.target, l.kind, l.weight, l.created_at FROM links l \
                   LEFT JOIN nodes e ON e.path = l.source \
                   WHERE l.target = ?1 AND (e.expires_at IS NULL OR e.expires_at > ?2) \
                   AND avm_visible(l.source, e.author, e.meta, ?3)",
            )?
            .query_map(params![path, now_micros(), vis], |r| {
                Ok(Link {
                    source: r.get(0)?,
                    target: r.get(1)?,
                    kind: r.get(2)?,
                    weight: r.get(3)?,
                    created_at: r.get(4)?,
                })
            })?
            .collect()
        })?;
        let (out, inc): (Vec<Link>, Vec<Link>) = rows
            .into_iter()
            .filter(|l| caller.may_see(&l.source) && caller.may_see(&l.target))
            .partition(|l| l.source == path);
        Ok((out, inc))
    }

    /// Tag counts below `dir` visible to `caller`, most used first.
    /// With `keep` (the caller's read rules, when any could refuse), only the nodes it keeps
    /// count.
    pub fn tag_counts(
        &self,
        dir: &str,
        caller: &Caller,
        keep: Option<avm_core::storage::Keep<'_>>,
    ) -> Result<Vec<(String, i64)>> {
        let (lo, hi) = subtree_bounds(dir);
        let vis = viewer(caller);
        let now = now_micros();
        if let Some(keep) = keep {
            let rows: Vec<(String, String)> = self.read_conn(|c| {
                c.prepare_cached(&format!(
                    "SELECT t.tag, n.path FROM node_tags t JOIN nodes n ON n.id = t.node_id \
                     WHERE n.path >= ?1 AND n.path < ?2 AND (n.expires_at IS NULL OR n.expires_at > ?3) AND {}",
                    visible_sql("n.", 4)
                ))?
                .query_map(params![lo, hi, now, vis], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect()
            })?;
            let mut counts: HashMap<String, i64> = HashMap::new();
            for (tag, path) in rows {
                if keep(&path) {
                    *counts.entry(tag).or_insert(0) += 1;
                }
            }
            let mut v: Vec<(String, i64)> = counts.into_iter().collect();
            v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            return Ok(v);
        }
        self.read_conn(|c| {
            c.prepare_cached(&format!(
                "SELECT t.tag, count(*) AS n FROM node_tags t JOIN nodes n ON n.id = t.node_id \
                 WHERE n.path >= ?1 AND n.path < ?2 AND (n.expires_at IS NULL OR n.expires_at > ?3) AND {} \
                 GROUP BY t.tag ORDER BY n DESC, t.tag",
                visible_sql("n.", 4)
            ))?
            .query_map(params![lo, hi, now, vis], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect()
        })
    }

    /// Counts for `avm stats` below `dir`; with `keep` (the caller's read rules, when any could
    /// refuse), only the nodes it keeps count.
    pub fn stats(
        &self,
        dir: &str,
        caller: &Caller,
        keep: Option<avm_core::storage::Keep<'_>>,
    ) -> Result<Value> {
        let (lo, hi) = subtree_bounds(dir);
        let vis = viewer(caller);
        let now = now_micros();
        // SQLite's substr/instr count characters, not bytes.
        let cut = lo.chars().count() as i64 + 1;
        // (nodes, bytes, per-top-level-directory (name, nodes, bytes)) the caller may read.
        type Counts = (i64, i64, Vec<(String, i64, i64)>);
        let counted = |c: &Connection| -> rusqlite::Result<Counts> {
            let Some(keep) = keep else {
                return Ok((0, 0, Vec::new()));
            };
            let rows: Vec<(String, i64)> = c
                .prepare_cached(&format!(
                    "SELECT path, length(CAST(content AS BLOB)) FROM nodes \
                     WHERE path >= ?1 AND path < ?2 AND (expires_at IS NULL OR expires_at > ?3) AND {} \
                     ORDER BY path",
                    visible_sql("", 4)
                ))?
                .query_map(params![lo, hi, now, vis], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?;
            let (mut nodes, mut bytes) = (0, 0);
            let mut by: Vec<(String, i64, i64)> = Vec::new();
            for (path, size) in rows.into_iter().filter(|(p, _)| keep(p)) {
                nodes += 1;
                bytes += size;
                let rest = &path[lo.len()..];
                let prefix = match rest.find('/') {
                    Some(i) => format!("{lo}{}", &rest[..i]),
                    None => path.clone(),
                };
                match by.last_mut() {
                    Some(last) if last.0 == prefix => {
                        last.1 += 1;
                        last.2 += size;
                    }
                    _ => by.push((prefix, 1, size)),
                }
            }
            Ok((nodes, bytes, by))
        };
        let (nodes, bytes, by_prefix) = self.read_conn(|c| {
            if keep.is_some() {
                return counted(c);
            }
            let (nodes, bytes): (i64, i64) = c.prepare_cached(&format!(
                "SELECT count(*), coalesce(sum(length(CAST(content AS BLOB))),0) FROM nodes \
                 WHERE path >= ?1 AND path < ?2 AND (expires_at IS NULL OR expires_at > ?3) AND {}",
                visible_sql("", 4)
            ))?
            .query_row(params![lo, hi, now, vis], |r| Ok((r.get(0)?, r.get(1)?)))?;
            let by: Vec<(String, i64, i64)> = c.prepare_cached(&format!(
                "SELECT CASE WHEN instr(substr(path, ?5), '/') > 0 \
                        THEN substr(path, 1, ?5 + instr(substr(path, ?5), '/') - 2) ELSE path END AS p, \
                        count(*), coalesce(sum(length(CAST(content AS BLOB))),0) FROM nodes \
                 WHERE path >= ?1 AND path < ?2 AND (expires_at IS NULL OR expires_at > ?3) AND {} GROUP BY p ORDER BY p",
                visible_sql("", 4)
            ))?
            .query_map(params![lo, hi, now, vis, cut], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?
            .collect::<rusqlite::Result<_>>()?;
            Ok((nodes, bytes, by))
        })?;
        let global = if caller.agent().is_none() && dir == "/" {
            let (versions, links, events, tags): (i64, i64, i64, i64) = self.read_conn(|c| {
                c.query_row(
                    "SELECT (SELECT count(*) FROM versions), (SELECT count(*) FROM links), \
                     (SELECT count(*) FROM events), (SELECT count(DISTINCT tag) FROM node_tags)",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                )
            })?;
            let file_bytes = std::fs::metadata(&self.shared.path)
                .map(|m| m.len())
                .unwrap_or(0);
            let wal_bytes = std::fs::metadata(format!("{}-wal", self.shared.path.display()))
                .map(|m| m.len())
                .unwrap_or(0);
            serde_json::json!({
                "database": self.shared.path.display().to_string(),
                "file_bytes": file_bytes,
                "wal_bytes": wal_bytes,
                "versions": versions,
                "links": links,
                "events": events,
                "distinct_tags": tags,
            })
        } else {
            Value::Null
        };
        let mut out = serde_json::json!({
            "path": dir,
            "nodes": nodes,
            "content_bytes": bytes,
            "by_prefix": by_prefix.iter().map(|(p, n, b)| serde_json::json!({"prefix": p, "nodes": n, "bytes": b})).collect::<Vec<_>>(),
        });
        if let (Value::Object(o), Value::Object(g)) = (&mut out, global) {
            o.extend(g);
        }
        Ok(out)
    }

    /// All versions of `path`, oldest first, with content (export).
    pub fn all_versions(&self, path: &str) -> Result<Vec<(VersionInfo, Content)>> {
        self.read_conn(|c| {
            c.prepare_cached(
                "SELECT version, kind, at, author, hash, length(CAST(content AS BLOB)), note, content FROM versions \
                 WHERE path = ?1 ORDER BY version",
            )?
            .query_map([path], version_row)?
            .collect()
        })
    }
}

/// `version, kind, at, author, hash, size, note` → [`VersionInfo`].
fn info_row(r: &Row<'_>) -> rusqlite::Result<VersionInfo> {
    Ok(VersionInfo {
        version: r.get(0)?,
        kind: r.get(1)?,
        at: r.get(2)?,
        author: r.get(3)?,
        hash: r.get(4)?,
        size: r.get(5)?,
        note: r.get(6)?,
    })
}

/// The same columns plus `content`.
fn version_row(r: &Row<'_>) -> rusqlite::Result<(VersionInfo, Content)> {
    Ok((info_row(r)?, content_at(r, 7)?))
}

impl crate::engine::Engine for Store {
    fn apply(&self, op: WriteOp) -> Result<Outcome> {
        Store::apply(self, op)
    }
    fn apply_many(&self, ops: Vec<WriteOp>) -> Vec<Result<Outcome>> {
        Store::apply_many(self, ops)
    }
    fn sync(&self) -> Result<()> {
        Store::sync(self)
    }
    fn get(&self, path: &str) -> Result<Option<Arc<Node>>> {
        Store::get(self, path)
    }
    fn peek(&self, path: &str) -> Result<Option<Arc<Node>>> {
        Store::peek(self, path)
    }
    fn expired_pending(&self, path: &str) -> Result<bool> {
        Store::expired_pending(self, path)
    }
    fn kind(&self, path: &str) -> Result<Option<NodeKind>> {
        Store::kind(self, path)
    }
    fn has_children(&self, dir: &str) -> Result<bool> {
        Store::has_children(self, dir)
    }
    fn children(
        &self,
        dir: &str,
        caller: &Caller,
        offset: usize,
        limit: Option<usize>,
    ) -> Result<Vec<ChildEntry>> {
        Store::children(self, dir, caller, offset, limit)
    }
    fn descendants(
        &self,
        dir: &str,
        caller: &Caller,
        offset: usize,
        limit: Option<usize>,
    ) -> Result<Vec<Arc<Node>>> {
        Store::descendants(self, dir, caller, offset, limit)
    }
    fn descendants_after(
        &self,
        dir: &str,
        caller: &Caller,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Arc<Node>>> {
        Store::descendants_after(self, dir, caller, after, limit)
    }
    fn dir_info(&self, dir: &str, caller: &Caller) -> Result<Option<(Attrs, u64)>> {
        Store::dir_info(self, dir, caller)
    }
    fn capacity(&self) -> Result<avm_core::Capacity> {
        Store::capacity(self)
    }
    fn usage(&self, dir: &str) -> Result<(u64, u64)> {
        Store::usage(self, dir)
    }
    fn mark_of(&self, agent: &str, path: &str) -> Result<i64> {
        Store::mark_of(self, agent, path)
    }
    fn search(&self, scope: &str, caller: &Caller, query: &str, limit: usize) -> Result<Vec<Hit>> {
        Store::search(self, scope, caller, query, limit)
    }
    fn search_within(
        &self,
        scopes: &[String],
        caller: &Caller,
        extra: avm_core::storage::Keep<'_>,
        query: &str,
        limit: usize,
        snippets: bool,
    ) -> Result<Vec<Hit>> {
        Store::search_within(self, scopes, caller, extra, query, limit, snippets)
    }
    fn history(&self, path: &str, limit: usize) -> Result<Vec<VersionInfo>> {
        Store::history(self, path, limit)
    }
    fn version(&self, path: &str, version: i64) -> Result<Option<(VersionInfo, Content)>> {
        Store::version(self, path, version)
    }
    fn version_at(&self, path: &str, at: Micros) -> Result<Option<(VersionInfo, Content)>> {
        Store::version_at(self, path, at)
    }
    fn all_versions(&self, path: &str) -> Result<Vec<(VersionInfo, Content)>> {
        Store::all_versions(self, path)
    }
    fn links(&self, path: &str, caller: &Caller) -> Result<(Vec<Link>, Vec<Link>)> {
        Store::links(self, path, caller)
    }
    fn tag_counts(
        &self,
        dir: &str,
        caller: &Caller,
        keep: Option<avm_core::storage::Keep<'_>>,
    ) -> Result<Vec<(String, i64)>> {
        Store::tag_counts(self, dir, caller, keep)
    }
    fn stats(
        &self,
        dir: &str,
        caller: &Caller,
        keep: Option<avm_core::storage::Keep<'_>>,
    ) -> Result<Value> {
        Store::stats(self, dir, caller, keep)
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        if let Ok(mut tx) = self.tx.lock() {
            tx.take();
        }
        if let Ok(mut w) = self.writer.lock()
            && let Some(h) = w.take()
        {
            let _ = h.join();
        }
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> Result<MutexGuard<'_, T>> {
    m.lock()
        .map_err(|_| Error::internal("a store lock was poisoned by a panicking thread"))
}

/// How often expired nodes are purged and access times flushed when the writer is idle.
const IDLE_TICK: Duration = Duration::from_millis(500);

/// How long the writer waits for more writers to join a group when writes are concurrent.
const GROUP_WINDOW: Duration = Duration::from_micros(200);

fn writer_loop(mut conn: Connection, rx: Receiver<Job>, shared: Arc<Shared>) {
    let mut last_purge = Instant::now() - Duration::from_secs(3600);
    let mut last_checkpoint = Instant::now();
    let mut last_group = 1usize;
    loop {
        let first = match rx.recv_timeout(IDLE_TICK) {
            Ok(j) => j,
            Err(RecvTimeoutError::Timeout) => {
                let _ = run_batch(&mut conn, &shared, Vec::new(), &mut last_purge);
                if last_checkpoint.elapsed() >= IDLE_TICK {
                    last_checkpoint = Instant::now();
                    checkpoint(&conn);
                }
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => {
                let _ = run_batch(&mut conn, &shared, Vec::new(), &mut last_purge);
                let wal = std::fs::metadata(format!("{}-wal", shared.path.display()))
                    .map(|m| m.len())
                    .unwrap_or(0);
                // Short-lived processes never run the background checkpointer long enough.
                if wal > db::WAL_LIMIT {
                    checkpoint(&conn);
                }
                return;
            }
        };
        let mut jobs = vec![first];
        let max = shared.opts.group_commit_max.max(1);
        let mut count = 1;
        // When the last group had company, give the other writers a moment to join this one:
        // one commit for many writes is what makes concurrent writers fast.
        let window = if last_group > 1 {
            GROUP_WINDOW
        } else {
            Duration::ZERO
        };
        let opened = Instant::now();
        while count < max {
            match rx.try_recv() {
                Ok(j) => {
                    count += match &j {
                        Job::Batch(ops, _) => ops.len(),
                        _ => 1,
                    };
                    jobs.push(j);
                }
                Err(_) if count < last_group && opened.elapsed() < window => {
                    std::thread::yield_now()
                }
                Err(_) => break,
            }
        }
        last_group = count;
        let _ = run_batch(&mut conn, &shared, jobs, &mut last_purge);
        // Checkpoint between batches, not inside a commit, so no writer waits on it.
        if last_checkpoint.elapsed() >= Duration::from_millis(250) {
            last_checkpoint = Instant::now();
            checkpoint(&conn);
        }
    }
}

/// Copies committed WAL frames into the database without blocking readers or writers.
fn checkpoint(conn: &Connection) {
    let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
}

enum TxnError {
    /// An operation failed; the transaction was rolled back.
    Op(Error),
    /// The transaction itself could not begin or commit.
    Db(Error),
}

/// Runs `ops` in one transaction; any failure rolls all of them back.
fn txn(
    conn: &Connection,
    shared: &Shared,
    ops: &[&WriteOp],
    touches: &HashMap<i64, (String, Micros)>,
    purge: bool,
    invalid: &mut Vec<String>,
) -> std::result::Result<Vec<Outcome>, TxnError> {
    let file = &shared.file;
    db::retry_busy(shared.opts.busy_timeout, || {
        conn.execute_batch("BEGIN IMMEDIATE")
    })
    .map_err(|e| TxnError::Db(file.err(e)))?;
    let mut changed = Vec::new();
    if purge && let Ok(paths) = write::purge_expired(conn, file) {
        changed.extend(paths);
    }
    let ctx = write::Ctx {
        file,
        max_bytes: shared.opts.max_node_bytes,
    };
    let mut outs = Vec::with_capacity(ops.len());
    for op in ops {
        match write::apply(conn, &ctx, op) {
            Ok(o) => {
                changed.extend(o.changed.iter().cloned());
                outs.push(o);
            }
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                return Err(TxnError::Op(e));
            }
        }
    }
    write::flush_touches(conn, touches);
    if let Err(e) = db::retry_busy(shared.opts.busy_timeout, || conn.execute_batch("COMMIT")) {
        let _ = conn.execute_batch("ROLLBACK");
        return Err(TxnError::Db(file.err(e)));
    }
    invalid.extend(changed);
    Ok(outs)
}

/// Commits one group of jobs in a single transaction (group commit). If one operation
/// fails, the group is rolled back and each operation is retried in a transaction of its
/// own, so one failure never undoes the others. (Savepoints would give the same isolation,
/// but FTS5 flushes its index at every savepoint, which costs more than the rare retry.)
fn run_batch(
    conn: &mut Connection,
    shared: &Shared,
    jobs: Vec<Job>,
    last_purge: &mut Instant,
) -> Result<()> {
    let touches: HashMap<i64, (String, Micros)> = match shared.touches.lock() {
        Ok(mut t) => std::mem::take(&mut *t),
        Err(_) => HashMap::new(),
    };
    // Look for expired nodes at most once a second.
    let purge = if last_purge.elapsed() >= Duration::from_secs(1) {
        *last_purge = Instant::now();
        write::has_expired(conn)
    } else {
        false
    };
    let deferred: Vec<WriteOp> = match shared.deferred.lock() {
        Ok(mut d) => std::mem::take(&mut *d),
        Err(_) => Vec::new(),
    };
    // Deferred writes go first; their results are nobody's and are dropped below.
    let ops: Vec<&WriteOp> = deferred
        .iter()
        .chain(jobs.iter().flat_map(|j| match j {
            Job::Op(op, _) => vec![op.as_ref()],
            Job::Batch(ops, _) => ops.iter().collect(),
            Job::Sync(_) => vec![],
        }))
        .collect();
    let mut invalid: Vec<String> = Vec::new();
    let mut results: Vec<Result<Outcome>> = Vec::with_capacity(ops.len());
    let mut touched = false;
    if !ops.is_empty() || !touches.is_empty() || purge {
        match txn(conn, shared, &ops, &touches, purge, &mut invalid) {
            Ok(outs) => {
                touched = true;
                results.extend(outs.into_iter().map(Ok));
            }
            Err(TxnError::Db(e)) => results.extend(ops.iter().map(|_| Err(e.clone()))),
            Err(TxnError::Op(_)) => {
                let none = HashMap::new();
                if !touches.is_empty() || purge {
                    touched = txn(conn, shared, &[], &touches, purge, &mut invalid).is_ok();
                }
                for op in &ops {
                    results.push(
                        match txn(conn, shared, &[*op], &none, false, &mut invalid) {
                            Ok(mut o) => o.pop().ok_or_else(|| Error::internal("missing result")),
                            Err(TxnError::Op(e) | TxnError::Db(e)) => Err(e),
                        },
                    );
                }
            }
        }
    }
    if let Ok(mut cache) = shared.cache.lock() {
        for p in &invalid {
            cache.invalidate(p);
        }
        if touched {
            for (p, at) in touches.values() {
                if let Some(n) = cache.map.get_mut(p) {
                    Arc::make_mut(n).accessed_at = Some(*at);
                }
            }
        }
    }
    let mut results = results.into_iter().skip(deferred.len());
    for j in jobs {
        match j {
            Job::Op(_, reply) => {
                let r = results
                    .next()
                    .unwrap_or_else(|| Err(Error::internal("missing result")));
                let _ = reply.send(r);
            }
            Job::Batch(ops, reply) => {
                let rs: Vec<Result<Outcome>> = ops
                    .iter()
                    .map(|_| {
                        results
                            .next()
                            .unwrap_or_else(|| Err(Error::internal("missing result")))
                    })
                    .collect();
                let _ = reply.send(rs);
            }
            Job::Sync(reply) => {
                let _ = reply.send(());
            }
        }
    }
    Ok(())
}
