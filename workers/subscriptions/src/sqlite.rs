//! The subscription store in a SQLite file beside a SQLite memory store.

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use avm_sqlite::DbFile;
use rusqlite::{Connection, OptionalExtension, params};

use avm_core::router::Pattern;
use avm_core::storage::MemoryStore;
use avm_core::time::{now_micros, to_iso};
use avm_core::{Caller, Error, ErrorKind, Policy, Result};

use crate::{
    DueRow, Mode, NewSub, Notice, PendingRow, SubRow, Subscription, batch_due, batch_payload,
    filed_path, post, realtime_payload, retry,
};

/// The subscription file.
pub(crate) struct SqliteSubs {
    conn: Mutex<Connection>,
    file: DbFile,
}

impl SqliteSubs {
    /// Opens (creating) the subscription file.
    pub(crate) fn open(path: &Path) -> Result<Self> {
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
        Ok(SqliteSubs {
            conn: Mutex::new(c),
            file,
        })
    }

    fn conn(&self) -> Result<std::sync::MutexGuard<'_, Connection>> {
        self.conn
            .lock()
            .map_err(|_| Error::internal("subscriptions lock poisoned"))
    }

    /// Stores a checked subscription; returns its id.
    pub(crate) fn subscribe(&self, new: &NewSub<'_>) -> Result<i64> {
        let c = self.conn()?;
        // The cursor never moves back; a first subscription starts it at the present.
        c.execute(
            "INSERT INTO cursor(k, seq) VALUES ('events', ?1) ON CONFLICT(k) DO NOTHING",
            params![new.last],
        )
        .map_err(|e| self.file.err(e))?;
        c.execute(
            "INSERT INTO subs(agent, pattern, mode, throttle_secs, webhook, secret, created_at, last_batch)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
            params![
                new.agent,
                new.pattern,
                new.mode.as_str(),
                new.throttle,
                new.webhook,
                new.secret,
                now_micros()
            ],
        )
        .map_err(|e| self.file.err(e))?;
        Ok(c.last_insert_rowid())
    }

    pub(crate) fn list(&self, caller: &Caller) -> Result<Vec<Subscription>> {
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

    pub(crate) fn unsubscribe(&self, caller: &Caller, id: i64) -> Result<()> {
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

    pub(crate) fn pump(&self, store: &dyn MemoryStore, policy: &Policy) -> Result<usize> {
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
                let Some(path) = filed_path(e, agent, pattern, policy) else {
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
                    tx.execute(
                        "INSERT INTO outbox(sub_id, payload, next_at) VALUES (?1, ?2, ?3)",
                        params![id, realtime_payload(*id, agent, e, &path), now],
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
            if !batch_due(mode, webhook.as_deref(), now, *last_batch, *throttle) {
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
            tx.execute(
                "INSERT INTO outbox(sub_id, payload, next_at) VALUES (?1, ?2, ?3)",
                params![id, batch_payload(*id, agent, mode, &rows), now],
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

    pub(crate) fn deliver(&self, timeout: Duration) -> Result<(usize, usize)> {
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
            let outcome = post(id, url, &secret, payload, timeout);
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
                    let (tries, next) = retry(attempts);
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

    pub(crate) fn pending(&self, caller: &Caller, clear: bool) -> Result<Vec<Notice>> {
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
