//! avm-postgres: the one way avm talks to PostgreSQL, the store that many hosts share.
//!
//! Everything avm keeps in PostgreSQL goes through a [`Pg`], so every use of it:
//! - draws connections from one pool (sized by the caller), each checked before use, with a
//!   connect timeout, and names the server in messages without its password
//!   ([`Pg::target`]);
//! - runs its writes in [`Pg::transaction`], which retries serialization failures and
//!   deadlocks (SQLSTATE 40001, 40P01) with backoff and acknowledges nothing that did not
//!   commit: a commit whose outcome is unknown (the connection broke) is an error;
//! - creates and upgrades its tables with [`migrate`]: numbered migrations per component,
//!   each applied once in its own transaction, serialized across processes by an advisory
//!   lock, so several hosts starting at once never race, and a database that a newer avm
//!   migrated is refused by name;
//! - appends to ordered logs (events, outboxes) with [`lock_log`] first: sequence numbers
//!   from a sequence are handed out at insert, not at commit, so without it a reader of
//!   `seq > n` could pass over a row that commits later with a smaller number;
//! - wakes other hosts with `NOTIFY` ([`notify`], delivered when the transaction commits) and
//!   follows them with a [`Listener`];
//! - maps PostgreSQL's failures onto avm's [`ErrorKind`]s ([`Pg::err`]): unreachable or
//!   shutting down → `Unavailable`, serialization and lock conflicts → `Busy`, disk full →
//!   `StorageFull`, unique violation → `AlreadyExists`, privileges or a refused login →
//!   `PermissionDenied`, a statement timeout → `TimedOut`.

use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

use postgres::config::Host;
use postgres::error::SqlState;
use postgres::{Client as RawClient, Config, NoTls};
use r2d2_postgres::r2d2;

use avm_core::{Error, ErrorKind, Result};

mod client;
pub mod testing;

pub use client::{Client, Manager, Params, Queries, Sql, SqlRef, Tx};
pub use postgres::{IsolationLevel, Row, Statement};

/// A pooled connection.
pub type Conn = r2d2::PooledConnection<Manager>;

/// How to reach the server and how many connections to keep.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// Most connections this process opens (at least 1).
    pub max_connections: u32,
    /// How long to wait for the server to accept a connection (or for a free one in the pool).
    pub connect_timeout: Duration,
    /// How often a transaction is tried again after a serialization failure or deadlock.
    pub retries: u32,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            max_connections: 16,
            connect_timeout: Duration::from_secs(10),
            retries: 10,
        }
    }
}

/// A PostgreSQL database that avm uses: a pool of connections and what to call it.
#[derive(Clone)]
pub struct Pg {
    /// Shared by the clones; the connections close when the last clone goes.
    pool: std::sync::Arc<r2d2::Pool<Manager>>,
    config: Config,
    target: String,
    opts: PgOptions,
}

impl std::fmt::Debug for Pg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pg").field("target", &self.target).finish()
    }
}

/// Whether `s` names a PostgreSQL server (`postgres://…` or `postgresql://…`) rather than a
/// SQLite file.
pub fn is_url(s: &str) -> bool {
    let s = s.trim_start();
    s.starts_with("postgres://") || s.starts_with("postgresql://")
}

/// `url` parsed, or why it is not a PostgreSQL address (the message never repeats a password).
pub fn parse_url(url: &str) -> Result<Config> {
    url.parse::<Config>().map_err(|e| {
        Error::invalid(format!(
            "{} is not a PostgreSQL address ({e}); write postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE",
            redact(url)
        ))
    })
}

/// `url` with any password replaced by `***`, for messages.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (auth, host) = match rest.rsplit_once('@') {
        Some(parts) => parts,
        None => return url.to_string(),
    };
    match auth.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_string(),
    }
}

/// `postgres://user@host:port/db` for messages: where the server is, never the password.
fn describe(c: &Config) -> String {
    let hosts: Vec<String> = c
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let port = c
                .get_ports()
                .get(i)
                .or_else(|| c.get_ports().first())
                .copied()
                .unwrap_or(5432);
            match h {
                Host::Tcp(name) => format!("{name}:{port}"),
                Host::Unix(dir) => format!("{}:{port}", dir.display()),
            }
        })
        .collect();
    let user = c.get_user().map(|u| format!("{u}@")).unwrap_or_default();
    let db = c.get_dbname().or(c.get_user()).unwrap_or("postgres");
    format!("postgres://{user}{}/{db}", hosts.join(","))
}

impl Pg {
    /// Connects to the database at `url` and checks that it answers.
    ///
    /// TLS is not built in: use `sslmode=disable` (or leave the default `prefer`) and reach
    /// a remote server through a private network or a tunnel.
    pub fn connect(url: &str, opts: PgOptions) -> Result<Pg> {
        let mut config = parse_url(url)?;
        config.connect_timeout(opts.connect_timeout);
        if config.get_application_name().is_none() {
            config.application_name("avm");
        }
        // Statements are prepared once per connection (see `client`), and after five runs
        // PostgreSQL may switch a prepared statement to a generic plan, chosen without the
        // parameters: for a search, a plan that cannot tell a rare word's `tsquery` from a
        // common one's, 10x slower when measured. Plan each run with its parameters instead;
        // the saved round trip stays.
        let options = match config.get_options() {
            Some(o) if o.contains("plan_cache_mode") => o.to_string(),
            Some(o) => format!("{o} -c plan_cache_mode=force_custom_plan"),
            None => "-c plan_cache_mode=force_custom_plan".to_string(),
        };
        config.options(&options);
        let target = describe(&config);
        if config.get_ssl_mode() == postgres::config::SslMode::Require {
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!(
                    "{target}: sslmode=require asks for TLS, which this avm does not speak; use sslmode=disable over a private network or an SSH tunnel"
                ),
            ));
        }
        let manager = Manager::new(config.clone());
        // Built unchecked so the first connection's own error (refused, bad password, no such
        // database) reaches the user instead of the pool's generic timeout.
        let pool = r2d2::Pool::builder()
            .max_size(opts.max_connections.max(1))
            .min_idle(Some(0))
            .connection_timeout(opts.connect_timeout)
            .build_unchecked(manager);
        let pg = Pg {
            pool: std::sync::Arc::new(pool),
            config,
            target,
            opts,
        };
        let mut c = pg.fresh()?;
        c.simple_query("SELECT 1").map_err(|e| pg.err(e))?;
        Ok(pg)
    }

    /// The process's pool for `url`: the first call connects with `opts`; later calls with
    /// the same address (the store, API keys, subscriptions and plugin data on one database)
    /// share its connections instead of opening a pool each, so a host holds at most
    /// `max_connections` of the server's connection slots, whatever uses them.
    pub fn shared(url: &str, opts: PgOptions) -> Result<Pg> {
        /// A pool in use, held weakly: it closes when its last user drops it.
        type Entry = (
            std::sync::Weak<r2d2::Pool<Manager>>,
            Config,
            String,
            PgOptions,
        );
        static POOLS: std::sync::OnceLock<
            std::sync::Mutex<std::collections::HashMap<String, Entry>>,
        > = std::sync::OnceLock::new();
        let pools = POOLS.get_or_init(Default::default);
        let live = |e: &Entry| {
            e.0.upgrade().map(|pool| Pg {
                pool,
                config: e.1.clone(),
                target: e.2.clone(),
                opts: e.3.clone(),
            })
        };
        if let Some(pg) = pools
            .lock()
            .map_err(|_| poisoned())?
            .get(url)
            .and_then(live)
        {
            return Ok(pg);
        }
        // Connected outside the lock: a slow or unreachable server holds up only its callers.
        let pg = Pg::connect(url, opts)?;
        let mut map = pools.lock().map_err(|_| poisoned())?;
        if let Some(other) = map.get(url).and_then(live) {
            return Ok(other);
        }
        map.retain(|_, e| e.0.strong_count() > 0);
        map.insert(
            url.to_string(),
            (
                std::sync::Arc::downgrade(&pg.pool),
                pg.config.clone(),
                pg.target.clone(),
                pg.opts.clone(),
            ),
        );
        Ok(pg)
    }

    /// `postgres://user@host:port/db`: the server and database, for messages and logs.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The options this pool was made with.
    pub fn options(&self) -> &PgOptions {
        &self.opts
    }

    /// A connection from the pool (one is opened when none is free and the pool has room).
    pub fn conn(&self) -> Result<Conn> {
        self.pool.get().map_err(|e| {
            // The pool's error carries the last connection error when there was one.
            Error::new(
                ErrorKind::Unavailable,
                format!(
                    "PostgreSQL at {} did not give a connection within {}: {e}",
                    self.target,
                    humantime_secs(self.opts.connect_timeout)
                ),
            )
        })
    }

    /// A new connection outside the pool (for LISTEN, which holds its connection, and for
    /// the first check, whose error names the cause).
    pub fn fresh(&self) -> Result<RawClient> {
        self.config.connect(NoTls).map_err(|e| self.err(e))
    }

    /// Runs `f` in a transaction and commits it, trying again from the start after a
    /// serialization failure or deadlock (up to [`PgOptions::retries`] times, with growing
    /// randomised waits). `f` may run more than once: it must do nothing outside the
    /// transaction that cannot be repeated. Returns `f`'s value only once the commit
    /// succeeded.
    pub fn transaction<T>(
        &self,
        mut f: impl FnMut(&mut Tx<'_>) -> std::result::Result<T, Failure>,
    ) -> Result<T> {
        let mut conn = self.conn()?;
        let mut attempt = 0u32;
        loop {
            let outcome = (|| {
                let mut tx = conn.transaction()?;
                let v = f(&mut tx)?;
                tx.commit().map_err(Failure::Commit)?;
                Ok::<T, Failure>(v)
            })();
            match outcome {
                Ok(v) => return Ok(v),
                Err(Failure::Db(e) | Failure::Commit(e))
                    if is_retryable(&e) && attempt < self.opts.retries =>
                {
                    attempt += 1;
                    tracing::debug!(target: "avm::postgres", attempt, "retrying after {e}");
                    std::thread::sleep(backoff(attempt));
                }
                Err(Failure::Db(e)) => return Err(self.err(e)),
                Err(Failure::Commit(e)) if is_retryable(&e) => return Err(self.err(e)),
                Err(Failure::Commit(e)) if e.code().is_none() => {
                    return Err(Error::new(
                        ErrorKind::Unavailable,
                        format!(
                            "the connection to PostgreSQL at {} broke while committing, so whether the write was saved is unknown ({e}); read it back before writing again",
                            self.target
                        ),
                    ));
                }
                Err(Failure::Commit(e)) => return Err(self.err(e)),
                Err(Failure::Refused(e)) => return Err(e),
            }
        }
    }

    /// Follows `channels` on a connection of its own (see [`Listener`]).
    pub fn listen(&self, channels: &[&str]) -> Result<Listener> {
        let mut client = self.fresh()?;
        for ch in channels {
            client
                .batch_execute(&format!("LISTEN {}", quote_ident(ch)))
                .map_err(|e| self.err(e))?;
        }
        Ok(Listener {
            client,
            target: self.target.clone(),
        })
    }

    /// PostgreSQL's error as one of avm's, naming the server.
    pub fn err(&self, e: postgres::Error) -> Error {
        map_error(&self.target, &e)
    }
}

/// Why a transaction's body stopped.
#[derive(Debug)]
pub enum Failure {
    /// PostgreSQL refused a statement (retried when it is a serialization failure).
    Db(postgres::Error),
    /// The commit failed.
    Commit(postgres::Error),
    /// The body refused the change itself (a rule of avm's); never retried.
    Refused(Error),
}

impl From<postgres::Error> for Failure {
    fn from(e: postgres::Error) -> Self {
        Failure::Db(e)
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Refused(e)
    }
}

/// Whether trying the whole transaction again can succeed.
pub fn is_retryable(e: &postgres::Error) -> bool {
    e.code().is_some_and(|c| {
        *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED
    })
}

/// The wait before try `attempt` (1-based): 2 ms doubling to at most 256 ms, with jitter so
/// that conflicting writers do not meet again.
fn backoff(attempt: u32) -> Duration {
    let base = 2u64 << attempt.min(7);
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (Instant::now(), std::thread::current().id()).hash(&mut h);
    Duration::from_millis(base / 2 + h.finish() % base.max(1))
}

fn poisoned() -> Error {
    Error::internal("the PostgreSQL pools' lock is poisoned (a thread panicked holding it)")
}

fn humantime_secs(d: Duration) -> String {
    format!("{}s", d.as_secs_f64())
}

/// A PostgreSQL error as an avm error whose message names `target` and says what to do.
pub fn map_error(target: &str, e: &postgres::Error) -> Error {
    let Some(code) = e.code() else {
        // No SQLSTATE: the connection failed or broke.
        return Error::new(
            ErrorKind::Unavailable,
            format!(
                "cannot reach PostgreSQL at {target}: {e}; is the server running and is the address right?"
            ),
        );
    };
    let msg = e
        .as_db_error()
        .map(|d| d.message().to_string())
        .unwrap_or_else(|| e.to_string());
    let (kind, advice) = match code {
        c if *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED => {
            (ErrorKind::Busy, "other writers kept conflicting; retry")
        }
        c if *c == SqlState::LOCK_NOT_AVAILABLE => (ErrorKind::Busy, "retry"),
        c if *c == SqlState::DISK_FULL => (
            ErrorKind::StorageFull,
            "the server's disk is full; free space there",
        ),
        c if *c == SqlState::UNIQUE_VIOLATION => (ErrorKind::AlreadyExists, "it already exists"),
        c if *c == SqlState::INSUFFICIENT_PRIVILEGE => (
            ErrorKind::PermissionDenied,
            "grant the user rights on the database (it must be able to create tables)",
        ),
        c if *c == SqlState::INVALID_PASSWORD
            || *c == SqlState::INVALID_AUTHORIZATION_SPECIFICATION =>
        {
            (
                ErrorKind::PermissionDenied,
                "check the user and password in the address",
            )
        }
        c if *c == SqlState::INVALID_CATALOG_NAME => (
            ErrorKind::Unavailable,
            "create the database first (createdb NAME) or name one that exists",
        ),
        c if *c == SqlState::QUERY_CANCELED => (ErrorKind::TimedOut, "it took too long"),
        c if *c == SqlState::PROGRAM_LIMIT_EXCEEDED => (ErrorKind::TooLarge, "make it smaller"),
        c if *c == SqlState::TOO_MANY_CONNECTIONS => (
            ErrorKind::Unavailable,
            "the server has no free connections; lower [store] max_connections or raise the server's max_connections",
        ),
        c if c.code().starts_with("08")
            || c.code().starts_with("57P")
            || *c == SqlState::ADMIN_SHUTDOWN =>
        {
            (
                ErrorKind::Unavailable,
                "the server is unreachable or shutting down; retry when it is back",
            )
        }
        _ => (
            ErrorKind::Internal,
            "this is a bug in avm; please report it",
        ),
    };
    Error::new(
        kind,
        format!(
            "PostgreSQL at {target}: {msg} (SQLSTATE {}); {advice}",
            code.code()
        ),
    )
}

/// `name` quoted as an SQL identifier.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A stable advisory-lock key for `name` (FNV-1a, so every avm version and host agrees).
pub fn lock_key(name: &str) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h.cast_signed()
}

/// Serializes appends to the ordered log `log` until `tx` ends: call it just before inserting
/// the log's rows, so their sequence numbers are in commit order and a reader of `seq > n`
/// never passes over a row that commits later. Other transactions' reads are not blocked.
pub fn lock_log(tx: &mut Tx<'_>, log: &str) -> std::result::Result<(), postgres::Error> {
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&lock_key(log)])
        .map(|_| ())
}

/// Sends `payload` on `channel` when `tx` commits (nothing is sent if it rolls back; equal
/// notifications in one transaction are sent once).
pub fn notify(
    tx: &mut Tx<'_>,
    channel: &str,
    payload: &str,
) -> std::result::Result<(), postgres::Error> {
    tx.execute("SELECT pg_notify($1, $2)", &[&channel, &payload])
        .map(|_| ())
}

/// One numbered change to a component's tables.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// 1, 2, 3… in order, without gaps.
    pub version: i32,
    /// What it does, recorded with it.
    pub name: &'static str,
    /// The statements.
    pub sql: &'static str,
}

/// The key of the advisory lock that every avm process takes to migrate.
const MIGRATE_LOCK: &str = "avm:migrate";

/// Brings `component`'s tables up to the newest of `migrations` and returns that version.
///
/// Several processes may call this at once: they take turns under a session advisory lock,
/// and each migration runs once, in its own transaction, recorded in `avm_migrations`. A
/// database already past the newest migration known here (a newer avm migrated it) is
/// refused, since this avm might misread it.
pub fn migrate(pg: &Pg, component: &str, migrations: &[Migration]) -> Result<i32> {
    for (i, m) in migrations.iter().enumerate() {
        if usize::try_from(m.version).ok() != Some(i + 1) {
            return Err(Error::internal(format!(
                "{component} migration {:?} is numbered {}, expected {}",
                m.name,
                m.version,
                i + 1
            )));
        }
    }
    let newest = migrations.last().map_or(0, |m| m.version);
    let mut conn = pg.conn()?;
    conn.execute("SELECT pg_advisory_lock($1)", &[&lock_key(MIGRATE_LOCK)])
        .map_err(|e| pg.err(e))?;
    let outcome = migrate_locked(pg, &mut conn, component, migrations, newest);
    // The lock is the connection's; it goes back to the pool, so release it explicitly. Should
    // the unlock fail, the broken connection is dropped by the pool and the lock with it.
    let unlocked = conn.execute("SELECT pg_advisory_unlock($1)", &[&lock_key(MIGRATE_LOCK)]);
    let version = outcome?;
    unlocked.map_err(|e| pg.err(e))?;
    Ok(version)
}

fn migrate_locked(
    pg: &Pg,
    conn: &mut Conn,
    component: &str,
    migrations: &[Migration],
    newest: i32,
) -> Result<i32> {
    conn.batch_execute(
        "CREATE TABLE IF NOT EXISTS avm_migrations(
           component  text        NOT NULL,
           version    integer     NOT NULL,
           name       text        NOT NULL,
           applied_at timestamptz NOT NULL DEFAULT now(),
           PRIMARY KEY(component, version)
         )",
    )
    .map_err(|e| pg.err(e))?;
    let current: i32 = conn
        .query_one(
            "SELECT coalesce(max(version), 0) FROM avm_migrations WHERE component = $1",
            &[&component],
        )
        .and_then(|r| r.try_get(0))
        .map_err(|e| pg.err(e))?;
    if current > newest {
        return Err(Error::new(
            ErrorKind::Unsupported,
            format!(
                "the {component} tables in {} are at schema {current}, newer than this avm knows ({newest}); upgrade avm on this host",
                pg.target()
            ),
        ));
    }
    for m in migrations.iter().filter(|m| m.version > current) {
        let mut tx = conn.transaction().map_err(|e| pg.err(e))?;
        tx.batch_execute(m.sql).map_err(|e| {
            let inner = pg.err(e);
            Error::new(
                inner.kind(),
                format!("{component} migration {} ({}): {inner}", m.version, m.name),
            )
        })?;
        tx.execute(
            "INSERT INTO avm_migrations(component, version, name) VALUES ($1, $2, $3)",
            &[&component, &m.version, &m.name],
        )
        .map_err(|e| pg.err(e))?;
        tx.commit().map_err(|e| pg.err(e))?;
        tracing::info!(target: "avm::postgres", component, version = m.version, name = m.name, "migrated {}", pg.target());
    }
    Ok(newest)
}

/// A connection that follows `NOTIFY`s on some channels (from [`Pg::listen`]).
pub struct Listener {
    client: RawClient,
    target: String,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("target", &self.target)
            .finish()
    }
}

/// One notification: its channel and payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// The channel.
    pub channel: String,
    /// What was sent.
    pub payload: String,
}

impl Listener {
    /// The notifications that arrive within `timeout` of the first one (an empty list when none
    /// came). A broken connection is `Unavailable`: listen again, and catch up from the log,
    /// since notifications sent while away are lost.
    pub fn wait(&mut self, timeout: Duration) -> Result<Vec<Note>> {
        use postgres::fallible_iterator::FallibleIterator;
        let mut n = self.client.notifications();
        let note = |m: postgres::Notification| Note {
            channel: m.channel().to_string(),
            payload: m.payload().to_string(),
        };
        let Some(first) = n
            .timeout_iter(timeout)
            .next()
            .map_err(|e| map_error(&self.target, &e))?
        else {
            return Ok(Vec::new());
        };
        let mut notes = vec![note(first)];
        // Whatever else has already arrived, without waiting again.
        let mut rest = n.iter();
        while let Some(m) = rest.next().map_err(|e| map_error(&self.target, &e))? {
            notes.push(note(m));
        }
        Ok(notes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_told_from_files_and_passwords_never_shown() {
        assert!(is_url("postgres://u@h/db"));
        assert!(is_url("postgresql://h"));
        assert!(!is_url("/var/lib/avm/avm.db"));
        assert_eq!(
            redact("postgres://alice:s3cret@db.example:5432/avm"),
            "postgres://alice:***@db.example:5432/avm"
        );
        assert_eq!(redact("postgres://alice@h/avm"), "postgres://alice@h/avm");
        let Err(e) = parse_url("postgres://alice:s3cret@h:notaport/avm") else {
            panic!("a bad port parsed");
        };
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(!e.to_string().contains("s3cret"), "{e}");
        let c = parse_url("postgres://alice:s3cret@h1:5433/avm").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(describe(&c), "postgres://alice@h1:5433/avm");
    }

    #[test]
    fn lock_keys_are_stable_and_distinct() {
        assert_eq!(lock_key("avm:events"), lock_key("avm:events"));
        assert_ne!(lock_key("avm:events"), lock_key("avm:outbox"));
        // FNV-1a of the empty string, so every host computes the same key.
        assert_eq!(lock_key(""), 0xcbf2_9ce4_8422_2325u64.cast_signed());
    }

    #[test]
    fn backoff_grows_and_stays_bounded() {
        for a in 1..20 {
            let d = backoff(a);
            assert!(
                d >= Duration::from_millis(1) && d < Duration::from_millis(400),
                "{a}: {d:?}"
            );
        }
    }
}
