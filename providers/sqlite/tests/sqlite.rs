#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The sqlite provider against a real SQLite file created by each test.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use avm_core::contract;
use avm_core::{Caller, ErrorKind, ListOptions, NodeKind, Provider, Request, WriteInput};
use avm_provider_sqlite::{SqliteOptions, SqliteProvider};
use rusqlite::Connection;
use serde_json::json;

/// A database with a `users` table of four rows, one of them with a hostile-looking name.
fn fixture() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let c = Connection::open(&db).unwrap();
    c.execute_batch(
        "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL, score REAL, avatar BLOB, note TEXT);
         INSERT INTO users VALUES (1, 'alice', 9.5, x'00ff10', NULL);
         INSERT INTO users VALUES (2, 'bob', 7.25, NULL, 'likes | pipes, commas and \"quotes\"' || char(10) || 'second line');
         INSERT INTO users VALUES (3, 'O''Brien''; DROP TABLE users; --', NULL, NULL, 'tricky');
         INSERT INTO users VALUES (4, 'x\" UNION SELECT 1,2,3,4,5 --', NULL, NULL, NULL);",
    )
    .unwrap();
    (dir, db)
}

fn count(db: &Path) -> i64 {
    Connection::open(db)
        .unwrap()
        .query_row("SELECT count(*) FROM users", [], |r| r.get(0))
        .unwrap()
}

fn provider(pattern: &str, v: serde_json::Value) -> SqliteProvider {
    SqliteProvider::new(pattern, serde_json::from_value(v).unwrap()).unwrap()
}

fn build_err(pattern: &str, v: serde_json::Value) -> avm_core::Error {
    SqliteProvider::new(pattern, serde_json::from_value::<SqliteOptions>(v).unwrap()).unwrap_err()
}

fn req(path: &str) -> Request {
    Request::new(path, Caller::Operator)
}

fn req_with(path: &str, caps: &[(&str, &str)]) -> Request {
    let mut r = req(path);
    for (k, v) in caps {
        r.captures.insert((*k).to_string(), (*v).to_string());
    }
    r
}

const BY_ID: &str = "SELECT id, name, score, avatar, note FROM users WHERE id = :id";

#[test]
fn a_capture_looks_up_its_row_with_typed_json_values() {
    let (_d, db) = fixture();
    let p = provider("/db/users/{id}", json!({"db": db, "query": BY_ID}));
    assert_eq!(p.info().kind, "sqlite");
    let out = p.read(&req("/db/users/1")).unwrap();
    let want = json!([{"id": 1, "name": "alice", "score": 9.5, "avatar": "00ff10", "note": null}]);
    assert_eq!(out.data(), want);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&out.text).unwrap(),
        want
    );
    assert!(out.text.contains("\n  {"), "pretty-printed: {}", out.text);
}

#[test]
fn at_and_dollar_parameters_and_rest_and_path_bind_too() {
    let (_d, db) = fixture();
    let p = provider(
        "/db/by/{name}/**",
        json!({"db": db, "query": "SELECT id, @name AS n, $rest AS r, :path AS p FROM users WHERE name = @name"}),
    );
    let out = p.read(&req("/db/by/bob/x/y")).unwrap();
    assert_eq!(
        out.data(),
        json!([{"id": 2, "n": "bob", "r": "x/y", "p": "/db/by/bob/x/y"}])
    );
}

#[test]
fn sql_in_captures_is_data_and_the_table_survives() {
    let (_d, db) = fixture();
    let by_id = provider("/db/users/{id}", json!({"db": db, "query": BY_ID}));
    let by_name = provider(
        "/db/names/{name}",
        json!({"db": db, "query": "SELECT id FROM users WHERE name = :name"}),
    );
    for hostile in [
        "1 OR 1=1",
        "1; DROP TABLE users; --",
        "'; DROP TABLE users; --",
        "1' OR '1'='1",
        "\"x\" UNION SELECT 1,2,3,4,5",
        "1 UNION SELECT id, name, score, avatar, note FROM users",
        "../1",
    ] {
        let e = by_id
            .read(&req_with("/db/users/x", &[("id", hostile)]))
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound, "{hostile:?}: {e}");
        let e = by_name
            .read(&req_with("/db/names/x", &[("name", hostile)]))
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound, "{hostile:?}: {e}");
    }
    // The literal names that look like SQL match exactly their own rows.
    for (name, id) in [
        ("O'Brien'; DROP TABLE users; --", 3),
        ("x\" UNION SELECT 1,2,3,4,5 --", 4),
    ] {
        let out = by_name
            .read(&req_with("/db/names/x", &[("name", name)]))
            .unwrap();
        assert_eq!(out.data(), json!([{"id": id}]), "{name:?}");
    }
    assert_eq!(count(&db), 4);
}

#[test]
fn statements_that_write_are_refused_at_construction() {
    let (_d, db) = fixture();
    for sql in [
        "DELETE FROM users WHERE id = :id",
        "UPDATE users SET name = 'x' WHERE id = :id",
        "INSERT INTO users (name) VALUES (:id)",
        "DROP TABLE users",
        "CREATE TABLE t (a)",
        "ATTACH 'other.db' AS other",
        "BEGIN",
        "SELECT 1; DELETE FROM users",
    ] {
        let e = build_err("/db/users/{id}", json!({"db": db, "query": sql}));
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{sql}");
        assert!(e.message().contains("option query"), "{sql}: {e}");
        let e = build_err(
            "/db/users/{id}",
            json!({"db": db, "query": BY_ID, "list_query": sql}),
        );
        assert!(e.message().contains("option list_query"), "{sql}: {e}");
    }
    assert_eq!(count(&db), 4);
}

#[test]
fn parameters_that_name_no_capture_are_refused_at_construction() {
    let (_d, db) = fixture();
    let e = build_err(
        "/db/users/{id}",
        json!({"db": db, "query": "SELECT * FROM users WHERE name = :town"}),
    );
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(
        e.message().contains(":town") && e.message().contains(":id"),
        "{e}"
    );
    let e = build_err(
        "/db/users/{id}",
        json!({"db": db, "query": "SELECT * FROM users WHERE id = ?"}),
    );
    assert!(e.message().contains("positional"), "{e}");
    let e = build_err(
        "/db/users/{id}",
        json!({"db": db, "query": "SELECT * FROM users WHERE id = ?1"}),
    );
    assert!(e.message().contains("positional"), "{e}");
    // :rest exists only for patterns ending in **.
    let e = build_err("/db/users/{id}", json!({"db": db, "query": "SELECT :rest"}));
    assert!(e.message().contains(":rest"), "{e}");
    // The listing query runs on the prefix, where there are no captures.
    let e = build_err(
        "/db/users/{id}",
        json!({"db": db, "query": BY_ID, "list_query": "SELECT id FROM users WHERE id = :id"}),
    );
    assert!(e.message().contains("list_query"), "{e}");
}

#[test]
fn other_bad_options_are_refused_naming_the_option() {
    let (d, db) = fixture();
    let missing = d.path().join("missing.db");
    let e = build_err("/db/{id}", json!({"db": missing, "query": "SELECT 1"}));
    assert!(e.message().contains("option db"), "{e}");
    assert!(!missing.exists(), "a missing db must not be created");
    let e = build_err("/db/{id}", json!({"db": db, "query": "SELEKT 1"}));
    assert!(e.message().contains("option query"), "{e}");
    let e = build_err(
        "/db/{id}",
        json!({"db": db, "query": "SELECT 1", "max_rows": 0}),
    );
    assert!(e.message().contains("max_rows"), "{e}");
    let e = build_err(
        "/db/{id}",
        json!({"db": db, "query": "SELECT 1", "timeout_ms": 0}),
    );
    assert!(e.message().contains("timeout_ms"), "{e}");
    let e = build_err(
        "/db/one",
        json!({"db": db, "query": "SELECT 1", "list_query": "SELECT 1"}),
    );
    assert!(e.message().contains("list_query"), "{e}");
    assert!(
        serde_json::from_value::<SqliteOptions>(
            json!({"db": "x", "query": "SELECT 1", "write_query": "x"})
        )
        .is_err()
    );
    assert!(
        serde_json::from_value::<SqliteOptions>(
            json!({"db": "x", "query": "SELECT 1", "format": "xml"})
        )
        .is_err()
    );
}

#[test]
fn no_rows_is_not_found_and_stat_gives_the_rendered_size() {
    let (_d, db) = fixture();
    let p = provider("/db/users/{id}", json!({"db": db, "query": BY_ID}));
    contract::missing_is_not_found(&p, "/db/users/999").unwrap();
    contract::missing_is_not_found(&p, "/elsewhere").unwrap();
    contract::read_only_rejects_writes(&p, "/db/users/1").unwrap();
    let e = p
        .write(&req("/db/users/1"), WriteInput::Text("x".into()))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ReadOnly);
    let st = p.stat(&req("/db/users/2")).unwrap();
    assert_eq!(st.kind, NodeKind::File);
    assert_eq!(
        st.size,
        p.read(&req("/db/users/2")).unwrap().text.len() as u64
    );
    assert_eq!(p.stat(&req("/db/users")).unwrap().kind, NodeKind::Dir);
    assert_eq!(
        p.read(&req("/db/users")).unwrap_err().kind(),
        ErrorKind::IsADirectory
    );
}

#[test]
fn list_query_names_the_entries_of_the_prefix() {
    let (_d, db) = fixture();
    let p = provider(
        "/db/users/{id}",
        json!({"db": db, "query": BY_ID, "list_query": "SELECT id FROM users UNION ALL SELECT 'a/b' UNION ALL SELECT NULL"}),
    );
    assert!(p.info().ops.list);
    let all = p.list(&req("/db/users"), &ListOptions::default()).unwrap();
    let paths: Vec<&str> = all.entries.iter().map(|e| e.path.as_str()).collect();
    // Names that are not one path segment ('a/b', NULL) are skipped.
    assert_eq!(
        paths,
        vec!["/db/users/1", "/db/users/2", "/db/users/3", "/db/users/4"]
    );
    assert!(all.entries.iter().all(|e| e.kind == NodeKind::File));
    for e in &all.entries {
        p.read(&req(&e.path)).unwrap();
    }
    let page = p
        .list(
            &req("/db/users"),
            &ListOptions {
                limit: Some(2),
                offset: 1,
                ..ListOptions::default()
            },
        )
        .unwrap();
    let paths: Vec<&str> = page.entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, vec!["/db/users/2", "/db/users/3"]);
    assert!(page.more);
    assert_eq!(
        p.list(&req("/db/users/1"), &ListOptions::default())
            .unwrap_err()
            .kind(),
        ErrorKind::NotADirectory
    );
}

#[test]
fn markdown_and_csv_formats_escape_their_cells() {
    let (_d, db) = fixture();
    let md = provider(
        "/db/users/{id}",
        json!({"db": db, "query": "SELECT id, name, note, avatar FROM users WHERE id = :id", "format": "markdown"}),
    );
    let text = md.read(&req("/db/users/2")).unwrap().text;
    assert_eq!(
        text,
        "| id | name | note | avatar |\n| --- | --- | --- | --- |\n| 2 | bob | likes \\| pipes, commas and \"quotes\"<br>second line |  |\n"
    );
    let csv = provider(
        "/db/users/{id}",
        json!({"db": db, "query": "SELECT id, name, note, avatar FROM users WHERE id = :id", "format": "csv"}),
    );
    let out = csv.read(&req("/db/users/2")).unwrap();
    assert_eq!(
        out.text,
        "id,name,note,avatar\n2,bob,\"likes | pipes, commas and \"\"quotes\"\"\nsecond line\",\n"
    );
    // The structured form is the same whatever the text format.
    assert_eq!(out.data()[0]["id"], json!(2));
    // ?format= overrides the configured format for one read.
    let mut r = req("/db/users/1");
    r.query.push("format", "csv");
    assert_eq!(
        md.read(&r).unwrap().text,
        "id,name,note,avatar\n1,alice,,00ff10\n"
    );
    r.query = avm_core::Query::new();
    r.query.push("format", "xml");
    assert_eq!(md.read(&r).unwrap_err().kind(), ErrorKind::InvalidInput);
}

#[test]
fn more_rows_than_max_rows_is_too_large() {
    let (_d, db) = fixture();
    let p = provider(
        "/db/all/**",
        json!({"db": db, "query": "SELECT id FROM users", "max_rows": 3}),
    );
    let e = p.read(&req("/db/all/x")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TooLarge, "{e}");
    assert!(e.message().contains("max_rows (3)"), "{e}");
    let p = provider(
        "/db/all/**",
        json!({"db": db, "query": "SELECT id FROM users", "max_rows": 4}),
    );
    assert_eq!(
        p.read(&req("/db/all/x"))
            .unwrap()
            .data()
            .as_array()
            .unwrap()
            .len(),
        4
    );
}

const ENDLESS: &str =
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c";

#[test]
fn a_runaway_query_is_interrupted_at_timeout_ms() {
    let (_d, db) = fixture();
    let p = provider(
        "/db/slow",
        json!({"db": db, "query": ENDLESS, "timeout_ms": 200}),
    );
    let e = p.read(&req("/db/slow")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}");
    assert!(e.message().contains("timeout_ms (200 ms)"), "{e}");
    // The connection goes back to the pool usable: a later read fails the same way, not worse.
    assert_eq!(
        p.read(&req("/db/slow")).unwrap_err().kind(),
        ErrorKind::TimedOut
    );
}

#[test]
fn a_sooner_caller_deadline_interrupts_the_query() {
    let (_d, db) = fixture();
    let p = provider(
        "/db/slow",
        json!({"db": db, "query": ENDLESS, "timeout_ms": 600000}),
    );
    let mut r = req("/db/slow");
    r.deadline = Some(Instant::now() + Duration::from_millis(200));
    let e = p.read(&r).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}");
    assert!(e.message().contains("caller's deadline"), "{e}");
}

#[test]
fn reads_leave_the_database_file_untouched() {
    let (_d, db) = fixture();
    let before = std::fs::read(&db).unwrap();
    let p = provider("/db/users/{id}", json!({"db": db, "query": BY_ID}));
    for id in ["1", "2", "3", "4", "5"] {
        let _ = p.read(&req(&format!("/db/users/{id}")));
    }
    drop(p);
    assert_eq!(std::fs::read(&db).unwrap(), before);
}

#[test]
fn concurrent_reads_from_many_threads_all_succeed() {
    let (_d, db) = fixture();
    let p = provider("/db/users/{id}", json!({"db": db, "query": BY_ID}));
    std::thread::scope(|s| {
        for t in 0..4 {
            let p = &p;
            s.spawn(move || {
                for i in 0..25 {
                    let id = (t + i) % 4 + 1;
                    let out = p.read(&req(&format!("/db/users/{id}"))).unwrap();
                    assert_eq!(out.data()[0]["id"], json!(id));
                }
            });
        }
    });
}
