//! The key-value store plugins reach through the `kv-*` host imports: one SQLite file shared by
//! every wasm mount, each mount confined to its own scope (the mount pattern).

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use avm_core::{Error, ErrorKind, Result};
use avm_sqlite::DbFile;
use rusqlite::{Connection, OptionalExtension, params};

/// Longest key a plugin may use, in bytes.
pub const MAX_KEY: usize = 256;

/// A scoped view of the key-value file, opened on first use.
pub struct Kv {
    file: DbFile,
    scope: String,
    max_bytes: u64,
    conn: Mutex<Option<Connection>>,
}

impl Kv {
    /// The store in `file`, scoped to `scope`, holding at most `max_bytes` of keys and values.
    pub fn new(file: impl Into<PathBuf>, scope: impl Into<String>, max_bytes: u64) -> Self {
        Kv {
            file: DbFile::new(file, "plugin key-value store"),
            scope: scope.into(),
            max_bytes,
            conn: Mutex::new(None),
        }
    }

    /// The file backing the store.
    pub fn file(&self) -> &Path {
        self.file.path()
    }

    fn with<T>(&self, deadline: Instant, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let mut guard = self
            .conn
            .lock()
            .map_err(|_| Error::new(ErrorKind::Internal, "plugin key-value lock poisoned"))?;
        if guard.is_none() {
            let c = self.file.open()?;
            c.execute_batch(
                "CREATE TABLE IF NOT EXISTS kv(
                    scope TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
                    PRIMARY KEY(scope, key)) WITHOUT ROWID;",
            )
            .map_err(|e| self.file.err(e))?;
            *guard = Some(c);
        }
        match guard.as_ref() {
            Some(c) => {
                // Never wait for another writer past the plugin call's own deadline.
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(Error::new(
                        ErrorKind::TimedOut,
                        "no time left for the key-value store",
                    ));
                }
                c.busy_timeout(left).map_err(|e| self.file.err(e))?;
                f(c)
            }
            None => Err(Error::new(
                ErrorKind::Internal,
                "plugin key-value store not open",
            )),
        }
    }

    /// The value under `key`.
    pub fn get(&self, key: &str, deadline: Instant) -> Result<Option<String>> {
        self.with(deadline, |c| {
            c.query_row(
                "SELECT value FROM kv WHERE scope = ?1 AND key = ?2",
                params![self.scope, key],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.file.err(e))
        })
    }

    /// Stores `value` under `key`, refusing keys that are too long and a scope over its cap.
    pub fn set(&self, key: &str, value: &str, deadline: Instant) -> Result<()> {
        if key.is_empty() || key.len() > MAX_KEY {
            return Err(Error::invalid(format!(
                "key-value keys must be 1 to {MAX_KEY} bytes (got {})",
                key.len()
            )));
        }
        self.with(deadline, |c| {
            let used: i64 = c
                .query_row(
                    "SELECT COALESCE(SUM(length(CAST(key AS BLOB)) + length(CAST(value AS BLOB))), 0)
                     FROM kv WHERE scope = ?1 AND key <> ?2",
                    params![self.scope, key],
                    |r| r.get(0),
                )
                .map_err(|e| self.file.err(e))?;
            let after = used.max(0) as u64 + (key.len() + value.len()) as u64;
            if after > self.max_bytes {
                return Err(Error::new(
                    ErrorKind::TooLarge,
                    format!(
                        "key-value store of mount {} would hold {after} bytes; its limit is {} (option kv_max)",
                        self.scope, self.max_bytes
                    ),
                ));
            }
            c.execute(
                "INSERT INTO kv(scope, key, value) VALUES (?1, ?2, ?3)
                 ON CONFLICT(scope, key) DO UPDATE SET value = excluded.value",
                params![self.scope, key, value],
            )
            .map_err(|e| self.file.err(e))?;
            Ok(())
        })
    }

    /// Removes `key`; true when it existed.
    pub fn delete(&self, key: &str, deadline: Instant) -> Result<bool> {
        self.with(deadline, |c| {
            c.execute(
                "DELETE FROM kv WHERE scope = ?1 AND key = ?2",
                params![self.scope, key],
            )
            .map(|n| n > 0)
            .map_err(|e| self.file.err(e))
        })
    }

    /// Keys beginning with `prefix`, sorted.
    pub fn keys(&self, prefix: &str, deadline: Instant) -> Result<Vec<String>> {
        self.with(deadline, |c| {
            let mut st = c
                .prepare(
                    "SELECT key FROM kv WHERE scope = ?1 AND substr(key, 1, length(?2)) = ?2 ORDER BY key",
                )
                .map_err(|e| self.file.err(e))?;
            let rows = st
                .query_map(params![self.scope, prefix], |r| r.get::<_, String>(0))
                .map_err(|e| self.file.err(e))?;
            rows.collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| self.file.err(e))
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::time::Duration;

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(10)
    }

    #[test]
    fn scopes_never_see_each_others_keys() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("kv.db");
        let a = Kv::new(&f, "/a/**", 1 << 20);
        let b = Kv::new(&f, "/b/**", 1 << 20);
        a.set("k", "from a", soon()).unwrap();
        assert_eq!(b.get("k", soon()).unwrap(), None);
        b.set("k", "from b", soon()).unwrap();
        assert_eq!(a.get("k", soon()).unwrap().as_deref(), Some("from a"));
        assert_eq!(a.keys("", soon()).unwrap(), vec!["k"]);
        assert!(a.delete("k", soon()).unwrap());
        assert!(!a.delete("k", soon()).unwrap());
        assert_eq!(b.get("k", soon()).unwrap().as_deref(), Some("from b"));
    }

    #[test]
    fn a_scope_over_its_cap_is_refused_as_too_large() {
        let dir = tempfile::tempdir().unwrap();
        let a = Kv::new(dir.path().join("kv.db"), "/a", 100);
        a.set("one", &"x".repeat(50), soon()).unwrap();
        let e = a.set("two", &"y".repeat(60), soon()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TooLarge);
        // Replacing a value counts the new size, not old + new.
        a.set("one", &"z".repeat(90), soon()).unwrap();
        assert!(a.set(&"k".repeat(300), "v", soon()).is_err());
    }
}
