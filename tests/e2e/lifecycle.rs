//! The memory lifecycle through the real binary: cold, archive/unarchive, consolidate, digest,
//! compact, trash purge; isolation between agents on each.

use serde_json::json;

use crate::{Env, s};

const DAY_SECS: i64 = 86_400;

/// Imports memories last changed `days` ago (the import keeps their times).
fn import_old(env: &Env, rows: &[(&str, &str, f64, i64)]) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let mut lines = String::new();
    for (path, content, importance, days) in rows {
        let at = format!("@{}", now - days * DAY_SECS);
        let author = path
            .strip_prefix("/memory/private/")
            .and_then(|r| r.split('/').next());
        let rec = json!({
            "path": path, "content": content, "importance": importance, "author": author,
            "created_at": at, "updated_at": at, "version": 1,
            "versions": [{"version": 1, "kind": "create", "content": content, "at": at}],
        });
        lines.push_str(&rec.to_string());
        lines.push('\n');
    }
    let f = env.write_file("old.jsonl", &lines);
    env.run(&["import", s(&f)]).ok();
}

#[test]
fn cold_memories_archive_and_come_back_without_leaking_to_other_agents() {
    let env = Env::new();
    import_old(
        &env,
        &[
            (
                "/memory/private/alice/stale.md",
                "alice's stale deploy note",
                0.5,
                40,
            ),
            (
                "/memory/private/alice/kept.md",
                "alice's important note",
                1.0,
                10,
            ),
            ("/memory/private/bob/stale.md", "bob's stale note", 0.5, 40),
        ],
    );
    let cold = env.run(&["-a", "alice", "--json", "cold"]).json();
    let paths: Vec<&str> = cold["memories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["/memory/private/alice/stale.md"]);
    // Bob may not look at (or archive) Alice's memories.
    env.run(&["-a", "bob", "cold", "/memory/private/alice"])
        .fails(1);
    env.run(&["-a", "bob", "archive", "/memory/private/alice"])
        .fails(1);

    let dry = env
        .run(&["-a", "alice", "archive", "--dry-run"])
        .ok()
        .to_string();
    assert!(dry.contains("would archive 1 memory"), "{dry}");
    env.run(&["-a", "alice", "read", "/memory/private/alice/stale.md"])
        .ok();
    // Reading it made it warm again: nothing is cold any more.
    let after_read = env.run(&["-a", "alice", "--json", "cold"]).json();
    assert_eq!(after_read["memories"], json!([]));

    let out = env
        .run(&["-a", "alice", "archive", "--threshold", "0.9"])
        .ok()
        .to_string();
    assert!(
        out.contains("/archive/memory/private/alice/stale.md"),
        "{out}"
    );
    env.run(&["-a", "alice", "read", "/memory/private/alice/stale.md"])
        .fails(1);
    let archived = env
        .run(&[
            "-a",
            "alice",
            "read",
            "/archive/memory/private/alice/stale.md",
        ])
        .ok()
        .to_string();
    assert!(archived.contains("alice's stale deploy note"));
    let seen_by_bob = env.run(&["-a", "bob", "list", "-r", "/archive"]);
    assert!(
        !seen_by_bob.stdout.contains("alice"),
        "{}",
        seen_by_bob.stdout
    );
    env.run(&[
        "-a",
        "bob",
        "read",
        "/archive/memory/private/alice/stale.md",
    ])
    .fails(1);
    // Recall no longer offers it.
    let recall = env
        .run(&["-a", "alice", "recall", "stale deploy note"])
        .ok()
        .to_string();
    assert!(!recall.contains("stale.md"), "{recall}");

    env.run(&["-a", "alice", "unarchive", "/memory/private/alice/stale.md"])
        .ok();
    env.run(&["-a", "alice", "read", "/memory/private/alice/stale.md"])
        .ok();
    env.run(&["-a", "alice", "unarchive", "/memory/private/alice/stale.md"])
        .fails(1);
}

#[test]
fn consolidate_merges_duplicates_summarises_topics_and_digest_reports_them() {
    let env = Env::new();
    let shared = "The nightly deploy pipeline builds release images, pushes them to the internal \
        registry, migrates the database schema, warms the caches, checks health endpoints on \
        every service and announces the result in the operations channel for the on-call engineer.";
    import_old(
        &env,
        &[
            (
                "/memory/private/alice/deploy-a.md",
                &format!("# Deploy\n\n{shared}\n\nRollback uses the previous image tag."),
                0.9,
                20,
            ),
            (
                "/memory/private/alice/deploy-b.md",
                &format!("# Deploy again\n\n{shared}"),
                0.3,
                20,
            ),
            (
                "/memory/private/bob/deploy.md",
                &format!("# Deploy\n\n{shared}"),
                0.3,
                20,
            ),
        ],
    );
    let before_bob = env
        .run(&["--json", "read", "--meta", "/memory/private/bob/deploy.md"])
        .json();
    let out = env.run(&["-a", "alice", "--json", "consolidate"]).json();
    assert_eq!(out["memories_merged"], 1, "{out}");
    assert_eq!(
        out["merges"][0]["survivor"],
        "/memory/private/alice/deploy-a.md"
    );
    env.run(&["-a", "alice", "read", "/memory/private/alice/deploy-b.md"])
        .fails(1);
    let trash = env.run(&["-a", "alice", "trash"]).ok().to_string();
    assert!(trash.contains("deploy-b.md"), "{trash}");
    // Bob's copy is his: untouched, same update time.
    let after_bob = env
        .run(&["--json", "read", "--meta", "/memory/private/bob/deploy.md"])
        .json();
    assert_eq!(before_bob["updated_at"], after_bob["updated_at"]);
    assert_eq!(before_bob["content"], after_bob["content"]);

    for (i, t) in [
        "Postgres vacuum runs every night. It keeps bloat down.",
        "Postgres replicas lag under heavy write load.",
        "Postgres connection pools are capped at two hundred.",
    ]
    .iter()
    .enumerate()
    {
        env.run(&["-a", "alice", "remember", t, "-T", &format!("pg {i}")])
            .ok();
    }
    let out = env.run(&["-a", "alice", "--json", "consolidate"]).json();
    let written = out["summaries_written"].to_string();
    assert!(
        written.contains("/memory/private/alice/summaries/"),
        "{out}"
    );
    let summary = env
        .run(&[
            "-a",
            "alice",
            "read",
            "/memory/private/alice/summaries/postgres.md",
        ])
        .ok()
        .to_string();
    assert!(
        summary.contains("Postgres vacuum runs every night."),
        "{summary}"
    );

    let digest = env.run(&["-a", "alice", "digest"]).ok().to_string();
    assert!(
        digest.starts_with("# Memory Digest: /memory/private/alice"),
        "{digest}"
    );
    assert!(
        digest.contains("Postgres replicas lag under heavy write load."),
        "{digest}"
    );
    assert!(!digest.contains("bob"), "{digest}");
    let d = env
        .run(&["-a", "alice", "--json", "digest", "--days", "30"])
        .json();
    assert!(d["memories"].as_u64().unwrap() >= 4, "{d}");
    env.run(&["-a", "alice", "digest", "--days", "0"]).fails(2);
}

#[test]
fn compact_and_trash_purge_through_the_cli() {
    let env = Env::new();
    for i in 1..=5 {
        env.run(&["write", "/memory/shared/n/doc.md", "-c", &format!("v{i}")])
            .ok();
    }
    env.run(&["write", "/memory/shared/n/other.md", "-c", "only"])
        .ok();
    let out = env
        .run(&["--json", "compact", "/memory/shared/n", "--keep", "2"])
        .json();
    assert_eq!(out["removed"], 3, "{out}");
    assert_eq!(out["nodes"], 2);
    let hist = env
        .run(&["--json", "read", "/memory/shared/n/doc.md:history"])
        .json();
    assert_eq!(hist.as_array().unwrap().len(), 2, "{hist}");
    assert_eq!(
        env.run(&["read", "/memory/shared/n/doc.md"]).ok().trim(),
        "v5"
    );
    env.run(&["compact", "/memory/shared/n/doc.md", "--keep", "0"])
        .fails(2);
    env.run(&["-a", "bob", "compact", "/memory/private/alice"])
        .fails(1);

    env.run(&["delete", "/memory/shared/n/other.md"]).ok();
    let keep = env.run(&["--json", "trash", "--purge"]).json();
    assert_eq!(keep["purged"], json!([]), "recent deletions stay: {keep}");
    let dry = env
        .run(&[
            "--json",
            "trash",
            "--purge",
            "--older-than",
            "0s",
            "--dry-run",
        ])
        .json();
    assert_eq!(dry["purged"], json!(["/trash/memory/shared/n/other.md"]));
    env.run(&["trash", "--purge", "--older-than", "0s"]).ok();
    let listing = env.run(&["trash"]).ok().to_string();
    assert!(!listing.contains("other.md"), "{listing}");
    env.run(&["trash", "--older-than", "1d"]).fails(2);
    let _ = s;
}
