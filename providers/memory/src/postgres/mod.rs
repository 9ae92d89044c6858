//! The PostgreSQL engine: the store that many hosts share.
//!
//! Same semantics as the SQLite engine ([`crate::sqlite`]), checked by the same contract
//! ([`crate::contract`]) and the memory provider's tests. How it differs inside:
//! - **Writes** run in transactions that first take one transaction-level advisory lock
//!   (`avm:memory:write`): writers across every host take turns, as SQLite's single writer
//!   does, so a path's versions are 1..n without gaps or repeats and event sequence numbers
//!   are in commit order (a follower reading `seq > n` never passes over a later commit).
//!   Reads never wait for it. [`Engine::apply_many`] commits a batch together (group commit),
//!   each write in its own savepoint so one refused write does not undo the others.
//! - **Change notification**: each committed write sends `NOTIFY avm_events` with its last
//!   sequence number; followers on other hosts wake on it and read the events table.
//! - **Full text** is a `tsvector` of avm's own tokens ([`search`]); **visibility** is the
//!   SQL function `avm_visible`, applied inside every query that lists or searches.
//! - No hot cache: every read asks the server, so every host reads what any host committed.

use std::cell::Cell;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use avm_postgres::{Queries, Tx};
use serde_json::{Map, Value};

use avm_core::time::now_micros;
use avm_core::{Attrs, Caller, Content, Error, NodeKind, Result};
use avm_postgres::{Failure, Pg, PgOptions};

use crate::node::Node;

pub mod fts;
mod reads;
pub mod schema;
mod seam;
mod search;
mod services;
mod write;

/// The advisory lock every write transaction takes first.
const WRITE_LOCK: &str = "avm:memory:write";

/// The channel each committed write notifies, with its newest event's sequence number.
pub const EVENTS_CHANNEL: &str = "avm_events";

/// Tuning of the PostgreSQL engine (from `[store]` in config).
#[derive(Debug, Clone)]
pub struct PgStoreOptions {
    /// Connections this process keeps.
    pub max_connections: u32,
    /// How long to wait for the server.
    pub connect_timeout: Duration,
    /// Largest node content in bytes.
    pub max_node_bytes: u64,
}

impl Default for PgStoreOptions {
    fn default() -> Self {
        PgStoreOptions {
            max_connections: 16,
            connect_timeout: Duration::from_secs(10),
            max_node_bytes: avm_core::config::DEFAULT_MAX_NODE_BYTES,
        }
    }
}

/// The memory store in a PostgreSQL database.
#[derive(Debug, Clone)]
pub struct PgStore {
    pub(crate) pg: Pg,
    pub(crate) opts: PgStoreOptions,
    /// What this process keeps between calls.
    pub(crate) state: Arc<State>,
}

/// Per-process bookkeeping of a [`PgStore`].
#[derive(Debug)]
pub(crate) struct State {
    /// When expired nodes were last purged by this process.
    pub(crate) last_purge: Mutex<Instant>,
}

impl PgStore {
    /// Connects to `url`, creating or upgrading the tables (safe when several hosts start at
    /// once).
    pub fn open(url: &str, opts: PgStoreOptions) -> Result<PgStore> {
        let pg = Pg::shared(
            url,
            PgOptions {
                max_connections: opts.max_connections,
                connect_timeout: opts.connect_timeout,
                ..PgOptions::default()
            },
        )?;
        avm_postgres::migrate(&pg, schema::COMPONENT, schema::MIGRATIONS)?;
        let long_ago = Instant::now()
            .checked_sub(Duration::from_secs(3600))
            .unwrap_or_else(Instant::now);
        Ok(PgStore {
            pg,
            opts,
            state: Arc::new(State {
                last_purge: Mutex::new(long_ago),
            }),
        })
    }

    /// The server and database, for messages (never the password).
    pub fn target(&self) -> &str {
        self.pg.target()
    }

    /// The connection pool.
    pub fn pg(&self) -> &Pg {
        &self.pg
    }

    /// PostgreSQL's error as avm's, naming the server.
    pub(crate) fn err(&self, e: postgres::Error) -> Error {
        self.pg.err(e)
    }

    /// Runs `f` on a pooled connection (reads).
    pub(crate) fn read<T>(
        &self,
        f: impl FnOnce(&mut avm_postgres::Client) -> std::result::Result<T, postgres::Error>,
    ) -> Result<T> {
        let mut c = self.pg.conn()?;
        f(&mut c).map_err(|e| self.err(e))
    }

    /// Runs `f` in a write transaction: the write lock first, then `f`, then a notification
    /// of the newest event if `f` wrote any, then the commit. Retried whole on a
    /// serialization failure; `f` must do nothing outside the transaction.
    pub(crate) fn write<T>(
        &self,
        mut f: impl FnMut(&mut Tx<'_>, &Ctx<'_>) -> Result<T>,
    ) -> Result<T> {
        self.pg.transaction(|tx| {
            avm_postgres::lock_log(tx, WRITE_LOCK)?;
            let ctx = Ctx {
                store: self,
                last_event: Cell::new(0),
            };
            let v = f(tx, &ctx).map_err(Failure::Refused)?;
            let last = ctx.last_event.get();
            if last > 0 {
                avm_postgres::notify(tx, EVENTS_CHANNEL, &last.to_string())?;
            }
            Ok(v)
        })
    }
}

/// What the write ops need besides the transaction.
pub struct Ctx<'a> {
    /// The store (options, error mapping).
    pub store: &'a PgStore,
    /// The newest event this transaction wrote (0: none yet).
    last_event: Cell<i64>,
}

impl Ctx<'_> {
    /// PostgreSQL's error as avm's.
    pub fn err(&self, e: postgres::Error) -> Error {
        self.store.err(e)
    }

    /// `max_node_bytes`.
    pub fn max_bytes(&self) -> u64 {
        self.store.opts.max_node_bytes
    }
}

/// Appends one row to the ordered change stream (inside a write transaction, which holds
/// the write lock).
pub(crate) fn event(
    tx: &mut Tx<'_>,
    ctx: &Ctx<'_>,
    kind: &str,
    path: &str,
    agent: Option<&str>,
    version: Option<i64>,
    detail: Option<&str>,
) -> Result<()> {
    let seq: i64 = tx
        .query_one(
            "INSERT INTO events(at, kind, path, agent, version, detail) VALUES ($1, $2, $3, $4, $5, $6) RETURNING seq",
            &[&now_micros(), &kind, &path, &agent, &version, &detail],
        )
        .and_then(|r| r.try_get(0))
        .map_err(|e| ctx.err(e))?;
    ctx.last_event.set(seq);
    Ok(())
}

/// The node columns [`node_from_row`] reads, in its order (`nodes` unaliased).
pub(crate) const NODE_COLS: &str = "id, path, content, bytes, meta, tags, importance, author, created_at, updated_at, (SELECT at FROM access WHERE node_id = nodes.id), version, hash, expires_at, ftype, mode, uid, gid, mtime_ns, ctime_ns, atime_ns";

fn u32_at(r: &postgres::Row, i: usize) -> std::result::Result<Option<u32>, postgres::Error> {
    Ok(r.try_get::<_, Option<i64>>(i)?
        .and_then(|v| u32::try_from(v).ok()))
}

/// Text or bytes from a `content, bytes` column pair starting at `i`.
pub(crate) fn content_at(
    r: &postgres::Row,
    i: usize,
) -> std::result::Result<Content, postgres::Error> {
    Ok(match r.try_get::<_, Option<String>>(i)? {
        Some(t) => Content::Text(t),
        None => Content::Bytes(r.try_get::<_, Option<Vec<u8>>>(i + 1)?.unwrap_or_default()),
    })
}

/// The `content, bytes` parameters for `c` (one of them NULL).
pub(crate) fn content_params(c: &Content) -> (Option<&str>, Option<&[u8]>) {
    match c {
        Content::Text(t) => (Some(t.as_str()), None),
        Content::Bytes(b) => (None, Some(b.as_slice())),
    }
}

/// A node from a row of [`NODE_COLS`].
pub(crate) fn node_from_row(r: &postgres::Row) -> std::result::Result<Node, postgres::Error> {
    let meta: Value = r.try_get(4)?;
    let tags: Value = r.try_get(5)?;
    let ftype: Option<String> = r.try_get(14)?;
    Ok(Node {
        id: r.try_get(0)?,
        path: r.try_get(1)?,
        content: content_at(r, 2)?,
        kind: if ftype.as_deref() == Some("symlink") {
            NodeKind::Symlink
        } else {
            NodeKind::File
        },
        attrs: Attrs {
            mode: u32_at(r, 15)?,
            uid: u32_at(r, 16)?,
            gid: u32_at(r, 17)?,
            mtime: r.try_get(18)?,
            ctime: r.try_get(19)?,
            atime: r.try_get(20)?,
            nlink: None,
        },
        meta: match meta {
            Value::Object(m) => m,
            _ => Map::new(),
        },
        tags: serde_json::from_value(tags).unwrap_or_default(),
        importance: r.try_get(6)?,
        author: r.try_get(7)?,
        created_at: r.try_get(8)?,
        updated_at: r.try_get(9)?,
        accessed_at: r.try_get(10)?,
        version: r.try_get(11)?,
        hash: r.try_get(12)?,
        expires_at: r.try_get(13)?,
    })
}

/// The agent a visibility filter is for (`None`: the operator, who sees everything).
pub(crate) fn viewer(caller: &Caller) -> Option<String> {
    caller.agent().map(str::to_string)
}

/// The SQL condition that keeps the `nodes` rows (columns prefixed with `t`, such as `n.`)
/// the [`viewer`] bound at parameter `$n` may see: [`avm_core::provider::visible_to`] as
/// the SQL function `avm_visible`.
pub(crate) fn visible_sql(t: &str, n: usize) -> String {
    format!("avm_visible({t}path, {t}author, {t}meta, ${n}::text)")
}

/// `[lo, hi)` bounds covering every path strictly inside `dir` (paths compare bytewise, as
/// `COLLATE "C"` makes them here).
pub(crate) use crate::sqlite::store::subtree_bounds;
