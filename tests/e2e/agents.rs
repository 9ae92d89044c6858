//! Agent memory through the real binary: isolation on every route, permissions and quotas from
//! config, remember/recall/navigation, topics kept in step with deletes and moves.

use crate::{Env, s};

/// Alice's secret, Bob's shared note, and links between them, as seen by a third party.
struct Scene {
    env: Env,
    secret: String,
    alice_shared: String,
}

const SECRET_WORD: &str = "xylophonic";

fn scene() -> Scene {
    let env = Env::new();
    let r = env.run(&[
        "-a",
        "alice",
        "--json",
        "remember",
        &format!("The {SECRET_WORD} launch code is ZQX7731. #{SECRET_WORD}"),
        "-T",
        &format!("{SECRET_WORD} plan"),
        "--tags",
        SECRET_WORD,
    ]);
    let secret = r.json()["path"].as_str().unwrap().to_string();
    assert!(secret.starts_with("/memory/private/alice/"), "{secret}");
    let r = env.run(&[
        "-a",
        "alice",
        "--json",
        "remember",
        &format!("Shared {SECRET_WORD} schedule: the rehearsal is on Friday"),
        "-N",
        "team",
        "-T",
        "rehearsal",
    ]);
    let alice_shared = r.json()["path"].as_str().unwrap().to_string();
    env.run(&[
        "-a",
        "alice",
        "link",
        &secret,
        &alice_shared,
        "--type",
        "related",
    ])
    .ok();
    env.run(&[
        "-a",
        "alice",
        "write",
        &format!("{secret}.draft"),
        "-c",
        "v1",
    ])
    .ok();
    env.run(&[
        "-a",
        "alice",
        "write",
        &format!("{secret}.draft"),
        "-c",
        "v2 ZQX7731",
    ])
    .ok();
    Scene {
        env,
        secret,
        alice_shared,
    }
}

#[track_caller]
fn clean(out: &str, what: &str) {
    assert!(!out.contains("ZQX7731"), "{what} leaked content: {out}");
    assert!(
        !out.contains("/memory/private/alice"),
        "{what} leaked a path: {out}"
    );
}

#[test]
fn no_route_into_another_agents_private_memory_reveals_anything() {
    let sc = scene();
    let env = &sc.env;
    let bob = |args: &[&str]| {
        let mut v = vec!["-a", "bob"];
        v.extend_from_slice(args);
        env.run(&v)
    };
    // Direct access is refused and says why.
    for args in [
        vec!["read", sc.secret.as_str()],
        vec!["read", &format!("{}:meta", sc.secret)],
        vec!["history", sc.secret.as_str()],
        vec!["links", sc.secret.as_str()],
        vec!["explore", sc.secret.as_str()],
        vec!["topics", sc.secret.as_str()],
        vec!["list", "/memory/private/alice"],
        vec!["browse", "/memory/private/alice"],
        vec!["export", "/memory/private/alice", "-o", "-"],
        vec!["mv", sc.secret.as_str(), "/memory/shared/stolen.md"],
        vec![
            "mv",
            "/memory/shared/x.md",
            "/memory/private/alice/planted.md",
        ],
        vec!["delete", sc.secret.as_str()],
        vec!["fetch", sc.secret.as_str()],
    ] {
        let r = bob(&args);
        assert_ne!(r.code, 0, "{args:?} should fail: {r:#?}");
        clean(&r.stdout, &format!("{args:?}"));
        assert!(
            r.stderr.contains("private namespace")
                || r.stderr.contains("not found")
                || r.stderr.contains("none of the paths"),
            "{args:?}: {}",
            r.stderr
        );
    }
    // Result sets leave it out entirely, while shared memories stay.
    for args in [
        vec!["search", SECRET_WORD],
        vec!["recall", SECRET_WORD],
        vec!["recall", "launch code", "--max-tokens", "8000"],
        vec!["browse", "-q", SECRET_WORD],
        vec!["browse", "/memory", "-d", "5"],
        vec!["timeline"],
        vec!["list", "/", "-n", "1000"],
        vec!["list", "/memory", "-n", "1000"],
        vec!["topics", "/memory"],
        vec!["links", sc.alice_shared.as_str()],
        vec!["explore", sc.alice_shared.as_str()],
        vec!["stats", "/"],
        vec!["tags", "/"],
        vec!["ask", &format!("{SECRET_WORD} launch code")],
        vec!["who-knows", SECRET_WORD],
        vec!["agents"],
        vec!["export", "/memory", "-o", "-"],
    ] {
        let r = bob(&args);
        let out = r.ok();
        clean(out, &format!("{args:?}"));
    }
    // The shared memory is there for Bob where it should be.
    let out = bob(&["recall", &format!("{SECRET_WORD} rehearsal"), "--paths"]);
    assert!(out.ok().contains(&sc.alice_shared), "{out:#?}");
    let out = bob(&["search", "rehearsal"]);
    assert!(out.ok().contains(&sc.alice_shared));
    // The librarian says who to ask, not what she knows.
    let ask = bob(&["--json", "ask", &format!("{SECRET_WORD} launch code")]).json();
    assert_eq!(ask["suggestions"][0]["agent"], "alice", "{ask}");
    let who = bob(&["who-knows", SECRET_WORD]);
    assert!(who.ok().contains("alice"), "{who:#?}");
    // The owner and operators see it.
    let own = env.run(&["-a", "alice", "recall", "launch code", "--paths"]);
    assert!(own.ok().contains(&sc.secret), "{own:#?}");
    let op = env.run(&["recall", "launch code", "--paths"]);
    assert!(op.ok().contains(&sc.secret), "{op:#?}");
}

#[test]
fn librarian_privacy_levels_reveal_less_and_less() {
    let sc = scene();
    let env = &sc.env;
    let q = format!("{SECRET_WORD} launch code");
    let full = env.write_file("full.toml", "[librarian]\nprivacy = \"full\"\n");
    let r = env
        .run(&["--config", s(&full), "-a", "bob", "--json", "ask", &q])
        .json();
    assert_eq!(r["suggestions"][0]["agent"], "alice");
    assert!(
        r["suggestions"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("relevant memor")
    );
    let r = env
        .run(&["-a", "bob", "--json", "ask", &q, "--privacy", "existence"])
        .json();
    assert_eq!(r["suggestions"][0]["agent"], "another agent", "{r}");
    let r = env
        .run(&["-a", "bob", "--json", "ask", &q, "--privacy", "none"])
        .json();
    assert_eq!(r["suggestions"].as_array().unwrap().len(), 0, "{r}");
    // Asking for more than configured is not possible.
    let none = env.write_file("none.toml", "[librarian]\nprivacy = \"none\"\n");
    let r = env
        .run(&[
            "--config",
            s(&none),
            "-a",
            "bob",
            "--json",
            "ask",
            &q,
            "--privacy",
            "full",
        ])
        .json();
    assert_eq!(r["suggestions"].as_array().unwrap().len(), 0, "{r}");
    clean(&r.to_string(), "ask");
}

#[test]
fn permission_rules_roles_and_quotas_come_from_config() {
    let env = Env::new();
    let cfg = env.write_file(
        "avm.toml",
        r#"
default_access = "rw"

[[permissions]]
pattern = "/memory/shared/announcements/**"
access = "ro"

[agents.intern]
role = "readonly"

[agents.carol]
write = ["/memory/shared/team/**"]
quota = { max_nodes = 2 }
"#,
    );
    let c = s(&cfg);
    // Shared namespaces are writable by default.
    env.run(&[
        "--config", c, "-a", "dave", "remember", "hello", "-N", "market",
    ])
    .ok();
    let r = env.run(&[
        "--config",
        c,
        "-a",
        "dave",
        "remember",
        "x",
        "-N",
        "announcements",
    ]);
    assert!(r.fails(1).contains("permissions[0]"), "{r:#?}");
    let r = env.run(&["--config", c, "-a", "intern", "remember", "my own note"]);
    assert!(r.fails(1).contains("readonly"), "{r:#?}");
    env.run(&["--config", c, "-a", "intern", "recall", "hello"])
        .ok();
    let r = env.run(&[
        "--config", c, "-a", "carol", "remember", "x", "-N", "market",
    ]);
    assert!(r.fails(1).contains("agents.carol.write"), "{r:#?}");
    env.run(&["--config", c, "-a", "carol", "remember", "y", "-N", "team"])
        .ok();
    env.run(&["--config", c, "-a", "carol", "remember", "one"])
        .ok();
    env.run(&["--config", c, "-a", "carol", "remember", "two"])
        .ok();
    let r = env.run(&["--config", c, "-a", "carol", "remember", "three"]);
    assert!(r.fails(1).contains("quota exceeded"), "{r:#?}");
    // Operators are not bound by agent rules.
    env.run(&[
        "--config",
        c,
        "write",
        "/memory/shared/announcements/a.md",
        "-c",
        "hi",
    ])
    .ok();
    // `config check` validates the new sections.
    let bad = env.write_file(
        "bad.toml",
        "default_access = \"maybe\"\n[agents.x]\nrole = \"boss\"\n[recall]\nstrategy = \"fast\"\n[librarian]\nprivacy = \"all\"\n",
    );
    let r = env.run(&["--config", s(&bad), "config", "check"]);
    let err = format!("{}{}", r.stdout, r.stderr);
    assert_ne!(r.code, 0);
    for key in [
        "default_access",
        "agents",
        "recall.strategy",
        "librarian.privacy",
    ] {
        assert!(err.contains(key), "{key} not reported: {err}");
    }
}

#[test]
fn remember_recall_browse_fetch_and_batch_work_end_to_end() {
    let env = Env::new();
    let a = |args: &[&str]| {
        let mut v = vec!["-a", "alice"];
        v.extend_from_slice(args);
        env.run(&v)
    };
    let r = a(&[
        "remember",
        "NVDA RSI at 72 overbought",
        "-T",
        "NVDA note",
        "-i",
        "0.9",
        "--tags",
        "market",
    ]);
    assert!(
        r.ok().starts_with("Remembered: /memory/private/alice/"),
        "{r:#?}"
    );
    let again = a(&["remember", "NVDA RSI at 72 overbought", "-T", "NVDA note"]);
    assert!(again.ok().starts_with("Already remembered:"), "{again:#?}");
    let out = a(&["recall", "NVDA overbought", "-t", "500"]);
    let text = out.ok();
    assert!(text.starts_with("## Memory (1 of 1)\n"), "{text}");
    assert!(text.contains("\n@"), "entries are @id handles: {text}");
    assert!(
        text.contains("NVDA note: NVDA RSI at 72 overbought"),
        "{text}"
    );
    assert!(
        !text.contains("*fetch"),
        "no footer under 1000 tokens: {text}"
    );
    let big = a(&["recall", "NVDA overbought", "-t", "2000"]);
    assert!(
        big.ok().ends_with("*fetch @id: the whole memory*\n"),
        "{big:#?}"
    );
    let j = a(&["--json", "recall", "NVDA overbought"]).json();
    assert_eq!(j["items"].as_array().unwrap().len(), 1);
    let path = j["items"][0]["path"].as_str().unwrap().to_string();
    let b = a(&["--json", "browse", "-q", "nvda"]).json();
    assert_eq!(b["items"][0]["path"], path.as_str());
    let f = a(&["fetch", &path, "/private/missing.md"]);
    let f = f.ok();
    assert!(
        f.contains("NVDA RSI at 72") && f.contains("*Not found: /private/missing.md*"),
        "{f}"
    );
    let lines = "{\"content\":\"first batch memory about kiwis\",\"tags\":[\"fruit\"]}\n{\"content\":\"second batch memory about kiwis\",\"namespace\":\"garden\"}\n";
    let r = env.run_in(&["-a", "alice", "batch-remember"], lines.as_bytes());
    assert_eq!(r.ok().lines().count(), 2, "{r:#?}");
    let r = env.run_in(&["-a", "alice", "batch-remember"], b"{\"content\":\"\"}\n");
    r.fails(2);
    let t = a(&["timeline", "--days", "1"]);
    let t = t.ok();
    let first = t.lines().find(|l| l.starts_with("  [")).unwrap();
    assert!(first.contains("kiwis"), "newest first: {t}");
    let tree = a(&["browse", "/memory"]);
    assert!(tree.ok().contains("📁 alice/ (2)"), "{tree:#?}");
    let topics = a(&["topics"]);
    assert!(topics.ok().contains("kiwis"), "{topics:#?}");
    let sv = a(&["--json", "savings"]).json();
    assert!(sv["recalls"].as_i64().unwrap() >= 2, "{sv}");
    let st = a(&["--json", "agent-stats"]).json();
    assert_eq!(st["private_count"], 2);
    let ag = env.run(&["--json", "agents"]).json();
    assert_eq!(ag["agents"][0]["id"], "alice");
    // Bad input is a clear usage error.
    a(&["recall", "x", "-t", "5"]).fails(2);
    a(&["recall", "x", "-s", "fastest"]).fails(2);
    env.run(&["remember", "no agent"]).fails(2);
    a(&["remember", "x", "-i", "2"]).fails(2);
}

#[test]
fn topics_follow_deletes_and_moves() {
    let env = Env::new();
    let a = |args: &[&str]| {
        let mut v = vec!["-a", "alice"];
        v.extend_from_slice(args);
        env.run(&v)
    };
    a(&[
        "write",
        "/private/p.md",
        "-c",
        "Quokka sightings near the river #quokka",
    ])
    .ok();
    let t = a(&["--json", "topics", "/private/p.md"]).json();
    assert!(t.to_string().contains("quokka"), "{t}");
    a(&["mv", "/private/p.md", "/private/q.md"]).ok();
    let out = a(&["--json", "browse", "-q", "quokka"]).json();
    assert_eq!(
        out["items"][0]["path"], "/memory/private/alice/q.md",
        "{out}"
    );
    a(&["delete", "/private/q.md"]).ok();
    let out = a(&["--json", "recall", "quokka"]).json();
    assert_eq!(out["items"].as_array().unwrap().len(), 0, "{out}");
    let top = a(&["topics"]);
    assert!(!top.ok().contains("quokka"), "{top:#?}");
}

/// The installed model's directory, if any (the e2e environment has its own XDG dirs).
fn model_dir() -> Option<String> {
    let dir = std::env::var("AVM_EMBEDDING__DIR").ok().or_else(|| {
        std::env::var("XDG_DATA_HOME")
            .ok()
            .filter(|v| !v.is_empty())
            .map(|d| format!("{d}/avm/models"))
            .or_else(|| {
                std::env::var("HOME")
                    .ok()
                    .map(|h| format!("{h}/.local/share/avm/models"))
            })
    })?;
    if std::path::Path::new(&dir).join("model.onnx").is_file() {
        return Some(dir);
    }
    assert!(
        std::env::var_os("REQUIRE_AVM_MODEL").is_none(),
        "REQUIRE_AVM_MODEL is set but no model in {dir}"
    );
    eprintln!("SKIP: no embedding model in {dir} (avm model install)");
    None
}

#[test]
fn semantic_and_hybrid_search_through_the_cli_find_meaning_and_keep_isolation() {
    let Some(models) = model_dir() else { return };
    let env = Env::new();
    let cfg = env.write_file("m.toml", &format!("[embedding]\ndir = \"{models}\"\n"));
    let run = |args: &[&str]| {
        let mut v = vec!["--config", s(&cfg)];
        v.extend_from_slice(args);
        env.run(&v)
    };
    run(&[
        "-a",
        "alice",
        "remember",
        "Fed hiked rates by 25bp",
        "-T",
        "fed",
        "-N",
        "market",
    ])
    .ok();
    run(&[
        "-a",
        "alice",
        "remember",
        "Lunch at the noodle bar was great",
        "-T",
        "lunch",
    ])
    .ok();
    run(&[
        "-a",
        "bob",
        "remember",
        "The central bank raised borrowing costs",
        "-T",
        "secret",
    ])
    .ok();
    let sem = run(&[
        "-a",
        "alice",
        "--json",
        "semantic",
        "monetary tightening",
        "-n",
        "5",
    ])
    .json();
    let paths: Vec<&str> = sem
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["path"].as_str().unwrap())
        .collect();
    assert!(paths[0].ends_with("_fed.md"), "{paths:?}");
    assert!(
        paths.iter().all(|p| !p.contains("/bob/")),
        "isolation: {paths:?}"
    );
    let rec = run(&[
        "-a",
        "alice",
        "recall",
        "central bank monetary tightening",
        "--paths",
    ]);
    assert!(rec.ok().contains("_fed.md"), "{rec:#?}");
    let hyb = run(&["-a", "alice", "search", "monetary tightening", "--hybrid"]);
    assert!(hyb.ok().contains("_fed.md"), "{hyb:#?}");
    assert!(!hyb.ok().contains("/bob/"));
    // One score scale, 0..1, in every mode; full text scores its best hit 1.
    for mode in ["fts", "semantic", "hybrid"] {
        let hits = run(&[
            "-a",
            "alice",
            "--json",
            "search",
            "rates tightening",
            "--mode",
            mode,
        ])
        .json();
        let scores: Vec<f64> = hits
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["score"].as_f64().unwrap())
            .collect();
        assert!(!scores.is_empty(), "{mode}");
        assert!(
            scores.iter().all(|s| (0.0..=1.0).contains(s)),
            "{mode}: {scores:?}"
        );
        if mode == "fts" {
            assert_eq!(scores[0], 1.0, "{scores:?}");
        }
        // The mount's and the CLI's :search show the same numbers as the CLI's search.
        let via_suffix = run(&[
            "-a",
            "alice",
            "read",
            &format!("/memory/:search?q=rates%20tightening&mode={mode}"),
        ]);
        assert!(
            via_suffix.ok().starts_with(&format!("[{:.2}]", scores[0])),
            "{mode}: {via_suffix:#?} vs {scores:?}"
        );
    }
    let r = run(&["reindex"]);
    assert!(r.ok().contains("none waiting"), "{r:#?}");
    // Without the model: a clear error, not a crash.
    env.run(&["-a", "alice", "semantic", "x"]).fails(1);
}

#[test]
fn gossip_digests_say_who_knows_a_topic_and_cannot_be_forged() {
    let env = Env::new();
    let db = env.db();
    let db = s(&db);
    for (agent, text) in [
        (
            "alice",
            "Kubernetes deployment rollout failed on the staging cluster",
        ),
        (
            "alice",
            "Kubernetes ingress certificates renew through cert-manager",
        ),
        (
            "bob",
            "Pasta carbonara needs guanciale, pecorino and egg yolks",
        ),
        (
            "bob",
            "Fresh pasta dough rests thirty minutes before rolling",
        ),
    ] {
        env.run(&["--db", db, "--agent", agent, "remember", text])
            .ok();
    }
    env.run(&["--db", db, "gossip", "publish"]).fails(2);
    let p = env.run(&["--db", db, "--agent", "alice", "gossip", "publish"]);
    assert!(p.ok().starts_with("Published digest v1 with "), "{p:?}");
    let p = env.run(&["--db", db, "--agent", "alice", "gossip", "publish"]);
    assert!(p.ok().starts_with("Published digest v2 "), "{p:?}");
    // The digest is readable by everyone: it names no word of alice's private memories.
    let digest = env.run(&["--db", db, "--agent", "bob", "read", "/gossip/alice.digest"]);
    let digest = digest.ok().to_lowercase();
    for word in ["kubernetes", "staging", "ingress", "certificates"] {
        assert!(!digest.contains(word), "{word} in {digest}");
    }
    env.run(&["--db", db, "--agent", "bob", "gossip", "publish"])
        .ok();

    let r = env.run(&["--db", db, "gossip", "refresh"]);
    let text = r.ok();
    assert!(text.starts_with("Refreshed. Known agents: 2"), "{text}");
    assert!(text.contains("• alice (v2,"), "{text}");
    let who = env
        .run(&["--db", db, "--json", "gossip", "who-knows", "kubernetes"])
        .json();
    let agents: Vec<&str> = who
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["agent"].as_str().unwrap())
        .collect();
    assert!(
        agents.contains(&"alice") && !agents.contains(&"bob"),
        "{who}"
    );
    let who = env
        .run(&["--db", db, "--json", "gossip", "who-knows", "pasta"])
        .json();
    assert_eq!(who[0]["agent"], "bob", "{who}");
    let none = env.run(&["--db", db, "gossip", "who-knows", "zzzqqq-nothing"]);
    assert_eq!(none.ok(), "No agents found for topic: zzzqqq-nothing\n");

    // Mallory cannot speak for bob, even by overwriting bob's digest.
    let forged = env.run(&[
        "--db",
        db,
        "--agent",
        "mallory",
        "write",
        "/gossip/bob.digest",
        "-c",
        "{}",
    ]);
    assert!(forged.fails(1).contains("gossip digest"), "{forged:?}");
    let stats = env
        .run(&["--db", db, "--agent", "alice", "--json", "gossip", "stats"])
        .json();
    assert_eq!(stats["known_agents"], 2);
    assert_eq!(stats["own_version"], 2);
    assert_eq!(stats["agents"][0]["memories"], 2);
}

#[test]
fn remember_at_records_when_it_happened_and_bad_times_are_refused() {
    let env = Env::new();
    let r = env
        .run(&[
            "-a",
            "alice",
            "--json",
            "remember",
            "The offsite budget is 40k",
            "--at",
            "2023-05-08",
        ])
        .json();
    let path = r["path"].as_str().unwrap().to_string();
    let node = env.run(&["--json", "read", &path]).json();
    assert_eq!(
        node["meta"]["at"], "2023-05-08T00:00:00.000000+00:00",
        "{node}"
    );
    let out = env.run(&["-a", "alice", "recall", "when was the offsite budget set"]);
    assert!(
        out.ok().contains(" (2023-05-08) The offsite budget is 40k"),
        "{out:#?}"
    );
    let bad = env.run(&["-a", "alice", "remember", "x", "--at", "last tuesdayish"]);
    bad.fails(2);
    assert!(bad.stderr.contains("last tuesdayish"), "{}", bad.stderr);
    // Batch input takes `at` or `created_at`.
    let out = env.run_in(
        &["-a", "alice", "batch-remember", "-"],
        b"{\"content\": \"turn one\", \"created_at\": \"2023-05-09T10:00:00Z\"}\n",
    );
    let line: serde_json::Value = serde_json::from_str(out.ok().lines().next().unwrap()).unwrap();
    let node = env
        .run(&["--json", "read", line["path"].as_str().unwrap()])
        .json();
    assert_eq!(
        node["meta"]["at"], "2023-05-09T10:00:00.000000+00:00",
        "{node}"
    );
}
