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
//!
//! Where it all lives follows the memory store:
//! - beside a SQLite store, in a SQLite file of its own ([`Subscriptions::open`]), so delivery
//!   state survives restarts and nothing is lost between a change and its delivery (at least
//!   once);
//! - with a PostgreSQL store, in the same database (tables `sub_*`,
//!   [`Subscriptions::open_postgres`]), shared by every `avm serve` on it, and each notice is
//!   filed and delivered once, not once per server: a pump holds the cursor's row for its
//!   whole transaction, so two servers never file the same events, and a delivery is leased
//!   to one server (`claimed_by`, `claimed_until`) while it posts, so another retries it only
//!   if that server died mid-delivery and its lease ran out.

use std::path::Path;
use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};
use sha2::Sha256;

use avm_core::bytes::{hex, random_hex};
use avm_core::router::Pattern;
use avm_core::storage::{MemoryStore, StoreEvent};
use avm_core::time::{Micros, now_micros, to_iso};
use avm_core::{Caller, Error, Policy, Result};

mod postgres;
mod sqlite;

pub use avm_postgres::PgOptions;

/// Attempts before a delivery is given up.
pub const MAX_ATTEMPTS: i64 = 15;
/// Longest wait between two attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Default period of a digest.
pub const DIGEST_SECS: i64 = 86_400;
/// How long past a delivery's own timeout a server's claim on it lasts (PostgreSQL): when a
/// server dies mid-delivery, another one retries the delivery after this.
pub const LEASE_MARGIN: Duration = Duration::from_secs(60);

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

/// The subscription store: a SQLite file or tables in a PostgreSQL database.
pub struct Subscriptions {
    backend: Backend,
}

enum Backend {
    Sqlite(sqlite::SqliteSubs),
    Postgres(postgres::PgSubs),
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

/// A subscription about to be stored.
struct NewSub<'a> {
    agent: &'a str,
    pattern: &'a str,
    mode: Mode,
    throttle: i64,
    webhook: Option<&'a str>,
    secret: &'a str,
    /// The store's last event: where a first subscription starts the cursor.
    last: i64,
}

/// The path under which event `e` is filed for `agent`'s subscription to `pattern`, if it is:
/// the event's path, else (a move) its other path; never the agent's own change, nor a path
/// the agent may not read.
fn filed_path(e: &StoreEvent, agent: &str, pattern: &Pattern, policy: &Policy) -> Option<String> {
    if e.agent.as_deref() == Some(agent) {
        return None;
    }
    let who = Caller::Agent(agent.to_string());
    let hit = |p: &str| pattern.matches(p).is_some() && who.may_see(p) && policy.may_read(&who, p);
    if hit(&e.path) {
        Some(e.path.clone())
    } else {
        e.detail
            .as_deref()
            .filter(|d| d.starts_with('/') && hit(d))
            .map(str::to_string)
    }
}

/// The delivery of one change to a realtime subscription.
fn realtime_payload(id: i64, agent: &str, e: &StoreEvent, path: &str) -> String {
    json!({
        "subscription": id,
        "agent": agent,
        "mode": "realtime",
        "events": [{"seq": e.seq, "at": to_iso(e.at), "kind": e.kind, "path": path, "by": e.agent}],
    })
    .to_string()
}

/// Whether a throttled or digest subscription with a webhook is due a batch at `now`.
fn batch_due(
    mode: &str,
    webhook: Option<&str>,
    now: Micros,
    last_batch: i64,
    throttle: i64,
) -> bool {
    !(mode == "realtime" || webhook.is_none() || now - last_batch < throttle * 1_000_000)
}

/// The batch of `rows` (not empty) for a throttled or digest subscription.
fn batch_payload(id: i64, agent: &str, mode: &str, rows: &[PendingRow]) -> String {
    let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
        return String::new();
    };
    let payload = if mode == "digest" {
        let mut paths: Vec<&str> = rows.iter().map(|r| r.3.as_str()).collect();
        paths.sort_unstable();
        paths.dedup();
        json!({"subscription": id, "agent": agent, "mode": "digest",
               "digest": {"changes": rows.len(), "paths": paths.iter().take(50).collect::<Vec<_>>(),
                          "from": to_iso(first.1), "to": to_iso(last.1)}})
    } else {
        json!({"subscription": id, "agent": agent, "mode": "throttled",
               "events": rows.iter().map(|(seq, at, kind, path, by)| json!({"seq": seq, "at": to_iso(*at), "kind": kind, "path": path, "by": by})).collect::<Vec<Value>>()})
    };
    payload.to_string()
}

/// POSTs delivery `id` to `url`, signed with `secret`: `Ok` on a 2xx answer, else why not.
fn post(
    id: i64,
    url: String,
    secret: &str,
    payload: String,
    timeout: Duration,
) -> std::result::Result<(), String> {
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
    match avm_provider_http::client::post(&f, payload.into_bytes()) {
        Ok(r) if (200..300).contains(&r.status) => Ok(()),
        Ok(r) => Err(format!("status {}", r.status)),
        Err(e) => Err(e.message().to_string()),
    }
}

/// After a failed attempt (`attempts` before it): the attempts now and when to try next
/// (never, past [`MAX_ATTEMPTS`]).
fn retry(attempts: i64) -> (i64, Micros) {
    let tries = attempts + 1;
    let next = if tries >= MAX_ATTEMPTS {
        i64::MAX
    } else {
        now_micros() + backoff(attempts)
    };
    (tries, next)
}

impl Subscriptions {
    /// Opens (creating) the subscription file.
    pub fn open(path: &Path) -> Result<Self> {
        Ok(Subscriptions {
            backend: Backend::Sqlite(sqlite::SqliteSubs::open(path)?),
        })
    }

    /// Opens the subscription store at `location`: a PostgreSQL address (`postgres://…`, the
    /// shared store's database; tables created or upgraded as needed, with a small pool of its
    /// own) or else a SQLite file.
    pub fn open_location(location: &str) -> Result<Self> {
        if avm_core::config::is_store_url(location) {
            Self::open_postgres(
                location,
                PgOptions {
                    max_connections: 4,
                    ..PgOptions::default()
                },
            )
        } else {
            Self::open(Path::new(location))
        }
    }

    /// Opens the subscription tables in the PostgreSQL database at `url`, creating or
    /// upgrading them (safe when several hosts start at once).
    pub fn open_postgres(url: &str, opts: PgOptions) -> Result<Self> {
        Ok(Subscriptions {
            backend: Backend::Postgres(postgres::PgSubs::open(url, opts)?),
        })
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
        let new = NewSub {
            agent,
            pattern,
            mode,
            throttle,
            webhook,
            secret: &secret,
            last,
        };
        let id = match &self.backend {
            Backend::Sqlite(s) => s.subscribe(&new)?,
            Backend::Postgres(p) => p.subscribe(&new)?,
        };
        Ok((id, secret))
    }

    /// Subscriptions of `caller` (all of them for an operator).
    pub fn list(&self, caller: &Caller) -> Result<Vec<Subscription>> {
        match &self.backend {
            Backend::Sqlite(s) => s.list(caller),
            Backend::Postgres(p) => p.list(caller),
        }
    }

    /// Removes subscription `id` (its owner's or, for an operator, anyone's).
    pub fn unsubscribe(&self, caller: &Caller, id: i64) -> Result<()> {
        match &self.backend {
            Backend::Sqlite(s) => s.unsubscribe(caller, id),
            Backend::Postgres(p) => p.unsubscribe(caller, id),
        }
    }

    /// Files notices for the events since the cursor and queues due batches; returns how many
    /// notices were filed. Safe to run from several processes (one transaction each; with
    /// PostgreSQL, from several hosts, each event filed once).
    pub fn pump(&self, store: &dyn MemoryStore, policy: &Policy) -> Result<usize> {
        match &self.backend {
            Backend::Sqlite(s) => s.pump(store, policy),
            Backend::Postgres(p) => p.pump(store, policy),
        }
    }

    /// POSTs the deliveries that are due; returns (delivered, failed this pass). With
    /// PostgreSQL, servers sharing the database each take different deliveries.
    pub fn deliver(&self, timeout: Duration) -> Result<(usize, usize)> {
        match &self.backend {
            Backend::Sqlite(s) => s.deliver(timeout),
            Backend::Postgres(p) => p.deliver(timeout),
        }
    }

    /// The notices waiting for `caller` (every agent's for an operator), oldest first; with
    /// `clear`, they are removed.
    pub fn pending(&self, caller: &Caller, clear: bool) -> Result<Vec<Notice>> {
        match &self.backend {
            Backend::Sqlite(s) => s.pending(caller, clear),
            Backend::Postgres(p) => p.pending(caller, clear),
        }
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
