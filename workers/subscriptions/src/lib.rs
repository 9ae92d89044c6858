//! Subscriptions: an agent asks to hear about changes under a path pattern.
//!
//! Changes come from the store's events table, so writes from any process are seen. Each pass
//! of [`Subscriptions::pump`] reads the events after its cursor and, in the same transaction
//! that moves the cursor, files a notice for every subscription whose pattern matches a path its
//! agent may read (the agent's own changes excepted). Notices wait in `pending` for the agent
//! (`avm pending`) and, for subscriptions with a webhook, become deliveries in an outbox:
//! `realtime` one per change, `throttled` at most one batch per `throttle` seconds, `digest` one
//! summary per period (default a day). [`Subscriptions::deliver`] POSTs due deliveries with an
//! `X-Avm-Signature: sha256=<hex>` header (HMAC-SHA256 of the body with the subscription's
//! secret) and retries failures with exponential backoff (1 s doubling to 5 min, 15 tries).
//! Everything lives in a SQLite file beside the database, so delivery state survives restarts
//! and nothing is lost between a change and its delivery (at least once).

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use avm_sqlite::DbFile;
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use serde_json::{Value, json};
use sha2::Sha256;

use avm_core::bytes::{hex, random_hex};
use avm_core::router::Pattern;
use avm_core::storage::MemoryStore;
use avm_core::time::{Micros, now_micros, to_iso};
use avm_core::{Caller, Error, ErrorKind, Policy, Result};

/// Attempts before a delivery is given up.
pub const MAX_ATTEMPTS: i64 = 15;
/// Longest wait between two attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Default period of a digest.
pub const DIGEST_SECS: i64 = 86_400;

/// How a subscription is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Every change at once.
    Realtime,
    /// At most one batch per `throttle` seconds.
    Throttled,
    /// A summary per period.
    Digest,
}

impl Mode {
    /// Parses `realtime`, `throttled` or `digest`.
    pub fn parse(s: &str) -> Result<Mode> {
        match s {
            "realtime" => Ok(Mode::Realtime),
            "throttled" => Ok(Mode::Throttled),
            "digest" => Ok(Mode::Digest),
            other => Err(Error::invalid(format!(
                "mode {other:?}: use realtime, throttled or digest"
            ))),
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Mode::Realtime => "realtime",
            Mode::Throttled => "throttled",
            Mode::Digest => "digest",
        }
    }
}

/// A subscription as listed (its secret is shown only when it is made).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Subscription {
    /// Id.
    pub id: i64,
    /// Whose.
    pub agent: String,
    /// Path pattern (`*` one segment, `**` the rest, `{name}` one segment).
    pub pattern: String,
    /// How it is told.
    pub mode: Mode,
    /// Seconds between batches (throttled, digest).
    pub throttle_secs: i64,
    /// Where deliveries go, if anywhere.
    pub webhook: Option<String>,
    /// Notices not yet cleared.
    pub pending: i64,
    /// Deliveries waiting or retrying.
    pub undelivered: i64,
}

/// One change filed for a subscription.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Notice {
    /// The subscription.
    pub subscription: i64,
    /// Event sequence number.
    pub seq: i64,
    /// When it happened (ISO 8601).
    pub at: String,
    /// `create`, `update`, `delete`, `move`, …
    pub kind: String,
    /// The path.
    pub path: String,
    /// Who made the change.
    pub by: Option<String>,
}

/// The subscription file.
pub struct Subscriptions {
    conn: Mutex<Connection>,
    file: DbFile,
}

/// HMAC-SHA256 of `body` under `key`, hex (RFC 2104).
pub fn sign(key: &[u8], body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    // HMAC takes a key of any length (a long one is hashed first), so this cannot fail.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return String::new();
    };
    mac.update(body);
    hex(&mac.finalize().into_bytes())
}

/// A subscription as the pump reads it: id, agent, pattern, mode, throttle, webhook, last batch.
type SubRow = (i64, String, Pattern, String, i64, Option<String>, i64);
/// A pending notice as a batch reads it: seq, at, kind, path, by.
type PendingRow = (i64, i64, String, String, Option<String>);
/// A due delivery: outbox id, webhook, secret, payload, attempts so far.
type DueRow = (i64, String, String, String, i64);

fn backoff(attempts: i64) -> Micros {
    let secs = 1u64 << attempts.clamp(0, 20);
    Duration::from_secs(secs).min(MAX_BACKOFF).as_micros() as Micros
}

impl Subscriptions {
    /// Opens (creating) the subscription file.
    pub fn open(path: &Path) -> Result<Self> {
        // Secrets live here: the file is its owner's only.
        let file = DbFile::new(path, "subscription store");
        let c = file.open()?;
        c.execute_batch(
            "CREATE TABLE IF NOT EXISTS subs(
                id INTEGER PRIMARY KEY, agent TEXT NOT NULL, pattern TEXT NOT NULL,
                mode TEXT NOT NULL, throttle_secs INTEGER NOT NULL, webhook TEXT,
                secret TEXT NOT NULL, created_at INTEGER NOT NULL, last_batch INTEGER NOT NULL DEFAULT 0);
             CREATE TABLE IF NOT EXISTS cursor(k TEXT PRIMARY KEY, seq INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS pending(
                sub_id INTEGER NOT NULL, seq INTEGER NOT NULL, at INTEGER NOT NULL,
                kind TEXT NOT NULL, path TEXT NOT NULL, by TEXT, batched INTEGER NOT NULL DEFAULT 0,
                PRIMARY KEY(sub_id, seq));
             CREATE TABLE IF NOT EXISTS outbox(
                id INTEGER PRIMARY KEY, sub_id INTEGER NOT NULL, payload TEXT NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0, next_at INTEGER NOT NULL,
                delivered_at INTEGER, last_error TEXT);
             CREATE INDEX IF NOT EXISTS outbox_due ON outbox(next_at) WHERE delivered_at IS NULL;",
        )
        .map_err(|e| file.err(e))?;
        Ok(Subscriptions {
            conn: Mutex::new(c),
            file,
        })
    }

    fn conn(&self) -> Result<std::sync::MutexGuard<'_, Connection>> {
        self.conn
            .lock()
            .map_err(|_| Error::internal("subscriptions lock poisoned"))
    }

    /// Subscribes `agent`; returns the id and the webhook secret (shown only now). New
    /// subscriptions hear about changes from now on: the cursor starts at `store`'s last event.
    pub fn subscribe(
        &self,
        store: &dyn MemoryStore,
        agent: &str,
        pattern: &str,
        mode: Mode,
        throttle_secs: Option<i64>,
        webhook: Option<&str>,
    ) -> Result<(i64, String)> {
        avm_core::config::validate_agent_id(agent)?;
        Pattern::parse(pattern)?;
        if let Some(w) = webhook {
            avm_provider_http::client::parse_url(w)?;
        }
        let throttle = match (mode, throttle_secs) {
            (_, Some(t)) if t < 1 => {
                return Err(Error::invalid("--throttle must be at least 1 second"));
            }
            (Mode::Realtime, Some(_)) => {
                return Err(Error::invalid(
                    "--throttle applies to throttled and digest modes",
                ));
            }
            (Mode::Realtime, None) => 0,
            (Mode::Throttled, t) => t.unwrap_or(60),
            (Mode::Digest, t) => t.unwrap_or(DIGEST_SECS),
        };
        let secret = random_hex(32)?;
        let last = store.last_event()?;
        let c = self.conn()?;
        // The cursor never moves back; a first subscription starts it at the present.
        c.execute(
            "INSERT INTO cursor(k, seq) VALUES ('events', ?1) ON CONFLICT(k) DO NOTHING",
            params![last],
        )
        .map_err(|e| self.file.err(e))?;
        c.execute(
            "INSERT INTO subs(agent, pattern, mode, throttle_secs, webhook, secret, created_at, last_batch)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
            params![agent, pattern, mode.as_str(), throttle, webhook, secret, now_micros()],
        )
        .map_err(|e| self.file.err(e))?;
        Ok((c.last_insert_rowid(), secret))
    }

    /// Subscriptions of `caller` (all of them for an operator).
    pub fn list(&self, caller: &Caller) -> Result<Vec<Subscription>> {
        let c = self.conn()?;
        let mut st = c
            .prepare(
                "SELECT id, agent, pattern, mode, throttle_secs, webhook,
                    (SELECT COUNT(*) FROM pending p WHERE p.sub_id = s.id),
                    (SELECT COUNT(*) FROM outbox o WHERE o.sub_id = s.id AND o.delivered_at IS NULL)
                 FROM subs s WHERE ?1 IS NULL OR agent = ?1 ORDER BY id",
            )
            .map_err(|e| self.file.err(e))?;
        let rows = st
            .query_map(params![caller.agent()], |r| {
                let mode: String = r.get(3)?;
                Ok(Subscription {
                    id: r.get(0)?,
                    agent: r.get(1)?,
                    pattern: r.get(2)?,
                    mode: Mode::parse(&mode).unwrap_or(Mode::Realtime),
                    throttle_secs: r.get(4)?,
                    webhook: r.get(5)?,
                    pending: r.get(6)?,
                    undelivered: r.get(7)?,
                })
            })
            .map_err(|e| self.file.err(e))?;
        rows.collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| self.file.err(e))
    }

    /// Removes subscription `id` (its owner's or, for an operator, anyone's).
    pub fn unsubscribe(&self, caller: &Caller, id: i64) -> Result<()> {
        let mut c = self.conn()?;
        let tx = c.transaction().map_err(|e| self.file.err(e))?;
        let n = tx
            .execute(
                "DELETE FROM subs WHERE id = ?1 AND (?2 IS NULL OR agent = ?2)",
                params![id, caller.agent()],
            )
            .map_err(|e| self.file.err(e))?;
        if n == 0 {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!("no subscription {id} of yours; `avm subscriptions` lists them"),
            ));
        }
        tx.execute("DELETE FROM pending WHERE sub_id = ?1", params![id])
            .map_err(|e| self.file.err(e))?;
        tx.execute("DELETE FROM outbox WHERE sub_id = ?1", params![id])
            .map_err(|e| self.file.err(e))?;
        tx.commit().map_err(|e| self.file.err(e))
    }

    /// Files notices for the events since the cursor and queues due batches; returns how many
    /// notices were filed. Safe to run from several processes (one transaction each).
    pub fn pump(&self, store: &dyn MemoryStore, policy: &Policy) -> Result<usize> {
        let mut c = self.conn()?;
        let subs: Vec<SubRow> = {
            let mut st = c
                .prepare(
                    "SELECT id, agent, pattern, mode, throttle_secs, webhook, last_batch FROM subs",
                )
                .map_err(|e| self.file.err(e))?;
            let rows = st
                .query_map([], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, i64>(4)?,
                        r.get::<_, Option<String>>(5)?,
                        r.get::<_, i64>(6)?,
                    ))
                })
                .map_err(|e| self.file.err(e))?;
            let mut out = Vec::new();
            for row in rows {
                let (id, agent, pattern, mode, throttle, webhook, last) =
                    row.map_err(|e| self.file.err(e))?;
                if let Ok(p) = Pattern::parse(&pattern) {
                    out.push((id, agent, p, mode, throttle, webhook, last));
                }
            }
            out
        };
        if subs.is_empty() {
            return Ok(0);
        }
        let tx = c.transaction().map_err(|e| self.file.err(e))?;
        let cursor: i64 = tx
            .query_row("SELECT seq FROM cursor WHERE k = 'events'", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| self.file.err(e))?
            .unwrap_or(0);
        let events = store.events_after(cursor, 2000)?;
        let mut filed = 0;
        let now = now_micros();
        for e in &events {
            for (id, agent, pattern, mode, _, webhook, _) in &subs {
                if e.agent.as_deref() == Some(agent.as_str()) {
                    continue;
                }
                let who = Caller::Agent(agent.clone());
                let hit = |p: &str| {
                    pattern.matches(p).is_some() && who.may_see(p) && policy.may_read(&who, p)
                };
                let path = if hit(&e.path) {
                    e.path.clone()
                } else if let Some(d) = e.detail.as_deref().filter(|d| d.starts_with('/') && hit(d))
                {
                    d.to_string()
                } else {
                    continue;
                };
                let n = tx
                    .execute(
                        "INSERT OR IGNORE INTO pending(sub_id, seq, at, kind, path, by) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                        params![id, e.seq, e.at, e.kind, path, e.agent],
                    )
                    .map_err(|e| self.file.err(e))?;
                filed += n;
                if n > 0 && mode == "realtime" && webhook.is_some() {
                    let payload = json!({
                        "subscription": id,
                        "agent": agent,
                        "mode": "realtime",
                        "events": [{"seq": e.seq, "at": to_iso(e.at), "kind": e.kind, "path": path, "by": e.agent}],
                    });
                    tx.execute(
                        "INSERT INTO outbox(sub_id, payload, next_at) VALUES (?1, ?2, ?3)",
                        params![id, payload.to_string(), now],
                    )
                    .map_err(|e| self.file.err(e))?;
                    tx.execute(
                        "UPDATE pending SET batched = 1 WHERE sub_id = ?1 AND seq = ?2",
                        params![id, e.seq],
                    )
                    .map_err(|e| self.file.err(e))?;
                }
            }
        }
        if let Some(last) = events.last() {
            tx.execute(
                "INSERT INTO cursor(k, seq) VALUES ('events', ?1)
                 ON CONFLICT(k) DO UPDATE SET seq = max(seq, excluded.seq)",
                params![last.seq],
            )
            .map_err(|e| self.file.err(e))?;
        }
        // Batches of throttled and digest subscriptions whose period has passed.
        for (id, agent, _, mode, throttle, webhook, last_batch) in &subs {
            if mode == "realtime" || webhook.is_none() || now - last_batch < throttle * 1_000_000 {
                continue;
            }
            let rows: Vec<PendingRow> = {
                let mut st = tx
                    .prepare(
                        "SELECT seq, at, kind, path, by FROM pending WHERE sub_id = ?1 AND batched = 0 ORDER BY seq",
                    )
                    .map_err(|e| self.file.err(e))?;
                let r = st
                    .query_map(params![id], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                    })
                    .map_err(|e| self.file.err(e))?;
                r.collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(|e| self.file.err(e))?
            };
            if rows.is_empty() {
                continue;
            }
            let payload = if mode == "digest" {
                let mut paths: Vec<&str> = rows.iter().map(|r| r.3.as_str()).collect();
                paths.sort_unstable();
                paths.dedup();
                json!({"subscription": id, "agent": agent, "mode": "digest",
                       "digest": {"changes": rows.len(), "paths": paths.iter().take(50).collect::<Vec<_>>(),
                                  "from": to_iso(rows[0].1), "to": to_iso(rows[rows.len() - 1].1)}})
            } else {
                json!({"subscription": id, "agent": agent, "mode": "throttled",
                       "events": rows.iter().map(|(seq, at, kind, path, by)| json!({"seq": seq, "at": to_iso(*at), "kind": kind, "path": path, "by": by})).collect::<Vec<Value>>()})
            };
            tx.execute(
                "INSERT INTO outbox(sub_id, payload, next_at) VALUES (?1, ?2, ?3)",
                params![id, payload.to_string(), now],
            )
            .map_err(|e| self.file.err(e))?;
            tx.execute(
                "UPDATE pending SET batched = 1 WHERE sub_id = ?1",
                params![id],
            )
            .map_err(|e| self.file.err(e))?;
            tx.execute(
                "UPDATE subs SET last_batch = ?1 WHERE id = ?2",
                params![now, id],
            )
            .map_err(|e| self.file.err(e))?;
        }
        tx.commit().map_err(|e| self.file.err(e))?;
        Ok(filed)
    }

    /// POSTs the deliveries that are due; returns (delivered, failed this pass).
    pub fn deliver(&self, timeout: Duration) -> Result<(usize, usize)> {
        let due: Vec<DueRow> = {
            let c = self.conn()?;
            let mut st = c
                .prepare(
                    "SELECT o.id, s.webhook, s.secret, o.payload, o.attempts FROM outbox o JOIN subs s ON s.id = o.sub_id
                     WHERE o.delivered_at IS NULL AND o.next_at <= ?1 AND s.webhook IS NOT NULL
                     ORDER BY o.id LIMIT 100",
                )
                .map_err(|e| self.file.err(e))?;
            let r = st
                .query_map(params![now_micros()], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })
                .map_err(|e| self.file.err(e))?;
            r.collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| self.file.err(e))?
        };
        let (mut ok, mut failed) = (0, 0);
        for (id, url, secret, payload, attempts) in due {
            let f = avm_provider_http::client::Fetch {
                url,
                headers: vec![
                    ("X-Avm-Delivery".into(), id.to_string()),
                    (
                        "X-Avm-Signature".into(),
                        format!("sha256={}", sign(secret.as_bytes(), payload.as_bytes())),
                    ),
                ],
                timeout,
                max_bytes: 64 << 10,
            };
            let outcome = match avm_provider_http::client::post(&f, payload.into_bytes()) {
                Ok(r) if (200..300).contains(&r.status) => Ok(()),
                Ok(r) => Err(format!("status {}", r.status)),
                Err(e) => Err(e.message().to_string()),
            };
            let c = self.conn()?;
            match outcome {
                Ok(()) => {
                    c.execute(
                        "UPDATE outbox SET delivered_at = ?1, attempts = attempts + 1, last_error = NULL WHERE id = ?2",
                        params![now_micros(), id],
                    )
                    .map_err(|e| self.file.err(e))?;
                    ok += 1;
                }
                Err(why) => {
                    let tries = attempts + 1;
                    let next = if tries >= MAX_ATTEMPTS {
                        i64::MAX
                    } else {
                        now_micros() + backoff(attempts)
                    };
                    c.execute(
                        "UPDATE outbox SET attempts = ?1, next_at = ?2, last_error = ?3 WHERE id = ?4",
                        params![tries, next, why, id],
                    )
                    .map_err(|e| self.file.err(e))?;
                    failed += 1;
                }
            }
        }
        Ok((ok, failed))
    }

    /// The notices waiting for `caller` (every agent's for an operator), oldest first; with
    /// `clear`, they are removed.
    pub fn pending(&self, caller: &Caller, clear: bool) -> Result<Vec<Notice>> {
        let mut c = self.conn()?;
        let tx = c.transaction().map_err(|e| self.file.err(e))?;
        let out = {
            let mut st = tx
                .prepare(
                    "SELECT p.sub_id, p.seq, p.at, p.kind, p.path, p.by FROM pending p JOIN subs s ON s.id = p.sub_id
                     WHERE ?1 IS NULL OR s.agent = ?1 ORDER BY p.seq, p.sub_id",
                )
                .map_err(|e| self.file.err(e))?;
            let r = st
                .query_map(params![caller.agent()], |r| {
                    Ok(Notice {
                        subscription: r.get(0)?,
                        seq: r.get(1)?,
                        at: to_iso(r.get(2)?),
                        kind: r.get(3)?,
                        path: r.get(4)?,
                        by: r.get(5)?,
                    })
                })
                .map_err(|e| self.file.err(e))?;
            r.collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| self.file.err(e))?
        };
        if clear {
            // Notices still owed to a batch stay until the batch is queued.
            tx.execute(
                "DELETE FROM pending
                 WHERE sub_id IN (SELECT id FROM subs WHERE ?1 IS NULL OR agent = ?1)
                   AND (batched = 1 OR sub_id IN (SELECT id FROM subs WHERE webhook IS NULL))",
                params![caller.agent()],
            )
            .map_err(|e| self.file.err(e))?;
        }
        tx.commit().map_err(|e| self.file.err(e))?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_the_rfc_4231_test_vector() {
        // RFC 4231, test case 2.
        assert_eq!(
            sign(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff(0), 1_000_000);
        assert_eq!(backoff(3), 8_000_000);
        assert_eq!(backoff(30), 300_000_000);
    }
}
