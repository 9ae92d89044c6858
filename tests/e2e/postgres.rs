//! Hosts sharing one PostgreSQL store: `avm serve` processes with their own data directories
//! (as on different machines) and CLI writers on one database, and `avm migrate` between
//! SQLite and PostgreSQL. The server comes from `AVM_TEST_POSTGRES` (each test makes and drops
//! its own database); without it these tests say why they skip, except under
//! `REQUIRE_POSTGRES` (CI), where they fail.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::Mutex;

use serde_json::Value;

use crate::http::Server;
use crate::{Env, s};

fn database(test: &str) -> Option<avm_postgres::testing::TestDb> {
    avm_postgres::testing::TestDb::create(test).unwrap_or_else(|e| panic!("{e}"))
}

/// `avm serve` on `url`, in `env`'s own data directory (its own host, as far as avm can tell).
fn serve(env: &Env, url: &str) -> Server {
    Server::start_on(env, url, &[], &["127.0.0.1:0"], Stdio::null())
}

fn put(srv: &Server, path: &str, body: &str) -> Option<i64> {
    let (st, _, b) = srv.req("PUT", &format!("/v1/nodes{path}"), &[], body.as_bytes());
    if st != 200 {
        return None;
    }
    let v: Value = serde_json::from_str(&b).ok()?;
    v["data"]["version"].as_i64()
}

/// A PUT that answers `None` instead of panicking when the server is gone mid-request.
fn try_put(addr: &str, path: &str, body: &str) -> Option<i64> {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(addr).ok()?;
    let head = format!(
        "PUT /v1/nodes{path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    c.write_all(head.as_bytes()).ok()?;
    c.write_all(body.as_bytes()).ok()?;
    let mut raw = String::new();
    c.read_to_string(&mut raw).ok()?;
    let (h, b) = raw.split_once("\r\n\r\n")?;
    if h.split(' ').nth(1)? != "200" {
        return None;
    }
    let v: Value = serde_json::from_str(b).ok()?;
    v["data"]["version"].as_i64()
}

fn get(srv: &Server, target: &str) -> (u16, String) {
    let (st, _, b) = srv.req(
        "GET",
        &format!("/v1/nodes{target}"),
        &[("Accept", "text/plain")],
        b"",
    );
    (st, b)
}

/// Two servers (different addresses and data directories) and CLI writers on one database,
/// half of the writes to shared paths: every acknowledged write is readable through both
/// servers, each path's versions are 1..n without gaps or repeats, and a server killed with
/// SIGKILL while its writers are busy loses nothing it acknowledged.
#[test]
fn servers_and_cli_writers_on_one_postgres_keep_every_acknowledged_write() {
    let Some(db) = database("multihost") else {
        return;
    };
    let url = db.url().to_string();
    let (host_a, host_b, host_c) = (Env::new(), Env::new(), Env::new());
    let a = serve(&host_a, &url);
    let b = serve(&host_b, &url);
    // Seen through the other server at once: there is no per-host cache to go stale.
    assert_eq!(put(&a, "/memory/shared/hello.md", "from a"), Some(1));
    assert_eq!(
        get(&b, "/memory/shared/hello.md"),
        (200, "from a".to_string())
    );

    const EACH: usize = 250;
    let acked: Mutex<Vec<(String, i64, String)>> = Mutex::new(Vec::new());
    std::thread::scope(|sc| {
        for (name, srv) in [("a", &a), ("b", &b)] {
            for t in 0..2 {
                let acked = &acked;
                sc.spawn(move || {
                    for i in 0..EACH {
                        let path = if i % 2 == 0 {
                            format!("/memory/shared/s{}.md", i % 7)
                        } else {
                            format!("/memory/shared/{name}/t{t}-{i}.md")
                        };
                        let text = format!("{name} {t} {i}");
                        let v = put(srv, &path, &text)
                            .unwrap_or_else(|| panic!("write {path} through {name}"));
                        acked.lock().unwrap().push((path, v, text));
                    }
                });
            }
        }
        // A CLI process on a third host writes the shared paths too.
        let acked = &acked;
        let (host_c, url) = (&host_c, &url);
        sc.spawn(move || {
            for i in 0..40 {
                let path = format!("/memory/shared/s{}.md", i % 7);
                let text = format!("cli {i}");
                let out = host_c
                    .run(&["--db", url, "--json", "write", &path, "-c", &text])
                    .json();
                let v = out["version"].as_i64().unwrap_or_else(|| panic!("{out}"));
                acked.lock().unwrap().push((path, v, text));
            }
        });
    });
    let acked = acked.into_inner().unwrap();
    let mut versions: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for (p, v, _) in &acked {
        versions.entry(p.as_str()).or_default().push(*v);
    }
    for (p, vs) in &mut versions {
        vs.sort_unstable();
        let want: Vec<i64> = (1..=vs.len() as i64).collect();
        assert_eq!(*vs, want, "versions of {p}");
    }
    for (p, v, text) in acked.iter().step_by(11) {
        for srv in [&a, &b] {
            assert_eq!(
                get(srv, &format!("{p}?version={v}")),
                (200, text.clone()),
                "{p} v{v}"
            );
        }
    }

    // SIGKILL one server while its writers run: what it acknowledged is there afterwards.
    let done: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());
    let mut a = a;
    std::thread::scope(|sc| {
        let (done, a_ref) = (&done, &a);
        sc.spawn(move || {
            for i in 0..10_000 {
                let path = format!("/memory/shared/kill/{i}.md");
                let text = format!("before the kill {i}");
                match try_put(&a_ref.addr, &path, &text) {
                    Some(_) => done.lock().unwrap().push((path, text)),
                    None => break,
                }
            }
        });
        std::thread::sleep(std::time::Duration::from_millis(400));
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &a_ref.child.id().to_string()])
            .status();
    });
    let _ = a.child.wait();
    let done = done.into_inner().unwrap();
    assert!(!done.is_empty(), "writes were acknowledged before the kill");
    for (p, text) in &done {
        assert_eq!(get(&b, p), (200, text.clone()), "{p} after the kill");
    }
}

/// A store moved SQLite → PostgreSQL → SQLite keeps its nodes, their whole history, links,
/// binary content and trash, and a second move refuses to overwrite without --force.
#[test]
fn a_store_moves_to_postgres_and_back_whole() {
    let Some(db) = database("migrate") else {
        return;
    };
    let env = Env::new();
    let src = env.path("src.db");
    let src = s(&src);
    for i in 1..=3 {
        env.run(&[
            "--db",
            src,
            "write",
            "/memory/shared/doc.md",
            "-c",
            &format!("version {i}"),
        ])
        .ok();
    }
    let blob = env.path("blob");
    std::fs::write(&blob, [0u8, 1, 2, 255, b'x']).unwrap();
    env.run(&[
        "--db",
        src,
        "write",
        "/memory/shared/blob.bin",
        "-f",
        s(&blob),
    ])
    .ok();
    env.run(&["--db", src, "write", "/memory/shared/b.md", "-c", "b"])
        .ok();
    env.run(&[
        "--db",
        src,
        "link",
        "/memory/shared/doc.md",
        "/memory/shared/b.md",
    ])
    .ok();
    env.run(&["--db", src, "write", "/memory/shared/gone.md", "-c", "bye"])
        .ok();
    env.run(&["--db", src, "rm", "/memory/shared/gone.md"]).ok();

    let moved = env
        .run(&["--json", "migrate", "--from", src, "--to", db.url()])
        .json();
    assert_eq!(moved["nodes"], 4, "{moved}");
    let back = env.path("back.db");
    let back = s(&back);
    let moved = env
        .run(&["--json", "migrate", "--from", db.url(), "--to", back])
        .json();
    assert_eq!(moved["nodes"], 4, "{moved}");
    for store in [db.url(), back] {
        let h = env
            .run(&["--db", store, "--json", "history", "/memory/shared/doc.md"])
            .json();
        assert_eq!(h.as_array().map(Vec::len), Some(3), "{store}: {h}");
        let v1 = env.run(&[
            "--db",
            store,
            "read",
            "/memory/shared/doc.md",
            "--version",
            "1",
        ]);
        assert_eq!(v1.ok(), "version 1", "{store}");
        let links = env.run(&["--db", store, "read", "/memory/shared/doc.md:links"]);
        assert!(links.ok().contains("/memory/shared/b.md"), "{store}");
        let out = env
            .cmd(&["--db", store, "read", "/memory/shared/blob.bin"])
            .output()
            .unwrap();
        assert_eq!(out.stdout, vec![0u8, 1, 2, 255, b'x'], "{store}");
        let trash = env.run(&["--db", store, "ls", "/trash/memory/shared"]);
        assert!(trash.ok().contains("gone.md"), "{store}");
    }
    let again = env.run(&["migrate", "--from", src, "--to", db.url()]);
    assert!(again.fails(1).contains("--force"), "{again:?}");
    let forced = env
        .run(&[
            "--json",
            "migrate",
            "--from",
            src,
            "--to",
            db.url(),
            "--force",
        ])
        .json();
    assert_eq!(forced["nodes"], 4, "{forced}");
}

/// A server that is not there is named, without the password, with what to check.
#[test]
fn an_unreachable_postgres_is_named_without_its_password() {
    let env = Env::new();
    let r = env.run(&["--db", "postgres://avm:hunter2@127.0.0.1:1/avm", "ls", "/"]);
    assert_ne!(r.code, 0, "{r:?}");
    assert!(!r.stderr.contains("panicked"), "{r:?}");
    assert!(
        r.stderr.contains("127.0.0.1:1") && !r.stderr.contains("hunter2"),
        "{r:?}"
    );
    // Nor through `avm migrate`, which names the store it could not open.
    let r = env.run(&[
        "migrate",
        "--from",
        s(&env.path("a.db")),
        "--to",
        "postgres://avm:hunter2@127.0.0.1:1/avm",
    ]);
    assert_ne!(r.code, 0, "{r:?}");
    assert!(
        r.stderr.contains("127.0.0.1:1") && !r.stderr.contains("hunter2"),
        "{r:?}"
    );
}
