//! avm-sqlite: the one way avm opens its own SQLite files.
//!
//! The memory database, the index state, the HTTP API keys, the subscriptions and outbox,
//! and each WASM plugin's key-value store are SQLite files. Each is opened through a
//! [`DbFile`], so every one of them:
//! - is created readable and writable by its owner only (`0600`, its directory made first),
//!   and a directory where a file should be is refused by name;
//! - runs in WAL mode (checked: a filesystem that cannot do it is named, not silently
//!   degraded) with `synchronous=NORMAL` unless the caller asks otherwise;
//! - waits out another process's lock up to its busy timeout;
//! - maps SQLite's failures onto avm's [`ErrorKind`]s with a message that names the file,
//!   says what it is and what to do: busy → `Busy`, corrupt → `Unavailable`, disk full →
//!   `StorageFull`, too big → `TooLarge`.
//!
//! A user's own database read by the `sqlite` provider is not avm's file and does not come
//! here: it is opened read-only with that provider's own rules.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::{Connection, ErrorCode, OpenFlags};

use avm_core::{Error, ErrorKind, Result};

/// The busy timeout when the caller sets none.
pub const DEFAULT_BUSY: Duration = Duration::from_secs(10);

/// One of avm's SQLite files: where it is, what to call it in messages, and how to open it.
#[derive(Debug, Clone)]
pub struct DbFile {
    path: PathBuf,
    what: &'static str,
    if_damaged: &'static str,
    busy: Duration,
    busy_advice: Option<&'static str>,
    synchronous: &'static str,
}

impl DbFile {
    /// The file at `path`, called `what` in messages ("database", "index database", "key
    /// store"...). Busy timeout [`DEFAULT_BUSY`], `synchronous=NORMAL`.
    pub fn new(path: impl Into<PathBuf>, what: &'static str) -> Self {
        DbFile {
            path: path.into(),
            what,
            if_damaged: "move it aside; avm makes a new one",
            busy: DEFAULT_BUSY,
            busy_advice: None,
            synchronous: "NORMAL",
        }
    }

    /// What a user should do when the file is corrupt or not a database.
    pub fn if_damaged(mut self, advice: &'static str) -> Self {
        self.if_damaged = advice;
        self
    }

    /// How long to wait for another process's lock; `advice` replaces "retry" in the
    /// message when the wait runs out (e.g. which setting raises it).
    pub fn busy(mut self, timeout: Duration, advice: Option<&'static str>) -> Self {
        self.busy = timeout;
        self.busy_advice = advice;
        self
    }

    /// SQLite's `synchronous` mode: `full`, `off`, anything else is `normal`.
    pub fn synchronous(mut self, mode: &str) -> Self {
        self.synchronous = match mode.to_ascii_lowercase().as_str() {
            "full" => "FULL",
            "off" => "OFF",
            _ => "NORMAL",
        };
        self
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The busy timeout in force.
    pub fn busy_timeout(&self) -> Duration {
        self.busy
    }

    /// Opens the file for reading and writing, creating it (private to its owner) and its
    /// directory when absent; WAL mode, the busy timeout and `synchronous` set. Reading the
    /// journal mode also turns "not a database" into an error now, not at first use.
    pub fn open(&self) -> Result<Connection> {
        avm_core::files::prepare_db(&self.path)?;
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| self.err(e))?;
        conn.busy_timeout(self.busy).map_err(|e| self.err(e))?;
        let mode: String = retry_busy(self.busy, || {
            conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        })
        .map_err(|e| self.err(e))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(Error::new(
                ErrorKind::Unavailable,
                format!(
                    "{} {} cannot use WAL mode (got {mode}); is it on a network filesystem?",
                    self.what,
                    self.path.display()
                ),
            ));
        }
        conn.execute_batch(&format!("PRAGMA synchronous={}", self.synchronous))
            .map_err(|e| self.err(e))?;
        Ok(conn)
    }

    /// Opens the existing file for reading only, with the busy timeout.
    pub fn open_read_only(&self) -> Result<Connection> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| self.err(e))?;
        conn.busy_timeout(self.busy).map_err(|e| self.err(e))?;
        Ok(conn)
    }

    /// SQLite's error as avm's, naming this file.
    pub fn err(&self, e: rusqlite::Error) -> Error {
        let (what, db) = (self.what, self.path.display());
        let rusqlite::Error::SqliteFailure(f, msg) = &e else {
            return Error::internal(format!("sqlite error on {what} {db}: {e}"));
        };
        let detail = msg.clone().unwrap_or_else(|| f.to_string());
        match f.code {
            ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => Error::new(
                ErrorKind::Busy,
                format!(
                    "{what} {db} stayed locked by another process for {}; {}",
                    show(self.busy),
                    self.busy_advice.unwrap_or("retry")
                ),
            ),
            ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt => Error::new(
                ErrorKind::Unavailable,
                format!(
                    "{what} {db} is corrupt or not an avm {what} ({detail}); {}",
                    self.if_damaged
                ),
            ),
            ErrorCode::CannotOpen | ErrorCode::PermissionDenied | ErrorCode::ReadOnly => {
                Error::new(
                    ErrorKind::Unavailable,
                    format!(
                        "cannot open {what} {db} for writing ({detail}); check the path and its permissions"
                    ),
                )
            }
            ErrorCode::DiskFull => Error::new(
                ErrorKind::StorageFull,
                format!("the disk holding {what} {db} is full"),
            ),
            ErrorCode::TooBig => Error::new(
                ErrorKind::TooLarge,
                format!("value too large for {what} {db}: {detail}"),
            ),
            _ => Error::internal(format!("sqlite error on {what} {db}: {detail}")),
        }
    }
}

fn show(d: Duration) -> String {
    if d.as_millis().is_multiple_of(1000) {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// Whether SQLite reported that another connection holds the lock.
pub fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if matches!(f.code, ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked))
}

/// Runs `f`, retrying while SQLite reports busy, until `timeout` has passed (for statements
/// the busy handler does not cover, such as `BEGIN IMMEDIATE` racing a schema change).
pub fn retry_busy<T>(
    timeout: Duration,
    mut f: impl FnMut() -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    let start = Instant::now();
    let mut pause = Duration::from_millis(1);
    loop {
        match f() {
            Err(e) if is_busy(&e) && start.elapsed() < timeout => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn a_new_file_is_private_in_wal_mode_and_its_directory_is_made() {
        let dir = tempfile::tempdir().unwrap();
        let f = DbFile::new(dir.path().join("sub/x.db"), "test store");
        let c = f.open().unwrap();
        let mode: String = c
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let sync: i64 = c.query_row("PRAGMA synchronous", [], |r| r.get(0)).unwrap();
        assert_eq!(sync, 1, "NORMAL");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let m = std::fs::metadata(f.path()).unwrap().permissions().mode();
            assert_eq!(m & 0o777, 0o600, "{m:o}");
        }
        let full = DbFile::new(dir.path().join("y.db"), "test store").synchronous("Full");
        let sync: i64 = full
            .open()
            .unwrap()
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap();
        assert_eq!(sync, 2, "FULL");
    }

    #[test]
    fn a_file_that_is_not_a_database_is_named_with_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("junk.db");
        std::fs::write(&p, vec![7u8; 8192]).unwrap();
        let e = DbFile::new(&p, "index database")
            .if_damaged("move it aside and rescan")
            .open()
            .expect_err("junk is not a database");
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        let m = e.message();
        assert!(
            m.contains("index database") && m.contains("junk.db") && m.contains("rescan"),
            "{m}"
        );
        let e = DbFile::new(dir.path(), "database")
            .open()
            .expect_err("a directory");
        assert!(e.message().contains("is a directory"), "{}", e.message());
    }

    #[test]
    fn a_lock_held_past_the_timeout_is_busy_and_says_for_how_long() {
        let dir = tempfile::tempdir().unwrap();
        let f =
            DbFile::new(dir.path().join("l.db"), "key store").busy(Duration::from_millis(50), None);
        let a = f.open().unwrap();
        a.execute_batch("CREATE TABLE t(x); BEGIN IMMEDIATE; INSERT INTO t VALUES (1);")
            .unwrap();
        let b = f.open().unwrap();
        let e = b
            .execute("INSERT INTO t VALUES (2)", [])
            .map_err(|e| f.err(e))
            .expect_err("locked");
        assert_eq!(e.kind(), ErrorKind::Busy);
        assert!(
            e.message().contains("key store") && e.message().contains("50ms"),
            "{}",
            e.message()
        );
    }
}
