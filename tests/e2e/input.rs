//! Bad input gets a clear error and changes nothing.

use crate::{Env, s};

/// The store's export, to compare before and after a refused command.
fn snapshot(e: &Env) -> String {
    e.run(&["export", "-o", "-"]).ok().to_string()
}

#[test]
fn binary_content_is_stored_byte_for_byte_and_text_commands_refuse_it() {
    let e = Env::new();
    e.run(&["write", "/a.md", "-c", "keep"]).ok();
    // `avm write` stores any bytes exactly; `avm read` gives them back exactly.
    let raw: &[u8] = b"ok then \xff\xfe\x00 bin";
    e.run_in(&["write", "/b.bin"], raw).ok();
    let out = e.cmd(&["read", "/b.bin"]).output().unwrap();
    assert!(out.status.success());
    assert_eq!(out.stdout, raw);
    // Memories and messages are text: refused with the offset named, and nothing changes.
    let before = snapshot(&e);
    let r = e.run_in(
        &["-a", "alice", "remember", "-T", "bin"],
        b"ok then \xff\xfe bad",
    );
    assert!(r.fails(2).contains("not valid UTF-8"), "{}", r.stderr);
    assert_eq!(snapshot(&e), before);
}

#[test]
fn a_write_over_max_node_bytes_is_refused_without_reading_it_all() {
    let e = Env::new();
    let cfg = e.write_file("small.toml", "max_node_bytes = 1048576\n");
    e.run(&["--config", s(&cfg), "write", "/big.md", "-c", "small"])
        .ok();
    let before = snapshot(&e);
    // 100 MB on stdin.
    let big = vec![b'x'; 100 << 20];
    let r = e.run_in(&["--config", s(&cfg), "write", "/big.md"], &big);
    assert!(r.fails(1).contains("max_node_bytes"), "{}", r.stderr);
    // 100 MB from a file (sparse: its size alone is enough to refuse).
    let f = std::fs::File::create(e.path("big.bin")).unwrap();
    f.set_len(100 << 20).unwrap();
    let r = e.run(&[
        "--config",
        s(&cfg),
        "write",
        "/big.md",
        "-f",
        s(&e.path("big.bin")),
    ]);
    assert!(r.fails(1).contains("max_node_bytes"), "{}", r.stderr);
    assert_eq!(snapshot(&e), before);
}

#[test]
fn bad_paths_are_refused_with_the_path_named() {
    let e = Env::new();
    for (path, needle) in [
        ("/a/../etc/passwd", "'..'"),
        ("/a?b.md", "'?'"),
        ("", "empty path"),
    ] {
        let r = e.run(&["write", path, "-c", "x"]);
        assert!(r.fails(2).contains(needle), "{path}: {}", r.stderr);
    }
    // NUL cannot travel in argv, but it can in an import record.
    let f = e.write_file("nul.jsonl", "{\"path\":\"/a\\u0000b\",\"content\":\"x\",\"created_at\":\"2026-01-01T00:00:00Z\",\"updated_at\":\"2026-01-01T00:00:00Z\",\"version\":1}\n");
    let r = e.run(&["import", s(&f)]);
    assert!(r.fails(1).contains("control character"), "{}", r.stderr);
    assert_eq!(e.run(&["--json", "stats"]).json()["nodes"], 0);
}

#[test]
fn malformed_meta_json_is_refused_and_nothing_changes() {
    let e = Env::new();
    e.run(&["write", "/m.md", "-c", "x"]).ok();
    let before = snapshot(&e);
    for bad in ["{bad", "[1,2]", "\"str\""] {
        let r = e.run(&["write", "/m.md", "-c", "changed", "--meta", bad]);
        assert!(r.fails(2).contains("--meta"), "{bad}: {}", r.stderr);
    }
    let r = e.run(&["write", "/m.md", "-c", "changed", "--importance", "7"]);
    r.fails(2);
    assert_eq!(snapshot(&e), before);
}

#[test]
fn an_unknown_config_key_is_named_with_a_suggestion() {
    let e = Env::new();
    let cfg = e.write_file("c.toml", "max_nod_bytes = 3\n");
    let r = e.run(&["--config", s(&cfg), "write", "/a.md", "-c", "x"]);
    assert!(r.fails(2).contains("max_nod_bytes"), "{}", r.stderr);
    let r = e.run(&["--config", s(&cfg), "config", "check"]);
    assert!(
        r.fails(1).contains("did you mean \"max_node_bytes\""),
        "{}",
        r.stderr
    );
    assert!(!e.db().exists(), "no database was created");
}

#[test]
fn a_corrupt_database_gets_a_clear_message_not_a_panic() {
    let e = Env::new();
    let db = e.path("corrupt.db");
    std::fs::write(&db, vec![0x5au8; 16384]).unwrap();
    let r = e.run(&["--db", s(&db), "read", "/a.md"]);
    let msg = r.fails(1);
    assert!(
        msg.contains("corrupt") && msg.contains("corrupt.db"),
        "{msg}"
    );
    assert_eq!(
        std::fs::read(&db).unwrap(),
        vec![0x5au8; 16384],
        "the file was left alone"
    );
    // Truncated mid-file after real use: also clear.
    let good = e.path("good.db");
    for i in 0..200 {
        e.run(&[
            "--db",
            s(&good),
            "write",
            &format!("/n{i}.md"),
            "-c",
            &"text ".repeat(200),
        ])
        .ok();
        if i == 199 {
            break;
        }
    }
    let r = e.run(&["--db", s(&good), "stats"]);
    r.ok();
    let bytes = std::fs::read(&good).unwrap();
    std::fs::write(&good, &bytes[..bytes.len().min(4096) / 2]).unwrap();
    let _ = std::fs::remove_file(format!("{}-wal", s(&good)));
    let _ = std::fs::remove_file(format!("{}-shm", s(&good)));
    let r = e.run(&["--db", s(&good), "read", "/n1.md"]);
    assert_ne!(r.code, 0);
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
}
