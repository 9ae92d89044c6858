//! The key-value store plugins reach through the `kv-*` host imports: one SQLite file shared by
//! every wasm mount, or, when the store is PostgreSQL, one table (`plugin_kv`) in it shared by
//! every host, so each host's instance of a plugin sees the same data. Each mount is confined
//! to its own scope (the mount pattern), and each scope to its byte cap, on either.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use avm_core::{Error, ErrorKind, Result};
use avm_postgres::Tx;
use avm_postgres::{Failure, Migration, Pg, PgOptions, Queries};
use avm_sqlite::DbFile;
use rusqlite::{Connection, OptionalExtension, params};

/// Longest key a plugin may use, in bytes.
pub const MAX_KEY: usize = 256;

/// The plugin key-value store's component name in `avm_migrations`.
pub const PG_COMPONENT: &str = "plugin_kv";

/// Its tables in PostgreSQL, oldest first: `plugin_kv`, the SQLite file's `kv` under a name no
/// other component of the shared database uses. Keys and values are kept as their UTF-8 bytes,
/// so sizes, prefixes and order are bytewise, as in SQLite.
pub const PG_MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "plugin key-value store",
    sql: "CREATE TABLE plugin_kv(
            scope text  NOT NULL,
            key   bytea NOT NULL,
            value bytea NOT NULL,
            PRIMARY KEY(scope, key)
          );",
}];

/// Connections the plugin key-value stores of one process keep at most, per database.
const PG_CONNECTIONS: u32 = 8;
/// How long a first use waits for the server to accept a connection (or for a free one).
const PG_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A scoped view of the key-value store, opened on first use.
pub struct Kv {
    backend: Backend,
    scope: String,
    max_bytes: u64,
}

enum Backend {
    Sqlite {
        file: DbFile,
        conn: Mutex<Option<Connection>>,
    },
    Postgres {
        url: String,
        /// The address without its password, as a path for [`Kv::file`].
        shown: PathBuf,
    },
}

/// The process's pool for `url` (shared with everything else on that database), with the
/// key-value table created or upgraded on first use.
fn pool(url: &str) -> Result<Pg> {
    static MIGRATED: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    let pg = Pg::shared(
        url,
        PgOptions {
            max_connections: PG_CONNECTIONS,
            connect_timeout: PG_CONNECT_TIMEOUT,
            ..PgOptions::default()
        },
    )?;
    let mut migrated = MIGRATED
        .get_or_init(Mutex::default)
        .lock()
        .map_err(|_| Error::new(ErrorKind::Internal, "plugin key-value pools lock poisoned"))?;
    if !migrated.contains(url) {
        avm_postgres::migrate(&pg, PG_COMPONENT, PG_MIGRATIONS)?;
        migrated.insert(url.to_string());
    }
    Ok(pg)
}

fn no_time() -> Error {
    Error::new(ErrorKind::TimedOut, "no time left for the key-value store")
}

impl Kv {
    /// The store in `file`, scoped to `scope`, holding at most `max_bytes` of keys and values.
    pub fn new(file: impl Into<PathBuf>, scope: impl Into<String>, max_bytes: u64) -> Self {
        Kv {
            backend: Backend::Sqlite {
                file: DbFile::new(file, "plugin key-value store"),
                conn: Mutex::new(None),
            },
            scope: scope.into(),
            max_bytes,
        }
    }

    /// The store in the PostgreSQL database at `url` (its `plugin_kv` table), scoped to
    /// `scope`, holding at most `max_bytes` of keys and values. The address is checked now;
    /// the connection is made on first use.
    pub fn postgres(url: &str, scope: impl Into<String>, max_bytes: u64) -> Result<Self> {
        avm_postgres::parse_url(url)?;
        Ok(Kv {
            backend: Backend::Postgres {
                url: url.to_string(),
                shown: PathBuf::from(avm_postgres::redact(url)),
            },
            scope: scope.into(),
            max_bytes,
        })
    }

    /// The store at `location`: the PostgreSQL database when it is a `postgres://…` address
    /// ([`avm_core::config::is_store_url`]), else the SQLite file at that path.
    pub fn open_location(location: &str, scope: impl Into<String>, max_bytes: u64) -> Result<Self> {
        if avm_core::config::is_store_url(location) {
            Kv::postgres(location, scope, max_bytes)
        } else {
            Ok(Kv::new(location, scope, max_bytes))
        }
    }

    /// The file backing the store; for a PostgreSQL store, its address without the password.
    pub fn file(&self) -> &Path {
        match &self.backend {
            Backend::Sqlite { file, .. } => file.path(),
            Backend::Postgres { shown, .. } => shown,
        }
    }

    /// Whether the store is kept in PostgreSQL (shared by every host) rather than a local file.
    pub fn is_shared(&self) -> bool {
        matches!(self.backend, Backend::Postgres { .. })
    }

    fn with<T>(
        &self,
        deadline: Instant,
        f: impl FnOnce(&Connection, &DbFile) -> Result<T>,
    ) -> Result<T> {
        let Backend::Sqlite { file, conn } = &self.backend else {
            return Err(Error::internal("plugin key-value store is not a file"));
        };
        let mut guard = conn
            .lock()
            .map_err(|_| Error::new(ErrorKind::Internal, "plugin key-value lock poisoned"))?;
        if guard.is_none() {
            let c = file.open()?;
            c.execute_batch(
                "CREATE TABLE IF NOT EXISTS kv(
                    scope TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
                    PRIMARY KEY(scope, key)) WITHOUT ROWID;",
            )
            .map_err(|e| file.err(e))?;
            *guard = Some(c);
        }
        match guard.as_ref() {
            Some(c) => {
                // Never wait for another writer past the plugin call's own deadline.
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(no_time());
                }
                c.busy_timeout(left).map_err(|e| file.err(e))?;
                f(c, file)
            }
            None => Err(Error::new(
                ErrorKind::Internal,
                "plugin key-value store not open",
            )),
        }
    }

    /// Runs `f` in a PostgreSQL transaction that may not outlast `deadline` (a statement still
    /// running then is cancelled, `TimedOut`).
    fn with_pg<T>(
        &self,
        url: &str,
        deadline: Instant,
        mut f: impl FnMut(&mut Tx<'_>) -> std::result::Result<T, Failure>,
    ) -> Result<T> {
        if deadline <= Instant::now() {
            return Err(no_time());
        }
        let pg = pool(url)?;
        pg.transaction(|tx| {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Failure::Refused(no_time()));
            }
            let ms = left.as_millis().clamp(1, i32::MAX as u128).to_string();
            tx.execute("SELECT set_config('statement_timeout', $1, true)", &[&ms])?;
            f(tx)
        })
    }

    /// Refuses a write that would take the scope past its cap, `used` being what the scope's
    /// other keys hold.
    fn check_cap(&self, used: i64, key: &str, value: &str) -> Result<()> {
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
        Ok(())
    }

    /// The value under `key`.
    pub fn get(&self, key: &str, deadline: Instant) -> Result<Option<String>> {
        if let Backend::Postgres { url, .. } = &self.backend {
            let bytes: Option<Vec<u8>> = self.with_pg(url, deadline, |tx| {
                Ok(tx
                    .query_opt(
                        "SELECT value FROM plugin_kv WHERE scope = $1 AND key = $2",
                        &[&self.scope, &key.as_bytes()],
                    )?
                    .map(|r| r.try_get(0))
                    .transpose()?)
            })?;
            return bytes.map(text).transpose();
        }
        self.with(deadline, |c, file| {
            c.query_row(
                "SELECT value FROM kv WHERE scope = ?1 AND key = ?2",
                params![self.scope, key],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| file.err(e))
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
        if let Backend::Postgres { url, .. } = &self.backend {
            return self.with_pg(url, deadline, |tx| {
                // Writers of one scope take turns (on every host), so two of them cannot both
                // pass the cap check and together go over it.
                tx.execute(
                    "SELECT pg_advisory_xact_lock($1)",
                    &[&avm_postgres::lock_key(&format!(
                        "avm:plugin_kv:{}",
                        self.scope
                    ))],
                )?;
                let used: i64 = tx
                    .query_one(
                        "SELECT COALESCE(SUM(octet_length(key) + octet_length(value)), 0)::bigint
                         FROM plugin_kv WHERE scope = $1 AND key <> $2",
                        &[&self.scope, &key.as_bytes()],
                    )?
                    .try_get(0)?;
                self.check_cap(used, key, value)?;
                tx.execute(
                    "INSERT INTO plugin_kv(scope, key, value) VALUES ($1, $2, $3)
                     ON CONFLICT(scope, key) DO UPDATE SET value = excluded.value",
                    &[&self.scope, &key.as_bytes(), &value.as_bytes()],
                )?;
                Ok(())
            });
        }
        self.with(deadline, |c, file| {
            let used: i64 = c
                .query_row(
                    "SELECT COALESCE(SUM(length(CAST(key AS BLOB)) + length(CAST(value AS BLOB))), 0)
                     FROM kv WHERE scope = ?1 AND key <> ?2",
                    params![self.scope, key],
                    |r| r.get(0),
                )
                .map_err(|e| file.err(e))?;
            self.check_cap(used, key, value)?;
            c.execute(
                "INSERT INTO kv(scope, key, value) VALUES (?1, ?2, ?3)
                 ON CONFLICT(scope, key) DO UPDATE SET value = excluded.value",
                params![self.scope, key, value],
            )
            .map_err(|e| file.err(e))?;
            Ok(())
        })
    }

    /// Removes `key`; true when it existed.
    pub fn delete(&self, key: &str, deadline: Instant) -> Result<bool> {
        if let Backend::Postgres { url, .. } = &self.backend {
            return self.with_pg(url, deadline, |tx| {
                Ok(tx.execute(
                    "DELETE FROM plugin_kv WHERE scope = $1 AND key = $2",
                    &[&self.scope, &key.as_bytes()],
                )? > 0)
            });
        }
        self.with(deadline, |c, file| {
            c.execute(
                "DELETE FROM kv WHERE scope = ?1 AND key = ?2",
                params![self.scope, key],
            )
            .map(|n| n > 0)
            .map_err(|e| file.err(e))
        })
    }

    /// Keys beginning with `prefix`, sorted.
    pub fn keys(&self, prefix: &str, deadline: Instant) -> Result<Vec<String>> {
        if let Backend::Postgres { url, .. } = &self.backend {
            let keys: Vec<Vec<u8>> = self.with_pg(url, deadline, |tx| {
                tx.query(
                    "SELECT key FROM plugin_kv
                     WHERE scope = $1 AND substr(key, 1, length($2::bytea)) = $2::bytea
                     ORDER BY key",
                    &[&self.scope, &prefix.as_bytes()],
                )?
                .iter()
                .map(|r| r.try_get(0).map_err(Failure::Db))
                .collect()
            })?;
            return keys.into_iter().map(text).collect();
        }
        self.with(deadline, |c, file| {
            let mut st = c
                .prepare(
                    "SELECT key FROM kv WHERE scope = ?1 AND substr(key, 1, length(?2)) = ?2 ORDER BY key",
                )
                .map_err(|e| file.err(e))?;
            let rows = st
                .query_map(params![self.scope, prefix], |r| r.get::<_, String>(0))
                .map_err(|e| file.err(e))?;
            rows.collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| file.err(e))
        })
    }
}

/// Bytes this store wrote from a `String`, as text again.
fn text(bytes: Vec<u8>) -> Result<String> {
    String::from_utf8(bytes).map_err(|_| {
        Error::internal(
            "plugin key-value store holds bytes that are not UTF-8 (written by something else)",
        )
    })
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

#[cfg(test)]
mod pg_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use avm_postgres::testing::TestDb;

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(10)
    }

    #[test]
    fn every_instance_on_one_database_sees_the_same_data_scoped_by_mount() {
        let Some(db) = TestDb::create("kvshared").unwrap() else {
            return;
        };
        // Two hosts' instances of one mount, and another mount, on one database.
        let a = Kv::open_location(db.url(), "/a/**", 1 << 20).unwrap();
        let a2 = Kv::postgres(db.url(), "/a/**", 1 << 20).unwrap();
        let b = Kv::open_location(db.url(), "/b/**", 1 << 20).unwrap();
        assert!(a.is_shared() && !Kv::new("x.db", "/a", 1).is_shared());
        a.set("k", "from a", soon()).unwrap();
        assert_eq!(a2.get("k", soon()).unwrap().as_deref(), Some("from a"));
        assert_eq!(b.get("k", soon()).unwrap(), None);
        b.set("k", "from b", soon()).unwrap();
        assert_eq!(a.get("k", soon()).unwrap().as_deref(), Some("from a"));
        a2.set("k", "from a2", soon()).unwrap();
        assert_eq!(a.get("k", soon()).unwrap().as_deref(), Some("from a2"));
        assert_eq!(a.keys("", soon()).unwrap(), vec!["k"]);
        assert!(a2.delete("k", soon()).unwrap());
        assert!(!a.delete("k", soon()).unwrap());
        assert_eq!(a.get("k", soon()).unwrap(), None);
        assert_eq!(b.get("k", soon()).unwrap().as_deref(), Some("from b"));

        // Prefixes and order are bytewise, as in SQLite; any text round-trips, NUL included.
        for k in ["p/b", "p/a", "p/é", "p/Z", "q", "p"] {
            a.set(k, "v", soon()).unwrap();
        }
        assert_eq!(
            a2.keys("p/", soon()).unwrap(),
            vec!["p/Z", "p/a", "p/b", "p/é"]
        );
        assert_eq!(a2.keys("", soon()).unwrap().len(), 6);
        a.set("bin", "a\0b — ü", soon()).unwrap();
        assert_eq!(a2.get("bin", soon()).unwrap().as_deref(), Some("a\0b — ü"));
        // The address is shown without its password.
        let shown = Kv::postgres("postgres://u:s3cret@h/db", "/a", 1).unwrap();
        assert_eq!(shown.file(), Path::new("postgres://u:***@h/db"));
    }

    #[test]
    fn a_scope_over_its_cap_is_refused_as_too_large_on_every_host() {
        let Some(db) = TestDb::create("kvcap").unwrap() else {
            return;
        };
        // The same sequence as the SQLite test.
        let a = Kv::postgres(db.url(), "/a", 100).unwrap();
        a.set("one", &"x".repeat(50), soon()).unwrap();
        let e = a.set("two", &"y".repeat(60), soon()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TooLarge);
        a.set("one", &"z".repeat(90), soon()).unwrap();
        assert!(a.set(&"k".repeat(300), "v", soon()).is_err());
        assert_eq!(
            a.set("", "v", soon()).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
        // Sizes are bytes: "é" is two.
        let a2 = Kv::postgres(db.url(), "/a", 100).unwrap();
        assert_eq!(
            a2.set("o", &"é".repeat(4), soon()).unwrap_err().kind(),
            ErrorKind::TooLarge
        );
        a2.set("o", "é", soon()).unwrap(); // 3 + 90 + 1 + 2 = 96
        assert_eq!(
            a2.set("p", "xxxx", soon()).unwrap_err().kind(),
            ErrorKind::TooLarge
        );
        a2.set("p", "xxx", soon()).unwrap(); // exactly the cap
        assert_eq!(a.get("p", soon()).unwrap().as_deref(), Some("xxx"));
        // A deadline already passed is a timeout, not a wait.
        let e = a.get("one", Instant::now()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TimedOut);

        // Writers of one scope on many hosts at once still never go over the cap together.
        let c = Kv::postgres(db.url(), "/c", 100).unwrap();
        c.set("seed", "", soon()).unwrap(); // connects and creates the table first
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let url = db.url().to_string();
                std::thread::spawn(move || {
                    let kv = Kv::postgres(&url, "/c", 100).unwrap();
                    // 2 + 28 = 30 bytes each (the seed holds 4): three fit.
                    kv.set(&format!("k{i}"), &"v".repeat(28), soon()).is_ok()
                })
            })
            .collect();
        let stored = handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .filter(|ok| *ok)
            .count();
        assert_eq!(stored, 3);
        assert_eq!(c.keys("k", soon()).unwrap().len(), 3);
    }
}
