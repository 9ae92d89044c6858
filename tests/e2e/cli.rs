//! The CLI as a user drives it: formats of the reference where sane, --json everywhere.

use crate::{Env, s};

#[test]
fn a_scripted_session_prints_the_reference_formats() {
    let e = Env::new();
    assert_eq!(
        e.run(&["write", "/memory/a.md", "-c", "Alpha RSI note 42"])
            .ok(),
        "Saved: /memory/a.md (v1)\n"
    );
    let ls = e.run(&["list", "/memory"]);
    let line = ls.ok().trim_end();
    assert!(line.starts_with("/memory/a.md\tv1\t17B\t20"), "{line:?}");
    assert_eq!(
        e.run(&["link", "/memory/a.md", "/memory/b.md", "--type", "peer"])
            .ok(),
        "Added: Edge(/memory/a.md --[peer]--> /memory/b.md)\n"
    );
    assert_eq!(
        e.run(&["links", "/memory/a.md"]).ok(),
        "Links for /memory/a.md:\n  --> [peer] /memory/b.md\n"
    );
    assert!(
        e.run(&["history", "/memory/a.md"])
            .ok()
            .starts_with("v1 [create] 20")
    );
    assert_eq!(
        e.run(&["mv", "/memory/a.md", "/memory/c.md"]).ok(),
        "Moved 1 node(s): /memory/a.md → /memory/c.md\n"
    );
    assert!(
        e.run(&["delete", "/memory/c.md"])
            .ok()
            .starts_with("Deleted: /memory/c.md")
    );
    let trash = e.run(&["trash"]);
    assert!(
        trash.ok().starts_with("Trash (1 items):\n  [20"),
        "{}",
        trash.stdout
    );
    assert!(trash.stdout.trim_end().ends_with("] /memory/c.md"));
    assert_eq!(
        e.run(&["restore", "/memory/c.md"]).ok(),
        "Restored: /memory/c.md\n"
    );
    assert_eq!(e.run(&["read", "/memory/c.md"]).ok(), "Alpha RSI note 42");
    let hits = e.run(&["search", "alpha"]);
    assert!(
        hits.ok().contains("] /memory/c.md\n    Alpha RSI note 42"),
        "{}",
        hits.stdout
    );
    assert_eq!(e.run(&["search", "zebra"]).ok(), "No results found.\n");
    assert_eq!(e.run(&["trash"]).ok(), "Trash is empty\n");
}

#[test]
fn json_output_is_available_everywhere() {
    let e = Env::new();
    let w = e
        .run(&[
            "--json",
            "write",
            "/n.md",
            "-c",
            "x",
            "--tags",
            "a,b",
            "--importance",
            "0.8",
        ])
        .json();
    assert_eq!(w["path"], "/n.md");
    assert_eq!(w["version"], 1);
    assert_eq!(w["meta"]["tags"], serde_json::json!(["a", "b"]));
    for args in [
        vec!["read", "/n.md"],
        vec!["list", "/"],
        vec!["search", "x"],
        vec!["links", "/n.md"],
        vec!["tags", "/n.md"],
        vec!["meta", "/n.md"],
        vec!["history", "/n.md"],
        vec!["stats"],
        vec!["trash"],
        vec!["config", "show"],
        vec!["config", "check"],
        vec!["read", "/n.md:info"],
    ] {
        let mut a = vec!["--json"];
        a.extend(args.iter().copied());
        let _ = e.run(&a).json();
        // --json also works after the subcommand.
        let mut b = args.clone();
        b.push("--json");
        let _ = e.run(&b).json();
    }
    let err = e.run(&["--json", "read", "/missing.md"]);
    err.fails(1);
    let v: serde_json::Value = serde_json::from_str(err.stderr.trim()).unwrap();
    assert_eq!(v["error"]["kind"], "not-found");
}

#[test]
fn writes_keep_metadata_and_history_travels_in_time() {
    let e = Env::new();
    e.run(&[
        "write",
        "/h.md",
        "-c",
        "first",
        "--tags",
        "t1",
        "--meta",
        "{\"source\":\"web\"}",
    ])
    .ok();
    std::thread::sleep(std::time::Duration::from_millis(20));
    let between = chrono_now();
    std::thread::sleep(std::time::Duration::from_millis(20));
    e.run(&["write", "/h.md", "-c", "second"]).ok();
    e.run_in(&["append", "/h.md"], b"\nthird").ok();
    let meta = e.run(&["--json", "meta", "/h.md"]).json();
    assert_eq!(meta["tags"], serde_json::json!(["t1"]));
    assert_eq!(meta["source"], "web");
    assert_eq!(e.run(&["read", "/h.md"]).ok(), "second\nthird");
    assert_eq!(e.run(&["read", "/h.md", "--version", "1"]).ok(), "first");
    assert_eq!(e.run(&["read", "/h.md", "--as-of", &between]).ok(), "first");
    assert!(
        e.run(&["read", "/h.md", "--as-of", "2001-01-01"])
            .fails(1)
            .contains("did not exist")
    );
    let hist = e.run(&["history", "/h.md", "-v"]);
    assert!(hist.ok().starts_with("v3 [update]"), "{}", hist.stdout);
    assert!(hist.stdout.contains("+third"));
    let diff = e.run(&["diff", "/h.md", "1", "2"]);
    assert!(diff.ok().contains("-first") && diff.stdout.contains("+second"));
    let header = e.run(&["read", "--meta", "/h.md"]);
    assert!(
        header
            .ok()
            .starts_with("# /h.md\n# Version: 3\n# Updated: "),
        "{}",
        header.stdout
    );
}

fn chrono_now() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    iso_micros(d.as_micros() as i64)
}

fn iso_micros(us: i64) -> String {
    // Format with the avm-independent civil-from-days algorithm.
    let secs = us.div_euclid(1_000_000);
    let micros = us.rem_euclid(1_000_000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60
    )
}

#[test]
fn mv_moves_subtrees_and_refuses_to_overwrite_without_force() {
    let e = Env::new();
    for p in ["/p/a.md", "/p/sub/b.md", "/q.md"] {
        e.run(&["write", p, "-c", p]).ok();
    }
    assert!(
        e.run(&["mv", "/p", "/r"])
            .ok()
            .starts_with("Moved 2 node(s)")
    );
    assert_eq!(e.run(&["read", "/r/sub/b.md"]).ok(), "/p/sub/b.md");
    let err = e.run(&["mv", "/q.md", "/r/a.md"]);
    assert!(err.fails(1).contains("--force"), "{}", err.stderr);
    assert_eq!(
        e.run(&["read", "/r/a.md"]).ok(),
        "/p/a.md",
        "nothing changed"
    );
    e.run(&["mv", "--force", "/q.md", "/r/a.md"]).ok();
    assert_eq!(e.run(&["read", "/r/a.md"]).ok(), "/q.md");
    assert!(e.run(&["rm", "/r"]).fails(1).contains("-r"));
    e.run(&["rm", "-r", "/r"]).ok();
    assert_eq!(e.run(&["ls", "/r"]).code, 1);
    let emptied = e.run(&["trash", "--empty"]);
    assert!(
        emptied.ok().starts_with("Emptied 3 items"),
        "{}",
        emptied.stdout
    );
}

#[test]
fn export_and_import_round_trip_losslessly() {
    let e = Env::new();
    e.run(&["write", "/x/a.md", "-c", "one", "--tags", "k"])
        .ok();
    e.run(&["write", "/x/a.md", "-c", "two"]).ok();
    e.run(&["write", "/x/b.md", "-c", "中东局势紧张"]).ok();
    e.run(&["link", "/x/a.md", "/x/b.md", "--type", "derived"])
        .ok();
    let file = e.path("dump.jsonl");
    assert_eq!(
        e.run(&["export", "-o", s(&file)]).ok(),
        format!("Exported 2 nodes to {}\n", s(&file))
    );
    let other = e.path("other.db");
    assert_eq!(
        e.run(&["--db", s(&other), "import", s(&file)]).ok(),
        format!("Imported 2 nodes from {}\n", s(&file))
    );
    let again = e.run(&["--db", s(&other), "export", "-o", "-"]);
    assert_eq!(again.ok(), std::fs::read_to_string(&file).unwrap());
    assert_eq!(
        e.run(&["--db", s(&other), "read", "/x/a.md", "--version", "1"])
            .ok(),
        "one"
    );
    assert!(
        e.run(&["--db", s(&other), "search", "局势"])
            .ok()
            .contains("/x/b.md")
    );
    // A second import without --force refuses and says how to proceed.
    let dup = e.run(&["--db", s(&other), "import", s(&file)]);
    assert!(dup.fails(1).contains("--force"), "{}", dup.stderr);
    e.run(&["--db", s(&other), "import", "--force", s(&file)])
        .ok();
}

#[test]
fn agents_are_isolated_from_each_others_private_namespaces() {
    let e = Env::new();
    e.run(&[
        "--agent",
        "alice",
        "write",
        "/private/plan.md",
        "-c",
        "alice topsecret plan",
    ])
    .ok();
    e.run(&[
        "--agent",
        "alice",
        "write",
        "/memory/shared/team/n.md",
        "-c",
        "shared topsecret",
    ])
    .ok();
    let err = e.run(&["--agent", "bob", "read", "/memory/private/alice/plan.md"]);
    let msg = err.fails(1);
    assert!(msg.contains("rule") && msg.contains("alice"), "{msg}");
    let hits = e
        .run(&["--agent", "bob", "--json", "search", "topsecret"])
        .json();
    assert_eq!(hits.as_array().unwrap().len(), 1);
    assert_eq!(hits[0]["path"], "/memory/shared/team/n.md");
    assert!(
        !e.run(&["--agent", "bob", "list", "/"])
            .ok()
            .contains("alice/plan")
    );
    let mv = e.run(&[
        "--agent",
        "bob",
        "mv",
        "/memory/private/alice/plan.md",
        "/memory/shared/stolen.md",
    ]);
    mv.fails(1);
    let author = e
        .run(&["--json", "read", "/memory/private/alice/plan.md"])
        .json();
    assert_eq!(author["meta"]["author"], "alice");
    assert!(
        e.run(&["read", "/private/x.md"])
            .fails(2)
            .contains("--agent")
    );
}

#[test]
fn help_completions_and_version_work() {
    let e = Env::new();
    assert!(
        e.run(&["--help"]).ok().contains("recall") || e.run(&["--help"]).ok().contains("Commands:")
    );
    assert!(e.run(&["write", "--help"]).ok().contains("--importance"));
    assert!(e.run(&["completions", "bash"]).ok().contains("_avm"));
    assert!(e.run(&["--version"]).ok().starts_with("avm "));
    assert!(
        e.run(&["no-such-command"])
            .fails(2)
            .contains("unrecognized")
    );
}

#[test]
fn config_layers_apply_and_check_lists_every_problem() {
    let e = Env::new();
    e.write_file(
        "config/avm/config.toml",
        "db = \"${HOME}/from-user-config.db\"\n",
    );
    let show = e.run(&["config", "show"]);
    assert!(show.ok().contains("from-user-config.db"), "{}", show.stdout);
    let file = e.write_file("extra.toml", "max_node_bytes = 5\n");
    e.run(&["--config", s(&file), "write", "/s.md", "-c", "12345"])
        .ok();
    assert_eq!(
        e.run(&["--config", s(&file), "write", "/s.md", "-c", "123456"])
            .code,
        1
    );
    let env_override = e
        .cmd(&["--config", s(&file), "write", "/s.md", "-c", "123456"])
        .env("AVM_MAX_NODE_BYTES", "100")
        .output()
        .unwrap();
    assert!(env_override.status.success(), "AVM_* env overrides files");
    let bad = e.write_file("bad.toml", "dbb = 1\n[store]\nreaders = \"many\"\nbogus = 2\n[[mounts]]\npattern = \"/a/{x}\"\ntype = \"memory\"\n[[mounts]]\npattern = \"/a/{y}\"\ntype = \"memory\"\n");
    let check = e.run(&["--config", s(&bad), "config", "check"]);
    let msg = check.fails(1).to_string();
    for want in ["dbb", "store.readers", "store.bogus", "equally specific"] {
        assert!(msg.contains(want), "missing {want}: {msg}");
    }
    let use_it = e.run(&["--config", s(&bad), "ls"]);
    assert!(
        use_it.fails(2).contains("config check"),
        "{}",
        use_it.stderr
    ); // Keys all valid, but a provider that cannot be built: check says so, as every command would.
    let unbuildable = e.write_file(
        "plug.toml",
        "[[mounts]]\npattern = \"/plug/**\"\ntype = \"wasm\"\noptions = { component = \"/nonexistent/p.wasm\" }\n",
    );
    let check = e.run(&["--config", s(&unbuildable), "config", "check"]);
    let msg = check.fails(1).to_string();
    assert!(
        msg.contains("p.wasm") && msg.contains("every command"),
        "{msg}"
    );
}

#[test]
fn restore_brings_back_the_newest_trash_copy_and_whole_directories() {
    let e = Env::new();
    e.run(&["write", "/r.md", "-c", "first"]).ok();
    e.run(&["rm", "/r.md"]).ok();
    e.run(&["write", "/r.md", "-c", "second"]).ok();
    e.run(&["rm", "/r.md"]).ok();
    e.run(&["restore", "/r.md"]).ok();
    assert_eq!(e.run(&["read", "/r.md"]).ok(), "second");
    e.run(&["write", "/d/a.md", "-c", "a"]).ok();
    e.run(&["write", "/d/b.md", "-c", "b"]).ok();
    e.run(&["rm", "-r", "/d"]).ok();
    assert_eq!(e.run(&["restore", "/d"]).ok(), "Restored: /d\n");
    assert_eq!(e.run(&["read", "/d/b.md"]).ok(), "b");
    let meta = e.run(&["--json", "meta", "/d/b.md"]).json();
    assert!(meta.get("original_path").is_none(), "{meta}");
    assert!(
        e.run(&["restore", "/never.md"])
            .fails(1)
            .contains("not in the trash")
    );
    e.run(&["--agent", "alice", "write", "/private/p.md", "-c", "p"])
        .ok();
    e.run(&["--agent", "alice", "rm", "/private/p.md"]).ok();
    e.run(&["--agent", "alice", "restore", "/private/p.md"])
        .ok();
    assert_eq!(
        e.run(&["--agent", "alice", "read", "/private/p.md"]).ok(),
        "p"
    );
    assert!(e.run(&["--agent", "", "ls"]).fails(2).contains("agent id"));
}

#[test]
fn a_stray_avm_variable_is_ignored_and_config_check_names_it() {
    let env = Env::new();
    let ok = env
        .cmd(&["write", "/memory/a.md", "-c", "x"])
        .env("AVM_SESSION_DB", "/tmp/whatever")
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let check = env
        .cmd(&["config", "check"])
        .env("AVM_MAX_NODE_BYTE", "5")
        .output()
        .unwrap();
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(!check.status.success());
    assert!(
        out.contains("AVM_MAX_NODE_BYTE") && out.contains("did you mean AVM_MAX_NODE_BYTES"),
        "{out}"
    );
}

#[test]
fn a_plugin_mount_in_the_config_adds_to_the_memory_store_and_check_catches_a_store_left_unserved() {
    let e = Env::new();
    let served = e.path("served");
    std::fs::create_dir_all(&served).unwrap();
    std::fs::write(served.join("hello.txt"), "from disk").unwrap();
    e.write_file(
        "config/avm/config.toml",
        &format!(
            "[[mounts]]\npattern = \"/files/**\"\ntype = \"file\"\noptions = {{ root = \"{}\" }}\n",
            s(&served)
        ),
    );
    e.run(&["config", "check"]).ok();
    e.run(&[
        "-a",
        "alice",
        "remember",
        "the plugin did not eat the store",
    ])
    .ok();
    let r = e.run(&["-a", "alice", "recall", "plugin store"]);
    assert!(r.ok().contains("did not eat"), "{r:?}");
    assert_eq!(e.run(&["read", "/files/hello.txt"]).ok(), "from disk");
    // Turning the default off with nothing else on /memory: check says so.
    e.write_file(
        "config/avm/config.toml",
        &format!(
            "default_mount = false\n[[mounts]]\npattern = \"/files/**\"\ntype = \"file\"\noptions = {{ root = \"{}\" }}\n",
            s(&served)
        ),
    );
    let check = e.run(&["config", "check"]);
    let msg = check.fails(1).to_string();
    assert!(msg.contains("no mount serves /memory"), "{msg}");
    // A /** mount of another type is a choice, but check still names what it breaks.
    e.write_file(
        "config/avm/config.toml",
        &format!(
            "[[mounts]]\npattern = \"/**\"\ntype = \"file\"\noptions = {{ root = \"{}\" }}\n",
            s(&served)
        ),
    );
    let msg = e.run(&["config", "check"]).fails(1).to_string();
    assert!(msg.contains("not by a memory store"), "{msg}");
}

#[test]
fn config_check_names_every_mounts_wrong_option_and_types_lists_what_a_mount_can_be() {
    let e = Env::new();
    e.write_file(
        "config/avm/config.toml",
        "[[mounts]]\npattern = \"/x/**\"\ntype = \"memory\"\noptions = { dbb = \"/tmp/b.db\" }\n\
         [[mounts]]\npattern = \"/y/**\"\ntype = \"file\"\noptions = { root = \"/tmp\", nope = 1 }\n",
    );
    let r = e.run(&["--json", "config", "check"]);
    r.fails(1);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let problems = v["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 2, "{v}");
    assert_eq!(problems[0]["key"], "mounts[0].options", "{v}");
    assert!(
        problems[0]["message"].as_str().unwrap().contains("dbb"),
        "{v}"
    );
    assert_eq!(problems[1]["key"], "mounts[1].options", "{v}");
    assert!(
        problems[1]["message"].as_str().unwrap().contains("nope"),
        "{v}"
    );
    let types = e.run(&["config", "types"]).ok().to_string();
    for t in [
        "memory", "wasm", "http", "script", "sqlite", "file", "index", "native",
    ] {
        assert!(
            types.lines().any(|l| l.starts_with(t)),
            "{t} missing from {types}"
        );
    }
}

#[test]
fn output_into_a_closed_pipe_ends_quietly_like_any_shell_tool() {
    use std::io::{BufRead, BufReader};
    let e = Env::new();
    let mut child = e
        .cmd(&["completions", "bash"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    // The reader is gone (as `| head -1` leaves it); the rest of the output meets a closed pipe.
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        out.status.success() || out.status.code() == Some(141),
        "{:?} {stderr}",
        out.status
    );
    assert!(first.starts_with("_avm"), "{first}");
}

#[test]
fn doctor_checks_the_install_and_prints_client_setups() {
    let e = Env::new();
    let r = e.run(&["-a", "alice", "--json", "doctor"]);
    let v = r.json();
    let names: Vec<&str> = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["check"].as_str().unwrap())
        .collect();
    for want in [
        "path",
        "config",
        "store",
        "file modes",
        "model",
        "server",
        "fuse",
        "mounts",
    ] {
        assert!(names.contains(&want), "{want} missing: {v}");
    }
    assert_eq!(v["ok"], true, "{v}");
    let json = v["mcp"]["json"].to_string();
    assert!(json.contains("\"--agent\",\"alice\",\"mcp\""), "{json}");
    assert!(
        v["mcp"]["json"]["mcpServers"]["avm"]["command"]
            .as_str()
            .unwrap()
            .starts_with('/')
    );
    // A broken configuration is a failure with its fix.
    e.write_file("config/avm/config.toml", "max_node_bytes = \"huge\"\n");
    let r = e.run(&["doctor"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stdout.contains("✗ config") && r.stdout.contains("avm config check"),
        "{}",
        r.stdout
    );
}

#[test]
fn read_ends_the_last_line_on_a_terminal_and_nowhere_else() {
    let e = Env::new();
    e.run(&["write", "/x.md", "-c", "no newline"]).ok();
    assert_eq!(
        e.run(&["read", "/x.md"]).ok(),
        "no newline",
        "a pipe gets the bytes as stored"
    );
    // A terminal: through `script`, which gives the command a pseudo-terminal.
    let has_script = std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_script {
        eprintln!("SKIP (terminal half): `script` (util-linux) is not installed");
        return;
    }
    let bin = env!("CARGO_BIN_EXE_avm");
    let db = e.db();
    let out = std::process::Command::new("script")
        .args([
            "-qc",
            &format!("{bin} --db {} read /x.md", s(&db)),
            "/dev/null",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).replace('\r', "");
    assert_eq!(text, "no newline\n", "{out:?}");
}
