//! Pooled connections that prepare each statement once.
//!
//! `postgres::Client::query` with SQL text prepares it (one round trip: Parse, Describe) and
//! then runs it (another: Bind, Execute), every time. A write that runs fifteen statements
//! pays thirty round trips. [`Client`] and [`Tx`] keep the statements a connection prepared,
//! keyed by their text, so from the second use on a statement costs one round trip. Prepared
//! statements belong to the server session, not to a transaction, so they outlive rollbacks;
//! a statement the server no longer knows (or whose plan changed shape) is dropped from the
//! cache when it fails, and prepared again on the next use.

use std::collections::HashMap;

use postgres::types::ToSql;
use postgres::{IsolationLevel, NoTls, Row, Statement};
use r2d2_postgres::PostgresConnectionManager;
use r2d2_postgres::r2d2;

/// Parameters of a statement.
pub type Params<'p> = [&'p (dyn ToSql + Sync)];

/// Most statements one connection keeps prepared; past it the cache starts over (statements
/// whose text varies, such as `IN` lists of varying length, must not grow it without end).
const MAX_CACHED: usize = 512;

/// Statements a connection prepared, by their SQL text.
#[derive(Default)]
struct Cache(HashMap<String, Statement>);

/// SQL text or a statement prepared already: what [`Queries`] methods take.
pub trait Sql {
    /// The text, or the prepared statement.
    fn sql(&self) -> SqlRef<'_>;
}

/// See [`Sql`].
pub enum SqlRef<'a> {
    /// SQL text, prepared through the connection's cache.
    Text(&'a str),
    /// A statement prepared by the caller.
    Prepared(&'a Statement),
}

impl Sql for str {
    fn sql(&self) -> SqlRef<'_> {
        SqlRef::Text(self)
    }
}

impl Sql for String {
    fn sql(&self) -> SqlRef<'_> {
        SqlRef::Text(self)
    }
}

impl Sql for Statement {
    fn sql(&self) -> SqlRef<'_> {
        SqlRef::Prepared(self)
    }
}

/// Runs statements on a connection or in a transaction, preparing each text once.
pub trait Queries {
    /// The statement for `sql`, prepared on this connection once and then reused.
    fn prepare(&mut self, sql: &str) -> Result<Statement, postgres::Error>;
    /// Runs `s`, returning its rows.
    fn query<S: Sql + ?Sized>(
        &mut self,
        s: &S,
        params: &Params<'_>,
    ) -> Result<Vec<Row>, postgres::Error>;
    /// Runs `s`, returning the number of rows it changed.
    fn execute<S: Sql + ?Sized>(
        &mut self,
        s: &S,
        params: &Params<'_>,
    ) -> Result<u64, postgres::Error>;
    /// Runs statements separated by `;` with no parameters (never cached).
    fn batch_execute(&mut self, sql: &str) -> Result<(), postgres::Error>;

    /// Runs `s`, which returns exactly one row.
    fn query_one<S: Sql + ?Sized>(
        &mut self,
        s: &S,
        params: &Params<'_>,
    ) -> Result<Row, postgres::Error> {
        let stmt = self.statement(s)?;
        self.raw_one(&stmt, params)
    }

    /// Runs `s`, which returns at most one row.
    fn query_opt<S: Sql + ?Sized>(
        &mut self,
        s: &S,
        params: &Params<'_>,
    ) -> Result<Option<Row>, postgres::Error> {
        let stmt = self.statement(s)?;
        self.raw_opt(&stmt, params)
    }

    /// The prepared statement for `s`.
    fn statement<S: Sql + ?Sized>(&mut self, s: &S) -> Result<Statement, postgres::Error> {
        match s.sql() {
            SqlRef::Text(t) => self.prepare(t),
            SqlRef::Prepared(p) => Ok(p.clone()),
        }
    }

    /// `query_one` of a prepared statement.
    #[doc(hidden)]
    fn raw_one(&mut self, s: &Statement, params: &Params<'_>) -> Result<Row, postgres::Error>;
    /// `query_opt` of a prepared statement.
    #[doc(hidden)]
    fn raw_opt(
        &mut self,
        s: &Statement,
        params: &Params<'_>,
    ) -> Result<Option<Row>, postgres::Error>;
}

impl Cache {
    fn get(
        &mut self,
        sql: &str,
        prepare: impl FnOnce(&str) -> Result<Statement, postgres::Error>,
    ) -> Result<Statement, postgres::Error> {
        if let Some(s) = self.0.get(sql) {
            return Ok(s.clone());
        }
        let s = prepare(sql)?;
        if self.0.len() >= MAX_CACHED {
            self.0.clear();
        }
        self.0.insert(sql.to_string(), s.clone());
        Ok(s)
    }

    /// Forgets the statements after one failed in a way that means the server lost it or its
    /// plan no longer fits (a table it reads was altered): all of them may be affected.
    fn failed(&mut self, _s: &Statement, e: &postgres::Error) {
        use postgres::error::SqlState;
        if e.code().is_some_and(|c| {
            *c == SqlState::INVALID_SQL_STATEMENT_NAME || *c == SqlState::FEATURE_NOT_SUPPORTED
        }) {
            self.0.clear();
        }
    }
}

/// Runs `$call` with the statement for `$s` and forgets the statement when it fails.
macro_rules! run {
    ($self:ident, $s:ident, |$c:ident, $stmt:ident| $call:expr) => {{
        let $stmt = Queries::statement($self, $s)?;
        let $c = &mut $self.inner;
        let out = $call;
        if let Err(e) = &out {
            $self.cache.failed(&$stmt, e);
        }
        out
    }};
}

/// A pooled connection with its prepared statements.
pub struct Client {
    inner: postgres::Client,
    cache: Cache,
}

impl Client {
    /// Starts a transaction.
    pub fn transaction(&mut self) -> Result<Tx<'_>, postgres::Error> {
        let Client { inner, cache } = self;
        Ok(Tx {
            inner: inner.transaction()?,
            cache,
        })
    }

    /// Starts a transaction at `isolation`, read-only when `read_only`.
    pub fn transaction_with(
        &mut self,
        isolation: IsolationLevel,
        read_only: bool,
    ) -> Result<Tx<'_>, postgres::Error> {
        let Client { inner, cache } = self;
        Ok(Tx {
            inner: inner
                .build_transaction()
                .isolation_level(isolation)
                .read_only(read_only)
                .start()?,
            cache,
        })
    }

    /// Runs a simple-protocol query (no parameters, never prepared).
    pub fn simple_query(
        &mut self,
        sql: &str,
    ) -> Result<Vec<postgres::SimpleQueryMessage>, postgres::Error> {
        self.inner.simple_query(sql)
    }
}

/// [`Queries`] for a type with `inner` (a `postgres::Client` or `Transaction`, which have the
/// same methods) and `cache` fields.
macro_rules! queries_impl {
    ($t:ty) => {
        impl Queries for $t {
            fn prepare(&mut self, sql: &str) -> Result<Statement, postgres::Error> {
                let inner = &mut self.inner;
                self.cache.get(sql, |t| inner.prepare(t))
            }
            fn query<S: Sql + ?Sized>(
                &mut self,
                s: &S,
                params: &Params<'_>,
            ) -> Result<Vec<Row>, postgres::Error> {
                run!(self, s, |c, stmt| c.query(&stmt, params))
            }
            fn execute<S: Sql + ?Sized>(
                &mut self,
                s: &S,
                params: &Params<'_>,
            ) -> Result<u64, postgres::Error> {
                run!(self, s, |c, stmt| c.execute(&stmt, params))
            }
            fn batch_execute(&mut self, sql: &str) -> Result<(), postgres::Error> {
                self.inner.batch_execute(sql)
            }
            fn raw_one(
                &mut self,
                s: &Statement,
                params: &Params<'_>,
            ) -> Result<Row, postgres::Error> {
                let out = self.inner.query_one(s, params);
                if let Err(e) = &out {
                    self.cache.failed(s, e);
                }
                out
            }
            fn raw_opt(
                &mut self,
                s: &Statement,
                params: &Params<'_>,
            ) -> Result<Option<Row>, postgres::Error> {
                let out = self.inner.query_opt(s, params);
                if let Err(e) = &out {
                    self.cache.failed(s, e);
                }
                out
            }
        }
    };
}

queries_impl!(Client);

/// A transaction on a [`Client`], sharing its prepared statements.
pub struct Tx<'a> {
    inner: postgres::Transaction<'a>,
    cache: &'a mut Cache,
}

impl Tx<'_> {
    /// Commits.
    pub fn commit(self) -> Result<(), postgres::Error> {
        self.inner.commit()
    }

    /// Rolls back (dropping a `Tx` rolls back too).
    pub fn rollback(self) -> Result<(), postgres::Error> {
        self.inner.rollback()
    }

    /// A savepoint named `name` inside this transaction.
    pub fn savepoint(&mut self, name: &str) -> Result<Tx<'_>, postgres::Error> {
        Ok(Tx {
            inner: self.inner.savepoint(name)?,
            cache: self.cache,
        })
    }
}

queries_impl!(Tx<'_>);

/// The pool's connection manager: PostgreSQL connections, each with a statement cache.
#[derive(Debug)]
pub struct Manager(PostgresConnectionManager<NoTls>);

impl Manager {
    /// A manager connecting with `config`.
    pub fn new(config: postgres::Config) -> Manager {
        Manager(PostgresConnectionManager::new(config, NoTls))
    }
}

impl r2d2::ManageConnection for Manager {
    type Connection = Client;
    type Error = postgres::Error;

    fn connect(&self) -> Result<Client, postgres::Error> {
        Ok(Client {
            inner: self.0.connect()?,
            cache: Cache::default(),
        })
    }

    fn is_valid(&self, c: &mut Client) -> Result<(), postgres::Error> {
        self.0.is_valid(&mut c.inner)
    }

    fn has_broken(&self, c: &mut Client) -> bool {
        self.0.has_broken(&mut c.inner)
    }
}
