//! Coding-agent hooks: `avm hooks install` writes the agent's settings in a scratch HOME and
//! project; then the installed commands run as the agent runs them (`sh -c COMMAND` in the
//! project, the hook JSON on stdin) against a transcript written here.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{Env, Run, s};

fn settings(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

/// avm's handlers in a settings file: (event, command, timeout).
fn avm_hooks(v: &Value) -> Vec<(String, String, u64)> {
    let mut out = Vec::new();
    for (event, groups) in v["hooks"].as_object().into_iter().flatten() {
        for g in groups.as_array().unwrap() {
            for h in g["hooks"].as_array().unwrap() {
                let c = h["command"].as_str().unwrap();
                if c.contains(" hooks run ") {
                    out.push((event.clone(), c.to_string(), h["timeout"].as_u64().unwrap()));
                }
            }
        }
    }
    out
}

fn command_for(v: &Value, event: &str) -> String {
    let all = avm_hooks(v);
    let mine: Vec<_> = all.iter().filter(|(e, _, _)| e == event).collect();
    assert_eq!(mine.len(), 1, "one avm {event} hook: {v:#}");
    mine[0].1.clone()
}

/// Runs a hook command as the agent does: `sh -c COMMAND` in `cwd`, `input` on stdin.
fn run_as_agent(env: &Env, command: &str, cwd: &Path, input: &Value) -> (Run, Duration) {
    let t = Instant::now();
    let mut sh = Command::new("sh");
    sh.arg("-c").arg(command).current_dir(cwd);
    let mut child = env
        .isolate(&mut sh)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.to_string().as_bytes()).unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    (Run::from_output(out), t.elapsed())
}

/// Appends Claude Code transcript lines (JSONL) to `path`.
fn transcript(path: &Path, lines: &[Value]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    for l in lines {
        writeln!(f, "{l}").unwrap();
    }
}

fn user(text: &str, at: &str) -> Value {
    json!({"type": "user", "timestamp": at, "sessionId": "5f3a9c1e-0000", "isSidechain": false,
           "message": {"role": "user", "content": text}})
}

fn assistant(blocks: Value, at: &str) -> Value {
    json!({"type": "assistant", "timestamp": at, "sessionId": "5f3a9c1e-0000", "isSidechain": false,
           "message": {"role": "assistant", "content": blocks}})
}

#[test]
fn hooks_install_idempotently_keep_other_settings_and_uninstall_to_the_original() {
    let env = Env::new();
    let user_file = env.path("home/.claude/settings.json");
    let original = json!({
        "model": "opus",
        "permissions": {"allow": ["Bash(git status)"]},
        "hooks": {
            "PreToolUse": [{"matcher": "Bash", "hooks": [{"type": "command", "command": "echo pre"}]}],
            "SessionStart": [{"matcher": "startup", "hooks": [{"type": "command", "command": "echo theirs"}]}]
        }
    });
    env.write_file(
        "home/.claude/settings.json",
        &serde_json::to_string_pretty(&original).unwrap(),
    );

    let r = env.run(&["hooks", "install", "claude-code", "--max-tokens", "1500"]);
    assert!(
        r.ok().contains("Installed avm hooks for Claude Code"),
        "{r:#?}"
    );
    let v = settings(&user_file);
    assert_eq!(v["model"], "opus");
    assert_eq!(v["permissions"], original["permissions"]);
    assert_eq!(v["hooks"]["PreToolUse"], original["hooks"]["PreToolUse"]);
    assert_eq!(
        v["hooks"]["SessionStart"][0], original["hooks"]["SessionStart"][0],
        "their SessionStart hook stays first"
    );
    let ours = avm_hooks(&v);
    let events: Vec<&str> = ours.iter().map(|(e, _, _)| e.as_str()).collect();
    assert_eq!(
        events,
        ["SessionStart", "PreCompact", "SessionEnd"],
        "{v:#}"
    );
    let exe = env!("CARGO_BIN_EXE_avm");
    for (event, command, timeout) in &ours {
        assert!(command.starts_with(exe), "{command}");
        assert!(*timeout >= 30, "{event}: SessionEnd gets 1.5 s without one");
    }
    assert!(
        command_for(&v, "SessionStart")
            .ends_with("hooks run claude-code session-start --max-tokens 1500")
    );
    assert!(command_for(&v, "SessionEnd").ends_with("hooks run claude-code session-end"));
    assert!(command_for(&v, "PreCompact").ends_with("hooks run claude-code pre-compact"));

    // Twice: nothing duplicated, the file not even rewritten.
    let bytes = std::fs::read(&user_file).unwrap();
    let again = env
        .run(&[
            "--json",
            "hooks",
            "install",
            "claude-code",
            "--max-tokens",
            "1500",
        ])
        .json();
    assert_eq!(again["changed"], false, "{again}");
    assert_eq!(std::fs::read(&user_file).unwrap(), bytes);
    // Another budget replaces avm's hooks instead of adding to them.
    env.run(&["hooks", "install", "claude", "-t", "900"]).ok();
    let v = settings(&user_file);
    assert_eq!(avm_hooks(&v).len(), 3, "{v:#}");
    assert!(command_for(&v, "SessionStart").ends_with("--max-tokens 900"));

    let st = env.run(&["--json", "hooks", "status"]).json();
    let row = st
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["agent"] == "claude-code" && r["scope"] == "user")
        .unwrap();
    assert_eq!(row["installed"], true, "{st:#}");
    assert_eq!(row["hooks"].as_array().unwrap().len(), 3);
    assert_eq!(row["file"], s(&user_file));
    let text = env.run(&["hooks", "list"]);
    assert!(
        text.ok().contains("SessionStart, PreCompact, SessionEnd"),
        "{text:#?}"
    );

    let r = env.run(&["hooks", "uninstall", "claude-code"]);
    assert!(r.ok().contains("Removed 3 avm hooks"), "{r:#?}");
    assert_eq!(settings(&user_file), original);
    let r = env.run(&["hooks", "uninstall", "claude-code"]);
    assert!(r.ok().starts_with("No avm hooks"), "{r:#?}");
    assert_eq!(settings(&user_file), original);

    // Project and local scopes: files created by install go again with uninstall.
    let proj = env.path("work/app");
    std::fs::create_dir_all(&proj).unwrap();
    for (scope, file) in [
        ("project", ".claude/settings.json"),
        ("local", ".claude/settings.local.json"),
    ] {
        env.run(&[
            "hooks",
            "install",
            "claude-code",
            "--scope",
            scope,
            "--dir",
            s(&proj),
        ])
        .ok();
        let v = settings(&proj.join(file));
        assert_eq!(avm_hooks(&v).len(), 3, "{scope}: {v:#}");
        env.run(&[
            "hooks",
            "uninstall",
            "claude-code",
            "--scope",
            scope,
            "--dir",
            s(&proj),
        ])
        .ok();
        assert!(!proj.join(file).exists(), "{scope}");
    }
    // Codex: hooks.json with its own events; it has no local file.
    env.run(&[
        "hooks",
        "install",
        "codex",
        "--scope",
        "project",
        "--dir",
        s(&proj),
    ])
    .ok();
    let v = settings(&proj.join(".codex/hooks.json"));
    let events: Vec<String> = avm_hooks(&v).into_iter().map(|(e, _, _)| e).collect();
    assert_eq!(events, ["SessionStart", "PreCompact", "Stop"], "{v:#}");
    assert!(command_for(&v, "Stop").ends_with("hooks run codex stop"));
    env.run(&[
        "hooks",
        "install",
        "codex",
        "--scope",
        "local",
        "--dir",
        s(&proj),
    ])
    .fails(2);
    env.run(&[
        "hooks",
        "uninstall",
        "codex",
        "--scope",
        "project",
        "--dir",
        s(&proj),
    ])
    .ok();
    assert!(!proj.join(".codex/hooks.json").exists());

    // A settings file that is not JSON is left as it is.
    let broken = env.write_file("work/app/.claude/settings.json", "{\"model\": ");
    let r = env.run(&[
        "hooks",
        "install",
        "claude-code",
        "--scope",
        "project",
        "--dir",
        s(&proj),
    ]);
    assert!(r.fails(2).contains("is not JSON"), "{r:#?}");
    assert_eq!(std::fs::read_to_string(&broken).unwrap(), "{\"model\": ");
}

#[test]
fn installed_hooks_recall_the_project_at_start_and_remember_the_session_at_end() {
    let env = Env::new();
    let proj = env.path("work/quokka-ledger");
    std::fs::create_dir_all(proj.join(".git")).unwrap();
    std::fs::create_dir_all(proj.join("src")).unwrap();
    // Sessions start in a subdirectory: the project is the repository.
    let cwd = proj.join("src");
    env.run(&["hooks", "install", "claude-code", "--max-tokens", "400"])
        .ok();
    let v = settings(&env.path("home/.claude/settings.json"));
    let (start, compact, end) = (
        command_for(&v, "SessionStart"),
        command_for(&v, "PreCompact"),
        command_for(&v, "SessionEnd"),
    );
    env.run(&[
        "remember",
        "--namespace",
        "projects/other",
        "The other service caches sessions in Redis",
    ])
    .ok();

    // A fresh project: nothing to recall, nothing printed.
    let sid = "5f3a9c1e-7d2b-4c55-9e0f-1a2b3c4d5e6f";
    let tpath = env.path("home/.claude/projects/-work-quokka-ledger/5f3a9c1e.jsonl");
    let start_input = json!({"session_id": sid, "transcript_path": s(&tpath), "cwd": s(&cwd),
                             "hook_event_name": "SessionStart", "source": "startup"});
    let (r, took) = run_as_agent(&env, &start, &cwd, &start_input);
    assert_eq!(r.ok(), "", "{r:#?}");
    assert!(took < Duration::from_secs(15), "{took:?}");

    transcript(
        &tpath,
        &[
            json!({"type": "summary", "summary": "CSV export", "leafUuid": "x"}),
            user(
                "Make the ledger export CSV with a header row",
                "2026-03-04T10:00:00.000Z",
            ),
            json!({"type": "user", "isMeta": true, "timestamp": "2026-03-04T10:00:01.000Z",
                   "message": {"role": "user", "content": "Caveat: the messages below were generated by the user while running local commands."}}),
            assistant(
                json!([{"type": "text", "text": "I'll add a header row to the exporter."},
                       {"type": "tool_use", "id": "t1", "name": "Edit",
                        "input": {"file_path": s(&proj.join("src/export.rs")), "old_string": "a", "new_string": "b"}}]),
                "2026-03-04T10:01:00.000Z",
            ),
            json!({"type": "user", "timestamp": "2026-03-04T10:01:02.000Z",
                   "message": {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "ok"}]}}),
            assistant(
                json!([{"type": "text", "text": "The exporter writes the header row now."}]),
                "2026-03-04T10:02:00.000Z",
            ),
        ],
    );
    let compact_input = json!({"session_id": sid, "transcript_path": s(&tpath), "cwd": s(&cwd),
                               "hook_event_name": "PreCompact", "trigger": "auto", "custom_instructions": ""});
    let (r, took) = run_as_agent(&env, &compact, &cwd, &compact_input);
    assert_eq!(r.ok(), "", "{r:#?}");
    assert!(took < Duration::from_secs(15), "{took:?}");
    let ls = env.run(&["ls", "/memory/shared/projects/quokka-ledger/sessions"]);
    let listed = ls.ok().trim().to_string();
    assert_eq!(listed.lines().count(), 1, "{ls:#?}");
    let path = listed.split_whitespace().next().unwrap().to_string();
    assert!(path.ends_with("/sessions/20260304_5f3a9c1e.md"), "{path}");
    let first = env.run(&["read", &path]);
    assert!(
        first
            .ok()
            .contains("before its context was compacted (auto)"),
        "{first:#?}"
    );

    transcript(
        &tpath,
        &[
            user(
                "Also document it for the quokka-ledger users",
                "2026-03-04T10:05:00.000Z",
            ),
            assistant(
                json!([{"type": "tool_use", "id": "t2", "name": "Write",
                        "input": {"file_path": s(&proj.join("docs/export.md")), "content": "..."}},
                       {"type": "text", "text": "Done: quokka-ledger exports CSV with a header row; `make export` tries it, docs/export.md explains it."}]),
                "2026-03-04T10:06:00.000Z",
            ),
        ],
    );
    let end_input = json!({"session_id": sid, "transcript_path": s(&tpath), "cwd": s(&cwd),
                           "hook_event_name": "SessionEnd", "reason": "prompt_input_exit"});
    let (r, took) = run_as_agent(&env, &end, &cwd, &end_input);
    assert_eq!(r.ok(), "", "{r:#?}");
    assert!(took < Duration::from_secs(15), "{took:?}");

    // One memory per session, rewritten in place: the end's version on top of the compaction's.
    let ls = env.run(&["ls", "/memory/shared/projects/quokka-ledger/sessions"]);
    assert_eq!(ls.ok().trim().lines().count(), 1, "{ls:#?}");
    let m = env.run(&["--json", "read", &path]).json();
    assert_eq!(m["version"], 2, "{m:#}");
    let meta: Value =
        serde_json::from_str(env.run(&["read", &format!("{path}:meta")]).ok()).unwrap();
    let tags: Vec<&str> = meta["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert!(
        tags.contains(&"project:quokka-ledger") && tags.contains(&"session"),
        "{tags:?}"
    );
    assert_eq!(meta["source"], "hook:claude-code", "{meta:#}");
    let text = m["content"].as_str().unwrap();
    for want in [
        "Project quokka-ledger, Claude Code session: asked \"Make the ledger export CSV",
        "saved when the session ended (prompt_input_exit)",
        "- Make the ledger export CSV with a header row",
        "- Also document it for the quokka-ledger users",
        "- src/export.rs",
        "- docs/export.md",
        "`make export` tries it",
    ] {
        assert!(text.contains(want), "{want:?} in {text}");
    }
    assert!(
        !text.contains("Caveat"),
        "meta messages are not prompts: {text}"
    );

    // The next session of the project is told.
    let r = env.run(&["recall", "ledger CSV export"]);
    assert!(r.ok().contains("make export"), "{r:#?}");
    let (r, took) = run_as_agent(&env, &start, &cwd, &start_input);
    assert!(took < Duration::from_secs(15), "{took:?}");
    let out: Value = serde_json::from_str(r.ok()).unwrap();
    assert_eq!(out["hookSpecificOutput"]["hookEventName"], "SessionStart");
    let context = out["hookSpecificOutput"]["additionalContext"]
        .as_str()
        .unwrap();
    assert!(
        context.starts_with("Memory from avm for project quokka-ledger"),
        "{context}"
    );
    assert!(context.contains("make export"), "{context}");
    assert!(
        !context.contains("Redis"),
        "another project's memory: {context}"
    );

    // Within the budget, however much the project has.
    let mut lines = String::new();
    for i in 0..40 {
        lines.push_str(
            &json!({"namespace": "projects/quokka-ledger", "title": format!("quokka-ledger note {i}"),
                    "content": format!("quokka-ledger decision {i}: {}", "the ledger keeps every entry in integer cents and rounds half to even on export. ".repeat(6))})
            .to_string(),
        );
        lines.push('\n');
    }
    env.run_in(&["batch-remember"], lines.as_bytes()).ok();
    let (r, _) = run_as_agent(&env, &start, &cwd, &start_input);
    let small: Value = serde_json::from_str(r.ok()).unwrap();
    let small = small["hookSpecificOutput"]["additionalContext"]
        .as_str()
        .unwrap()
        .to_string();
    let big = env.run_in(
        &[
            "hooks",
            "run",
            "claude-code",
            "session-start",
            "--max-tokens",
            "4000",
        ],
        start_input.to_string().as_bytes(),
    );
    let big: Value = serde_json::from_str(big.ok()).unwrap();
    let big = big["hookSpecificOutput"]["additionalContext"]
        .as_str()
        .unwrap()
        .to_string();
    // 400 cl100k tokens of English are about 1,700 characters.
    assert!(small.len() < 2400, "{} chars: {small}", small.len());
    assert!(
        big.len() > 2 * small.len(),
        "{} vs {}",
        big.len(),
        small.len()
    );
}

#[test]
fn a_hook_with_bad_input_or_a_broken_store_exits_0_without_hanging() {
    let env = Env::new();
    let proj = env.path("work/p");
    std::fs::create_dir_all(&proj).unwrap();
    let quick = |r: &Run, took: Duration, note: &str| {
        assert_eq!(r.code, 0, "{r:#?}");
        assert_eq!(r.stdout, "", "{r:#?}");
        assert!(r.stderr.contains(note), "{note:?}: {r:#?}");
        assert!(!r.stderr.contains("panicked"), "{r:#?}");
        assert!(took < Duration::from_secs(15), "{took:?}");
    };
    let exe = env!("CARGO_BIN_EXE_avm");
    let t = Instant::now();
    let r = env.run_in(
        &["hooks", "run", "claude-code", "session-start"],
        b"not json",
    );
    quick(&r, t.elapsed(), "not JSON");

    let t = Instant::now();
    let input = json!({"session_id": "s1", "transcript_path": s(&proj.join("gone.jsonl")),
                       "cwd": s(&proj), "hook_event_name": "SessionEnd", "reason": "other"});
    let r = env.run_in(
        &["hooks", "run", "claude-code", "session-end"],
        input.to_string().as_bytes(),
    );
    quick(&r, t.elapsed(), "cannot read the transcript");

    // A store that is not a database.
    let bad = env.write_file("bad.db", "this is not a SQLite database, not at all, no");
    let tpath = env.path("t.jsonl");
    transcript(&tpath, &[user("hello", "2026-03-04T10:00:00Z")]);
    for (event, input) in [
        (
            "session-start",
            json!({"session_id": "s1", "cwd": s(&proj), "hook_event_name": "SessionStart", "source": "startup"}),
        ),
        (
            "session-end",
            json!({"session_id": "s1", "transcript_path": s(&tpath), "cwd": s(&proj), "hook_event_name": "SessionEnd", "reason": "other"}),
        ),
    ] {
        let cmd = format!("{exe} --db {} hooks run claude-code {event}", s(&bad));
        let (r, took) = run_as_agent(&env, &cmd, &proj, &input);
        quick(&r, took, "the session goes on without it");
    }

    // stdin left open: the time limit ends it.
    let t = Instant::now();
    let mut child = env
        .cmd(&[
            "hooks",
            "run",
            "claude-code",
            "session-start",
            "--time-limit",
            "1",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(t.elapsed() < Duration::from_secs(15), "hook hangs");
        std::thread::sleep(Duration::from_millis(50));
    };
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("gave up after 1 s"),
        "{out:?}"
    );
}

/// The additionalContext a session-start hook printed.
fn context_of(r: &Run) -> String {
    let v: Value = serde_json::from_str(r.ok()).unwrap_or_else(|e| panic!("{e}: {r:#?}"));
    assert_eq!(v["hookSpecificOutput"]["hookEventName"], "SessionStart");
    v["hookSpecificOutput"]["additionalContext"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn session_start_recalls_through_a_running_server_and_capture_writes_beside_it() {
    let env = Env::new();
    let proj = env.path("work/wombat-api");
    std::fs::create_dir_all(proj.join(".git")).unwrap();
    env.run(&["hooks", "install", "claude-code"]).ok();
    let v = settings(&env.path("home/.claude/settings.json"));
    let (start, end) = (
        command_for(&v, "SessionStart"),
        command_for(&v, "SessionEnd"),
    );
    let fact = format!(
        "wombat-api deploys go through the blue pipeline only. {}",
        "The canary takes ten minutes and must stay green before the rollout continues. ".repeat(4)
    );
    env.run(&["remember", "--namespace", "projects/wombat-api", &fact])
        .ok();
    let input = json!({"session_id": "w1", "cwd": s(&proj), "hook_event_name": "SessionStart", "source": "startup"});
    let (direct, _) = run_as_agent(&env, &start, &proj, &input);
    let direct = context_of(&direct);
    assert!(direct.contains("blue pipeline"), "{direct}");

    // A server whose recall shows 60 characters of a memory (the CLI's own: 320): what the
    // hook prints says which one answered.
    let mut server = env
        .cmd(&[
            "--db",
            s(&env.db()),
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--no-mounts",
        ])
        .env("AVM_RECALL__MAX_CHARS", "60")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(server.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert!(line.starts_with("Listening on"), "{line}");
    let (warm, took) = run_as_agent(&env, &start, &proj, &input);
    let warm = context_of(&warm);
    assert!(took < Duration::from_secs(15), "{took:?}");
    assert!(warm.contains("wombat-api deploys"), "{warm}");
    assert!(
        warm.len() + 150 < direct.len(),
        "the server's recall: {warm}\nthe CLI's: {direct}"
    );

    // Capture writes while the server holds the store.
    let tpath = env.path("t/w1.jsonl");
    transcript(
        &tpath,
        &[
            user("Pin the canary duration", "2026-05-06T07:00:00Z"),
            assistant(
                json!([{"type": "text", "text": "Pinned the canary at ten minutes in deploy.yml."}]),
                "2026-05-06T07:01:00Z",
            ),
        ],
    );
    let end_input = json!({"session_id": "w1", "transcript_path": s(&tpath), "cwd": s(&proj),
                           "hook_event_name": "SessionEnd", "reason": "clear"});
    let (r, _) = run_as_agent(&env, &end, &proj, &end_input);
    assert_eq!(r.ok(), "", "{r:#?}");
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(server.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    server.wait().unwrap();
    let r = env.run(&[
        "read",
        "/memory/shared/projects/wombat-api/sessions/20260506_w1.md",
    ]);
    assert!(r.ok().contains("Pinned the canary"), "{r:#?}");
}

#[test]
fn codex_hooks_remember_a_rollout_after_each_turn_and_recall_at_start() {
    let env = Env::new();
    let proj = env.path("work/numbat");
    std::fs::create_dir_all(&proj).unwrap();
    env.run(&["hooks", "install", "codex"]).ok();
    let v = settings(&env.path("home/.codex/hooks.json"));
    let (start, stop) = (command_for(&v, "SessionStart"), command_for(&v, "Stop"));
    // A Codex rollout: session_meta, the injected context as a user item, the person's prompt
    // as an event, a patch, the reply.
    let rollout =
        env.path("home/.codex/sessions/2026/07/08/rollout-2026-07-08T09-00-00-c0de.jsonl");
    transcript(
        &rollout,
        &[
            json!({"timestamp": "2026-07-08T09:00:00.000Z", "type": "session_meta", "payload": {"id": "c0de-1234", "cwd": s(&proj)}}),
            json!({"timestamp": "2026-07-08T09:00:00.100Z", "type": "response_item", "payload": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "<environment_context>cwd</environment_context>"}]}}),
            json!({"timestamp": "2026-07-08T09:00:01.000Z", "type": "event_msg", "payload": {"type": "user_message", "message": "Rename the numbat config key to retries"}}),
            json!({"timestamp": "2026-07-08T09:00:05.000Z", "type": "response_item", "payload": {"type": "custom_tool_call", "name": "apply_patch", "call_id": "c1", "input": "*** Begin Patch\n*** Update File: src/config.rs\n@@\n-tries\n+retries\n*** End Patch\n"}}),
            json!({"timestamp": "2026-07-08T09:00:09.000Z", "type": "event_msg", "payload": {"type": "agent_message", "message": "Renamed the numbat key tries to retries in src/config.rs."}}),
            json!({"timestamp": "2026-07-08T09:00:09.000Z", "type": "response_item", "payload": {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Renamed the numbat key tries to retries in src/config.rs."}]}}),
        ],
    );
    let stop_input = json!({"session_id": "c0de-1234", "turn_id": "t1", "transcript_path": s(&rollout),
                            "cwd": s(&proj), "hook_event_name": "Stop", "model": "gpt-5",
                            "stop_hook_active": false});
    let (r, _) = run_as_agent(&env, &stop, &proj, &stop_input);
    assert_eq!(
        r.ok(),
        "",
        "Codex reads a Stop hook's stdout as JSON: {r:#?}"
    );
    let m = env.run(&[
        "read",
        "/memory/shared/projects/numbat/sessions/20260708_c0de-123.md",
    ]);
    let text = m.ok();
    for want in [
        "Project numbat, Codex session: asked \"Rename the numbat config key to retries\"",
        "- src/config.rs",
        "saved after its latest turn",
    ] {
        assert!(text.contains(want), "{want:?} in {text}");
    }
    assert!(!text.contains("environment_context"), "{text}");
    let input = json!({"session_id": "c0de-5678", "transcript_path": null, "cwd": s(&proj),
                       "hook_event_name": "SessionStart", "model": "gpt-5",
                       "permission_mode": "default", "source": "startup"});
    let (r, _) = run_as_agent(&env, &start, &proj, &input);
    assert!(context_of(&r).contains("retries"), "{r:#?}");
}
