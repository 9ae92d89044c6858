//! The index state in its own SQLite file: one row per index, one per tracked file.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};

use avm_sqlite::DbFile;

use avm_core::{Error, ErrorKind, Result};

use crate::lang::Signature;

/// Schema version stored in `PRAGMA user_version`.
const SCHEMA_VERSION: i64 = 1;

/// How long to wait for another process's write (a scan in another avm) before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS indexes(
  name        TEXT    PRIMARY KEY,
  root        TEXT    NOT NULL,
  description TEXT    NOT NULL DEFAULT '',
  created_at  INTEGER NOT NULL,
  scanned_at  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS files(
  idx        TEXT    NOT NULL REFERENCES indexes(name) ON DELETE CASCADE,
  path       TEXT    NOT NULL,
  size       INTEGER NOT NULL,
  -- nanoseconds since the epoch, as the filesystem reports it
  mtime      INTEGER NOT NULL,
  sha256     TEXT    NOT NULL,
  language   TEXT    NOT NULL,
  signatures TEXT    NOT NULL DEFAULT '[]',
  sig_count  INTEGER NOT NULL DEFAULT 0,
  -- the extractor version that produced `signatures`
  extractor  INTEGER NOT NULL,
  PRIMARY KEY(idx, path)
) WITHOUT ROWID;
"#;

/// One index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexRow {
    /// Its name.
    pub name: String,
    /// The scanned directory (absolute, canonical).
    pub root: String,
    /// Free text set through `:describe`.
    pub description: String,
    /// First scan, microseconds since the epoch.
    pub created_at: i64,
    /// Last scan, microseconds since the epoch.
    pub scanned_at: i64,
}

/// What a rescan needs to know about a tracked file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Known {
    /// Size in bytes.
    pub size: u64,
    /// Modification time, nanoseconds.
    pub mtime: i64,
    /// Content hash (hex).
    pub sha256: String,
    /// Extractor version of the stored signatures.
    pub extractor: i64,
}

/// A tracked file with its signatures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRow {
    /// Relative path.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, nanoseconds.
    pub mtime: i64,
    /// Content hash (hex).
    pub sha256: String,
    /// Language.
    pub language: String,
    /// Extracted signatures (empty when read without them, see [`Store::files`]).
    pub signatures: Vec<Signature>,
    /// How many signatures the file has (known even when they were not read).
    pub sig_count: u64,
}

/// A change to write at the end of a scan.
#[derive(Debug, Clone)]
pub enum Change {
    /// Insert or replace a file's row.
    Put {
        /// The row.
        row: FileRow,
        /// Extractor version.
        extractor: i64,
    },
    /// Same content, new modification time.
    Touch {
        /// Relative path.
        path: String,
        /// New modification time.
        mtime: i64,
    },
    /// The file is gone.
    Remove {
        /// Relative path.
        path: String,
    },
}

/// The database.
pub struct Store {
    conn: Connection,
    file: DbFile,
}

impl Store {
    /// Opens (creating if needed) the index database at `path`; `None` keeps it in memory.
    pub fn open(path: Option<&Path>) -> Result<Self> {
        let file = file(path.unwrap_or(Path::new(":memory:")));
        let err = |e| file.err(e);
        let conn = match path {
            Some(_) => file.open()?,
            None => Connection::open_in_memory().map_err(err)?,
        };
        conn.execute_batch("PRAGMA foreign_keys=ON;").map_err(err)?;
        let store = Store { conn, file };
        store.init()?;
        Ok(store)
    }

    fn err(&self, e: rusqlite::Error) -> Error {
        self.file.err(e)
    }

    fn init(&self) -> Result<()> {
        let version: i64 = self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| self.err(e))?;
        if version == SCHEMA_VERSION {
            return Ok(());
        }
        if version > SCHEMA_VERSION {
            return Err(Error::new(
                ErrorKind::Unavailable,
                format!(
                    "index database {} has schema version {version}, newer than this avm understands ({SCHEMA_VERSION}); upgrade avm",
                    self.file.path().display()
                ),
            ));
        }
        let foreign: i64 = self
            .conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type='table' \
                 AND name NOT IN ('indexes','files') AND name NOT LIKE 'sqlite_%'",
                [],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))?;
        if foreign > 0 {
            return Err(Error::new(
                ErrorKind::Unavailable,
                format!(
                    "{} is a SQLite database of some other program, not an avm index database; set the mount's `db` option to another file",
                    self.file.path().display()
                ),
            ));
        }
        self.conn
            .execute_batch(&format!(
                "BEGIN IMMEDIATE; {SCHEMA} PRAGMA user_version={SCHEMA_VERSION}; COMMIT;"
            ))
            .map_err(|e| {
                let _ = self.conn.execute_batch("ROLLBACK");
                self.err(e)
            })
    }

    /// Every index, by name.
    pub fn indexes(&self) -> Result<Vec<(IndexRow, u64)>> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT name, root, description, created_at, scanned_at, \
                 (SELECT count(*) FROM files WHERE idx = name) FROM indexes ORDER BY name",
            )
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map([], |r| {
                Ok((
                    IndexRow {
                        name: r.get(0)?,
                        root: r.get(1)?,
                        description: r.get(2)?,
                        created_at: r.get(3)?,
                        scanned_at: r.get(4)?,
                    },
                    r.get::<_, i64>(5)?.max(0).unsigned_abs(),
                ))
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.err(e))
    }

    /// One index, if it exists.
    pub fn index(&self, name: &str) -> Result<Option<IndexRow>> {
        self.conn
            .query_row(
                "SELECT name, root, description, created_at, scanned_at FROM indexes WHERE name = ?1",
                [name],
                |r| {
                    Ok(IndexRow {
                        name: r.get(0)?,
                        root: r.get(1)?,
                        description: r.get(2)?,
                        created_at: r.get(3)?,
                        scanned_at: r.get(4)?,
                    })
                },
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// What a rescan compares against: path → size, mtime, hash, extractor.
    pub fn known(&self, name: &str) -> Result<HashMap<String, Known>> {
        let mut st = self
            .conn
            .prepare_cached("SELECT path, size, mtime, sha256, extractor FROM files WHERE idx = ?1")
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map([name], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    Known {
                        size: r.get::<_, i64>(1)?.max(0).unsigned_abs(),
                        mtime: r.get(2)?,
                        sha256: r.get(3)?,
                        extractor: r.get(4)?,
                    },
                ))
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<HashMap<_, _>>>()
            .map_err(|e| self.err(e))
    }

    /// Every tracked file of an index, by path; `with_signatures` decodes the signatures too
    /// (otherwise only their count is filled in, which keeps summaries of big indexes cheap).
    pub fn files(&self, name: &str, with_signatures: bool) -> Result<Vec<FileRow>> {
        let sql = if with_signatures {
            "SELECT path, size, mtime, sha256, language, signatures, sig_count FROM files \
             WHERE idx = ?1 ORDER BY path"
        } else {
            "SELECT path, size, mtime, sha256, language, '[]', sig_count FROM files \
             WHERE idx = ?1 ORDER BY path"
        };
        let mut st = self.conn.prepare_cached(sql).map_err(|e| self.err(e))?;
        let rows = st.query_map([name], file_row).map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.err(e))
    }

    /// One tracked file.
    pub fn file(&self, name: &str, path: &str) -> Result<Option<FileRow>> {
        self.conn
            .query_row(
                "SELECT path, size, mtime, sha256, language, signatures, sig_count FROM files \
                 WHERE idx = ?1 AND path = ?2",
                [name, path],
                file_row,
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Is `dir` (relative) a directory of tracked files in the index?
    pub fn has_dir(&self, name: &str, dir: &str) -> Result<bool> {
        // Paths below `dir/` sort between `dir/` and `dir0` ('0' follows '/').
        let lo = format!("{dir}/");
        let hi = format!("{dir}0");
        self.conn
            .query_row(
                "SELECT EXISTS(SELECT 1 FROM files WHERE idx = ?1 AND path >= ?2 AND path < ?3)",
                [name, lo.as_str(), hi.as_str()],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))
    }

    /// Sets the description of an existing index; false if there is none of that name.
    pub fn describe(&self, name: &str, description: &str) -> Result<bool> {
        let n = self
            .conn
            .execute(
                "UPDATE indexes SET description = ?2 WHERE name = ?1",
                [name, description],
            )
            .map_err(|e| self.err(e))?;
        Ok(n > 0)
    }

    /// Applies a scan's changes in one transaction and records the scan.
    pub fn apply_scan(
        &mut self,
        name: &str,
        root: &str,
        at: i64,
        changes: &[Change],
    ) -> Result<()> {
        let file = &self.file;
        let err = |e| file.err(e);
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(err)?;
        tx.execute(
            "INSERT INTO indexes(name, root, created_at, scanned_at) VALUES (?1, ?2, ?3, ?3) \
             ON CONFLICT(name) DO UPDATE SET root = excluded.root, scanned_at = excluded.scanned_at",
            params![name, root, at],
        )
        .map_err(err)?;
        {
            let mut put = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO files(idx, path, size, mtime, sha256, language, \
                     signatures, sig_count, extractor) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )
                .map_err(err)?;
            let mut touch = tx
                .prepare_cached("UPDATE files SET mtime = ?3 WHERE idx = ?1 AND path = ?2")
                .map_err(err)?;
            let mut remove = tx
                .prepare_cached("DELETE FROM files WHERE idx = ?1 AND path = ?2")
                .map_err(err)?;
            for c in changes {
                match c {
                    Change::Put { row, extractor } => {
                        let sigs = serde_json::to_string(&row.signatures).map_err(|e| {
                            Error::internal(format!("cannot encode signatures: {e}"))
                        })?;
                        put.execute(params![
                            name,
                            row.path,
                            i64::try_from(row.size).unwrap_or(i64::MAX),
                            row.mtime,
                            row.sha256,
                            row.language,
                            sigs,
                            i64::try_from(row.signatures.len()).unwrap_or(i64::MAX),
                            extractor,
                        ])
                        .map_err(err)?;
                    }
                    Change::Touch { path, mtime } => {
                        touch.execute(params![name, path, mtime]).map_err(err)?;
                    }
                    Change::Remove { path } => {
                        remove.execute(params![name, path]).map_err(err)?;
                    }
                }
            }
        }
        tx.commit().map_err(err)
    }

    /// Files and signature totals of an index: (files, files with signatures, signatures).
    pub fn totals(&self, name: &str) -> Result<(u64, u64, u64)> {
        self.conn
            .query_row(
                "SELECT count(*), coalesce(sum(sig_count > 0), 0), coalesce(sum(sig_count), 0) \
                 FROM files WHERE idx = ?1",
                [name],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?.max(0).unsigned_abs(),
                        r.get::<_, i64>(1)?.max(0).unsigned_abs(),
                        r.get::<_, i64>(2)?.max(0).unsigned_abs(),
                    ))
                },
            )
            .map_err(|e| self.err(e))
    }
}

fn file_row(r: &rusqlite::Row) -> rusqlite::Result<FileRow> {
    let sigs: String = r.get(5)?;
    // A row written by this crate always decodes; anything else shows as no signatures
    // rather than making the whole index unreadable.
    let signatures = serde_json::from_str(&sigs).unwrap_or_default();
    Ok(FileRow {
        path: r.get(0)?,
        size: r.get::<_, i64>(1)?.max(0).unsigned_abs(),
        mtime: r.get(2)?,
        sha256: r.get(3)?,
        language: r.get(4)?,
        signatures,
        sig_count: r.get::<_, i64>(6)?.max(0).unsigned_abs(),
    })
}

/// The index file as avm opens it.
fn file(path: &Path) -> DbFile {
    DbFile::new(path, "index database")
        .if_damaged("move it aside and rescan")
        .busy(BUSY_TIMEOUT, Some("a scan may be running; retry"))
}
