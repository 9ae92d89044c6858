#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use avm_core::config::LifecycleConfig;
use avm_core::storage::MemoryStore;
use avm_core::time::{Micros, now_micros, to_iso};
use avm_core::{Caller, Host, Mount, Put, RemoveOptions, WriteInput};
use avm_provider_memory::{MemoryProvider, StoreOptions};
use avm_topics::TopicIndex;

use super::*;

struct World {
    _dir: tempfile::TempDir,
    host: Host,
    store: Arc<dyn MemoryStore>,
    topics: TopicIndex,
    config: LifecycleConfig,
}

impl World {
    fn life<'a>(&'a self, caller: &'a Caller) -> Lifecycle<'a> {
        Lifecycle::new(&self.host, self.store.as_ref(), caller, &self.config)
    }
}

fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let mem = MemoryProvider::open(&dir.path().join("a.db"), StoreOptions::default()).unwrap();
    let store = mem.memory_store();
    let host = Host::new(vec![Mount::new("/**", Arc::new(mem))]).unwrap();
    World {
        _dir: dir,
        host,
        topics: TopicIndex::new(store.clone()),
        store,
        config: LifecycleConfig::default(),
    }
}

fn agent(a: &str) -> Caller {
    Caller::Agent(a.into())
}

const DAY_US: Micros = 86_400_000_000;

/// A memory last changed `days` ago (imported, so the store keeps the old times).
fn old(w: &World, path: &str, content: &str, importance: f64, days: i64) {
    let at = to_iso(now_micros() - days * DAY_US);
    let author = avm_core::provider::private_owner(path).map(str::to_string);
    let record = json!({
        "path": path, "content": content, "importance": importance, "author": author,
        "created_at": at, "updated_at": at, "version": 1,
        "versions": [{"version": 1, "kind": "create", "content": content, "at": at}],
    });
    w.host
        .write(&Caller::Operator, path, WriteInput::Record(record))
        .unwrap();
}

fn write(w: &World, who: &Caller, path: &str, content: &str) {
    w.host
        .write(who, path, WriteInput::Text(content.into()))
        .unwrap();
}

fn updated(w: &World, path: &str) -> Micros {
    w.store.node(path).unwrap().unwrap().updated_at
}

#[test]
fn decay_halves_importance_every_half_life_and_ignores_future_times() {
    let now = now_micros();
    assert!((decayed(0.8, now - 14 * DAY_US, now, 14.0) - 0.4).abs() < 1e-9);
    assert!((decayed(0.8, now - 28 * DAY_US, now, 14.0) - 0.2).abs() < 1e-9);
    assert_eq!(decayed(0.8, now + DAY_US, now, 14.0), 0.8);
    assert_eq!(decayed(0.8, now - 400 * DAY_US, now, 0.0), 0.8);
    // The worked example in the docs: 0.5 untouched for 24.3 days crosses 0.15.
    assert!(decayed(0.5, now - 244 * DAY_US / 10, now, 14.0) < 0.15);
    assert!(decayed(0.5, now - 24 * DAY_US, now, 14.0) > 0.15);
}

#[test]
fn cold_lists_only_decayed_memories_and_moves_no_updated_at() {
    let w = world();
    old(&w, "/memory/private/alice/stale.md", "stale fact", 0.5, 40);
    old(&w, "/memory/private/alice/vital.md", "vital fact", 1.0, 20);
    write(
        &w,
        &agent("alice"),
        "/memory/private/alice/fresh.md",
        "fresh fact",
    );
    old(
        &w,
        "/memory/private/bob/stale.md",
        "bob's stale fact",
        0.5,
        40,
    );
    let before = updated(&w, "/memory/private/alice/stale.md");
    let alice = agent("alice");
    let cold = w
        .life(&alice)
        .cold_memories("/memory/private/alice", None, 100)
        .unwrap();
    let paths: Vec<&str> = cold.iter().map(|c| c.node.path.as_str()).collect();
    assert_eq!(paths, ["/memory/private/alice/stale.md"]);
    // Over all of /memory, bob's stale memory stays out of alice's sight.
    let wide = w.life(&alice).cold_memories("/memory", None, 100).unwrap();
    let wide: Vec<&str> = wide.iter().map(|c| c.node.path.as_str()).collect();
    assert_eq!(wide, ["/memory/private/alice/stale.md"]);
    let all = w
        .life(&Caller::Operator)
        .cold_memories("/memory", None, 100)
        .unwrap();
    assert_eq!(all.len(), 2);
    assert!(cold[0].decayed < 0.15 && cold[0].idle_days > 39.0);
    assert_eq!(updated(&w, "/memory/private/alice/stale.md"), before);
    // Another agent's private memories are not even listable.
    let err = w
        .life(&alice)
        .cold("/memory/private/bob", None, 100)
        .unwrap_err();
    assert_eq!(err.kind(), avm_core::ErrorKind::PermissionDenied);
    // A higher threshold takes in the important one too.
    let out = w
        .life(&alice)
        .cold("/memory/private/alice", Some(0.45), 100)
        .unwrap();
    assert_eq!(out.data()["memories"].as_array().unwrap().len(), 2);
    assert!(w.life(&alice).cold("/memory", Some(1.5), 10).is_err());
}

#[test]
fn archive_moves_cold_memories_out_of_memory_keeping_history_and_privacy() {
    let w = world();
    let alice = agent("alice");
    old(&w, "/memory/private/alice/stale.md", "stale fact", 0.5, 40);
    write(&w, &alice, "/memory/private/alice/fresh.md", "fresh fact");
    let dry = w
        .life(&alice)
        .archive("/memory/private/alice", None, 100, true)
        .unwrap();
    assert_eq!(
        dry.data()["archived"][0]["to"],
        "/archive/memory/private/alice/stale.md"
    );
    assert!(
        w.store
            .node("/memory/private/alice/stale.md")
            .unwrap()
            .is_some()
    );
    w.life(&alice)
        .archive("/memory/private/alice", None, 100, false)
        .unwrap();
    assert!(
        w.store
            .node("/memory/private/alice/stale.md")
            .unwrap()
            .is_none()
    );
    let moved = w
        .store
        .node("/archive/memory/private/alice/stale.md")
        .unwrap()
        .unwrap();
    assert_eq!(moved.text(), "stale fact");
    assert_eq!(
        moved.meta["archived_from"],
        "/memory/private/alice/stale.md"
    );
    assert!(
        w.store
            .node("/memory/private/alice/fresh.md")
            .unwrap()
            .is_some()
    );
    // Bob cannot read it in the archive either.
    assert!(
        w.host
            .read(&agent("bob"), "/archive/memory/private/alice/stale.md")
            .is_err()
    );
    assert!(
        w.host
            .read(&alice, "/archive/memory/private/alice/stale.md")
            .is_ok()
    );
    // And it comes back, by either path.
    w.life(&alice)
        .unarchive("/memory/private/alice/stale.md", false)
        .unwrap();
    let back = w
        .store
        .node("/memory/private/alice/stale.md")
        .unwrap()
        .unwrap();
    assert!(!back.meta.contains_key("archived_from"));
    assert!(
        w.life(&alice)
            .unarchive("/memory/private/alice/stale.md", false)
            .is_err()
    );
}

#[test]
fn consolidate_merges_old_near_duplicates_within_a_namespace_only() {
    let w = world();
    let alice = agent("alice");
    let shared = "The deploy pipeline runs from the main branch every night at two in the morning, \
        builds release images with cargo, pushes them to the internal registry, migrates the \
        database schema, warms caches, checks health endpoints on each service and finally \
        announces success or failure in the operations channel for whoever is on call.";
    let a = format!("# Deploy\n\n{shared}\n\nRollback uses the previous image tag.");
    let b = format!("# Deploy notes\n\n{shared}\n\nAsk ops first.");
    let (a, b) = (a.as_str(), b.as_str());
    old(&w, "/memory/private/alice/a.md", a, 0.9, 30);
    old(&w, "/memory/private/alice/b.md", b, 0.4, 30);
    // Same text, but fresh: not merged.
    write(&w, &alice, "/memory/private/alice/c.md", b);
    // Same text in bob's namespace: never merged with alice's.
    old(&w, "/memory/private/bob/b.md", b, 0.4, 30);
    let untouched = updated(&w, "/memory/private/alice/c.md");

    let dry = w
        .life(&Caller::Operator)
        .consolidate("/memory", &w.topics, true)
        .unwrap();
    assert_eq!(dry.data()["memories_merged"], 1, "{}", dry.text);
    assert!(
        w.store
            .node("/memory/private/alice/b.md")
            .unwrap()
            .is_some()
    );

    w.life(&Caller::Operator)
        .consolidate("/memory", &w.topics, false)
        .unwrap();
    let survivor = w.store.node("/memory/private/alice/a.md").unwrap().unwrap();
    assert!(
        survivor
            .text()
            .contains("Rollback uses the previous image tag.")
    );
    assert!(survivor.text().contains("Ask ops first."));
    assert_eq!(
        survivor.text().matches("every night at two").count(),
        1,
        "shared paragraphs are not repeated"
    );
    assert_eq!(
        survivor.meta["consolidated_from"],
        json!(["/memory/private/alice/b.md"])
    );
    assert!((survivor.importance - 0.9).abs() < 1e-9);
    assert!(
        w.store
            .node("/memory/private/alice/b.md")
            .unwrap()
            .is_none()
    );
    let trashed = w
        .store
        .node("/trash/memory/private/alice/b.md")
        .unwrap()
        .unwrap();
    assert_eq!(trashed.meta["merged_into"], "/memory/private/alice/a.md");
    assert!(w.store.node("/memory/private/bob/b.md").unwrap().is_some());
    assert_eq!(updated(&w, "/memory/private/alice/c.md"), untouched);
}

#[test]
fn consolidate_writes_extractive_topic_summaries_per_namespace() {
    let w = world();
    let alice = agent("alice");
    for (i, s) in [
        "Kubernetes pods restart when the liveness probe fails. Check probes first.",
        "Kubernetes nodes drain before upgrades, so schedule them at night.",
        "Kubernetes secrets are mounted read-only into every pod.",
    ]
    .iter()
    .enumerate()
    {
        write(&w, &alice, &format!("/memory/private/alice/k{i}.md"), s);
    }
    let out = w
        .life(&alice)
        .consolidate("/memory/private/alice", &w.topics, false)
        .unwrap();
    let written: Vec<String> = out.data()["summaries_written"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let path = "/memory/private/alice/summaries/kubernetes.md";
    assert!(written.iter().any(|p| p == path), "{written:?}");
    let s = w.store.node(path).unwrap().unwrap();
    assert!(s.text().starts_with("# Summary: kubernetes"));
    assert!(
        s.text()
            .contains("Kubernetes pods restart when the liveness probe fails.")
    );
    assert!(
        !s.text().contains("Check probes first"),
        "first sentences only"
    );
    assert_eq!(s.meta["type"], "summary");
    assert_eq!(s.meta["source_count"], 3);
    // A second run leaves a fresh summary alone, and summaries are never inputs.
    let again = w
        .life(&alice)
        .consolidate("/memory/private/alice", &w.topics, false)
        .unwrap();
    assert_eq!(again.data()["summaries_written"], json!([]));
    assert_eq!(again.data()["memories_processed"], 3);
}

#[test]
fn near_duplicates_finds_exactly_the_pairs_brute_force_finds() {
    let mut seed: u64 = 42;
    let mut next = move || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) as usize
    };
    let mut sets: Vec<BTreeSet<String>> = Vec::new();
    for _ in 0..120 {
        let base = next() % 6;
        let n = 3 + next() % 8;
        let s: BTreeSet<String> = (0..n)
            .map(|_| format!("w{}", base * 5 + next() % 9))
            .collect();
        sets.push(s);
    }
    for t in [0.5, 0.8, 1.0] {
        let fast: Vec<(usize, usize)> = near_duplicates(&sets, t)
            .into_iter()
            .map(|(a, b, _)| (a, b))
            .collect();
        let mut slow = Vec::new();
        for i in 0..sets.len() {
            for j in i + 1..sets.len() {
                if jaccard(&sets[i], &sets[j]) >= t {
                    slow.push((i, j));
                }
            }
        }
        assert_eq!(fast, slow, "threshold {t}");
    }
}

#[test]
fn near_duplicates_keeps_pairs_exactly_at_the_threshold() {
    // 55 of 100 words shared: Jaccard exactly 0.55, which floating point likes to round.
    let a: BTreeSet<String> = (0..100).map(|i| format!("w{i}")).collect();
    let b: BTreeSet<String> = (0..55).map(|i| format!("w{i}")).collect();
    let pairs = near_duplicates(&[a, b], 0.55);
    assert_eq!(pairs.len(), 1, "{pairs:?}");
}

#[test]
fn operator_consolidation_never_summarises_private_memories_into_a_shared_place() {
    let w = world();
    let alice = agent("alice");
    for i in 0..3 {
        write(
            &w,
            &alice,
            &format!("/memory/private/alice/z{i}.md"),
            &format!("Zeppelin secret number {i} is classified."),
        );
    }
    write(
        &w,
        &Caller::Operator,
        "/memory/loose.md",
        "Zeppelin hangar notes.",
    );
    let out = w
        .life(&Caller::Operator)
        .consolidate("/memory", &w.topics, false)
        .unwrap();
    for p in out.data()["summaries_written"].as_array().unwrap() {
        let p = p.as_str().unwrap();
        assert!(p.starts_with("/memory/private/alice/summaries/"), "{p}");
    }
    assert!(
        w.store
            .node("/memory/summaries/zeppelin.md")
            .unwrap()
            .is_none()
    );
    // Scopes outside the live memories are refused.
    for scope in ["/", "/trash", "/archive", "/gossip"] {
        assert!(
            w.life(&Caller::Operator)
                .consolidate(scope, &w.topics, true)
                .is_err(),
            "{scope}"
        );
        assert!(
            w.life(&Caller::Operator)
                .archive(scope, None, 10, true)
                .is_err()
        );
    }
}

#[test]
fn purge_trash_removes_only_entries_older_than_the_retention() {
    let w = world();
    let op = Caller::Operator;
    write(&w, &op, "/memory/shared/t/new.md", "new");
    let soft = RemoveOptions::default();
    w.host.remove(&op, "/memory/shared/t/new.md", soft).unwrap();
    // In the trash, untouched for 40 days (imported with its old times).
    old(&w, "/trash/memory/shared/t/old.md", "old", 0.5, 40);
    // Newer entries (the scan goes oldest first) are left alone.
    for i in 0..300 {
        write(&w, &op, &format!("/trash/memory/shared/t/n{i}.md"), "newer");
    }
    let dry = w.life(&op).purge_trash(None, true).unwrap();
    assert_eq!(
        dry.data()["purged"],
        json!(["/trash/memory/shared/t/old.md"])
    );
    w.life(&op).purge_trash(None, false).unwrap();
    assert!(
        w.store
            .node("/trash/memory/shared/t/old.md")
            .unwrap()
            .is_none()
    );
    assert!(
        w.store
            .node("/trash/memory/shared/t/new.md")
            .unwrap()
            .is_some()
    );
    w.life(&op)
        .purge_trash(Some(Duration::from_secs(0)), false)
        .unwrap();
    assert!(
        w.store
            .node("/trash/memory/shared/t/new.md")
            .unwrap()
            .is_none()
    );
}

#[test]
fn digest_groups_recent_memories_by_topic_and_lists_important_ones() {
    let w = world();
    let alice = agent("alice");
    old(
        &w,
        "/memory/private/alice/ancient.md",
        "Ancient history about postgres.",
        0.9,
        10,
    );
    write(
        &w,
        &alice,
        "/memory/private/alice/p1.md",
        "# Postgres\n\nPostgres vacuum runs nightly. More text.",
    );
    write(
        &w,
        &alice,
        "/memory/private/alice/p2.md",
        "Postgres replicas lag under load.",
    );
    w.host
        .write(
            &alice,
            "/memory/private/alice/p2.md",
            WriteInput::Put(Put {
                importance: Some(0.9),
                ..Put::default()
            }),
        )
        .unwrap();
    let before = updated(&w, "/memory/private/alice/p1.md");
    let out = w
        .life(&alice)
        .digest("/memory/private/alice", 1.0, 10, &w.topics)
        .unwrap();
    let text = &out.text;
    assert!(
        text.contains("2 memories changed in the last 1 day"),
        "{text}"
    );
    assert!(text.contains("Postgres vacuum runs nightly."), "{text}");
    assert!(!text.contains("Ancient"), "{text}");
    assert!(text.contains("## High importance"));
    assert!(text.contains("**[0.9]** Postgres replicas lag under load."));
    assert_eq!(updated(&w, "/memory/private/alice/p1.md"), before);
    let empty = w
        .life(&agent("carol"))
        .digest("/memory/private/carol", 1.0, 10, &w.topics)
        .unwrap();
    assert!(empty.text.contains("No activity in the last 1 day."));
    assert!(
        w.life(&alice)
            .digest("/memory", 0.0, 10, &w.topics)
            .is_err()
    );
}

#[test]
fn compact_keeps_the_newest_versions_and_moves_neither_content_nor_updated_at() {
    let w = world();
    let op = Caller::Operator;
    for i in 1..=5 {
        write(&w, &op, "/memory/shared/n/doc.md", &format!("version {i}"));
    }
    let before = w.store.node("/memory/shared/n/doc.md").unwrap().unwrap();
    let out = w
        .host
        .write(
            &op,
            "/memory/shared/n/doc.md:compact",
            WriteInput::Text("2".into()),
        )
        .unwrap();
    assert_eq!(out.data()["removed"], 3);
    assert_eq!(out.data()["kept"], 2);
    let after = w.store.node("/memory/shared/n/doc.md").unwrap().unwrap();
    assert_eq!(after, before);
    let history = w.host.read(&op, "/memory/shared/n/doc.md:history").unwrap();
    assert_eq!(
        history.data().as_array().map(Vec::len),
        Some(2),
        "{}",
        history.text
    );
    assert!(
        w.host
            .read(&op, "/memory/shared/n/doc.md?version=1")
            .is_err()
    );
    assert!(
        w.host
            .read(&op, "/memory/shared/n/doc.md?version=4")
            .is_ok()
    );
    for bad in ["0", "x", "-1"] {
        assert!(
            w.host
                .write(
                    &op,
                    "/memory/shared/n/doc.md:compact",
                    WriteInput::Text(bad.into())
                )
                .is_err(),
            "{bad}"
        );
    }
    // Only writers of the path may compact it.
    w.host
        .write(
            &agent("alice"),
            "/memory/private/alice/x.md",
            WriteInput::Text("a".into()),
        )
        .unwrap();
    assert!(
        w.host
            .write(
                &agent("bob"),
                "/memory/private/alice/x.md:compact",
                WriteInput::Text("1".into())
            )
            .is_err()
    );
}

#[test]
fn namespaces_and_sentences() {
    assert_eq!(namespace("/memory/loose.md"), None);
    assert_eq!(namespace("/memory/private/x.md"), None);
    assert_eq!(namespace("/memory/shared/x.md"), None);
    assert_eq!(namespace("/trash/memory/notes/y.md"), None);
    assert_eq!(
        namespace("/memory/private/alice/x/y.md").as_deref(),
        Some("/memory/private/alice")
    );
    assert_eq!(
        namespace("/memory/shared/team/y.md").as_deref(),
        Some("/memory/shared/team")
    );
    assert_eq!(
        namespace("/memory/notes/y.md").as_deref(),
        Some("/memory/notes")
    );
    assert_eq!(
        first_sentence("# T\n*Created: 2026-01-01*\n\nFirst one. Second one.", 100),
        "First one."
    );
    assert_eq!(
        first_sentence("Version 1.2 is out", 100),
        "Version 1.2 is out"
    );
    assert_eq!(first_sentence("abcdef", 4), "abc…");
    let _: Value = json!(null);
}
