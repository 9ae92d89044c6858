//! Per-agent API keys, stored hashed (SHA-256) in a small SQLite file beside the database.
//!
//! A key looks like `avm_<id>_<secret>`; only its hash is kept, so the file gives nothing to
//! whoever reads it. `avm key create --agent NAME` prints a key once.

use std::path::Path;
use std::sync::Mutex;

use avm_core::bytes::{hex, random_hex};
use avm_core::time::{Micros, now_micros};
use avm_core::{Error, ErrorKind, Result};
use avm_sqlite::DbFile;
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// The key file.
pub struct KeyStore {
    conn: Mutex<Connection>,
    file: DbFile,
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
            conn: Mutex::new(conn),
            file,
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
            .map_err(|e| self.file.err(e))?;
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
            .map_err(|e| self.file.err(e))?;
        if let Some((id, _)) = &agent {
            let _ = c.execute(
                "UPDATE keys SET last_used = ?1 WHERE id = ?2",
                params![now_micros(), id],
            );
        }
        Ok(agent.map(|(_, a)| a))
    }

    /// Every key, oldest first.
    ///
    /// `owner`: only the keys of this agent (an agent sees its own keys; the operator, all).
    pub fn list(&self, owner: Option<&str>) -> Result<Vec<KeyInfo>> {
        let c = self.conn()?;
        let mut st = c
            .prepare(
                "SELECT id, agent, created_at, last_used FROM keys \
                 WHERE ?1 IS NULL OR agent = ?1 ORDER BY created_at",
            )
            .map_err(|e| self.file.err(e))?;
        let rows = st
            .query_map([owner], |r| {
                Ok(KeyInfo {
                    id: r.get(0)?,
                    agent: r.get(1)?,
                    created_at: r.get(2)?,
                    last_used: r.get(3)?,
                })
            })
            .map_err(|e| self.file.err(e))?;
        rows.collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| self.file.err(e))
    }

    /// Revokes the key `id`; with `owner`, only if the key acts as that agent (an agent may
    /// revoke its own keys only; the operator, any).
    pub fn revoke(&self, id: &str, owner: Option<&str>) -> Result<()> {
        let n = self
            .conn()?
            .execute(
                "DELETE FROM keys WHERE id = ?1 AND (?2 IS NULL OR agent = ?2)",
                params![id, owner],
            )
            .map_err(|e| self.file.err(e))?;
        if n == 0 && owner.is_some() && self.list(None)?.iter().any(|k| k.id == id) {
            return Err(Error::new(
                ErrorKind::PermissionDenied,
                format!(
                    "key {id} acts as another agent; an agent may revoke only its own keys (the operator may revoke any)"
                ),
            ));
        }
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
