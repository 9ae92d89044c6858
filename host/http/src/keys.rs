//! Per-agent API keys, stored hashed (SHA-256) in a small SQLite file beside the database.
//!
//! A key looks like `avm_<id>_<secret>`; only its hash is kept, so the file gives nothing to
//! whoever reads it. `avm key create --agent NAME` prints a key once.

use std::path::Path;
use std::sync::Mutex;

use avm_core::bytes::{hex, random_hex};
use avm_core::time::{Micros, now_micros};
use avm_core::{Error, ErrorKind, Result};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// The key file.
pub struct KeyStore {
    conn: Mutex<Connection>,
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

fn db_err(e: rusqlite::Error) -> Error {
    Error::new(ErrorKind::Unavailable, format!("key store: {e}"))
}

fn hash(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

impl KeyStore {
    /// Opens (creating) the key file.
    pub fn open(path: &Path) -> Result<Self> {
        avm_core::files::prepare_db(path)?;
        let conn = Connection::open(path).map_err(db_err)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(db_err)?;
        conn.execute_batch(
            "PRAGMA journal_mode=WAL;
             CREATE TABLE IF NOT EXISTS keys(
                id TEXT PRIMARY KEY, agent TEXT NOT NULL, hash TEXT NOT NULL UNIQUE,
                created_at INTEGER NOT NULL, last_used INTEGER);",
        )
        .map_err(db_err)?;
        // The file holds hashes only, but keep it private all the same.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
        }
        Ok(KeyStore {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> Result<std::sync::MutexGuard<'_, Connection>> {
        self.conn
            .lock()
            .map_err(|_| Error::new(ErrorKind::Internal, "key store lock poisoned"))
    }

    /// Makes a key for `agent`; returns (id, the full key). The key is shown only now.
    pub fn create(&self, agent: &str) -> Result<(String, String)> {
        avm_core::config::validate_agent_id(agent)?;
        let id = random_hex(4)?;
        let key = format!("avm_{id}_{}", random_hex(24)?);
        self.conn()?
            .execute(
                "INSERT INTO keys(id, agent, hash, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![id, agent, hash(&key), now_micros()],
            )
            .map_err(db_err)?;
        Ok((id, key))
    }

    /// The agent `key` acts as, or `None` for an unknown or revoked key.
    pub fn verify(&self, key: &str) -> Result<Option<String>> {
        let c = self.conn()?;
        let agent: Option<(String, String)> = c
            .query_row(
                "SELECT id, agent FROM keys WHERE hash = ?1",
                params![hash(key)],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(db_err)?;
        if let Some((id, _)) = &agent {
            let _ = c.execute(
                "UPDATE keys SET last_used = ?1 WHERE id = ?2",
                params![now_micros(), id],
            );
        }
        Ok(agent.map(|(_, a)| a))
    }

    /// Every key, oldest first.
    pub fn list(&self) -> Result<Vec<KeyInfo>> {
        let c = self.conn()?;
        let mut st = c
            .prepare("SELECT id, agent, created_at, last_used FROM keys ORDER BY created_at")
            .map_err(db_err)?;
        let rows = st
            .query_map([], |r| {
                Ok(KeyInfo {
                    id: r.get(0)?,
                    agent: r.get(1)?,
                    created_at: r.get(2)?,
                    last_used: r.get(3)?,
                })
            })
            .map_err(db_err)?;
        rows.collect::<std::result::Result<Vec<_>, _>>()
            .map_err(db_err)
    }

    /// Revokes the key `id`.
    pub fn revoke(&self, id: &str) -> Result<()> {
        let n = self
            .conn()?
            .execute("DELETE FROM keys WHERE id = ?1", params![id])
            .map_err(db_err)?;
        if n == 0 {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!("no key with id {id}; `avm key list` shows them"),
            ));
        }
        Ok(())
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
        assert_eq!(ks.list().unwrap()[0].agent, "alice");
        let raw = std::fs::read(&f).unwrap();
        assert!(!String::from_utf8_lossy(&raw).contains(&key));
        ks.revoke(&id).unwrap();
        assert_eq!(ks.verify(&key).unwrap(), None);
        assert!(ks.revoke(&id).is_err());
        assert!(ks.create("../evil").is_err());
    }
}
