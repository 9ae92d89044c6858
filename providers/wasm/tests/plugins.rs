//! Real components built from `plugins/` during the test run, loaded by the real host.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use avm_core::provider::{ListOptions, RemoveOptions, WriteInput};
use avm_core::{Caller, ErrorKind, Host, Mount};
use avm_provider_wasm::runtime::Compiled;
use avm_provider_wasm::{WasmEnv, WasmOptions, WasmProvider};

/// Builds the guest workspace once per test binary and returns its release output folder.
fn guests() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| avm_provider_wasm::build_repo_guests().expect("plugins/ builds"))
}

struct Env {
    _dir: tempfile::TempDir,
    env: WasmEnv,
}

fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let env = WasmEnv {
        cache_dir: Some(dir.path().join("cache")),
        default_kv: Some(dir.path().join("kv.db")),
    };
    Env { _dir: dir, env }
}

fn opts(name: &str) -> WasmOptions {
    WasmOptions::new(guests().join(format!("{name}.wasm")).to_string_lossy())
}

fn host_with(pattern: &str, p: WasmProvider) -> Host {
    Host::new(vec![Mount::new(pattern, Arc::new(p))]).unwrap()
}

fn read(h: &Host, path: &str) -> avm_core::Result<String> {
    h.read(&Caller::Operator, path).map(|o| o.text)
}

#[test]
fn hello_greets_the_captured_name_and_the_asking_agent() {
    let e = env();
    let h = host_with(
        "/hello/{name}",
        WasmProvider::new("/hello/{name}", opts("hello"), &e.env).unwrap(),
    );
    assert_eq!(read(&h, "/hello/world").unwrap(), "Hello, world!\n");
    assert_eq!(read(&h, "/hello/world:shout").unwrap(), "HELLO, WORLD!\n");
    let alice = Caller::Agent("alice".into());
    assert_eq!(
        h.read(&alice, "/hello/bob").unwrap().text,
        "Hello, bob! (asked by alice)\n"
    );
    let info = h.read(&Caller::Operator, "/hello/world:plugin-log");
    assert!(info.is_ok(), "the host's log suffix works: {info:?}");
    let denied = h.read(&alice, "/hello/world:plugin-log").unwrap_err();
    assert_eq!(
        denied.kind(),
        ErrorKind::PermissionDenied,
        "the log is for operators"
    );
    assert!(h.stat(&Caller::Operator, "/hello/world:plugin-log").is_ok());
    let e = h
        .write(
            &Caller::Operator,
            "/hello/world",
            WriteInput::Text("x".into()),
        )
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ReadOnly);
}

#[test]
fn each_hostile_guest_gets_its_typed_error_and_the_next_call_works() {
    let e = env();
    let mut o = opts("hostile");
    o.timeout = Duration::from_millis(300);
    o.memory = 32 << 20;
    o.output = 256 << 10;
    let p = WasmProvider::new("/x/{what}", o, &e.env).unwrap();
    let h = host_with("/x/{what}", p);
    let ok = |h: &Host| assert_eq!(read(h, "/x/ok").unwrap(), "ok\n");
    ok(&h);

    let t = Instant::now();
    let err = read(&h, "/x/loop").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TimedOut, "{err}");
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "loop stopped in {:?}",
        t.elapsed()
    );
    assert!(err.message().contains("300 ms"), "{err}");
    ok(&h);

    let t = Instant::now();
    let err = read(&h, "/x/sleep").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TimedOut, "{err}");
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "sleep stopped in {:?}",
        t.elapsed()
    );
    ok(&h);

    let err = read(&h, "/x/bomb").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TooLarge, "{err}");
    assert!(err.message().contains("memory"), "{err}");
    ok(&h);

    let err = read(&h, "/x/panic").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Internal, "{err}");
    assert!(err.message().contains("panicked on purpose"), "{err}");
    ok(&h);

    let err = read(&h, "/x/big?bytes=1000000").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TooLarge, "{err}");
    assert!(err.message().contains("output"), "{err}");
    assert_eq!(read(&h, "/x/big?bytes=1000").unwrap().len(), 1000);
    ok(&h);

    // Stdout is a capped pipe: a guest that floods it finds it closed (Rust's println! then
    // panics), what it printed before is kept, capped, and the host carries on.
    let err = read(&h, "/x/flood").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Internal, "{err}");
    assert!(err.message().contains("stdout"), "{err}");
    ok(&h);
    let log = read(&h, "/x/ok:plugin-log").unwrap();
    assert!(log.contains("stdout: flooding stdout, line 0"), "{log}");
    assert!(log.len() < 300 << 10);

    let err = read(&h, "/x/http?url=http%3A%2F%2F127.0.0.1%3A9%2F").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    ok(&h);

    let err = read(&h, "/x/nothing-here").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
}

#[test]
fn wasi_grants_nothing_by_default_and_exactly_what_config_grants() {
    let e = env();
    let h = host_with(
        "/x/{what}",
        WasmProvider::new("/x/{what}", opts("hostile"), &e.env).unwrap(),
    );
    assert_eq!(
        read(&h, "/x/escape").unwrap(),
        "env=0 fs=denied dir=denied\n"
    );
    let err = read(&h, "/x/granted").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied);

    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("hello.txt"), "granted text").unwrap();
    let mut o = opts("hostile");
    o.dirs
        .insert("/data".into(), data.path().to_string_lossy().to_string());
    o.env.insert("ONE".into(), "1".into());
    let h = host_with(
        "/y/{what}",
        WasmProvider::new("/y/{what}", o, &e.env).unwrap(),
    );
    assert_eq!(read(&h, "/y/granted").unwrap(), "granted text");
    assert_eq!(
        read(&h, "/y/escape").unwrap(),
        "env=1 fs=denied dir=denied\n"
    );
}

/// A one-thread HTTP server answering every request with `body`.
fn serve(body: &'static str) -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let resp = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = s.write_all(resp.as_bytes());
        }
    });
    format!("http://{addr}")
}

#[test]
fn granted_http_works_and_anything_else_is_permission_denied() {
    let e = env();
    let base = serve("price 42");
    let mut o = opts("hostile");
    o.http = vec![format!("{base}/prices/*")];
    let h = host_with(
        "/x/{what}",
        WasmProvider::new("/x/{what}", o, &e.env).unwrap(),
    );
    let enc = |u: &str| percent(u);
    let ok = read(
        &h,
        &format!("/x/http?url={}", enc(&format!("{base}/prices/NVDA"))),
    )
    .unwrap();
    assert_eq!(ok, "200 price 42");
    for url in [
        format!("{base}/admin"),
        format!("{base}/prices"),
        format!("{base}/prices/../admin"),
        format!("{base}/prices/%2e%2e/admin"),
        format!("{}/prices/x", base.replace("http://", "http://user@")),
        "http://127.0.0.2:1/prices/NVDA".to_string(),
        "file:///etc/passwd".to_string(),
    ] {
        let err = read(&h, &format!("/x/http?url={}", enc(&url))).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{url}: {err}");
    }
    let log = read(&h, "/x/ok:plugin-log").unwrap();
    assert!(log.contains("refused http-get"), "{log}");
}

/// A one-thread HTTP server: `/prices/old` redirects to `/prices/new` (granted), `/prices/leak`
/// to `/admin` (not granted), `/admin` answers a secret, anything else "fresh".
fn serve_redirects() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let mut buf = [0u8; 4096];
            let n = s.read(&mut buf).unwrap_or(0);
            let head = String::from_utf8_lossy(&buf[..n]).to_string();
            let target = head.split(' ').nth(1).unwrap_or("/").to_string();
            let resp = match target.as_str() {
                "/prices/old" => "HTTP/1.1 302 Found\r\nlocation: /prices/new\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_string(),
                "/prices/leak" => "HTTP/1.1 302 Found\r\nlocation: /admin\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_string(),
                "/admin" => "HTTP/1.1 200 OK\r\ncontent-length: 13\r\nconnection: close\r\n\r\nadmin-secret!".to_string(),
                _ => "HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\nfresh".to_string(),
            };
            let _ = s.write_all(resp.as_bytes());
        }
    });
    format!("http://{addr}")
}

#[test]
fn every_redirect_hop_of_an_http_get_is_checked_against_the_grants() {
    let e = env();
    let base = serve_redirects();
    let mut o = opts("hostile");
    o.http = vec![format!("{base}/prices/*")];
    let h = host_with(
        "/x/{what}",
        WasmProvider::new("/x/{what}", o, &e.env).unwrap(),
    );
    let get = |u: &str| read(&h, &format!("/x/http?url={}", percent(u)));
    assert_eq!(get(&format!("{base}/prices/old")).unwrap(), "200 fresh");
    let err = get(&format!("{base}/prices/leak")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    assert!(!err.message().contains("admin-secret"), "{err}");
}

fn percent(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn key_value_state_persists_across_calls_and_loads_but_not_across_mounts() {
    let e = env();
    let h = host_with(
        "/x/{what}",
        WasmProvider::new("/x/{what}", opts("hostile"), &e.env).unwrap(),
    );
    assert_eq!(read(&h, "/x/count").unwrap(), "1\n");
    assert_eq!(read(&h, "/x/count").unwrap(), "2\n");
    let again = host_with(
        "/x/{what}",
        WasmProvider::new("/x/{what}", opts("hostile"), &e.env).unwrap(),
    );
    assert_eq!(read(&again, "/x/count").unwrap(), "3\n");
    let other = host_with(
        "/z/{what}",
        WasmProvider::new("/z/{what}", opts("hostile"), &e.env).unwrap(),
    );
    assert_eq!(read(&other, "/z/count").unwrap(), "1\n");
}

#[test]
fn indicators_compute_from_prices_written_through_the_mount() {
    let e = env();
    let pat = "/live/indicators/{symbol}";
    let p = WasmProvider::new(pat, opts("indicators"), &e.env).unwrap();
    let h = Host::new(vec![Mount::new(pat, Arc::new(p))]).unwrap();
    let op = Caller::Operator;
    let prices: Vec<String> = (0..40).map(|i| format!("{}", 100 + i)).collect();
    let w = h
        .write(
            &op,
            "/live/indicators/NVDA",
            WriteInput::Text(prices.join(" ")),
        )
        .unwrap();
    assert_eq!(w.text, "stored 40 prices for NVDA\n");
    let summary = read(&h, "/live/indicators/NVDA").unwrap();
    assert!(summary.starts_with("# NVDA\n"), "{summary}");
    assert!(summary.contains("RSI(14): 100.00 overbought"), "{summary}");
    assert_eq!(
        read(&h, "/live/indicators/NVDA:sma?period=4").unwrap(),
        "137.5000\n"
    );
    assert!(
        read(&h, "/live/indicators/NVDA:macd")
            .unwrap()
            .starts_with("macd ")
    );
    let err = read(&h, "/live/indicators/NVDA:sma?period=x").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    // An undeclared `:word` is part of the name (DESIGN §3), so this is a symbol never written.
    let err = read(&h, "/live/indicators/NVDA:bogus").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    let err = h
        .write(
            &op,
            "/live/indicators/AMD",
            WriteInput::Text("1 2 banana".into()),
        )
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.message().contains("banana"));
    h.write(
        &op,
        "/live/indicators/AMD",
        WriteInput::Text("1,2,3".into()),
    )
    .unwrap();
    let again = h.write(
        &op,
        "/live/indicators/AMD",
        WriteInput::Put(avm_core::Put {
            content: Some("4 5 6".into()),
            create_only: true,
            ..Default::default()
        }),
    );
    assert_eq!(again.unwrap_err().kind(), ErrorKind::AlreadyExists);
    let err = read(&h, "/live/indicators/AMD:rsi").unwrap_err();
    assert!(err.message().contains("needs at least 15 prices"), "{err}");
    h.remove(&op, "/live/indicators/AMD", RemoveOptions::default())
        .unwrap();
    assert_eq!(
        read(&h, "/live/indicators/AMD").unwrap_err().kind(),
        ErrorKind::NotFound
    );
}

#[test]
fn indicators_list_their_symbols() {
    let e = env();
    let pat = "/ind/**";
    let p = WasmProvider::new(pat, opts("indicators"), &e.env).unwrap();
    let h = Host::new(vec![Mount::new(pat, Arc::new(p))]).unwrap();
    for s in ["B", "A"] {
        h.write(
            &Caller::Operator,
            &format!("/ind/{s}"),
            WriteInput::Text("1 2".into()),
        )
        .unwrap();
    }
    let l = h
        .list(&Caller::Operator, "/ind", &ListOptions::default())
        .unwrap();
    let names: Vec<&str> = l.entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(names, vec!["/ind/A", "/ind/B"]);
}

#[test]
fn plugins_pass_the_provider_contract() {
    use avm_core::contract;
    let e = env();
    // The plugins learn the symbol or name from the router's captures: checked through a host.
    let pat = "/ind/{symbol}";
    let ind = Arc::new(WasmProvider::new(pat, opts("indicators"), &e.env).unwrap());
    contract::read_only_rejects_writes(ind.as_ref(), "/ind/X").unwrap();
    let h = Host::new(vec![Mount::new(pat, ind.clone())]).unwrap();
    contract::missing_is_not_found_through(&h, "/ind/NOPE").unwrap();
    h.write(
        &Caller::Operator,
        "/ind/A",
        WriteInput::Text("1 2 3 4 5".into()),
    )
    .unwrap();
    contract::declared_suffixes_work_through(&h, ind.as_ref(), "/ind/A").unwrap();
    let pat = "/hello/{name}";
    let hello = Arc::new(WasmProvider::new(pat, opts("hello"), &e.env).unwrap());
    contract::read_only_rejects_writes(hello.as_ref(), "/hello/world").unwrap();
    let h = Host::new(vec![Mount::new(pat, hello.clone())]).unwrap();
    contract::declared_suffixes_work_through(&h, hello.as_ref(), "/hello/world").unwrap();
}

#[test]
fn a_second_load_takes_the_compiled_component_from_the_cache() {
    let e = env();
    let first = WasmProvider::new("/h/{name}", opts("hello"), &e.env).unwrap();
    assert_eq!(first.compiled(), Compiled::Fresh);
    let second = WasmProvider::new("/h/{name}", opts("hello"), &e.env).unwrap();
    assert_eq!(second.compiled(), Compiled::Cached);
}

#[test]
fn files_that_are_not_plugins_are_refused_clearly() {
    let e = env();
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, b"not wasm at all").unwrap();
    let err = WasmProvider::new("/j/**", WasmOptions::new(junk.to_string_lossy()), &e.env)
        .err()
        .expect("junk is refused");
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.message().contains("wasm32-wasip2"), "{err}");
    let err = WasmProvider::new("/j/**", WasmOptions::new("/nonexistent/p.wasm"), &e.env)
        .err()
        .expect("missing file is refused");
    assert_eq!(err.kind(), ErrorKind::NotFound);
    let mut o = opts("hello");
    o.http = vec!["ftp://x/*".into()];
    assert!(WasmProvider::new("/j/**", o, &e.env).is_err());
}

#[test]
fn many_threads_share_one_plugin_without_errors() {
    let e = env();
    let h = Arc::new(host_with(
        "/hello/{name}",
        WasmProvider::new("/hello/{name}", opts("hello"), &e.env).unwrap(),
    ));
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let h = h.clone();
            std::thread::spawn(move || {
                for i in 0..50 {
                    let name = format!("t{t}i{i}");
                    assert_eq!(
                        read(&h, &format!("/hello/{name}")).unwrap(),
                        format!("Hello, {name}!\n")
                    );
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn guest_crates_pass_their_own_unit_tests() {
    // The indicator maths (SMA, EMA, RSI, MACD) is unit-tested natively inside plugins/.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../plugins");
    let out = std::process::Command::new(env!("CARGO"))
        .args(["test", "--locked", "--workspace", "--manifest-path"])
        .arg(root.join("Cargo.toml"))
        .output()
        .expect("cargo runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "plugins/ unit tests failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("indicators_match_hand_computed_values ... ok"),
        "{text}"
    );
}

#[test]
fn key_value_state_is_shared_by_every_host_on_a_postgres_store() {
    let Some(db) = avm_postgres::testing::TestDb::create("pluginkv").unwrap() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // Each host's environment: its own cache and local file, the shared store.
    let env = |host: &str| {
        WasmEnv {
            cache_dir: Some(dir.path().join(host).join("cache")),
            default_kv: Some(dir.path().join(host).join("kv.db")),
        }
        .with_store(db.url())
    };
    let (one, two) = (env("one"), env("two"));
    let h1 = host_with(
        "/x/{what}",
        WasmProvider::new("/x/{what}", opts("hostile"), &one).unwrap(),
    );
    let h2 = host_with(
        "/x/{what}",
        WasmProvider::new("/x/{what}", opts("hostile"), &two).unwrap(),
    );
    assert_eq!(read(&h1, "/x/count").unwrap(), "1\n");
    assert_eq!(read(&h2, "/x/count").unwrap(), "2\n");
    assert_eq!(read(&h1, "/x/count").unwrap(), "3\n");
    // Another mount keeps its own scope; nothing went to the local files.
    let other = host_with(
        "/z/{what}",
        WasmProvider::new("/z/{what}", opts("hostile"), &two).unwrap(),
    );
    assert_eq!(read(&other, "/z/count").unwrap(), "1\n");
    assert!(!dir.path().join("one/kv.db").exists());
    assert!(!dir.path().join("two/kv.db").exists());
    // A file store stays a file store.
    let local = WasmEnv {
        cache_dir: None,
        default_kv: Some(dir.path().join("kv.db")),
    }
    .with_store(&dir.path().join("avm.db").to_string_lossy());
    assert_eq!(local.default_kv, Some(dir.path().join("kv.db")));
}
