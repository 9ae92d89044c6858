//! The HTTP API of `avm serve`, over real TCP with hand-made HTTP/1.1 requests (so nothing is
//! normalised on the way: traversal attempts arrive as typed).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};

use serde_json::Value;

use crate::{Env, s};

pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) addr: String,
}

impl Server {
    pub(crate) fn start(env: &Env, extra: &[&str]) -> Server {
        Server::start_with(env, &[], extra, Stdio::null())
    }

    /// [`Server::start`] with global options `before` the command and its stderr to `stderr`.
    pub(crate) fn start_with(env: &Env, before: &[&str], extra: &[&str], stderr: Stdio) -> Server {
        Server::start_on(env, s(&env.db()), before, extra, stderr)
    }

    /// [`Server::start_with`] on the store `db` (a file or a PostgreSQL address).
    pub(crate) fn start_on(
        env: &Env,
        db: &str,
        before: &[&str],
        extra: &[&str],
        stderr: Stdio,
    ) -> Server {
        let mut args = vec!["--db", db];
        args.extend(before);
        args.extend(["serve", "--bind"]);
        args.extend(extra);
        let mut child = env
            .cmd(&args)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .trim()
            .strip_prefix("Listening on http://")
            .unwrap_or_else(|| panic!("{line:?}"));
        let port = url.rsplit(':').next().unwrap();
        Server {
            child,
            addr: format!("127.0.0.1:{port}"),
        }
    }

    /// Sends one request; returns (status, headers, body).
    pub(crate) fn req(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (u16, String, String) {
        let mut s = TcpStream::connect(&self.addr).unwrap();
        let mut head = format!(
            "{method} {target} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.addr,
            body.len()
        );
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        s.write_all(head.as_bytes()).unwrap();
        let _ = s.write_all(body);
        let mut raw = Vec::new();
        let _ = s.read_to_end(&mut raw);
        let text = String::from_utf8_lossy(&raw).to_string();
        let (h, b) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status: u16 = h.split(' ').nth(1).unwrap().parse().unwrap();
        let body = if h
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            dechunk(b)
        } else {
            b.to_string()
        };
        (status, h.to_string(), body)
    }

    fn json(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (u16, Value) {
        let (st, _, b) = self.req(method, target, headers, body.as_bytes());
        let v = serde_json::from_str(&b)
            .unwrap_or_else(|e| panic!("{method} {target}: not JSON ({e}): {b}"));
        (st, v)
    }

    fn stop(mut self) -> i32 {
        nix_kill(self.child.id());
        let code = self.child.wait().unwrap().code().unwrap_or(-1);
        std::mem::forget(self);
        code
    }
}

fn nix_kill(pid: u32) {
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn dechunk(b: &str) -> String {
    let mut out = String::new();
    let mut rest = b;
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&tail[..n]);
        rest = &tail[n + 2..];
    }
    out
}

fn kind(v: &Value) -> &str {
    v["error"]["kind"].as_str().unwrap_or("")
}

#[test]
fn every_endpoint_answers_and_errors_are_json_with_kind_and_message() {
    let env = Env::new();
    let srv = Server::start(&env, &["127.0.0.1:0"]);
    let (st, v) = srv.json("GET", "/health", &[], "");
    assert_eq!((st, v["ok"].as_bool()), (200, Some(true)));
    let (st, doc) = srv.json("GET", "/openapi.json", &[], "");
    assert_eq!(st, 200);
    for p in [
        "/v1/nodes/{path}",
        "/v1/search",
        "/v1/recall",
        "/v1/remember",
        "/v1/tell",
        "/v1/inbox",
        "/v1/stats",
        "/v1/list/{path}",
    ] {
        assert!(
            doc["paths"].get(p).is_some(),
            "{p} missing from the OpenAPI document"
        );
    }

    let (st, v) = srv.json(
        "PUT",
        "/v1/nodes/memory/shared/team/plan.md",
        &[],
        "ship the zebra release friday",
    );
    assert_eq!(st, 200, "{v}");
    let (st, v) = srv.json("GET", "/v1/nodes/memory/shared/team/plan.md", &[], "");
    assert_eq!(
        (st, v["text"].as_str()),
        (200, Some("ship the zebra release friday")),
        "{v}"
    );
    let (st, _, body) = srv.req(
        "GET",
        "/v1/nodes/memory/shared/team/plan.md",
        &[("Accept", "text/plain")],
        b"",
    );
    assert_eq!((st, body.as_str()), (200, "ship the zebra release friday"));
    let (st, v) = srv.json(
        "PUT",
        "/v1/nodes/memory/shared/team/plan.md",
        &[("Content-Type", "application/json")],
        r#"{"tags": ["release"], "importance": 0.9}"#,
    );
    assert_eq!(st, 200, "{v}");
    let (_, v) = srv.json("GET", "/v1/nodes/memory/shared/team/plan.md:tags", &[], "");
    assert_eq!(v["text"].as_str().map(str::trim), Some("release"), "{v}");
    let (st, v) = srv.json("GET", "/v1/list/memory/shared?recursive=true", &[], "");
    assert_eq!(st, 200);
    assert_eq!(
        v["entries"][0]["path"], "/memory/shared/team/plan.md",
        "{v}"
    );
    let (st, v) = srv.json("GET", "/v1/search?q=zebra", &[], "");
    assert_eq!(
        (st, v["results"][0]["path"].as_str()),
        (200, Some("/memory/shared/team/plan.md")),
        "{v}"
    );

    let (st, v) = srv.json(
        "POST",
        "/v1/remember",
        &[
            ("Content-Type", "application/json"),
            ("X-Avm-Agent", "alice"),
        ],
        r#"{"content": "the staging database password rotates on mondays", "title": "rotation"}"#,
    );
    assert_eq!(st, 201, "{v}");
    let (st, _) = srv.json(
        "POST",
        "/v1/remember",
        &[
            ("Content-Type", "application/json"),
            ("X-Avm-Agent", "alice"),
        ],
        r#"{"content": "the staging database password rotates on mondays", "title": "rotation"}"#,
    );
    assert_eq!(st, 200, "the same memory again is not a new one");
    let (st, v) = srv.json(
        "GET",
        "/v1/recall?q=password%20rotation&max_tokens=300",
        &[("X-Avm-Agent", "alice")],
        "",
    );
    assert_eq!(st, 200);
    assert!(v["text"].as_str().unwrap().contains("mondays"), "{v}");
    let (st, v) = srv.json(
        "POST",
        "/v1/tell",
        &[
            ("Content-Type", "application/json"),
            ("X-Avm-Agent", "alice"),
        ],
        r#"{"to": "bob", "message": "deploy is broken", "priority": "urgent"}"#,
    );
    assert_eq!(st, 201, "{v}");
    let (st, v) = srv.json("GET", "/v1/inbox", &[("X-Avm-Agent", "bob")], "");
    assert_eq!(st, 200);
    assert!(
        v["text"].as_str().unwrap().contains("deploy is broken"),
        "{v}"
    );
    let (st, v) = srv.json("GET", "/v1/stats", &[], "");
    assert_eq!(st, 200, "{v}");

    let (st, v) = srv.json("DELETE", "/v1/nodes/memory/shared/team/plan.md", &[], "");
    assert_eq!(st, 200, "{v}");
    let (st, v) = srv.json("GET", "/v1/nodes/memory/shared/team/plan.md", &[], "");
    assert_eq!((st, kind(&v)), (404, "not-found"), "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("plan.md"));
    let (st, v) = srv.json("GET", "/v2/whatever", &[], "");
    assert_eq!((st, kind(&v)), (404, "not-found"));
    let (st, v) = srv.json(
        "POST",
        "/v1/remember",
        &[("Content-Type", "application/json")],
        r#"{"content": "x", "bogus": 1}"#,
    );
    assert_eq!((st, kind(&v)), (400, "invalid-input"), "{v}");
    let (st, v) = srv.json("GET", "/v1/search", &[], "");
    assert_eq!((st, kind(&v)), (400, "invalid-input"));
    assert_eq!(srv.stop(), 0, "SIGTERM is a clean stop");
}

#[test]
fn identities_keys_and_isolation_hold_over_http() {
    let env = Env::new();
    let key = env.run(&["--db", s(&env.db()), "--agent", "alice", "key", "create"]);
    let key = key.ok().trim().to_string();
    assert!(key.starts_with("avm_"), "{key}");
    let bearer = format!("Bearer {key}");
    let srv = Server::start(&env, &["127.0.0.1:0"]);
    let (st, _) = srv.json(
        "PUT",
        "/v1/nodes/memory/private/alice/diary.md",
        &[("Authorization", &bearer)],
        "alice only",
    );
    assert_eq!(st, 200);
    let (st, v) = srv.json(
        "GET",
        "/v1/nodes/memory/private/alice/diary.md",
        &[("X-Avm-Agent", "bob")],
        "",
    );
    assert_eq!((st, kind(&v)), (403, "permission-denied"), "{v}");
    assert!(!v.to_string().contains("alice only"));
    let (st, v) = srv.json(
        "GET",
        "/v1/nodes/memory/private/alice/diary.md",
        &[("Authorization", &bearer), ("X-Avm-Agent", "bob")],
        "",
    );
    assert_eq!(
        (st, kind(&v)),
        (403, "permission-denied"),
        "a key cannot act as someone else: {v}"
    );
    let (st, v) = srv.json(
        "GET",
        "/v1/nodes/memory/private/alice/diary.md",
        &[("Authorization", "Bearer avm_0000_forged")],
        "",
    );
    assert_eq!((st, kind(&v)), (401, "unauthorized"), "{v}");
    let (st, v) = srv.json("GET", "/v1/search?q=alice", &[("X-Avm-Agent", "bob")], "");
    assert_eq!(st, 200);
    assert_eq!(
        v["results"].as_array().unwrap().len(),
        0,
        "bob's search finds nothing private: {v}"
    );
    let (st, v) = srv.json(
        "GET",
        "/v1/nodes/memory/private/alice/diary.md",
        &[("X-Avm-Agent", "../alice")],
        "",
    );
    assert_eq!((st, kind(&v)), (400, "invalid-input"), "{v}");
}

#[test]
fn a_server_beyond_loopback_demands_a_key_on_every_request() {
    let env = Env::new();
    let out = env.run(&[
        "--db",
        s(&env.db()),
        "--agent",
        "carol",
        "--json",
        "key",
        "create",
    ]);
    let made = out.json();
    let key = made["key"].as_str().unwrap().to_string();
    let id = made["id"].as_str().unwrap().to_string();
    let srv = Server::start(&env, &["0.0.0.0:0"]);
    let (st, hdr, body) = srv.req("GET", "/v1/stats", &[], b"");
    assert_eq!(st, 401, "{body}");
    assert!(
        hdr.to_ascii_lowercase()
            .contains("www-authenticate: bearer"),
        "{hdr}"
    );
    let (st, _, _) = srv.req("GET", "/v1/stats", &[("X-Avm-Agent", "carol")], b"");
    assert_eq!(st, 401, "naming an agent is not enough beyond loopback");
    let bearer = format!("Bearer {key}");
    let (st, v) = srv.json(
        "PUT",
        "/v1/nodes/private/notes.md",
        &[("Authorization", &bearer)],
        "mine",
    );
    assert_eq!(st, 200, "{v}");
    let (st, v) = srv.json(
        "GET",
        "/v1/nodes/memory/private/carol/notes.md",
        &[("Authorization", &bearer)],
        "",
    );
    assert_eq!((st, v["text"].as_str()), (200, Some("mine")));
    env.run(&["--db", s(&env.db()), "key", "revoke", &id]).ok();
    let (st, _) = srv.json("GET", "/v1/stats", &[("Authorization", &bearer)], "");
    assert_eq!(st, 401, "a revoked key stops working at once");
    let listed = env.run(&["--db", s(&env.db()), "key", "list"]);
    assert!(listed.ok().contains("No keys"), "{listed:?}");
}

#[test]
fn oversize_bodies_are_413_and_traversal_never_leaves_the_tree() {
    let env = Env::new();
    let srv = Server::start(&env, &["127.0.0.1:0", "--max-body", "1000"]);
    let (st, v) = srv.json("PUT", "/v1/nodes/memory/big.md", &[], &"x".repeat(5000));
    assert_eq!((st, kind(&v)), (413, "too-large"), "{v}");
    let (st, v) = srv.json(
        "POST",
        "/v1/remember",
        &[("Content-Type", "application/json")],
        &format!("{{\"content\": \"{}\"}}", "y".repeat(5000)),
    );
    assert_eq!((st, kind(&v)), (413, "too-large"), "{v}");
    for target in [
        "/v1/nodes/memory/../../etc/passwd",
        "/v1/nodes/memory/%2e%2e/%2e%2e/etc/passwd",
        "/v1/nodes/memory/shared/..%2f..%2fetc%2fpasswd",
        "/v1/nodes/memory/./a/../../x",
    ] {
        let (st, _, body) = srv.req("GET", target, &[], b"");
        assert!(st == 400 || st == 404, "{target}: {st} {body}");
        assert!(!body.contains("root:"), "{target} leaked: {body}");
        let (st, _, body) = srv.req("PUT", target, &[], b"overwrite");
        assert!(st == 400 || st == 404, "{target}: {st} {body}");
    }
    let (st, v) = srv.json("GET", "/v1/list/memory?limit=abc", &[], "");
    assert_eq!((st, kind(&v)), (400, "invalid-input"), "{v}");
}

#[test]
fn writes_acknowledged_before_sigterm_are_all_there_after_it() {
    let env = Env::new();
    let srv = Server::start(&env, &["127.0.0.1:0"]);
    for i in 0..50 {
        let (st, _) = srv.json(
            "PUT",
            &format!("/v1/nodes/memory/shared/log/{i}.md"),
            &[],
            &format!("entry {i}"),
        );
        assert_eq!(st, 200);
    }
    assert_eq!(srv.stop(), 0);
    let out = env.run(&["--db", s(&env.db()), "ls", "/memory/shared/log"]);
    assert_eq!(out.ok().lines().count(), 50, "{out:?}");
}

/// A webhook receiver: records (signature header, body) of each POST and answers 200.
pub(crate) fn receiver(
    listener: std::net::TcpListener,
) -> std::sync::mpsc::Receiver<(String, String)> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut c) = conn else { continue };
            let mut reader = BufReader::new(c.try_clone().unwrap());
            let mut sig = String::new();
            let mut len = 0usize;
            let mut line = String::new();
            reader.read_line(&mut line).unwrap_or(0);
            loop {
                line.clear();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                let l = line.trim_end();
                if l.is_empty() {
                    break;
                }
                if let Some((k, v)) = l.split_once(':') {
                    if k.eq_ignore_ascii_case("x-avm-signature") {
                        sig = v.trim().to_string();
                    }
                    if k.eq_ignore_ascii_case("content-length") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                }
            }
            let mut body = vec![0u8; len];
            let _ = reader.read_exact(&mut body);
            let _ =
                c.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            if tx
                .send((sig, String::from_utf8_lossy(&body).into_owned()))
                .is_err()
            {
                break;
            }
        }
    });
    rx
}

#[test]
fn webhooks_are_signed_and_a_receiver_that_was_down_gets_the_event_after_it_comes_back() {
    let env = Env::new();
    let db = env.db();
    let db = s(&db);
    // A receiver that is up, and a port whose receiver is down for now.
    let up = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let up_url = format!("http://{}/hook", up.local_addr().unwrap());
    let got = receiver(up);
    let down_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let sub = env
        .run(&[
            "--db",
            db,
            "--agent",
            "bob",
            "--json",
            "subscribe",
            "/memory/shared/team/**",
            "--webhook",
            &up_url,
        ])
        .json();
    let secret = sub["secret"].as_str().unwrap().to_string();
    let late = env
        .run(&[
            "--db",
            db,
            "--agent",
            "carol",
            "--json",
            "subscribe",
            "/memory/shared/team/**",
            "--webhook",
            &format!("http://127.0.0.1:{down_port}/hook"),
        ])
        .json();
    let late_secret = late["secret"].as_str().unwrap().to_string();
    env.run(&[
        "--db",
        db,
        "--agent",
        "bob",
        "subscribe",
        "/memory/shared/**",
        "--mode",
        "sometimes",
    ])
    .fails(2);

    let srv = Server::start(&env, &["127.0.0.1:0", "--work-every", "1"]);
    env.run(&[
        "--db",
        db,
        "--agent",
        "alice",
        "write",
        "/memory/shared/team/plan.md",
        "-c",
        "ship friday",
    ])
    .ok();
    env.run(&[
        "--db",
        db,
        "--agent",
        "alice",
        "write",
        "/memory/shared/other/x.md",
        "-c",
        "not watched",
    ])
    .ok();
    let (sig, body) = got
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("a delivery");
    assert_eq!(
        sig,
        format!(
            "sha256={}",
            avm_subscriptions::sign(secret.as_bytes(), body.as_bytes())
        )
    );
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["events"][0]["path"], "/memory/shared/team/plan.md", "{v}");
    assert_eq!(v["events"][0]["by"], "alice");
    assert!(
        got.recv_timeout(std::time::Duration::from_secs(3)).is_err(),
        "nothing else was watched"
    );

    // Carol's receiver is down: the delivery waits, and survives a restart of the server.
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(srv.stop(), 0);
    let subs = env
        .run(&["--db", db, "--agent", "carol", "--json", "subscriptions"])
        .json();
    assert_eq!(subs[0]["undelivered"], 1, "{subs}");
    let back = std::net::TcpListener::bind(("127.0.0.1", down_port)).unwrap();
    let late_got = receiver(back);
    let srv = Server::start(&env, &["127.0.0.1:0", "--work-every", "1"]);
    let (sig, body) = late_got
        .recv_timeout(std::time::Duration::from_secs(30))
        .expect("the delivery after the receiver came back");
    assert_eq!(
        sig,
        format!(
            "sha256={}",
            avm_subscriptions::sign(late_secret.as_bytes(), body.as_bytes())
        )
    );
    assert!(body.contains("/memory/shared/team/plan.md"), "{body}");
    assert_eq!(srv.stop(), 0);

    // The agent's own list of changes, cleared on request; others' subscriptions are not theirs.
    let pending = env
        .run(&["--db", db, "--agent", "bob", "--json", "pending"])
        .json();
    assert_eq!(
        pending[0]["path"], "/memory/shared/team/plan.md",
        "{pending}"
    );
    env.run(&["--db", db, "--agent", "bob", "pending", "--clear"])
        .ok();
    assert_eq!(
        env.run(&["--db", db, "--agent", "bob", "pending"]).ok(),
        "Nothing pending.\n"
    );
    let id = late["id"].as_i64().unwrap().to_string();
    env.run(&["--db", db, "--agent", "bob", "unsubscribe", &id])
        .fails(1);
    env.run(&["--db", db, "--agent", "carol", "unsubscribe", &id])
        .ok();
}

#[test]
fn the_cli_reads_through_a_running_server_and_falls_back_when_there_is_none() {
    let env = Env::new();
    env.run(&[
        "-a",
        "alice",
        "remember",
        "The staging cluster runs on the blue network",
        "-T",
        "staging",
    ])
    .ok();
    // The server recalls with a default budget of 300 tokens; the CLI's own default is 4000.
    let db = env.db();
    let mut child = env
        .cmd(&["--db", s(&db), "serve", "--bind", "127.0.0.1:0"])
        .env("AVM_RECALL__MAX_TOKENS", "300")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("Listening on"), "{line}");
    let sock = format!("{}.sock", db.display());
    let mode = std::fs::metadata(&sock).unwrap().permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600
    );
    let served = env.run(&["-a", "alice", "--json", "recall", "staging network"]);
    assert_eq!(served.json()["max_tokens"], 300, "{}", served.stdout);
    assert!(served.stdout.contains("blue network"), "{}", served.stdout);
    // Isolation holds through the socket: bob sees nothing of alice's.
    let bob = env.run(&["-a", "bob", "recall", "staging network"]);
    assert!(!bob.ok().contains("blue network"), "{}", bob.stdout);
    // Errors come back as errors, with the same exit code.
    env.run(&["-a", "alice", "explore", "/memory/private/alice/nope.md"])
        .fails(1);
    // Opting out, or a second server on the same database, are refused or bypassed.
    let direct = env
        .cmd(&["-a", "alice", "--json", "recall", "staging network"])
        .env("AVM_NO_SERVER", "1")
        .output()
        .unwrap();
    let direct = String::from_utf8_lossy(&direct.stdout).to_string();
    assert!(direct.contains("\"max_tokens\": 4000"), "{direct}");
    let second = env.run(&["--db", s(&db), "serve", "--bind", "127.0.0.1:0"]);
    assert!(second.fails(1).contains("another avm serve"), "{second:?}");
    // Stopped: the socket is gone and the CLI opens the database itself.
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    child.wait().unwrap();
    assert!(!std::path::Path::new(&sock).exists());
    let after = env.run(&["-a", "alice", "--json", "recall", "staging network"]);
    assert_eq!(after.json()["max_tokens"], 4000, "{}", after.stdout);
}

/// Sends `bytes` as they are on a fresh connection and reads until the server answers or closes
/// (or `wait` passes); returns what came back and how long it took.
fn raw(addr: &str, bytes: &[u8], wait: std::time::Duration) -> (String, std::time::Duration) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(wait)).unwrap();
    let t = std::time::Instant::now();
    s.write_all(bytes).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                got.extend_from_slice(&buf[..n]);
                if got.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
        }
    }
    (String::from_utf8_lossy(&got).to_string(), t.elapsed())
}

#[test]
fn web_pages_and_rebound_names_cannot_reach_a_loopback_server() {
    let env = Env::new();
    let srv = Server::start(&env, &["127.0.0.1:0"]);
    let port = srv.addr.rsplit(':').next().unwrap().to_string();
    let json = ("Content-Type", "application/json");
    let tell = r#"{"to": "bob", "message": "pwned-by-a-web-page", "priority": "urgent"}"#;
    // DNS rebinding: the attacker's page reaches 127.0.0.1 under its own name.
    for target in ["/v1/stats", "/v1/nodes/memory", "/v1/list/memory", "/mcp"] {
        let head = format!(
            "GET {target} HTTP/1.1\r\nHost: evil.example:{port}\r\nConnection: close\r\n\r\n"
        );
        let (got, _) = raw(
            &srv.addr,
            head.as_bytes(),
            std::time::Duration::from_secs(10),
        );
        assert!(got.starts_with("HTTP/1.1 403"), "{target}: {got}");
    }
    // The server's own names pass.
    for host in [
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        "localhost".into(),
    ] {
        let head = format!("GET /v1/stats HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        let (got, _) = raw(
            &srv.addr,
            head.as_bytes(),
            std::time::Duration::from_secs(10),
        );
        assert!(got.starts_with("HTTP/1.1 200"), "{host}: {got}");
    }
    // A page of another origin (or an opaque one) posting JSON, and any page posting a "simple"
    // request without asking first: refused before anything is stored.
    for origin in [
        "http://evil.example",
        "null",
        "http://127.0.0.1.evil.example",
    ] {
        let (st, v) = srv.json("POST", "/v1/tell", &[json, ("Origin", origin)], tell);
        assert_eq!((st, kind(&v)), (403, "permission-denied"), "{origin}: {v}");
        let (st, _, body) = srv.req(
            "POST",
            "/mcp",
            &[json, ("Origin", origin), ("Accept", "application/json, text/event-stream")],
            br#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-03-26","capabilities":{},"clientInfo":{"name":"x","version":"1"}}}"#,
        );
        assert_eq!(st, 403, "/mcp from {origin}: {body}");
    }
    for ctype in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ] {
        for target in ["/v1/tell", "/v1/remember"] {
            let body = if target == "/v1/tell" {
                tell.to_string()
            } else {
                r#"{"content": "pwned-by-a-web-page"}"#.to_string()
            };
            let (st, v) = srv.json("POST", target, &[("Content-Type", ctype)], &body);
            assert_eq!(
                (st, kind(&v)),
                (415, "invalid-input"),
                "{target} as {ctype}: {v}"
            );
        }
        let (st, v) = srv.json("POST", "/v1/tell", &[], tell);
        assert_eq!(st, 415, "no content type at all: {v}");
    }
    let (_, v) = srv.json("GET", "/v1/inbox", &[("X-Avm-Agent", "bob")], "");
    assert!(!v.to_string().contains("pwned"), "{v}");
    let (_, v) = srv.json("GET", "/v1/search?q=pwned", &[], "");
    assert!(!v.to_string().contains("pwned"), "{v}");
    // The server's own origin (its own pages, if it had any) is fine.
    let own = format!("http://127.0.0.1:{port}");
    let (st, v) = srv.json("POST", "/v1/tell", &[json, ("Origin", &own)], tell);
    assert_eq!(st, 201, "{v}");
}

#[test]
fn slow_or_oversized_requests_are_cut_off_without_waiting_for_them() {
    let env = Env::new();
    env.write_file(
        "config/avm/config.toml",
        "[serve]\nheader_timeout_secs = 1\nbody_timeout_secs = 1\n",
    );
    let srv = Server::start(&env, &["127.0.0.1:0", "--max-body", "1000"]);
    let long = std::time::Duration::from_secs(20);
    // A huge announced body is refused from its head alone (the body is never sent).
    let (got, took) = raw(
        &srv.addr,
        b"POST /v1/remember HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 999999999999\r\n\r\n",
        long,
    );
    assert!(got.starts_with("HTTP/1.1 413"), "{got}");
    assert!(took < long, "{took:?}");
    // A body that stops arriving is a 408 after the body timeout.
    let (got, took) = raw(
        &srv.addr,
        b"POST /v1/remember HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"con",
        long,
    );
    assert!(got.starts_with("HTTP/1.1 408"), "{got}");
    assert!(took < long, "{took:?}");
    // Half-sent headers, a silent connection, an idle kept-alive one: closed, not kept for ever.
    for opening in [&b"GET /v1/stats HTTP/1.1\r\nHost: 127.0.0.1\r\n"[..], b""] {
        let (got, took) = raw(&srv.addr, opening, long);
        assert!(!got.starts_with("HTTP/1.1 2"), "{got}");
        assert!(took < long, "a half-open connection stayed open: {took:?}");
    }
    let mut s = TcpStream::connect(&srv.addr).unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    s.set_read_timeout(Some(long)).unwrap();
    let t = std::time::Instant::now();
    let mut all = Vec::new();
    let _ = s.read_to_end(&mut all);
    assert!(String::from_utf8_lossy(&all).starts_with("HTTP/1.1 200"));
    assert!(
        t.elapsed() < long,
        "an idle kept-alive connection stayed open"
    );
}

/// A request that waits on a slow provider fails with `timed-out` (504) once the server's
/// request time limit has passed, though the provider's own limit is longer.
#[test]
fn a_request_past_the_servers_time_limit_times_out() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    let script = env.write_file("slow.sh", "#!/bin/sh\nsleep 20\necho late\n");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    env.write_file(
        "config/avm/config.toml",
        &format!(
            "[serve]\nrequest_timeout_secs = 1\n\n[[mounts]]\npattern = \"/**\"\ntype = \"memory\"\n\n\
             [[mounts]]\npattern = \"/slow/{{x}}\"\ntype = \"script\"\n\
             options = {{ program = \"{}\", timeout_ms = 60000 }}\n",
            s(&script)
        ),
    );
    let srv = Server::start(&env, &["127.0.0.1:0"]);
    let t = std::time::Instant::now();
    let (st, v) = srv.json("GET", "/v1/nodes/slow/a", &[], "");
    assert_eq!((st, kind(&v)), (504, "timed-out"), "{v}");
    assert!(
        t.elapsed() < std::time::Duration::from_secs(10),
        "took {:?}",
        t.elapsed()
    );
    // The limit is per request: the next one gets its own second.
    let (st, _, body) = srv.req("GET", "/health", &[], b"");
    assert_eq!(st, 200, "{body}");
}

/// `--log` turns on `tracing`: one span per request, with its path and status.
#[test]
fn log_debug_shows_a_span_per_request() {
    let env = Env::new();
    let mut srv = Server::start_with(
        &env,
        &["--log", "avm_http=debug"],
        &["127.0.0.1:0"],
        Stdio::piped(),
    );
    let (st, _, _) = srv.req("GET", "/v1/stats", &[], b"");
    assert_eq!(st, 200);
    let mut stderr = srv.child.stderr.take().unwrap();
    nix_kill(srv.child.id());
    let mut err = String::new();
    stderr.read_to_string(&mut err).unwrap();
    drop(srv);
    assert!(
        err.contains("path=/v1/stats") && err.contains("status=200"),
        "{err}"
    );
    assert!(
        env.run(&["--log", "[[nonsense", "ls", "/"])
            .stderr
            .contains("not a log filter")
    );
}

#[test]
fn require_key_makes_a_loopback_server_demand_keys_too() {
    let env = Env::new();
    env.write_file("config/avm/config.toml", "[serve]\nrequire_key = true\n");
    let srv = Server::start(&env, &["127.0.0.1:0"]);
    let (st, _, body) = srv.req("GET", "/v1/stats", &[], b"");
    assert_eq!(st, 401, "{body}");
    let (st, _, body) = srv.req("GET", "/v1/stats", &[("X-Avm-Agent", "alice")], b"");
    assert_eq!(st, 401, "{body}");
}

/// The status line's code of `GET target` at `addr`, or `None` while nothing answers there.
fn status_of(addr: &str, target: &str) -> Option<u16> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .ok()?;
    write!(
        s,
        "GET {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).ok()?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn serve_applies_a_config_file_written_after_it_started_and_keeps_serving_through_a_broken_one() {
    let env = Env::new();
    let mut srv = Server::start(&env, &["127.0.0.1:0"]);
    assert_eq!(status_of(&srv.addr, "/v1/stats"), Some(200));
    let pid = srv.child.id();
    // A user config created later: the server restarts in place (same pid, same port) with it.
    env.write_file("config/avm/config.toml", "[serve]\nrequire_key = true\n");
    let t = std::time::Instant::now();
    while status_of(&srv.addr, "/v1/stats") != Some(401) {
        assert!(
            t.elapsed() < std::time::Duration::from_secs(30),
            "the new config.toml was not applied"
        );
        assert!(srv.child.try_wait().unwrap().is_none(), "the server exited");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(srv.child.id(), pid);
    // A broken edit changes nothing: the server keeps the configuration it runs with.
    env.write_file(
        "config/avm/config.toml",
        "[serve]\nrequire_key = \"maybe\"\n",
    );
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert!(srv.child.try_wait().unwrap().is_none(), "the server exited");
    assert_eq!(status_of(&srv.addr, "/v1/stats"), Some(401));
    // Fixing it back to no key is applied again.
    env.write_file("config/avm/config.toml", "[serve]\nrequire_key = false\n");
    let t = std::time::Instant::now();
    while status_of(&srv.addr, "/v1/stats") != Some(200) {
        assert!(
            t.elapsed() < std::time::Duration::from_secs(30),
            "the fixed config.toml was not applied"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = srv.child.kill();
}
