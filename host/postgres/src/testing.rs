//! Throwaway databases for tests, on the server that `AVM_TEST_POSTGRES` names.
//!
//! `AVM_TEST_POSTGRES` is the address of a database the tests may use to create others
//! (`postgres://postgres@127.0.0.1:PORT/postgres`; `.ci/run` starts such a server). Without
//! it, [`TestDb::create`] returns `None` and the test says it skipped and why, unless
//! `REQUIRE_POSTGRES` is set (CI), where a missing server fails the test.

use std::sync::atomic::{AtomicU32, Ordering};

use postgres::{Client, NoTls};

use avm_core::{Error, Result};

use crate::{quote_ident, redact};

/// The variable that names the test server.
pub const ENV: &str = "AVM_TEST_POSTGRES";

/// A database made for one test and dropped (with its connections) when this is dropped.
#[derive(Debug)]
pub struct TestDb {
    admin: String,
    name: String,
    url: String,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

impl TestDb {
    /// A new empty database on the test server, or `None` (after saying why on stderr) when
    /// no server is configured. Fails when `REQUIRE_POSTGRES` is set and none is, or when the
    /// server cannot be reached.
    pub fn create(test: &str) -> Result<Option<TestDb>> {
        let Some(admin) = std::env::var(ENV).ok().filter(|s| !s.trim().is_empty()) else {
            if std::env::var_os("REQUIRE_POSTGRES").is_some() {
                return Err(Error::invalid(format!(
                    "REQUIRE_POSTGRES is set but {ENV} is not: {test} needs a PostgreSQL server"
                )));
            }
            eprintln!(
                "skipped {test}: set {ENV}=postgres://USER@HOST:PORT/postgres to run it against a real PostgreSQL (.ci/run starts one)"
            );
            return Ok(None);
        };
        Self::create_on(&admin, test).map(Some)
    }

    /// A new empty database on the server at `admin` (an address whose user may create
    /// databases), for tests and benches; dropped with this value.
    pub fn create_on(admin: &str, test: &str) -> Result<TestDb> {
        let admin = admin.to_string();
        let name = format!(
            "avm_test_{}_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            test.chars()
                .filter(char::is_ascii_alphanumeric)
                .take(20)
                .collect::<String>()
                .to_ascii_lowercase()
        );
        let mut c = admin_client(&admin)?;
        c.batch_execute(&format!("CREATE DATABASE {}", quote_ident(&name)))
            .map_err(|e| Error::internal(format!("creating {name} on {}: {e}", redact(&admin))))?;
        let url = with_dbname(&admin, &name);
        Ok(TestDb { admin, name, url })
    }

    /// The address of this database.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Ok(mut c) = admin_client(&self.admin) {
            let _ = c.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                quote_ident(&self.name)
            ));
        }
    }
}

fn admin_client(admin: &str) -> Result<Client> {
    Client::connect(admin, NoTls)
        .map_err(|e| Error::internal(format!("{ENV}={} cannot be reached: {e}", redact(admin))))
}

/// `url` with its database name replaced by `db` (query parameters kept).
fn with_dbname(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let (scheme, rest) = base.split_once("://").unwrap_or(("postgres", base));
    let host = rest.split_once('/').map_or(rest, |(h, _)| h);
    match query {
        Some(q) => format!("{scheme}://{host}/{db}?{q}"),
        None => format!("{scheme}://{host}/{db}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_name_is_replaced_and_the_rest_kept() {
        assert_eq!(
            with_dbname("postgres://u@h:5/postgres?sslmode=disable", "t1"),
            "postgres://u@h:5/t1?sslmode=disable"
        );
        assert_eq!(with_dbname("postgres://u@h:5", "t1"), "postgres://u@h:5/t1");
    }
}
