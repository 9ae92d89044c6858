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

mod history;
mod seam;
mod search;
mod writer;

pub(crate) use writer::lock;
use writer::writer_loop;

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
}
