//! Opening connections, the schema, and mapping SQLite errors onto avm's vocabulary.

use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;

pub use avm_sqlite::{DbFile, retry_busy};

use avm_core::{Error, ErrorKind, Result};

/// Schema version stored in `PRAGMA user_version`.
pub const SCHEMA_VERSION: i64 = 7;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS nodes(
  id          INTEGER PRIMARY KEY,
  path        TEXT    NOT NULL UNIQUE,
  content     TEXT    NOT NULL,
  meta        TEXT    NOT NULL DEFAULT '{}',
  tags        TEXT    NOT NULL DEFAULT '[]',
  importance  REAL    NOT NULL DEFAULT 0.5,
  author      TEXT,
  created_at  INTEGER NOT NULL,
  updated_at  INTEGER NOT NULL,
  version     INTEGER NOT NULL,
  hash        TEXT    NOT NULL,
  expires_at  INTEGER
);
CREATE INDEX IF NOT EXISTS nodes_expires ON nodes(expires_at) WHERE expires_at IS NOT NULL;
-- Read times live apart from nodes: recording a read rewrites a 16-byte row here instead of
-- the node's page, so reading never churns the pages readers need.
CREATE TABLE IF NOT EXISTS access(
  node_id INTEGER PRIMARY KEY,
  at      INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS node_tags(
  tag     TEXT    NOT NULL,
  node_id INTEGER NOT NULL,
  PRIMARY KEY(tag, node_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS node_tags_node ON node_tags(node_id);
-- Rows are appended in time order (cheap inserts); the unique index finds a path's history.
CREATE TABLE IF NOT EXISTS versions(
  id      INTEGER PRIMARY KEY,
  path    TEXT    NOT NULL,
  version INTEGER NOT NULL,
  kind    TEXT    NOT NULL,
  content TEXT    NOT NULL,
  hash    TEXT    NOT NULL,
  author  TEXT,
  at      INTEGER NOT NULL,
  note    TEXT,
  UNIQUE(path, version)
);
CREATE TABLE IF NOT EXISTS links(
  source     TEXT    NOT NULL,
  target     TEXT    NOT NULL,
  kind       TEXT    NOT NULL,
  weight     REAL    NOT NULL DEFAULT 1.0,
  created_at INTEGER NOT NULL,
  PRIMARY KEY(source, target, kind)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS links_target ON links(target);
CREATE TABLE IF NOT EXISTS events(
  seq     INTEGER PRIMARY KEY AUTOINCREMENT,
  at      INTEGER NOT NULL,
  kind    TEXT    NOT NULL,
  path    TEXT    NOT NULL,
  agent   TEXT,
  version INTEGER,
  detail  TEXT
);
CREATE VIRTUAL TABLE IF NOT EXISTS nodes_fts USING fts5(
  content, content='nodes', content_rowid='id', tokenize='unicode61 remove_diacritics 2'
);
CREATE VIRTUAL TABLE IF NOT EXISTS nodes_cjk USING fts5(
  uni, bi, content='', contentless_delete=1, tokenize='unicode61'
);
-- Schema 2: agent memory services.
CREATE VIRTUAL TABLE IF NOT EXISTS nodes_fts_vocab USING fts5vocab(nodes_fts, 'row');
CREATE INDEX IF NOT EXISTS nodes_updated ON nodes(updated_at);
CREATE INDEX IF NOT EXISTS nodes_hash ON nodes(hash);
CREATE INDEX IF NOT EXISTS nodes_remember ON nodes(json_extract(meta, '$.remember_hash'));
-- Topic index: postings keyed by node id, so moves carry them and hard deletes drop them.
CREATE TABLE IF NOT EXISTS topics(
  topic   TEXT    NOT NULL,
  node_id INTEGER NOT NULL,
  weight  REAL    NOT NULL,
  PRIMARY KEY(topic, node_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS topics_node ON topics(node_id);
CREATE INDEX IF NOT EXISTS topics_weight ON topics(topic, weight DESC, node_id);
-- The node state (hash:path) each node's topics were extracted from.
CREATE TABLE IF NOT EXISTS topic_docs(
  node_id   INTEGER PRIMARY KEY,
  signature TEXT    NOT NULL
);
CREATE TRIGGER IF NOT EXISTS nodes_drop_topics AFTER DELETE ON nodes BEGIN
  DELETE FROM topics WHERE node_id = old.id;
  DELETE FROM topic_docs WHERE node_id = old.id;
END;
-- Cursors of workers that consume the events table.
CREATE TABLE IF NOT EXISTS cursors(
  name  TEXT    PRIMARY KEY,
  seq   INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS telemetry(
  id               INTEGER PRIMARY KEY,
  at               INTEGER NOT NULL,
  op               TEXT    NOT NULL,
  agent            TEXT,
  query            TEXT,
  tokens_returned  INTEGER NOT NULL,
  tokens_available INTEGER NOT NULL,
  results          INTEGER NOT NULL,
  latency_us       INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS telemetry_agent ON telemetry(agent, at);
-- Schema 3: directories made empty on purpose (mkdir), per-agent read markers, messages.
CREATE TABLE IF NOT EXISTS dirs(
  path TEXT PRIMARY KEY
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS marks(
  agent   TEXT    NOT NULL,
  node_id INTEGER NOT NULL,
  version INTEGER NOT NULL,
  PRIMARY KEY(agent, node_id)
) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS nodes_drop_marks AFTER DELETE ON nodes BEGIN
  DELETE FROM marks WHERE node_id = old.id;
END;
CREATE TABLE IF NOT EXISTS tells(
  id         INTEGER PRIMARY KEY,
  sender     TEXT    NOT NULL,
  recipient  TEXT    NOT NULL,
  content    TEXT    NOT NULL,
  priority   TEXT    NOT NULL,
  created_at INTEGER NOT NULL,
  expires_at INTEGER
);
CREATE INDEX IF NOT EXISTS tells_recipient ON tells(recipient, created_at);
-- Read state per recipient, so one agent reading a broadcast never reads it for the others.
-- Schema 4: vectors (one per node, of one model), dropped with their node.
CREATE TABLE IF NOT EXISTS vectors(
  node_id INTEGER PRIMARY KEY,
  model   TEXT    NOT NULL,
  hash    TEXT    NOT NULL,
  vec     BLOB    NOT NULL,
  stamp   INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS vectors_stamp ON vectors(model, stamp);
INSERT OR IGNORE INTO cursors(name, seq) VALUES ('vectors_deleted', 0);
CREATE TRIGGER IF NOT EXISTS nodes_drop_vectors AFTER DELETE ON nodes BEGIN
  UPDATE cursors SET seq = seq + 1
    WHERE name = 'vectors_deleted' AND EXISTS (SELECT 1 FROM vectors WHERE node_id = old.id);
  DELETE FROM vectors WHERE node_id = old.id;
END;
-- Schema 5 (the mount as a real filesystem): attributes of directories. A row never makes a
-- directory exist; it goes when the directory does.
CREATE TABLE IF NOT EXISTS dir_attrs(
  path     TEXT PRIMARY KEY,
  mode     INTEGER,
  uid      INTEGER,
  gid      INTEGER,
  mtime_ns INTEGER,
  ctime_ns INTEGER,
  atime_ns INTEGER
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tell_reads(
  tell_id INTEGER NOT NULL,
  agent   TEXT    NOT NULL,
  at      INTEGER NOT NULL,
  PRIMARY KEY(tell_id, agent)
) WITHOUT ROWID;
-- Schema 7: document counts of common search words, with the index's size when counted, so
-- that a new process does not read a common word's every posting to count them (a cache:
-- any row may go; `crate::sqlite::topk::DfCache` says when one is too old to use).
CREATE TABLE IF NOT EXISTS term_df(
  term   TEXT    PRIMARY KEY,
  doc    INTEGER NOT NULL,
  whole  INTEGER NOT NULL,
  rows   INTEGER NOT NULL,
  tokens INTEGER NOT NULL
) WITHOUT ROWID;
"#;

/// Columns schema 5 adds to `nodes`: the node type (`NULL` for a file, `symlink`), and the
/// filesystem attributes the mount shows (times in nanoseconds; mtime and ctime start as
/// `updated_at` for nodes written before).
const NODE_COLUMNS_5: &[(&str, &str)] = &[
    ("ftype", "TEXT"),
    ("mode", "INTEGER"),
    ("uid", "INTEGER"),
    ("gid", "INTEGER"),
    ("mtime_ns", "INTEGER"),
    ("ctime_ns", "INTEGER"),
    ("atime_ns", "INTEGER"),
];

/// Schema 6: the full-text indexes hold [`crate::fts::indexed_text`] (no time-stamp lines),
/// so a database indexed by an older avm has them rebuilt from its nodes, once.
fn migrate_6(conn: &Connection, from: i64) -> rusqlite::Result<()> {
    if from == 0 || from >= 6 {
        return Ok(());
    }
    conn.execute_batch(
        "INSERT INTO nodes_fts(nodes_fts) VALUES('delete-all'); DELETE FROM nodes_cjk;",
    )?;
    let mut rows = conn.prepare(
        "SELECT id, CASE WHEN coalesce(ftype, '') <> 'symlink' AND typeof(content) = 'text' \
         THEN content ELSE '' END FROM nodes",
    )?;
    let mut add = conn.prepare("INSERT INTO nodes_fts(rowid, content) VALUES (?1, ?2)")?;
    let mut cjk = conn.prepare("INSERT INTO nodes_cjk(rowid, uni, bi) VALUES (?1, ?2, ?3)")?;
    let mut it = rows.query([])?;
    while let Some(r) = it.next()? {
        let id: i64 = r.get(0)?;
        let content: String = r.get(1)?;
        let text = crate::fts::indexed_text(&content);
        add.execute(rusqlite::params![id, text.as_ref()])?;
        if let Some((uni, bi)) = crate::fts::cjk_document(&text) {
            cjk.execute(rusqlite::params![id, uni, bi])?;
        }
    }
    Ok(())
}

/// Adds the schema-5 columns that `nodes` lacks and fills the times of existing nodes.
fn migrate_5(conn: &Connection) -> rusqlite::Result<()> {
    let have: Vec<String> = conn
        .prepare("SELECT name FROM pragma_table_info('nodes')")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for (name, ty) in NODE_COLUMNS_5 {
        if !have.iter().any(|h| h == name) {
            conn.execute_batch(&format!("ALTER TABLE nodes ADD COLUMN {name} {ty}"))?;
        }
    }
    conn.execute_batch(
        "UPDATE nodes SET mtime_ns = updated_at * 1000 WHERE mtime_ns IS NULL; \
         UPDATE nodes SET ctime_ns = updated_at * 1000 WHERE ctime_ns IS NULL;",
    )?;
    // Every directory that exists gets its attribute row (link counts count these rows).
    let mut dirs: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    let paths: Vec<String> = conn
        .prepare("SELECT path FROM nodes UNION ALL SELECT path || '/.' FROM dirs")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for p in &paths {
        let mut cur = p.as_str();
        while let Some(i) = cur.rfind('/') {
            cur = if i == 0 { "/" } else { &cur[..i] };
            if !dirs.insert(cur.to_string()) || cur == "/" {
                break;
            }
        }
    }
    let now = avm_core::time::now_nanos();
    let mut ins = conn
        .prepare("INSERT OR IGNORE INTO dir_attrs(path, mtime_ns, ctime_ns) VALUES (?1, ?2, ?2)")?;
    for d in &dirs {
        ins.execute(rusqlite::params![d, now])?;
    }
    Ok(())
}

/// The database file as avm opens it: named "database" in messages, with what to do when
/// it is damaged and which setting raises the busy timeout.
pub fn file(path: &Path, busy: Duration, synchronous: &str) -> DbFile {
    DbFile::new(path, "database")
        .if_damaged("move it aside and restore a backup or `avm import` an export")
        .busy(busy, Some("retry, or raise store.busy_timeout_ms"))
        .synchronous(synchronous)
}

/// Registers `avm_visible(path, author, meta, agent)`: 1 when `agent` (NULL for the operator)
/// may see the node, by [`avm_core::provider::visible_to`] — the same rule the host applies,
/// so every query that filters with it filters exactly as the front ends check.
fn register_visibility(conn: &Connection) -> rusqlite::Result<()> {
    use rusqlite::functions::FunctionFlags;
    conn.create_scalar_function(
        "avm_visible",
        4,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        |ctx| {
            let Some(agent) = ctx.get_raw(3).as_str_or_null()? else {
                return Ok(true);
            };
            let path = ctx.get_raw(0).as_str()?;
            let author = ctx.get_raw(1).as_str_or_null()?;
            let meta = ctx.get_raw(2).as_str_or_null()?.unwrap_or("");
            // Most nodes are shared with everyone: parse metadata only when it says otherwise.
            let shared = if meta.contains("\"shared_with\"") {
                serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(meta)
                    .map(|m| avm_core::provider::shared_with(&m))
                    .unwrap_or_default()
            } else {
                Vec::new()
            };
            Ok(avm_core::provider::visible(
                Some(agent),
                path,
                author,
                &shared,
            ))
        },
    )
}

/// The WAL file size a write that restarts the WAL truncates it to, and past which a closing
/// store checkpoints. Equal, so the file's size tracks the frames not yet checkpointed: with a
/// larger limit a WAL once grown past the threshold stayed that size, and every short-lived
/// process paid a checkpoint (with fsyncs) on exit.
pub(crate) const WAL_LIMIT: u64 = 4 << 20;

/// Opens a connection with the memory store's pragmas (on top of [`DbFile`]'s: private file,
/// WAL, busy timeout, synchronous).
pub fn open(file: &DbFile, read_only: bool) -> Result<Connection> {
    let err = |e| file.err(e);
    let conn = if read_only {
        file.open_read_only()?
    } else {
        file.open()?
    };
    register_visibility(&conn).map_err(err)?;
    conn.set_prepared_statement_cache_capacity(64);
    // Without this, SQLite re-plans a cached statement whenever a bound value changes (its
    // partial-index and LIMIT checks peek at parameters), which made every write and cold
    // read pay a full parse.
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )
    .map_err(err)?;
    // The last connection to close would checkpoint the whole WAL (with fsyncs) however small
    // it is: a one-shot CLI command paid for it on every exit. The writer checkpoints instead,
    // between commits and when it closes with a large WAL ([`WAL_LIMIT`]).
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
        true,
    )
    .map_err(err)?;
    // Checkpoints run between group commits (see the writer), never inside one.
    conn.execute_batch(&format!(
        "PRAGMA wal_autocheckpoint=0; PRAGMA journal_size_limit={WAL_LIMIT}; PRAGMA temp_store=MEMORY; PRAGMA cache_size=-16384; PRAGMA mmap_size=2147418112;"
    ))
    .map_err(err)?;
    Ok(conn)
}

/// Creates or checks the schema (idempotent; safe with many processes starting at once).
pub fn init_schema(conn: &Connection, file: &DbFile) -> Result<()> {
    let (path, busy) = (file.path(), file.busy_timeout());
    let err = |e| file.err(e);
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(err)?;
    if version == SCHEMA_VERSION {
        return Ok(());
    }
    if version > SCHEMA_VERSION {
        return Err(Error::new(
            ErrorKind::Unavailable,
            format!(
                "database {} has schema version {version}, newer than this avm understands ({SCHEMA_VERSION}); upgrade avm",
                path.display()
            ),
        ));
    }
    let foreign: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type='table' \
             AND name NOT IN ('nodes','access','node_tags','versions','links','events','topics','topic_docs','cursors','telemetry','dirs','marks','tells','tell_reads','vectors','dir_attrs','term_df') \
             AND name NOT LIKE 'nodes_fts%' AND name NOT LIKE 'nodes_cjk%' AND name NOT LIKE 'sqlite_%'",
            [],
            |r| r.get(0),
        )
        .map_err(err)?;
    if foreign > 0 {
        return Err(Error::new(
            ErrorKind::Unavailable,
            format!(
                "{} is a SQLite database of some other program, not an avm database; pass --db with another file",
                path.display()
            ),
        ));
    }
    retry_busy(busy, || {
        conn.execute_batch("BEGIN IMMEDIATE")?;
        // Another process may have migrated while this one waited for the lock.
        let now: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if now == SCHEMA_VERSION {
            return conn.execute_batch("COMMIT");
        }
        let r = conn
            .execute_batch(SCHEMA)
            .and_then(|_| migrate_5(conn))
            .and_then(|_| migrate_6(conn, now))
            .and_then(|_| conn.execute_batch(&format!("PRAGMA user_version={SCHEMA_VERSION}")));
        match r {
            Ok(()) => conn.execute_batch("COMMIT"),
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                Err(e)
            }
        }
    })
    .map_err(err)
}
