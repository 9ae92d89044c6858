//! avm-provider-sqlite: read-only, parameterised queries over a SQLite file (config type
//! `sqlite`).
//!
//! ```toml
//! [[mounts]]
//! pattern = "/db/users/{id}"
//! type = "sqlite"
//! options = { db = "~/app.db", query = "SELECT * FROM users WHERE id = :id", list_query = "SELECT id FROM users" }
//! ```
//!
//! The SQL text is fixed config: it is prepared once per connection and never changes per
//! request. Capture values reach it only as bound parameters (`:name`, `@name` or `$name`
//! naming a capture of the pattern; `:rest` is the `**` capture and `:path` the full path), so
//! quotes, `;`, `UNION` or `--` in a capture are compared as plain text. Parameters are bound
//! as TEXT; SQLite's column affinity still lets `WHERE id = :id` match an INTEGER column.
//!
//! Rules worth knowing:
//! - A query that returns no rows makes the path not found.
//! - More than `max_rows` rows is a `too-large` error (never a silent truncation).
//! - Values map to JSON as INTEGER → number, REAL → number (±∞ → null), TEXT → string,
//!   BLOB → lowercase hex string, NULL → null.
//! - `?format=json|markdown|csv` on a read overrides the configured format.
//! - `list_query` answers listings of the mount's literal prefix (`/db/users` above) with the
//!   names in its first column; names that cannot be one path segment are skipped.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};
use serde::Deserialize;
use serde_json::{Map, Value};

use avm_core::bytes::hex;
use avm_core::config::expand;
use avm_core::router::Pattern;
use avm_core::{
    Entry, Error, ErrorKind, ListOptions, Listing, NodeKind, Ops, Output, Provider, ProviderInfo,
    Request, Result, Stat,
};

/// How query results are rendered as text.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// A pretty-printed JSON array of row objects (the default).
    #[default]
    Json,
    /// A Markdown table.
    Markdown,
    /// CSV with a header row.
    Csv,
}

impl Format {
    fn parse(s: &str) -> Result<Self> {
        match s {
            "json" => Ok(Format::Json),
            "markdown" => Ok(Format::Markdown),
            "csv" => Ok(Format::Csv),
            _ => Err(Error::invalid(format!(
                "format {s:?} is not accepted; use json, markdown or csv"
            ))),
        }
    }
}

/// Options of a `sqlite` mount.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqliteOptions {
    /// The database file (`~` and `${VAR}` expanded); opened read-only, must exist.
    pub db: String,
    /// One read-only SQL statement; its named parameters must name captures of the pattern
    /// (or `rest` for `**`, or `path`).
    pub query: String,
    /// Optional read-only SQL whose first column names the entries listed under the mount's
    /// literal prefix. It may use only the `path` parameter.
    #[serde(default)]
    pub list_query: Option<String>,
    /// `json` (default), `markdown` or `csv`.
    #[serde(default)]
    pub format: Format,
    /// Most rows a query may return; more is a too-large error. Default 1000.
    #[serde(default = "default_max_rows")]
    pub max_rows: usize,
    /// Milliseconds a query may run before it is interrupted. Default 5000.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_max_rows() -> usize {
    1000
}

fn default_timeout_ms() -> u64 {
    5000
}

/// Where a bound parameter's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    /// A capture, by its key in `Request::captures`.
    Capture(String),
    /// The full request path.
    Path,
}

/// A prepared-and-checked statement: its SQL and, per 1-based parameter index, its source.
#[derive(Debug, Clone)]
struct Query {
    sql: String,
    params: Vec<Source>,
}

/// Rows as they came back.
struct Table {
    columns: Vec<String>,
    rows: Vec<Vec<Value>>,
}

/// A provider answering reads with the rows of a fixed, parameterised query.
pub struct SqliteProvider {
    pattern: Pattern,
    /// The literal prefix, when paths below it are served (so it acts as a directory).
    dir: Option<String>,
    db: PathBuf,
    query: Query,
    list_query: Option<Query>,
    format: Format,
    max_rows: usize,
    timeout: Duration,
    /// Idle connections. A connection serves one request at a time (opened with NO_MUTEX);
    /// requests on other threads take another one or open a new one.
    pool: Mutex<Vec<Connection>>,
}

impl std::fmt::Debug for SqliteProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteProvider")
            .field("pattern", &self.pattern)
            .field("db", &self.db)
            .field("query", &self.query)
            .field("list_query", &self.list_query)
            .field("format", &self.format)
            .field("max_rows", &self.max_rows)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl SqliteProvider {
    /// Builds the provider for mount `pattern`: opens the database read-only and prepares
    /// both queries, refusing anything that writes or binds an unknown parameter.
    pub fn new(pattern: &str, opts: SqliteOptions) -> Result<Self> {
        let parsed = Pattern::parse(pattern)?;
        let captures = avm_core::router::Pattern::parse(pattern)?.capture_names();
        let prefix = parsed.literal_prefix();
        let literal_segments = prefix.split('/').filter(|s| !s.is_empty()).count();
        let all_segments = pattern.split('/').filter(|s| !s.is_empty()).count();
        let dir = (all_segments > literal_segments).then_some(prefix);

        let db = PathBuf::from(expand(&opts.db).map_err(|e| e.context("option db"))?);
        if !db.is_file() {
            return Err(Error::invalid(format!(
                "option db: {:?} is not an existing SQLite file",
                opts.db
            )));
        }
        if opts.max_rows == 0 {
            return Err(Error::invalid("option max_rows must be at least 1"));
        }
        if opts.timeout_ms == 0 {
            return Err(Error::invalid(
                "option timeout_ms must be at least 1 (milliseconds)",
            ));
        }
        let timeout = Duration::from_millis(opts.timeout_ms);
        let conn = open(&db, timeout).map_err(|e| e.context("option db"))?;
        let query = check_query(&conn, &opts.query, "query", &captures, pattern)?;
        let list_query = match &opts.list_query {
            Some(sql) => {
                if dir.is_none() {
                    return Err(Error::invalid(format!(
                        "option list_query: pattern {pattern:?} has no directory to list; use a pattern with a capture or ** below a literal prefix"
                    )));
                }
                Some(check_query(&conn, sql, "list_query", &[], pattern)?)
            }
            None => None,
        };
        Ok(SqliteProvider {
            pattern: parsed,
            dir,
            db,
            query,
            list_query,
            format: opts.format,
            max_rows: opts.max_rows,
            timeout,
            pool: Mutex::new(vec![conn]),
        })
    }

    fn is_dir(&self, path: &str) -> bool {
        self.dir.as_deref() == Some(path)
    }

    fn served(&self, req: &Request, op: &str) -> Result<BTreeMap<String, String>> {
        if let Some(s) = &req.suffix {
            return Err(Error::unsupported(&format!("suffix :{s}"), &req.path));
        }
        req.file_captures(&self.pattern, self.dir.as_deref(), op)
    }

    fn deadline(&self, req: &Request) -> (Instant, String) {
        let own = Instant::now() + self.timeout;
        match req.deadline {
            Some(d) if d < own => (d, "the caller's deadline".into()),
            _ => (own, format!("timeout_ms ({} ms)", self.timeout.as_millis())),
        }
    }

    /// Runs `q` with values for its parameters on a pooled connection.
    fn run(&self, q: &Query, values: &[String], req: &Request) -> Result<Table> {
        let pooled = self
            .pool
            .lock()
            .map_err(|_| Error::internal("sqlite connection pool poisoned"))?
            .pop();
        let mut conn = match pooled {
            Some(c) => c,
            None => open(&self.db, self.timeout)?,
        };
        let (deadline, label) = self.deadline(req);
        let result = run_on(&mut conn, q, values, deadline, self.max_rows);
        // Clear the handler so an idle connection holds no stale deadline.
        let cleared = conn.progress_handler(0, None::<fn() -> bool>);
        if cleared.is_ok()
            && let Ok(mut pool) = self.pool.lock()
        {
            pool.push(conn);
        }
        result.map_err(|e| match e {
            RunError::Sql(e) if is_interrupt(&e) => Error::new(
                ErrorKind::TimedOut,
                format!(
                    "query for {} ran past {label} and was interrupted",
                    req.path
                ),
            ),
            RunError::Sql(e) => sql_error(&e, &req.path),
            RunError::TooManyRows => Error::new(
                ErrorKind::TooLarge,
                format!(
                    "query for {} returned more than max_rows ({}) rows; narrow the query or raise max_rows",
                    req.path, self.max_rows
                ),
            ),
        })
    }

    fn values(q: &Query, req: &Request, caps: &BTreeMap<String, String>) -> Vec<String> {
        q.params
            .iter()
            .map(|s| match s {
                Source::Capture(k) => caps.get(k).cloned().unwrap_or_default(),
                Source::Path => req.path.clone(),
            })
            .collect()
    }

    /// Rows for a file path; no rows is not found.
    fn rows(&self, req: &Request, op: &str) -> Result<Table> {
        let caps = self.served(req, op)?;
        let values = Self::values(&self.query, req, &caps);
        let table = self.run(&self.query, &values, req)?;
        if table.rows.is_empty() {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!("no such node: {} (the query returned no rows)", req.path),
            ));
        }
        Ok(table)
    }
}

fn open(db: &std::path::Path, timeout: Duration) -> Result<Connection> {
    let conn = Connection::open_with_flags(
        db,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| {
        Error::new(
            ErrorKind::Unavailable,
            format!("cannot open {} read-only: {e}", db.display()),
        )
    })?;
    // Defence in depth: even a statement that slipped past the read-only checks cannot write.
    conn.pragma_update(None, "query_only", true)
        .and_then(|()| conn.busy_timeout(timeout))
        .map_err(|e| {
            Error::new(
                ErrorKind::Unavailable,
                format!("cannot set up {}: {e}", db.display()),
            )
        })?;
    Ok(conn)
}

/// Prepares `sql` and checks it: one statement, read-only, returning columns, and every
/// parameter named after something we can bind.
fn check_query(
    conn: &Connection,
    sql: &str,
    option: &str,
    captures: &[String],
    pattern: &str,
) -> Result<Query> {
    let stmt = conn.prepare(sql).map_err(|e| match e {
        rusqlite::Error::MultipleStatement => Error::invalid(format!(
            "option {option}: give exactly one SQL statement (found more after the first ';')"
        )),
        e => Error::invalid(format!("option {option}: {e}")),
    })?;
    if !stmt.readonly() || stmt.column_count() == 0 {
        return Err(Error::invalid(format!(
            "option {option}: only read-only statements that return rows are accepted (SELECT, WITH … SELECT); {sql:?} is not one"
        )));
    }
    let has_rest = captures.iter().any(|c| c == "**");
    let mut known: Vec<String> = captures
        .iter()
        .filter(|c| *c != "**")
        .map(|c| format!(":{c}"))
        .collect();
    if has_rest {
        known.push(":rest".into());
    }
    known.push(":path".into());
    let mut params = Vec::new();
    for i in 1..=stmt.parameter_count() {
        let Some(name) = stmt.parameter_name(i) else {
            return Err(Error::invalid(format!(
                "option {option}: parameter {i} is positional ('?'); name it after a capture, e.g. {}",
                known.join(", ")
            )));
        };
        let key = name
            .strip_prefix([':', '@', '$'])
            .filter(|k| !k.is_empty())
            .ok_or_else(|| {
                Error::invalid(format!(
                    "option {option}: parameter {name} is positional; name it after a capture, e.g. {}",
                    known.join(", ")
                ))
            })?;
        let is_capture = key != "**" && captures.iter().any(|c| c == key);
        let source = match key {
            "path" | "rest" if is_capture => {
                return Err(Error::invalid(format!(
                    "option {option}: parameter {name} is ambiguous: pattern {pattern:?} captures {{{key}}} and :{key} is also built in; rename the capture"
                )));
            }
            _ if is_capture => Source::Capture(key.to_string()),
            "rest" if has_rest => Source::Capture("**".into()),
            "path" => Source::Path,
            _ => {
                return Err(Error::invalid(format!(
                    "option {option}: parameter {name} is not a capture of pattern {pattern:?}; known parameters: {}",
                    known.join(", ")
                )));
            }
        };
        params.push(source);
    }
    Ok(Query {
        sql: sql.to_string(),
        params,
    })
}

enum RunError {
    Sql(rusqlite::Error),
    TooManyRows,
}

impl From<rusqlite::Error> for RunError {
    fn from(e: rusqlite::Error) -> Self {
        RunError::Sql(e)
    }
}

fn run_on(
    conn: &mut Connection,
    q: &Query,
    values: &[String],
    deadline: Instant,
    max_rows: usize,
) -> std::result::Result<Table, RunError> {
    conn.progress_handler(1000, Some(move || Instant::now() >= deadline))?;
    let mut stmt = conn.prepare_cached(&q.sql)?;
    stmt.clear_bindings();
    for (i, v) in values.iter().enumerate() {
        // Bound as TEXT: the value is data, never SQL.
        stmt.raw_bind_parameter(i + 1, v.as_str())?;
    }
    let columns: Vec<String> = stmt.column_names().map(String::from).collect();
    let mut rows = stmt.raw_query();
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        if out.len() == max_rows {
            return Err(RunError::TooManyRows);
        }
        let mut vals = Vec::with_capacity(columns.len());
        for i in 0..columns.len() {
            vals.push(to_json(row.get_ref(i)?));
        }
        out.push(vals);
    }
    Ok(Table { columns, rows: out })
}

fn is_interrupt(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::OperationInterrupted)
}

fn sql_error(e: &rusqlite::Error, path: &str) -> Error {
    let kind = match e {
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(
                f.code,
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
            ) =>
        {
            ErrorKind::Busy
        }
        _ => ErrorKind::Unavailable,
    };
    Error::new(kind, format!("query for {path} failed: {e}"))
}

fn to_json(v: ValueRef<'_>) -> Value {
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::from(i),
        ValueRef::Real(f) => serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number),
        ValueRef::Text(t) => Value::String(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Value::String(hex(b)),
    }
}

impl Table {
    fn objects(&self) -> Value {
        Value::Array(
            self.rows
                .iter()
                .map(|r| {
                    let mut m = Map::new();
                    for (c, v) in self.columns.iter().zip(r) {
                        m.insert(c.clone(), v.clone());
                    }
                    Value::Object(m)
                })
                .collect(),
        )
    }

    fn render(&self, format: Format) -> String {
        match format {
            Format::Json => {
                let mut s = serde_json::to_string_pretty(&self.objects()).unwrap_or_default();
                s.push('\n');
                s
            }
            Format::Markdown => {
                let mut s = String::new();
                let line = |cells: Vec<String>| format!("| {} |\n", cells.join(" | "));
                s.push_str(&line(self.columns.iter().map(|c| md_cell(c)).collect()));
                s.push_str(&line(
                    self.columns.iter().map(|_| "---".to_string()).collect(),
                ));
                for r in &self.rows {
                    s.push_str(&line(r.iter().map(|v| md_cell(&plain(v))).collect()));
                }
                s
            }
            Format::Csv => {
                let mut s = String::new();
                let line = |cells: Vec<String>| format!("{}\n", cells.join(","));
                s.push_str(&line(self.columns.iter().map(|c| csv_cell(c)).collect()));
                for r in &self.rows {
                    s.push_str(&line(r.iter().map(|v| csv_cell(&plain(v))).collect()));
                }
                s
            }
        }
    }
}

/// A value as bare text (NULL is empty).
fn plain(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn md_cell(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('|', "\\|")
        .replace("\r\n", "<br>")
        .replace(['\n', '\r'], "<br>")
}

fn csv_cell(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// A listed name usable as one path segment.
fn segment_name(v: &Value) -> Option<String> {
    let s = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    let ok = !s.is_empty() && s != "." && s != ".." && !s.contains(['/', '\0']);
    ok.then_some(s)
}

impl Provider for SqliteProvider {
    fn info(&self) -> ProviderInfo {
        ProviderInfo {
            kind: "sqlite".into(),
            description: format!("read-only queries over {}", self.db.display()),
            ops: Ops {
                read: true,
                list: self.dir.is_some(),
                ..Ops::default()
            },
            suffixes: Vec::new(),
        }
    }

    fn read(&self, req: &Request) -> Result<Output> {
        req.query.check_keys(&["format"], &req.describe("read"))?;
        let format = match req.query.get("format") {
            Some(f) => Format::parse(f)?,
            None => self.format,
        };
        let table = self.rows(req, "read")?;
        Ok(Output::new(table.render(format), table.objects()))
    }

    fn stat(&self, req: &Request) -> Result<Stat> {
        let (kind, size) = if self.is_dir(&req.path) {
            (NodeKind::Dir, 0)
        } else {
            // The size is that of the rendered text, so readers that trust it (FUSE) get it all.
            let table = self.rows(req, "stat")?;
            (NodeKind::File, table.render(self.format).len() as u64)
        };
        Ok(Stat::untimed(kind, size))
    }

    fn list(&self, req: &Request, opts: &ListOptions) -> Result<Listing> {
        if !self.is_dir(&req.path) {
            self.served(req, "list")?;
            return Err(Error::new(
                ErrorKind::NotADirectory,
                format!("{} is a query result, not a directory", req.path),
            ));
        }
        let mut entries: Vec<Entry> = match &self.list_query {
            None => Vec::new(),
            Some(q) => {
                let values = Self::values(q, req, &BTreeMap::new());
                self.run(q, &values, req)?
                    .rows
                    .iter()
                    .filter_map(|r| r.first().and_then(segment_name))
                    .map(|name| Entry {
                        path: avm_core::address::join(&req.path, &name),
                        kind: NodeKind::File,
                        size: 0,
                        version: None,
                        updated_at: None,
                    })
                    .collect()
            }
        };
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        entries.dedup_by(|a, b| a.path == b.path);
        Ok(Listing::page(entries, opts))
    }
}
