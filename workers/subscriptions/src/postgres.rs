//! The subscription store in the PostgreSQL database of a shared memory store.
//!
//! The same tables as the SQLite file's, prefixed `sub_` so they sit beside the memory
//! engine's, and the same semantics; what differs is that several servers run the same
//! workers on them at once, and each notice must still be filed and delivered once:
//! - [`PgSubs::pump`] first locks the cursor's row (`SELECT … FOR UPDATE`) and holds it
//!   until the transaction that files the notices, queues the deliveries and moves the cursor
//!   commits; a second server's pump waits, then reads the moved cursor, so no event is
//!   filed twice (and `(sub_id, seq)` is a key besides). Subscriptions are read under the
//!   lock too, so a batch's period is judged on the last committed batch, and
//!   [`PgSubs::unsubscribe`] takes the same lock, so a pump never files for a subscription
//!   that is being removed.
//! - [`PgSubs::deliver`] claims one due delivery at a time with `FOR UPDATE SKIP LOCKED`,
//!   stamping it with this server's name and a lease (`claimed_until`: the post's timeout
//!   plus [`LEASE_MARGIN`]); no transaction stays open while it posts. Other servers skip a
//!   claimed delivery until its lease runs out, so one whose server died mid-delivery is
//!   retried by another. The outcome is recorded as SQLite does (delivered, or attempts,
//!   backoff and finally a dead letter); a failure is recorded only while the claim is still
//!   this server's.
//! - [`PgSubs::pending`] with `clear` reads and deletes in one repeatable-read transaction, so
//!   it removes only the notices it returned (a concurrent clear is retried).

use std::time::Duration;

use avm_postgres::Tx;

use avm_core::bytes::random_hex;
use avm_core::router::Pattern;
use avm_core::storage::MemoryStore;
use avm_core::time::{Micros, now_micros, to_iso};
use avm_core::{Caller, Error, ErrorKind, Policy, Result};
use avm_postgres::{Failure, Migration, Pg, PgOptions, Queries};

use crate::{
    DueRow, LEASE_MARGIN, Mode, NewSub, Notice, PendingRow, SubRow, Subscription, batch_due,
    batch_payload, filed_path, post, realtime_payload, retry,
};

/// The component's name in `avm_migrations`.
pub(crate) const COMPONENT: &str = "subscriptions";

/// Every migration, oldest first.
pub(crate) const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "subscriptions, pending notices and the webhook outbox",
    sql: V1,
}];

const V1: &str = r#"
CREATE TABLE sub_subs(
  id            bigserial PRIMARY KEY,
  agent         text   NOT NULL,
  pattern       text   NOT NULL,
  mode          text   NOT NULL,
  throttle_secs bigint NOT NULL,
  webhook       text,
  secret        text   NOT NULL,
  created_at    bigint NOT NULL,
  last_batch    bigint NOT NULL DEFAULT 0
);
CREATE INDEX sub_subs_agent ON sub_subs(agent);

-- The events already filed: one row, 'events', locked by the pump that moves it.
CREATE TABLE sub_cursor(
  k   text PRIMARY KEY,
  seq bigint NOT NULL
);

CREATE TABLE sub_pending(
  sub_id   bigint  NOT NULL REFERENCES sub_subs(id) ON DELETE CASCADE,
  seq      bigint  NOT NULL,
  at       bigint  NOT NULL,
  kind     text    NOT NULL,
  path     text    NOT NULL,
  by_agent text,
  batched  boolean NOT NULL DEFAULT false,
  PRIMARY KEY(sub_id, seq)
);

CREATE TABLE sub_outbox(
  id            bigserial PRIMARY KEY,
  sub_id        bigint NOT NULL REFERENCES sub_subs(id) ON DELETE CASCADE,
  payload       text   NOT NULL,
  attempts      bigint NOT NULL DEFAULT 0,
  next_at       bigint NOT NULL,
  delivered_at  bigint,
  last_error    text,
  -- The server posting it now, and until when its claim holds.
  claimed_by    text,
  claimed_until bigint
);
CREATE INDEX sub_outbox_due ON sub_outbox(next_at) WHERE delivered_at IS NULL;
CREATE INDEX sub_outbox_sub ON sub_outbox(sub_id);
"#;

/// Deliveries one pass posts at most (as SQLite's).
const BATCH: usize = 100;

/// The subscription tables in a PostgreSQL database.
pub(crate) struct PgSubs {
    pg: Pg,
    /// This process's name on the deliveries it claims.
    me: String,
}

/// Locks the cursor's row until `tx` ends; its position, if it exists.
fn lock_cursor(tx: &mut Tx<'_>) -> std::result::Result<Option<i64>, postgres::Error> {
    tx.query_opt(
        "SELECT seq FROM sub_cursor WHERE k = 'events' FOR UPDATE",
        &[],
    )?
    .map(|r| r.try_get(0))
    .transpose()
}

impl PgSubs {
    /// Connects and creates or upgrades the tables.
    pub(crate) fn open(url: &str, opts: PgOptions) -> Result<Self> {
        let pg = Pg::shared(url, opts)?;
        avm_postgres::migrate(&pg, COMPONENT, MIGRATIONS)?;
        let me = format!("{}-{}", std::process::id(), random_hex(6)?);
        Ok(PgSubs { pg, me })
    }

    pub(crate) fn subscribe(&self, new: &NewSub<'_>) -> Result<i64> {
        let now = now_micros();
        self.pg.transaction(|tx| {
            // The cursor never moves back; a first subscription starts it at the present.
            tx.execute(
                "INSERT INTO sub_cursor(k, seq) VALUES ('events', $1) ON CONFLICT(k) DO NOTHING",
                &[&new.last],
            )?;
            let id: i64 = tx
                .query_one(
                    "INSERT INTO sub_subs(agent, pattern, mode, throttle_secs, webhook, secret, created_at, last_batch)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $7) RETURNING id",
                    &[
                        &new.agent,
                        &new.pattern,
                        &new.mode.as_str(),
                        &new.throttle,
                        &new.webhook,
                        &new.secret,
                        &now,
                    ],
                )?
                .try_get(0)?;
            Ok(id)
        })
    }

    pub(crate) fn list(&self, caller: &Caller) -> Result<Vec<Subscription>> {
        let mut c = self.pg.conn()?;
        let rows = c
            .query(
                "SELECT id, agent, pattern, mode, throttle_secs, webhook,
                    (SELECT COUNT(*) FROM sub_pending p WHERE p.sub_id = s.id),
                    (SELECT COUNT(*) FROM sub_outbox o WHERE o.sub_id = s.id AND o.delivered_at IS NULL)
                 FROM sub_subs s WHERE $1::text IS NULL OR agent = $1 ORDER BY id",
                &[&caller.agent()],
            )
            .map_err(|e| self.pg.err(e))?;
        rows.iter()
            .map(|r| {
                let mode: String = r.try_get(3)?;
                Ok(Subscription {
                    id: r.try_get(0)?,
                    agent: r.try_get(1)?,
                    pattern: r.try_get(2)?,
                    mode: Mode::parse(&mode).unwrap_or(Mode::Realtime),
                    throttle_secs: r.try_get(4)?,
                    webhook: r.try_get(5)?,
                    pending: r.try_get(6)?,
                    undelivered: r.try_get(7)?,
                })
            })
            .collect::<std::result::Result<Vec<_>, postgres::Error>>()
            .map_err(|e| self.pg.err(e))
    }

    pub(crate) fn unsubscribe(&self, caller: &Caller, id: i64) -> Result<()> {
        self.pg.transaction(|tx| {
            // Waits for a pump in progress, which may be filing for this subscription.
            lock_cursor(tx)?;
            // Its pending notices and deliveries go with it (ON DELETE CASCADE).
            let n = tx.execute(
                "DELETE FROM sub_subs WHERE id = $1 AND ($2::text IS NULL OR agent = $2)",
                &[&id, &caller.agent()],
            )?;
            if n == 0 {
                return Err(Failure::Refused(Error::new(
                    ErrorKind::NotFound,
                    format!("no subscription {id} of yours; `avm subscriptions` lists them"),
                )));
            }
            Ok(())
        })
    }

    pub(crate) fn pump(&self, store: &dyn MemoryStore, policy: &Policy) -> Result<usize> {
        self.pg.transaction(|tx| {
            // Held until commit: one server at a time files events and moves the cursor.
            let mut cursor = lock_cursor(tx)?;
            let subs = read_subs(tx)?;
            if subs.is_empty() {
                return Ok(0);
            }
            if cursor.is_none() {
                // A first subscription committed its cursor after the lock was tried.
                cursor = lock_cursor(tx)?;
            }
            let events = store.events_after(cursor.unwrap_or(0), 2000)?;
            let mut filed = 0;
            let now = now_micros();
            for e in &events {
                for (id, agent, pattern, mode, _, webhook, _) in &subs {
                    let Some(path) = filed_path(e, agent, pattern, policy) else {
                        continue;
                    };
                    let realtime = mode == "realtime" && webhook.is_some();
                    // A realtime delivery carries the notice: it is batched as it is filed.
                    let n = tx.execute(
                        "INSERT INTO sub_pending(sub_id, seq, at, kind, path, by_agent, batched)
                         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
                        &[id, &e.seq, &e.at, &e.kind, &path, &e.agent, &realtime],
                    )?;
                    filed += usize::try_from(n).unwrap_or(0);
                    if n > 0 && realtime {
                        tx.execute(
                            "INSERT INTO sub_outbox(sub_id, payload, next_at) VALUES ($1, $2, $3)",
                            &[id, &realtime_payload(*id, agent, e, &path), &now],
                        )?;
                    }
                }
            }
            if let Some(last) = events.last() {
                tx.execute(
                    "INSERT INTO sub_cursor(k, seq) VALUES ('events', $1)
                     ON CONFLICT(k) DO UPDATE SET seq = greatest(sub_cursor.seq, excluded.seq)",
                    &[&last.seq],
                )?;
            }
            // Batches of throttled and digest subscriptions whose period has passed.
            for (id, agent, _, mode, throttle, webhook, last_batch) in &subs {
                if !batch_due(mode, webhook.as_deref(), now, *last_batch, *throttle) {
                    continue;
                }
                let rows: Vec<PendingRow> = tx
                    .query(
                        "SELECT seq, at, kind, path, by_agent FROM sub_pending
                         WHERE sub_id = $1 AND NOT batched ORDER BY seq",
                        &[id],
                    )?
                    .iter()
                    .map(|r| {
                        Ok((
                            r.try_get(0)?,
                            r.try_get(1)?,
                            r.try_get(2)?,
                            r.try_get(3)?,
                            r.try_get(4)?,
                        ))
                    })
                    .collect::<std::result::Result<_, postgres::Error>>()?;
                if rows.is_empty() {
                    continue;
                }
                tx.execute(
                    "INSERT INTO sub_outbox(sub_id, payload, next_at) VALUES ($1, $2, $3)",
                    &[id, &batch_payload(*id, agent, mode, &rows), &now],
                )?;
                tx.execute(
                    "UPDATE sub_pending SET batched = true WHERE sub_id = $1 AND NOT batched",
                    &[id],
                )?;
                tx.execute(
                    "UPDATE sub_subs SET last_batch = $1 WHERE id = $2",
                    &[&now, id],
                )?;
            }
            Ok(filed)
        })
    }

    pub(crate) fn deliver(&self, timeout: Duration) -> Result<(usize, usize)> {
        let lease = Micros::try_from(timeout.saturating_add(LEASE_MARGIN).as_micros())
            .unwrap_or(Micros::MAX / 2);
        let (mut ok, mut failed) = (0, 0);
        for _ in 0..BATCH {
            let Some((id, url, secret, payload, attempts)) = self.claim(lease)? else {
                break;
            };
            let outcome = post(id, url, &secret, payload, timeout);
            let mut c = self.pg.conn()?;
            match outcome {
                Ok(()) => {
                    // Delivered, whoever holds the claim now (a slow post may have outlived
                    // its lease): it need not be sent again.
                    c.execute(
                        "UPDATE sub_outbox SET delivered_at = $1, attempts = attempts + 1, last_error = NULL,
                            claimed_by = NULL, claimed_until = NULL
                         WHERE id = $2 AND delivered_at IS NULL",
                        &[&now_micros(), &id],
                    )
                    .map_err(|e| self.pg.err(e))?;
                    ok += 1;
                }
                Err(why) => {
                    let (tries, next) = retry(attempts);
                    c.execute(
                        "UPDATE sub_outbox SET attempts = $1, next_at = $2, last_error = $3,
                            claimed_by = NULL, claimed_until = NULL
                         WHERE id = $4 AND claimed_by = $5 AND delivered_at IS NULL",
                        &[&tries, &next, &why, &id, &self.me],
                    )
                    .map_err(|e| self.pg.err(e))?;
                    failed += 1;
                }
            }
        }
        Ok((ok, failed))
    }

    /// Claims the oldest due delivery that no live server holds, for `lease` microseconds:
    /// outbox id, webhook, secret, payload, attempts so far.
    fn claim(&self, lease: Micros) -> Result<Option<DueRow>> {
        let now = now_micros();
        let until = now.saturating_add(lease);
        let mut c = self.pg.conn()?;
        let row = c
            .query_opt(
                "WITH claimed AS (
                   UPDATE sub_outbox SET claimed_by = $1, claimed_until = $2
                   WHERE id = (
                     SELECT o.id FROM sub_outbox o JOIN sub_subs s ON s.id = o.sub_id
                     WHERE o.delivered_at IS NULL AND o.next_at <= $3 AND s.webhook IS NOT NULL
                       AND (o.claimed_until IS NULL OR o.claimed_until <= $3)
                     ORDER BY o.id LIMIT 1
                     FOR UPDATE OF o SKIP LOCKED)
                   RETURNING id, sub_id, payload, attempts)
                 SELECT c.id, s.webhook, s.secret, c.payload, c.attempts
                 FROM claimed c JOIN sub_subs s ON s.id = c.sub_id",
                &[&self.me, &until, &now],
            )
            .map_err(|e| self.pg.err(e))?;
        row.map(|r| {
            Ok((
                r.try_get(0)?,
                r.try_get(1)?,
                r.try_get(2)?,
                r.try_get(3)?,
                r.try_get(4)?,
            ))
        })
        .transpose()
        .map_err(|e: postgres::Error| self.pg.err(e))
    }

    pub(crate) fn pending(&self, caller: &Caller, clear: bool) -> Result<Vec<Notice>> {
        self.pg.transaction(|tx| {
            // One snapshot for the read and the delete: only what is returned is removed.
            tx.batch_execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")?;
            let out = tx
                .query(
                    "SELECT p.sub_id, p.seq, p.at, p.kind, p.path, p.by_agent
                     FROM sub_pending p JOIN sub_subs s ON s.id = p.sub_id
                     WHERE $1::text IS NULL OR s.agent = $1 ORDER BY p.seq, p.sub_id",
                    &[&caller.agent()],
                )?
                .iter()
                .map(|r| {
                    Ok(Notice {
                        subscription: r.try_get(0)?,
                        seq: r.try_get(1)?,
                        at: to_iso(r.try_get(2)?),
                        kind: r.try_get(3)?,
                        path: r.try_get(4)?,
                        by: r.try_get(5)?,
                    })
                })
                .collect::<std::result::Result<Vec<_>, postgres::Error>>()?;
            if clear {
                // Notices still owed to a batch stay until the batch is queued.
                tx.execute(
                    "DELETE FROM sub_pending
                     WHERE sub_id IN (SELECT id FROM sub_subs WHERE $1::text IS NULL OR agent = $1)
                       AND (batched OR sub_id IN (SELECT id FROM sub_subs WHERE webhook IS NULL))",
                    &[&caller.agent()],
                )?;
            }
            Ok(out)
        })
    }
}

/// The subscriptions with a pattern that parses (as the SQLite store reads them).
fn read_subs(tx: &mut Tx<'_>) -> std::result::Result<Vec<SubRow>, postgres::Error> {
    let rows = tx.query(
        "SELECT id, agent, pattern, mode, throttle_secs, webhook, last_batch FROM sub_subs ORDER BY id",
        &[],
    )?;
    let mut out = Vec::new();
    for r in &rows {
        let pattern: String = r.try_get(2)?;
        if let Ok(p) = Pattern::parse(&pattern) {
            out.push((
                r.try_get(0)?,
                r.try_get(1)?,
                p,
                r.try_get(3)?,
                r.try_get(4)?,
                r.try_get(5)?,
                r.try_get(6)?,
            ));
        }
    }
    Ok(out)
}
