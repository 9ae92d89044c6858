#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The script provider against real programs: shell scripts written to a temp dir and run
//! directly (their shebang picks the interpreter; captures never reach a shell command line).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use avm_core::contract;
use avm_core::{Caller, ErrorKind, ListOptions, NodeKind, Provider, Put, Request, WriteInput};
use avm_provider_script::{ScriptOptions, ScriptProvider};
use serde_json::json;

/// Writes an executable script and returns its path.
fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

fn opts(v: serde_json::Value) -> ScriptOptions {
    serde_json::from_value(v).unwrap()
}

fn provider(pattern: &str, v: serde_json::Value) -> ScriptProvider {
    ScriptProvider::new(pattern, opts(v)).unwrap()
}

fn req(path: &str) -> Request {
    Request::new(path, Caller::Operator)
}

/// A request whose captures are set directly, as a host would, including values no
/// normalised path could carry (slashes, newlines).
fn req_with(path: &str, caps: &[(&str, &str)]) -> Request {
    let mut r = req(path);
    for (k, v) in caps {
        r.captures.insert((*k).to_string(), (*v).to_string());
    }
    r
}

/// Prints each argument, then a marker, then some variables, each NUL-terminated, so values
/// holding newlines still come back as one field each.
const ARGV_SCRIPT: &str = r#"for a in "$@"; do printf '%s\0' "$a"; done
printf 'ENV\0'
printf '%s\0' "$AVM_PATH" "$AVM_SUFFIX" "$AVM_CALLER" "$AVM_CAPTURE_CITY" "$CITY_ENV""#;

fn fields(text: &str) -> Vec<&str> {
    let mut f: Vec<&str> = text.split('\0').collect();
    assert_eq!(f.pop(), Some(""), "output ends with a NUL: {text:?}");
    f
}

#[test]
fn each_template_becomes_exactly_one_argument_and_avm_variables_are_set() {
    let dir = tempfile::tempdir().unwrap();
    let prog = script(dir.path(), "argv.sh", ARGV_SCRIPT);
    let p = provider(
        "/tools/weather/{city}",
        json!({"program": prog, "args": ["--city", "{city}", "at {path} in {query.unit}", ""], "env": {"CITY_ENV": "{city}"}}),
    );
    let mut r = req("/tools/weather/new york");
    r.query.push("unit", "celsius");
    r.caller = Caller::Agent("alice".into());
    let out = p.read(&r).unwrap();
    assert_eq!(
        fields(&out.text),
        vec![
            "--city",
            "new york",
            "at /tools/weather/new york in celsius",
            "",
            "ENV",
            "/tools/weather/new york",
            "",
            "alice",
            "new york",
            "new york",
        ]
    );
}

#[test]
fn hostile_captures_stay_in_their_slot_and_never_reach_a_shell() {
    let dir = tempfile::tempdir().unwrap();
    let prog = script(dir.path(), "argv.sh", ARGV_SCRIPT);
    let canary = dir.path().join("CANARY");
    let c = canary.display();
    let p = provider(
        "/tools/weather/{city}",
        json!({"program": prog, "args": ["--city", "{city}", "pre-{city}-post"], "env": {"CITY_ENV": "{city}"}}),
    );
    let hostile = [
        "../../../etc/passwd".to_string(),
        format!("; touch {c}"),
        format!("$(touch {c})"),
        format!("`touch {c}`"),
        format!("x' ; touch {c} ; echo '"),
        format!("x\" && touch {c} && echo \""),
        format!("a\nb\ntouch {c}"),
        "*".to_string(),
        "a b  c\t".to_string(),
        "1; DROP TABLE t; --".to_string(),
        String::new(),
    ];
    for v in &hostile {
        let r = req_with("/tools/weather/x", &[("city", v)]);
        let out = p.read(&r).unwrap();
        let pre = format!("pre-{v}-post");
        assert_eq!(
            fields(&out.text),
            vec![
                "--city",
                v.as_str(),
                pre.as_str(),
                "ENV",
                "/tools/weather/x",
                "",
                "operator",
                v.as_str(),
                v.as_str(),
            ],
            "capture {v:?}"
        );
    }
    assert!(!canary.exists(), "a capture was run as a command");
}

#[test]
fn a_capture_cannot_open_an_argument_with_a_dash_and_become_an_option() {
    let dir = tempfile::tempdir().unwrap();
    let prog = script(dir.path(), "argv.sh", ARGV_SCRIPT);
    let p = provider(
        "/tools/weather/{city}",
        json!({"program": prog, "args": ["{city}", "--name={city}"]}),
    );
    for v in ["--output=/tmp/x", "-rf", "-"] {
        let e = p
            .read(&req_with("/tools/weather/x", &[("city", v)]))
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{v}: {e}");
        assert!(e.message().contains("option"), "{e}");
    }
    // Inside an argument, or after the operator's own dash, a dash is just text.
    let p = provider(
        "/tools/weather/{city}",
        json!({"program": prog, "args": ["--name={city}", "x{city}"]}),
    );
    let out = p
        .read(&req_with("/tools/weather/x", &[("city", "-rf")]))
        .unwrap();
    assert!(
        out.text.contains("--name=-rf") && out.text.contains("x-rf"),
        "{}",
        out.text
    );
}

#[test]
fn a_capture_with_a_nul_byte_is_refused_not_split() {
    let dir = tempfile::tempdir().unwrap();
    let prog = script(dir.path(), "argv.sh", ARGV_SCRIPT);
    let p = provider("/w/{city}", json!({"program": prog, "args": ["{city}"]}));
    let e = p.read(&req_with("/w/x", &[("city", "a\0b")])).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
}

#[test]
fn the_rest_capture_is_one_argument_and_avm_capture_rest() {
    let dir = tempfile::tempdir().unwrap();
    let prog = script(
        dir.path(),
        "rest.sh",
        r#"printf '%s\0' "$#" "$1" "$AVM_CAPTURE_REST" "$AVM_CAPTURE_PROJECT""#,
    );
    let p = provider(
        "/kb/{project}/**",
        json!({"program": prog, "args": ["{rest}"]}),
    );
    let out = p.read(&req("/kb/avm/docs/a b.md")).unwrap();
    assert_eq!(
        fields(&out.text),
        vec!["1", "docs/a b.md", "docs/a b.md", "avm"]
    );
}

#[test]
fn the_child_environment_is_minimal_unless_inherit_env() {
    let dir = tempfile::tempdir().unwrap();
    let prog = script(dir.path(), "env.sh", "env");
    // cargo sets this for every test run, so it is a variable the parent certainly has.
    assert!(std::env::var_os("CARGO_MANIFEST_DIR").is_some());
    let bare = provider("/e", json!({"program": prog, "env": {"GREETING": "hi"}}));
    let text = bare.read(&req("/e")).unwrap().text;
    assert!(!text.contains("CARGO_MANIFEST_DIR="), "{text}");
    assert!(text.lines().any(|l| l == "GREETING=hi"), "{text}");
    assert!(text.lines().any(|l| l == "AVM_PATH=/e"), "{text}");
    let full = provider("/e", json!({"program": prog, "inherit_env": true}));
    let text = full.read(&req("/e")).unwrap().text;
    assert!(text.contains("CARGO_MANIFEST_DIR="), "{text}");
}

/// Is the process gone (no such pid, or only a zombie waiting for its parent)?
fn gone(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
    }
}

/// Waits (bounded) for an asynchronous kill to land; the assertion is on the outcome.
fn wait_gone(pid: &str) -> bool {
    for _ in 0..500 {
        if gone(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn a_timeout_kills_the_child_and_its_process_group() {
    let dir = tempfile::tempdir().unwrap();
    let prog = script(
        dir.path(),
        "slow.sh",
        r#"echo $$ > "$WORK/pid.tmp" && mv "$WORK/pid.tmp" "$WORK/pid"
sleep 30 &
echo $! > "$WORK/child.tmp" && mv "$WORK/child.tmp" "$WORK/child"
wait
echo finished > "$WORK/finished""#,
    );
    let p = provider(
        "/slow",
        json!({"program": prog, "timeout_ms": 2000, "env": {"WORK": dir.path()}}),
    );
    let e = p.read(&req("/slow")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}");
    assert!(e.message().contains("slow.sh"), "{e}");
    assert!(e.message().contains("timeout_ms (2000 ms)"), "{e}");
    let pid = std::fs::read_to_string(dir.path().join("pid")).unwrap();
    let child = std::fs::read_to_string(dir.path().join("child")).unwrap();
    assert!(wait_gone(pid.trim()), "script {pid} still running");
    assert!(wait_gone(child.trim()), "its sleep {child} still running");
    assert!(!dir.path().join("finished").exists());
}

#[test]
fn a_sooner_caller_deadline_wins_over_timeout_ms() {
    let dir = tempfile::tempdir().unwrap();
    let prog = script(
        dir.path(),
        "slow.sh",
        r#"sleep 30
echo finished > "$WORK/finished""#,
    );
    let p = provider(
        "/slow",
        json!({"program": prog, "timeout_ms": 600000, "env": {"WORK": dir.path()}}),
    );
    let mut r = req("/slow");
    r.deadline = Some(Instant::now() + Duration::from_millis(300));
    let e = p.read(&r).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}");
    assert!(e.message().contains("caller's deadline"), "{e}");
    assert!(!dir.path().join("finished").exists());
}

#[test]
fn output_past_max_output_is_too_large_and_the_child_is_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let prog = script(
        dir.path(),
        "chatty.sh",
        r#"echo $$ > "$WORK/pid.tmp" && mv "$WORK/pid.tmp" "$WORK/pid"
exec yes 0123456789"#,
    );
    let p = provider(
        "/chatty",
        json!({"program": prog, "max_output": 4096, "env": {"WORK": dir.path()}}),
    );
    let e = p.read(&req("/chatty")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TooLarge, "{e}");
    assert!(e.message().contains("max_output (4096 bytes)"), "{e}");
    let pid = std::fs::read_to_string(dir.path().join("pid")).unwrap();
    assert!(wait_gone(pid.trim()));
}

#[test]
fn output_at_the_cap_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let prog = script(dir.path(), "ten.sh", "printf 0123456789");
    let p = provider("/ten", json!({"program": prog, "max_output": 10}));
    assert_eq!(p.read(&req("/ten")).unwrap().text, "0123456789");
}

#[test]
fn chatty_stderr_does_not_deadlock_and_non_zero_exit_reports_code_and_stderr_tail() {
    let dir = tempfile::tempdir().unwrap();
    let prog = script(
        dir.path(),
        "fail.sh",
        r#"i=0
while [ $i -lt 2000 ]; do echo "noise line $i" >&2; i=$((i+1)); done
echo "THE-END: no such city" >&2
exit 3"#,
    );
    let p = provider("/fail", json!({"program": prog}));
    let e = p.read(&req("/fail")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(e.message().contains("exited with code 3"), "{e}");
    assert!(e.message().contains("THE-END: no such city"), "{e}");
    assert!(!e.message().contains("noise line 0\n"), "{e}");
    assert!(e.message().len() < 1000, "{}", e.message().len());
}

#[test]
fn non_utf8_output_is_converted_lossily() {
    let dir = tempfile::tempdir().unwrap();
    let prog = script(dir.path(), "bin.sh", r"printf 'a\377b'");
    let p = provider("/bin", json!({"program": prog}));
    assert_eq!(p.read(&req("/bin")).unwrap().text, "a\u{fffd}b");
}

#[test]
fn writes_go_to_write_program_on_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let read = script(dir.path(), "read.sh", "cat \"$WORK/$AVM_CAPTURE_CITY\"");
    let write = script(
        dir.path(),
        "write.sh",
        r#"cat > "$WORK/$1"
printf 'stored %s (%s)' "$1" "$AVM_CALLER""#,
    );
    let p = provider(
        "/notes/{city}",
        json!({"program": read, "write_program": write, "write_args": ["{city}"], "env": {"WORK": dir.path()}}),
    );
    assert!(p.info().ops.write);
    let body = "line one\nline two ✓\n";
    let mut r = req("/notes/paris");
    r.caller = Caller::Agent("bob".into());
    let out = p.write(&r, WriteInput::Text(body.into())).unwrap();
    assert_eq!(out.text, "stored paris (bob)");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("paris")).unwrap(),
        body
    );
    let put = WriteInput::Put(Put {
        content: Some("second".into()),
        ..Put::default()
    });
    p.write(&req("/notes/paris"), put).unwrap();
    assert_eq!(p.read(&req("/notes/paris")).unwrap().text, "second");
    let append = WriteInput::Put(Put {
        content: Some("x".into()),
        append: true,
        ..Put::default()
    });
    let e = p.write(&req("/notes/paris"), append).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
}

#[test]
fn a_failing_write_program_is_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let read = script(dir.path(), "read.sh", "echo hi");
    let write = script(
        dir.path(),
        "write.sh",
        "cat >/dev/null; echo refused >&2; exit 9",
    );
    let p = provider("/w", json!({"program": read, "write_program": write}));
    let e = p
        .write(&req("/w"), WriteInput::Text("x".into()))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable);
    assert!(
        e.message().contains("code 9") && e.message().contains("refused"),
        "{e}"
    );
}

#[test]
fn without_write_program_the_mount_is_read_only() {
    let dir = tempfile::tempdir().unwrap();
    let prog = script(dir.path(), "hi.sh", "echo hi");
    let p = provider("/tools/{name}", json!({"program": prog}));
    assert!(!p.info().ops.write);
    contract::read_only_rejects_writes(&p, "/tools/x").unwrap();
    let e = p
        .write(&req("/tools/x"), WriteInput::Text("x".into()))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ReadOnly);
    contract::declared_suffixes_work(&p, "/tools/x").unwrap();
    // Paths outside the mount are not found, for read and stat alike.
    contract::missing_is_not_found(&p, "/elsewhere/x").unwrap();
}

#[test]
fn stat_does_not_run_the_program_and_the_prefix_is_a_listable_directory() {
    let dir = tempfile::tempdir().unwrap();
    let prog = script(dir.path(), "mark.sh", "touch \"$WORK/ran\"; echo hi");
    let p = provider(
        "/tools/**",
        json!({"program": prog, "list": ["weather", "date", "clock"], "env": {"WORK": dir.path()}}),
    );
    assert_eq!(p.info().kind, "script");
    assert!(p.info().ops.list);
    let st = p.stat(&req("/tools/weather")).unwrap();
    assert_eq!((st.kind, st.size, st.version), (NodeKind::File, 0, None));
    assert_eq!(p.stat(&req("/tools")).unwrap().kind, NodeKind::Dir);
    assert!(!dir.path().join("ran").exists());

    let all = p.list(&req("/tools"), &ListOptions::default()).unwrap();
    let paths: Vec<&str> = all.entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, vec!["/tools/clock", "/tools/date", "/tools/weather"]);
    assert!(!all.more);
    let page = p
        .list(
            &req("/tools"),
            &ListOptions {
                limit: Some(1),
                offset: 1,
                ..ListOptions::default()
            },
        )
        .unwrap();
    assert_eq!(page.entries[0].path, "/tools/date");
    assert!(page.more);
    let e = p.read(&req("/tools")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::IsADirectory);
    let e = p
        .list(&req("/tools/weather"), &ListOptions::default())
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotADirectory);
}

#[test]
fn a_bare_program_name_is_found_in_path() {
    let p = provider(
        "/say/{word}",
        json!({"program": "printf", "args": ["[%s]", "{word}"]}),
    );
    assert_eq!(p.read(&req("/say/hello")).unwrap().text, "[hello]");
}

#[test]
fn cwd_sets_the_working_directory() {
    let dir = tempfile::tempdir().unwrap();
    let p = provider("/pwd", json!({"program": "pwd", "cwd": dir.path()}));
    let text = p.read(&req("/pwd")).unwrap().text;
    assert_eq!(
        PathBuf::from(text.trim()).canonicalize().unwrap(),
        dir.path().canonicalize().unwrap()
    );
}

#[test]
fn query_keys_no_template_reads_are_refused() {
    let p = provider(
        "/say",
        json!({"program": "printf", "args": ["%s", "{query.word}"]}),
    );
    let mut r = req("/say");
    r.query.push("word", "hi");
    assert_eq!(p.read(&r).unwrap().text, "hi");
    r.query.push("bogus", "1");
    let e = p.read(&r).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(e.message().contains("bogus"), "{e}");
}

#[test]
fn bad_options_are_refused_at_construction_naming_the_option() {
    let dir = tempfile::tempdir().unwrap();
    let prog = script(dir.path(), "ok.sh", "echo ok");
    let not_exec = dir.path().join("plain.txt");
    std::fs::write(&not_exec, "x").unwrap();
    let cases = [
        (
            json!({"program": "/nonexistent/avm-test-program"}),
            "program",
        ),
        (json!({"program": "surely-not-a-program-avm-test"}), "PATH"),
        (json!({"program": not_exec}), "executable"),
        (json!({"program": ""}), "program"),
        (json!({"program": prog, "args": ["{town}"]}), "{town}"),
        (json!({"program": prog, "args": ["ok", "{city"]}), "args[1]"),
        (json!({"program": prog, "env": {"X": "{nope}"}}), "env.X"),
        (
            json!({"program": prog, "env": {"AVM_PATH": "x"}}),
            "AVM_PATH",
        ),
        (json!({"program": prog, "env": {"A=B": "x"}}), "env"),
        (
            json!({"program": prog, "cwd": "/nonexistent/avm-dir"}),
            "cwd",
        ),
        (json!({"program": prog, "timeout_ms": 0}), "timeout_ms"),
        (json!({"program": prog, "max_output": 0}), "max_output"),
        (
            json!({"program": prog, "write_args": ["x"]}),
            "write_program",
        ),
        (
            json!({"program": prog, "write_program": "/nonexistent/w"}),
            "write_program",
        ),
        (json!({"program": prog, "list": ["a/b"]}), "list"),
    ];
    for (v, needle) in cases {
        let e = ScriptProvider::new("/w/{city}", opts(v.clone())).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{v}");
        assert!(e.message().contains(needle), "{v}: {e}");
    }
    // A fixed listing needs a directory: a pattern of literals only has none.
    let e = ScriptProvider::new("/w", opts(json!({"program": prog, "list": ["a"]}))).unwrap_err();
    assert!(e.message().contains("list"), "{e}");
    assert!(
        serde_json::from_value::<ScriptOptions>(json!({"program": "x", "shell": true})).is_err()
    );
}
