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

/// `avm serve` on `url`, in `env`'s own data directory (its own host, as far as avm can tell),
/// running the background work (webhook deliveries) every second.
fn serve_working(env: &Env, url: &str) -> Server {
    Server::start_on(
        env,
        url,
        &[],
        &["127.0.0.1:0", "--work-every", "1"],
        Stdio::null(),
    )
}

/// What one writer had acknowledged: (path, version, content).
type Acked = Mutex<Vec<(String, i64, String)>>;

/// Every event of the store, read by a process of its own (as a worker on another host reads
/// them) while the writers run: `events_after` polled until `stop`, then drained.
fn follow(url: &str, stop: &std::sync::atomic::AtomicBool) -> Vec<avm_core::storage::StoreEvent> {
    use std::sync::atomic::Ordering;
    let store = avm_provider_memory::MemoryProvider::open_location(
        url,
        Default::default(),
        Default::default(),
    )
    .unwrap()
    .memory_store();
    let (mut seen, mut last) = (Vec::new(), 0i64);
    loop {
        let stopping = stop.load(Ordering::SeqCst);
        let batch = store.events_after(last, 500).unwrap();
        for e in &batch {
            assert!(e.seq > last, "event {} after {last}: out of order", e.seq);
            last = e.seq;
        }
        let empty = batch.is_empty();
        seen.extend(batch);
        if stopping && empty {
            return seen;
        }
        if empty {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
}

/// Three servers (different addresses and data directories, each running the webhook worker)
/// and two CLI processes on one database, 500 writes each, half of them to shared paths:
/// - every acknowledged write is readable through every server;
/// - each path's versions are 1..n without gaps or repeats;
/// - a follower polling the events table while they write sees every write exactly once, in
///   increasing sequence (concurrent commits never let it skip one);
/// - a realtime webhook on the shared paths gets each of those events exactly once, although
///   three servers deliver;
/// - a server killed with SIGKILL while its writers are busy loses nothing it acknowledged,
///   and the survivors still deliver its writes' webhooks.
#[test]
fn servers_and_cli_writers_on_one_postgres_keep_every_acknowledged_write() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let Some(db) = database("multihost") else {
        return;
    };
    let url = db.url().to_string();
    let hosts: Vec<Env> = (0..5).map(|_| Env::new()).collect();

    // A realtime webhook on every shared path, filed before anything is written.
    let hook = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hook_url = format!("http://{}/hook", hook.local_addr().unwrap());
    let deliveries = crate::http::receiver(hook);
    hosts[4]
        .run(&[
            "--db",
            &url,
            "--agent",
            "watcher",
            "subscribe",
            "/memory/shared/**",
            "--webhook",
            &hook_url,
        ])
        .ok();

    let servers: Vec<Server> = hosts[..3].iter().map(|h| serve_working(h, &url)).collect();
    // Seen through another server at once: there is no per-host cache to go stale.
    assert_eq!(
        put(&servers[0], "/memory/shared/hello.md", "from a"),
        Some(1)
    );
    assert_eq!(
        get(&servers[1], "/memory/shared/hello.md"),
        (200, "from a".to_string())
    );

    const EACH: usize = 500;
    let acked: Acked = Mutex::new(vec![("/memory/shared/hello.md".into(), 1, "from a".into())]);
    let stop = AtomicBool::new(false);
    let events = std::thread::scope(|sc| {
        let follower = sc.spawn(|| follow(&url, &stop));
        let mut writers = Vec::new();
        for (n, srv) in servers.iter().enumerate() {
            // Two connections per server, 250 writes each.
            for t in 0..2 {
                let acked = &acked;
                writers.push(sc.spawn(move || {
                    for i in (t..EACH).step_by(2) {
                        let path = if i % 2 == 0 {
                            format!("/memory/shared/s{}.md", i % 7)
                        } else {
                            format!("/memory/shared/h{n}/{i}.md")
                        };
                        let text = format!("server {n} write {i}");
                        let v = put(srv, &path, &text)
                            .unwrap_or_else(|| panic!("write {path} through server {n}"));
                        acked.lock().unwrap().push((path, v, text));
                    }
                }));
            }
        }
        // Two CLI processes on hosts of their own, 500 writes each through `avm batch`.
        for c in 0..2 {
            let (acked, host, url) = (&acked, &hosts[3 + c], &url);
            writers.push(sc.spawn(move || {
                let mut ops = String::new();
                let mut sent = Vec::new();
                for i in 0..EACH {
                    let path = if i % 2 == 0 {
                        format!("/memory/shared/s{}.md", i % 7)
                    } else {
                        format!("/memory/shared/cli{c}/{i}.md")
                    };
                    let text = format!("cli {c} write {i}");
                    ops.push_str(
                        &serde_json::json!({"op": "write", "path": path, "content": text})
                            .to_string(),
                    );
                    ops.push('\n');
                    sent.push((path, text));
                }
                let out = host.run_in(&["--db", url, "batch"], ops.as_bytes());
                let lines: Vec<Value> = out
                    .ok()
                    .lines()
                    .map(|l| serde_json::from_str(l).unwrap())
                    .collect();
                assert_eq!(lines.len(), EACH, "one answer per operation");
                for (r, (path, text)) in lines.iter().zip(sent) {
                    assert_eq!(r["ok"], true, "{r}");
                    let v = r["result"]["version"]
                        .as_i64()
                        .unwrap_or_else(|| panic!("{r}"));
                    acked.lock().unwrap().push((path, v, text));
                }
            }));
        }
        for w in writers {
            w.join().unwrap();
        }
        stop.store(true, Ordering::SeqCst);
        follower.join().unwrap()
    });
    let acked = acked.into_inner().unwrap();
    assert_eq!(acked.len(), 5 * EACH + 1);

    let mut versions: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for (p, v, _) in &acked {
        versions.entry(p.as_str()).or_default().push(*v);
    }
    for (p, vs) in &mut versions {
        vs.sort_unstable();
        let want: Vec<i64> = (1..=vs.len() as i64).collect();
        assert_eq!(*vs, want, "versions of {p}");
    }
    for (p, v, text) in acked.iter().step_by(7) {
        for srv in &servers {
            assert_eq!(
                get(srv, &format!("{p}?version={v}")),
                (200, text.clone()),
                "{p} v{v}"
            );
        }
    }

    // The follower saw each write once: one create or update per acknowledged version.
    let mut per_path: BTreeMap<&str, i64> = BTreeMap::new();
    for e in &events {
        assert!(matches!(e.kind.as_str(), "create" | "update"), "{e:?}");
        *per_path.entry(e.path.as_str()).or_default() += 1;
    }
    let want: BTreeMap<&str, i64> = versions
        .iter()
        .map(|(p, vs)| (*p, vs.len() as i64))
        .collect();
    assert_eq!(per_path, want, "events per path");

    // Each event reaches the webhook once, though three servers run the delivery worker.
    let by_seq = |want: usize, deadline: std::time::Duration| {
        let mut got: BTreeMap<i64, usize> = BTreeMap::new();
        let end = std::time::Instant::now() + deadline;
        while got.len() < want {
            let left = end.saturating_duration_since(std::time::Instant::now());
            let Ok((_, body)) = deliveries.recv_timeout(left) else {
                break;
            };
            let v: Value = serde_json::from_str(&body).unwrap();
            for e in v["events"].as_array().unwrap() {
                *got.entry(e["seq"].as_i64().unwrap()).or_default() += 1;
            }
        }
        got
    };
    let got = by_seq(events.len(), std::time::Duration::from_secs(120));
    // A duplicate would arrive late: give one a moment to show up.
    let mut got = got;
    for (seq, n) in by_seq(usize::MAX, std::time::Duration::from_secs(3)) {
        *got.entry(seq).or_default() += n;
    }
    let seqs: BTreeMap<i64, usize> = events.iter().map(|e| (e.seq, 1)).collect();
    assert_eq!(got, seqs, "webhook deliveries per event");

    // SIGKILL one server while its writers run: what it acknowledged is there afterwards.
    let done: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());
    let mut servers = servers;
    let killed = servers.remove(0);
    std::thread::scope(|sc| {
        let (done, k) = (&done, &killed);
        sc.spawn(move || {
            for i in 0..10_000 {
                let path = format!("/memory/shared/kill/{i}.md");
                let text = format!("before the kill {i}");
                match try_put(&k.addr, &path, &text) {
                    Some(_) => done.lock().unwrap().push((path, text)),
                    None => break,
                }
            }
        });
        std::thread::sleep(std::time::Duration::from_millis(400));
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &k.child.id().to_string()])
            .status();
    });
    let mut killed = killed;
    let _ = killed.child.wait();
    let done = done.into_inner().unwrap();
    assert!(!done.is_empty(), "writes were acknowledged before the kill");
    for (p, text) in &done {
        for srv in &servers {
            assert_eq!(get(srv, p), (200, text.clone()), "{p} after the kill");
        }
    }
    // The survivors deliver the webhooks of what it acknowledged (at least once: a delivery the
    // killed server had claimed is retried when its lease runs out).
    let mut kill_paths: std::collections::BTreeSet<String> =
        done.iter().map(|(p, _)| p.clone()).collect();
    let end = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !kill_paths.is_empty() {
        let left = end.saturating_duration_since(std::time::Instant::now());
        let Ok((_, body)) = deliveries.recv_timeout(left) else {
            break;
        };
        let v: Value = serde_json::from_str(&body).unwrap();
        for e in v["events"].as_array().unwrap() {
            kill_paths.remove(e["path"].as_str().unwrap());
        }
    }
    assert!(kill_paths.is_empty(), "no webhook for {kill_paths:?}");
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
