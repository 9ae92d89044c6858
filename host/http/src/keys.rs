//! Per-agent API keys, stored hashed (SHA-256): in a small SQLite file beside the database,
//! or, when the store is PostgreSQL, in its `api_keys` table, so that every host sharing the
//! database accepts the same keys.
//!
//! A key looks like `avm_<id>_<secret>`; only its hash is kept, so the file (or table) gives
//! nothing to whoever reads it. `avm key create --agent NAME` prints a key once.
//!
//! Nothing is cached: every [`KeyStore::verify`] asks the file or the database, so a key
//! revoked through any host is refused by every host from the next request on.

use std::path::Path;
use std::sync::Mutex;

use avm_core::bytes::{hex, random_hex};
use avm_core::time::{Micros, now_micros};
use avm_core::{Error, ErrorKind, Result};
use avm_postgres::{Failure, Migration, Pg, PgOptions, Queries};
use avm_sqlite::DbFile;
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// The key store's component name in `avm_migrations`.
pub const PG_COMPONENT: &str = "http_keys";

/// The key store's tables in PostgreSQL, oldest first. Its one table, `api_keys`, is the
/// SQLite file's `keys` under a name no other component of the shared database uses.
pub const PG_MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "api keys",
    sql: "CREATE TABLE api_keys(
            id         text   PRIMARY KEY,
            agent      text   NOT NULL,
            hash       text   NOT NULL UNIQUE,
            created_at bigint NOT NULL,
            last_used  bigint
          );
          CREATE INDEX api_keys_agent ON api_keys(agent);",
}];

/// Connections a PostgreSQL key store keeps at most (each request's check takes one briefly).
const PG_CONNECTIONS: u32 = 4;

/// How stale `last_used` may get in PostgreSQL, in microseconds: a key used more often is
/// recorded at most once a minute, so busy keys do not turn every request into a write.
const PG_LAST_USED_EVERY: Micros = 60_000_000;

/// The keys: a local file or a table in the shared PostgreSQL store.
pub struct KeyStore {
    backend: Backend,
}

enum Backend {
    Sqlite {
        conn: Mutex<Connection>,
        file: DbFile,
    },
    Postgres(PgKeys),
}

/// The pool of a PostgreSQL key store. The synchronous client blocks on a runtime of its own,
/// which may not start on an async runtime's thread (the HTTP handlers check keys there): every
/// use goes through [`PgKeys::run`], and the pool is let go on a thread of its own when the
/// store is dropped inside a runtime (closing a connection blocks too).
struct PgKeys(Option<Pg>);

impl PgKeys {
    /// Runs `f` on the pool, outside any async context.
    fn run<T: Send>(&self, f: impl FnOnce(&Pg) -> Result<T> + Send) -> Result<T> {
        let pg = self
            .0
            .as_ref()
            .ok_or_else(|| Error::internal("key store already closed"))?;
        outside_async(|| f(pg))
    }
}

/// Runs `f` where the synchronous PostgreSQL client may block: on an async runtime's thread it
/// leaves the runtime first (or, on a current-thread runtime, runs on a thread of its own).
fn outside_async<T: Send>(f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Err(_) => f(),
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        // A current-thread runtime cannot give its only thread away: use another one.
        Ok(_) => std::thread::scope(|s| {
            s.spawn(f)
                .join()
                .unwrap_or_else(|_| Err(Error::internal("key store thread panicked")))
        }),
    }
}

impl Drop for PgKeys {
    fn drop(&mut self) {
        if let Some(pg) = self.0.take()
            && tokio::runtime::Handle::try_current().is_ok()
        {
            let _ = std::thread::Builder::new()
                .name("avm-keys-close".into())
                .spawn(move || drop(pg));
        }
    }
}

/// A key as listed (never the secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyInfo {
    /// Short public id (part of the key).
    pub id: String,
    /// The agent the key acts as.
    pub agent: String,
    /// When it was made.
    pub created_at: Micros,
    /// When it was last used.
    pub last_used: Option<Micros>,
}

fn hash(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

fn lock(conn: &Mutex<Connection>) -> Result<std::sync::MutexGuard<'_, Connection>> {
    conn.lock()
        .map_err(|_| Error::new(ErrorKind::Internal, "key store lock poisoned"))
}

fn not_theirs(id: &str) -> Error {
    Error::new(
        ErrorKind::PermissionDenied,
        format!(
            "key {id} acts as another agent; an agent may revoke only its own keys (the operator may revoke any)"
        ),
    )
}

fn no_such_key(id: &str) -> Error {
    Error::new(
        ErrorKind::NotFound,
        format!("no key with id {id}; `avm key list` shows them"),
    )
}

impl KeyStore {
    /// Opens (creating) the key file.
    pub fn open(path: &Path) -> Result<Self> {
        // The file holds hashes only, but it is its owner's only all the same.
        let file = DbFile::new(path, "key store");
        let conn = file.open()?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS keys(
                id TEXT PRIMARY KEY, agent TEXT NOT NULL, hash TEXT NOT NULL UNIQUE,
                created_at INTEGER NOT NULL, last_used INTEGER);",
        )
        .map_err(|e| file.err(e))?;
        Ok(KeyStore {
            backend: Backend::Sqlite {
                conn: Mutex::new(conn),
                file,
            },
        })
    }

    /// Opens the keys at `location`: the PostgreSQL database when it is a `postgres://…`
    /// address ([`avm_core::config::is_store_url`]), else the SQLite file at that path.
    pub fn open_location(location: &str) -> Result<Self> {
        if avm_core::config::is_store_url(location) {
            KeyStore::open_postgres(
                location,
                PgOptions {
                    max_connections: PG_CONNECTIONS,
                    ..PgOptions::default()
                },
            )
        } else {
            KeyStore::open(Path::new(location))
        }
    }

    /// Connects to the PostgreSQL database at `url` and creates or upgrades its `api_keys`
    /// table (safe when several hosts start at once).
    pub fn open_postgres(url: &str, opts: PgOptions) -> Result<Self> {
        let keys = PgKeys(Some(outside_async(|| Pg::shared(url, opts))?));
        keys.run(|pg| avm_postgres::migrate(pg, PG_COMPONENT, PG_MIGRATIONS))?;
        Ok(KeyStore {
            backend: Backend::Postgres(keys),
        })
    }

    /// Makes a key for `agent`; returns (id, the full key). The key is shown only now.
    pub fn create(&self, agent: &str) -> Result<(String, String)> {
        avm_core::config::validate_agent_id(agent)?;
        let id = random_hex(4)?;
        let key = format!("avm_{id}_{}", random_hex(24)?);
        let (digest, now) = (hash(&key), now_micros());
        match &self.backend {
            Backend::Sqlite { conn, file } => {
                lock(conn)?
                    .execute(
                        "INSERT INTO keys(id, agent, hash, created_at) VALUES (?1, ?2, ?3, ?4)",
                        params![id, agent, digest, now],
                    )
                    .map_err(|e| file.err(e))?;
            }
            Backend::Postgres(keys) => keys.run(|pg| {
                pg.transaction(|tx| {
                    tx.execute(
                        "INSERT INTO api_keys(id, agent, hash, created_at) VALUES ($1, $2, $3, $4)",
                        &[&id, &agent, &digest, &now],
                    )?;
                    Ok(())
                })
            })?,
        }
        Ok((id, key))
    }

    /// The agent `key` acts as, or `None` for an unknown or revoked key.
    pub fn verify(&self, key: &str) -> Result<Option<String>> {
        let digest = hash(key);
        match &self.backend {
            Backend::Sqlite { conn, file } => {
                let c = lock(conn)?;
                let agent: Option<(String, String)> = c
                    .query_row(
                        "SELECT id, agent FROM keys WHERE hash = ?1",
                        params![digest],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .optional()
                    .map_err(|e| file.err(e))?;
                if let Some((id, _)) = &agent {
                    let _ = c.execute(
                        "UPDATE keys SET last_used = ?1 WHERE id = ?2",
                        params![now_micros(), id],
                    );
                }
                Ok(agent.map(|(_, a)| a))
            }
            Backend::Postgres(keys) => keys.run(|pg| {
                let mut c = pg.conn()?;
                let row = c
                    .query_opt(
                        "SELECT id, agent, last_used FROM api_keys WHERE hash = $1",
                        &[&digest],
                    )
                    .map_err(|e| pg.err(e))?;
                let Some(row) = row else {
                    return Ok(None);
                };
                let read = |i| -> Result<String> { row.try_get(i).map_err(|e| pg.err(e)) };
                let (id, agent) = (read(0)?, read(1)?);
                let last: Option<Micros> = row.try_get(2).map_err(|e| pg.err(e))?;
                let now = now_micros();
                if last.is_none_or(|t| now.saturating_sub(t) >= PG_LAST_USED_EVERY) {
                    // Bookkeeping only: a failure here does not refuse a valid key.
                    let _ = c.execute(
                        "UPDATE api_keys SET last_used = $1
                         WHERE id = $2 AND (last_used IS NULL OR last_used < $1)",
                        &[&now, &id],
                    );
                }
                Ok(Some(agent))
            }),
        }
    }

    /// Every key, oldest first.
    ///
    /// `owner`: only the keys of this agent (an agent sees its own keys; the operator, all).
    pub fn list(&self, owner: Option<&str>) -> Result<Vec<KeyInfo>> {
        match &self.backend {
            Backend::Sqlite { conn, file } => {
                let c = lock(conn)?;
                let mut st = c
                    .prepare(
                        "SELECT id, agent, created_at, last_used FROM keys \
                         WHERE ?1 IS NULL OR agent = ?1 ORDER BY created_at",
                    )
                    .map_err(|e| file.err(e))?;
                let rows = st
                    .query_map([owner], |r| {
                        Ok(KeyInfo {
                            id: r.get(0)?,
                            agent: r.get(1)?,
                            created_at: r.get(2)?,
                            last_used: r.get(3)?,
                        })
                    })
                    .map_err(|e| file.err(e))?;
                rows.collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(|e| file.err(e))
            }
            Backend::Postgres(keys) => keys.run(|pg| {
                let rows = pg
                    .conn()?
                    .query(
                        "SELECT id, agent, created_at, last_used FROM api_keys
                         WHERE $1::text IS NULL OR agent = $1 ORDER BY created_at, id",
                        &[&owner],
                    )
                    .map_err(|e| pg.err(e))?;
                rows.iter()
                    .map(|r| {
                        Ok(KeyInfo {
                            id: r.try_get(0)?,
                            agent: r.try_get(1)?,
                            created_at: r.try_get(2)?,
                            last_used: r.try_get(3)?,
                        })
                    })
                    .collect::<std::result::Result<Vec<_>, postgres::Error>>()
                    .map_err(|e| pg.err(e))
            }),
        }
    }

    /// Revokes the key `id`; with `owner`, only if the key acts as that agent (an agent may
    /// revoke its own keys only; the operator, any).
    pub fn revoke(&self, id: &str, owner: Option<&str>) -> Result<()> {
        match &self.backend {
            Backend::Sqlite { conn, file } => {
                let n = lock(conn)?
                    .execute(
                        "DELETE FROM keys WHERE id = ?1 AND (?2 IS NULL OR agent = ?2)",
                        params![id, owner],
                    )
                    .map_err(|e| file.err(e))?;
                if n == 0 && owner.is_some() && self.list(None)?.iter().any(|k| k.id == id) {
                    return Err(not_theirs(id));
                }
                if n == 0 {
                    return Err(no_such_key(id));
                }
                Ok(())
            }
            Backend::Postgres(keys) => keys.run(|pg| {
                pg.transaction(|tx| {
                    let n = tx.execute(
                        "DELETE FROM api_keys WHERE id = $1 AND ($2::text IS NULL OR agent = $2)",
                        &[&id, &owner],
                    )?;
                    if n > 0 {
                        return Ok(());
                    }
                    let exists = tx
                        .query_opt("SELECT 1 FROM api_keys WHERE id = $1", &[&id])?
                        .is_some();
                    Err(Failure::Refused(if exists && owner.is_some() {
                        not_theirs(id)
                    } else {
                        no_such_key(id)
                    }))
                })
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn keys_verify_until_revoked_and_only_hashes_are_stored() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("keys.db");
        let ks = KeyStore::open(&f).unwrap();
        let (id, key) = ks.create("alice").unwrap();
        assert!(key.starts_with(&format!("avm_{id}_")));
        assert_eq!(ks.verify(&key).unwrap().as_deref(), Some("alice"));
        assert_eq!(ks.verify("avm_nope_nope").unwrap(), None);
        assert_eq!(ks.list(None).unwrap()[0].agent, "alice");
        let raw = std::fs::read(&f).unwrap();
        assert!(!String::from_utf8_lossy(&raw).contains(&key));
        assert_eq!(
            ks.revoke(&id, Some("bob")).unwrap_err().kind(),
            ErrorKind::PermissionDenied,
            "bob may not revoke alice's key"
        );
        assert_eq!(ks.list(Some("bob")).unwrap().len(), 0);
        ks.revoke(&id, Some("alice")).unwrap();
        assert_eq!(ks.verify(&key).unwrap(), None);
        assert!(ks.revoke(&id, None).is_err());
        assert!(ks.create("../evil").is_err());
    }
}

#[cfg(test)]
mod pg_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use avm_postgres::testing::TestDb;

    #[test]
    fn a_key_made_on_one_host_works_on_every_host_until_revoked_anywhere() {
        let Some(db) = TestDb::create("keys").unwrap() else {
            return;
        };
        // Two hosts on one database.
        let a = KeyStore::open_location(db.url()).unwrap();
        let b = KeyStore::open_location(db.url()).unwrap();
        let (id, key) = a.create("alice").unwrap();
        assert!(key.starts_with(&format!("avm_{id}_")));
        assert_eq!(b.verify(&key).unwrap().as_deref(), Some("alice"));
        assert_eq!(a.verify(&key).unwrap().as_deref(), Some("alice"));
        assert_eq!(b.verify("avm_nope_nope").unwrap(), None);
        let listed = b.list(None).unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(
            (listed[0].id.as_str(), listed[0].agent.as_str()),
            (id.as_str(), "alice")
        );
        assert!(listed[0].last_used.is_some(), "verify records the use");
        assert_eq!(b.list(Some("bob")).unwrap().len(), 0);
        assert_eq!(b.list(Some("alice")).unwrap().len(), 1);

        // Only the hash is stored, the same one the SQLite file keeps.
        let mut c = postgres::Client::connect(db.url(), postgres::NoTls).unwrap();
        let stored: Vec<String> = c
            .query("SELECT hash FROM api_keys", &[])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(stored, vec![hash(&key)]);
        let dump: String = c
            .query_one("SELECT string_agg(api_keys::text, ' ') FROM api_keys", &[])
            .unwrap()
            .get(0);
        assert!(!dump.contains(&key), "{dump}");

        assert_eq!(
            b.revoke(&id, Some("bob")).unwrap_err().kind(),
            ErrorKind::PermissionDenied,
            "bob may not revoke alice's key"
        );
        assert_eq!(a.verify(&key).unwrap().as_deref(), Some("alice"));
        b.revoke(&id, Some("alice")).unwrap();
        // Revoked through b, refused by a at once: nothing is cached.
        assert_eq!(a.verify(&key).unwrap(), None);
        assert_eq!(a.revoke(&id, None).unwrap_err().kind(), ErrorKind::NotFound);
        assert!(a.create("../evil").is_err());

        // A third host starting later (migrations already applied) sees the same keys.
        let (_, k2) = b.create("carol").unwrap();
        let c3 = KeyStore::open_location(db.url()).unwrap();
        assert_eq!(c3.verify(&k2).unwrap().as_deref(), Some("carol"));
    }

    #[test]
    fn keys_are_checked_from_async_handlers_and_dropped_there_safely() {
        let Some(db) = TestDb::create("keysasync").unwrap() else {
            return;
        };
        let (_, key) = KeyStore::open_location(db.url())
            .unwrap()
            .create("alice")
            .unwrap();
        // The HTTP handlers check keys on a runtime's thread; the blocking client must not
        // start its own runtime there (tokio panics), nor close its connections there.
        let multi = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        let url = db.url().to_string();
        let k = key.clone();
        let agent = multi.block_on(async move {
            tokio::spawn(async move {
                let ks = KeyStore::open_location(&url).unwrap();
                let agent = ks.verify(&k).unwrap();
                drop(ks);
                agent
            })
            .await
            .unwrap()
        });
        assert_eq!(agent.as_deref(), Some("alice"));
        let single = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let ks = KeyStore::open_location(db.url()).unwrap();
        let agent = single.block_on(async {
            let agent = ks.verify(&key).unwrap();
            assert_eq!(ks.list(Some("alice")).unwrap().len(), 1);
            drop(ks);
            agent
        });
        assert_eq!(agent.as_deref(), Some("alice"));
    }

    #[test]
    fn a_path_opens_the_sqlite_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("keys.db");
        let ks = KeyStore::open_location(&f.to_string_lossy()).unwrap();
        let (_, key) = ks.create("alice").unwrap();
        let again = KeyStore::open(&f).unwrap();
        assert_eq!(again.verify(&key).unwrap().as_deref(), Some("alice"));
    }
}
