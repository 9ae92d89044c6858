//! Recall against a real SQLite store: budgets, ranking, determinism, isolation.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;

use avm_core::storage::MemoryStore;
use avm_core::{Caller, Host, Mount};
use avm_provider_memory::{MemoryProvider, StoreOptions};
use avm_recall::{Engine, Memory, RecallProvider, Tuning, remember, tokens};

struct World {
    _dir: tempfile::TempDir,
    host: Host,
    store: Arc<dyn MemoryStore>,
}

fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let mem = MemoryProvider::open(&dir.path().join("a.db"), StoreOptions::default()).unwrap();
    let store = mem.memory_store();
    let engine = Engine::new(store.clone(), Tuning::default());
    let host = Host::new(vec![Mount::new("/**", Arc::new(mem))])
        .unwrap()
        .with_service(Arc::new(RecallProvider::new(engine)));
    World {
        _dir: dir,
        host,
        store,
    }
}

fn agent(a: &str) -> Caller {
    Caller::Agent(a.into())
}

fn remember_as(
    w: &World,
    who: &Caller,
    content: &str,
    title: Option<&str>,
    ns: Option<&str>,
) -> String {
    remember_memory(
        w,
        who,
        Memory {
            title: title.map(str::to_string),
            namespace: ns.map(str::to_string),
            ..Memory::default()
        },
        content,
    )
}

/// Remembers `content` as being about the time `at`; its path.
fn remember_at(w: &World, who: &Caller, content: &str, at: avm_core::time::Micros) -> String {
    let m = Memory {
        at: Some(at),
        ..Memory::default()
    };
    remember_memory(w, who, m, content)
}

fn remember_memory(w: &World, who: &Caller, m: Memory, content: &str) -> String {
    let m = Memory {
        content: content.into(),
        ..m
    };
    remember(&w.host, w.store.as_ref(), who, &m).unwrap().path
}

fn recall(w: &World, who: &Caller, q: &str, max: usize) -> String {
    let q = q.replace(' ', "%20");
    w.host
        .read(who, &format!("/:recall?q={q}&max_tokens={max}&paths=true"))
        .unwrap()
        .text
}

#[test]
fn recall_finds_the_right_memory_in_a_three_memory_corpus() {
    let w = world();
    let a = agent("alice");
    remember_as(
        &w,
        &a,
        "Lunch at the cafe on Main Street was great",
        Some("lunch"),
        None,
    );
    let fed = remember_as(
        &w,
        &a,
        "Fed hiked rates by 25bp at the December meeting",
        Some("Fed decision"),
        Some("market"),
    );
    remember_as(
        &w,
        &a,
        "The build broke because of a missing feature flag",
        None,
        None,
    );
    let out = recall(&w, &a, "what did the Fed do with rates", 500);
    let first = out.lines().find(|l| l.starts_with('[')).unwrap();
    assert!(first.contains(&fed), "{out}");
    assert!(out.starts_with("## Memory (1 of 1)\n"), "{out}");
    assert!(
        !out.contains("*Created:"),
        "no boilerplate in summaries: {out}"
    );
}

fn corpus(w: &World, a: &Caller, n: usize) {
    let topics = [
        "NVDA", "bitcoin", "Fed", "earnings", "Tokyo", "rust", "oil", "bonds",
    ];
    let verbs = ["rose", "fell", "stalled", "surprised", "lagged"];
    let items: Vec<Memory> = (0..n)
        .map(|i| Memory {
            content: format!(
                "Note {i}: {} {} after the {} report; watch level {}.\nSecond line about {} and {}.",
                topics[i % topics.len()],
                verbs[i % verbs.len()],
                topics[(i / 3) % topics.len()],
                100 + i,
                topics[(i / 7) % topics.len()],
                verbs[(i / 2) % verbs.len()],
            ),
            title: Some(format!("note {i}")),
            importance: Some(((i * 37) % 100) as f64 / 100.0),
            ..Memory::default()
        })
        .collect();
    for r in avm_recall::remember_many(&w.host, w.store.as_ref(), a, &items) {
        r.unwrap();
    }
}

#[test]
fn recall_never_exceeds_its_budget_measured_with_the_same_tokenizer() {
    let w = world();
    let a = agent("alice");
    corpus(&w, &a, 300);
    for max in [50, 64, 80, 100, 150, 200, 333, 500, 1000, 2000, 4000, 8000] {
        for q in [
            "NVDA rose",
            "bitcoin fell after the Fed report",
            "Tokyo",
            "watch level 150",
        ] {
            let out = recall(&w, &a, q, max);
            let n = tokens::count(&out).unwrap();
            assert!(n <= max, "budget {max} for {q:?} used {n}:\n{out}");
            // A header from 500 tokens on; below, entries (or the no-match line) at once.
            assert_eq!(out.starts_with("## Memory ("), max >= 500, "{out}");
        }
    }
    // Large budgets actually get used when there is enough to say.
    let out = recall(&w, &a, "NVDA rose", 2000);
    assert!(tokens::count(&out).unwrap() > 1000, "{out}");
}

#[test]
fn recall_output_is_deterministic_for_the_same_store() {
    let w = world();
    let a = agent("alice");
    corpus(&w, &a, 120);
    let one = recall(&w, &a, "bitcoin stalled", 1500);
    let two = recall(&w, &a, "bitcoin stalled", 1500);
    assert_eq!(one, two);
}

#[test]
fn the_specific_memory_comes_first_in_a_larger_corpus() {
    let w = world();
    let a = agent("alice");
    corpus(&w, &a, 1500);
    let target = remember_as(
        &w,
        &a,
        "Kestrel migration: the quorum timeout must be raised to 900ms before the upgrade",
        Some("kestrel quorum"),
        None,
    );
    let out = recall(&w, &a, "kestrel quorum timeout", 800);
    let first = out.lines().find(|l| l.starts_with('[')).unwrap();
    assert!(first.contains(&target), "{out}");
}

#[test]
fn recall_never_shows_another_agents_private_memory() {
    let w = world();
    let a = agent("alice");
    let b = agent("bob");
    let secret = remember_as(
        &w,
        &b,
        "zebra launch codes are 1234",
        Some("zebra secret"),
        None,
    );
    let shared = remember_as(
        &w,
        &b,
        "zebra sightings in the park",
        None,
        Some("wildlife"),
    );
    let out = recall(&w, &a, "zebra launch codes", 4000);
    assert!(!out.contains(&secret), "{out}");
    assert!(!out.contains("1234"), "{out}");
    assert!(out.contains(&shared), "shared stays visible: {out}");
    let own = recall(&w, &b, "zebra launch codes", 4000);
    assert!(own.contains(&secret), "{own}");
    let op = recall(&w, &Caller::Operator, "zebra launch codes", 4000);
    assert!(op.contains(&secret), "operators see everything: {op}");
}

#[test]
fn remembering_the_same_content_twice_returns_the_first_memory() {
    let w = world();
    let a = agent("alice");
    let one = remember_as(&w, &a, "same thing", Some("t"), None);
    let two = remember_as(&w, &a, "same thing", Some("t"), None);
    assert_eq!(one, two);
    let three = remember_as(&w, &a, "same thing", Some("other title"), Some("ns"));
    assert_ne!(one, three, "another namespace is another place");
    // Another agent's identical memory is its own.
    let b = remember_as(&w, &agent("bob"), "same thing", Some("t"), None);
    assert_ne!(one, b);
}

#[test]
fn two_memories_with_the_same_title_never_overwrite_each_other() {
    let w = world();
    let a = agent("alice");
    let items: Vec<Memory> = (0..5)
        .map(|i| Memory {
            content: format!("version {i}"),
            title: Some("daily".into()),
            namespace: Some("team".into()),
            ..Memory::default()
        })
        .collect();
    let paths: Vec<String> = avm_recall::remember_many(&w.host, w.store.as_ref(), &a, &items)
        .into_iter()
        .map(|r| r.unwrap().path)
        .collect();
    let unique: std::collections::BTreeSet<_> = paths.iter().collect();
    assert_eq!(unique.len(), 5, "{paths:?}");
}

/// The ranked paths of a recall at `max` tokens, from its structured form (handles in the text).
fn ranked(w: &World, who: &Caller, q: &str, max: usize) -> (String, Vec<String>, Vec<String>) {
    let q = q.replace(' ', "%20");
    let out = w
        .host
        .read(who, &format!("/:recall?q={q}&max_tokens={max}"))
        .unwrap();
    let items = out.data()["items"].as_array().unwrap().clone();
    let paths = items
        .iter()
        .map(|i| i["path"].as_str().unwrap().to_string())
        .collect();
    let handles = items
        .iter()
        .map(|i| i["shortcut"].as_str().unwrap().to_string())
        .collect();
    (out.text, paths, handles)
}

#[test]
fn every_budget_shows_the_same_ranking_cut_shorter() {
    let w = world();
    let a = agent("alice");
    corpus(&w, &a, 400);
    for q in [
        "NVDA rose",
        "bitcoin fell after the Fed report",
        "watch level 150",
        "oil",
    ] {
        let (_, full, _) = ranked(&w, &a, q, 100_000);
        assert!(full.len() > 20, "{q}: {full:?}");
        let mut held = 0;
        for max in [60, 90, 130, 200, 300, 500, 800, 1300, 2000, 4000, 8000] {
            let (text, got, _) = ranked(&w, &a, q, max);
            // What a budget shows is the full ranking with entries left out (those that did
            // not fit), never reordered and never something the full ranking lacks.
            let mut rest = full.iter();
            for p in &got {
                assert!(
                    rest.any(|f| f == p),
                    "{q} at {max}: {p} out of order or not in the full ranking\n{text}"
                );
            }
            // A budget that holds the first k entries holds them in the same order.
            let k = got.iter().zip(&full).take_while(|(a, b)| a == b).count();
            assert!(
                k >= held.min(got.len()),
                "{q} at {max}: first {k} agree, a smaller budget held {held}"
            );
            held = held.max(k);
            assert!(
                got.first() == full.first(),
                "{q} at {max}: the best memory always comes first"
            );
        }
    }
}

#[test]
fn entries_are_short_handles_that_fetch_resolves_and_paths_on_request() {
    let w = world();
    let a = agent("alice");
    let fed = remember_as(
        &w,
        &a,
        "Fed hiked rates by 25bp at the December meeting",
        Some("Fed decision"),
        None,
    );
    let (text, paths, handles) = ranked(&w, &a, "Fed rates", 500);
    assert_eq!(paths, vec![fed.clone()]);
    assert!(handles[0].starts_with('@'));
    let entry = text.lines().find(|l| l.starts_with('@')).unwrap();
    assert_eq!(
        entry,
        format!(
            "{} Fed decision: Fed hiked rates by 25bp at the December meeting",
            handles[0]
        )
    );
    assert!(!text.contains("/memory/"), "no paths unless asked: {text}");
    let got = avm_recall::navigate::fetch(
        &w.host,
        w.store.as_ref(),
        &a,
        &[handles[0].clone(), "@zzzzzz".into()],
    )
    .unwrap();
    assert!(
        got.text.contains("25bp at the December meeting"),
        "{}",
        got.text
    );
    assert!(got.text.contains("Not found: @zzzzzz"), "{}", got.text);
    // Another agent's handle is as missing as a wrong one.
    let err = avm_recall::navigate::fetch(
        &w.host,
        w.store.as_ref(),
        &agent("bob"),
        &[handles[0].clone()],
    )
    .unwrap_err();
    assert_eq!(err.kind(), avm_core::ErrorKind::NotFound);
    // `:handle` answers the path to the one who may read it, and to no one else.
    let id = &handles[0][1..];
    let own = w
        .host
        .read(&a, &format!("/memory/private/alice:handle?id={id}"))
        .unwrap();
    assert_eq!(own.text, format!("{fed}\n"));
    assert_eq!(own.data()["path"], fed.as_str());
    for (who, root) in [
        (agent("bob"), "/memory/private/bob"),
        (a.clone(), "/memory/private/alice"),
    ] {
        let wrong = if who == a { "zzzzzz" } else { id };
        let e = w
            .host
            .read(&who, &format!("{root}:handle?id={wrong}"))
            .unwrap_err();
        assert_eq!(e.kind(), avm_core::ErrorKind::NotFound, "{e}");
        assert_eq!(e.message(), format!("no memory has the handle @{wrong}"));
    }
    let with_paths = recall(&w, &a, "Fed rates", 500);
    assert!(
        with_paths.contains(&format!("[{fed}] Fed decision: ")),
        "{with_paths}"
    );
}

#[test]
fn memories_about_another_time_show_their_date_and_a_question_naming_it_finds_them() {
    let w = world();
    let a = agent("alice");
    let at = |s: &str| avm_core::time::parse_time(s).unwrap();
    let paths = [
        remember_at(
            &w,
            &a,
            "We decided the budget for the offsite: 40k",
            at("2023-05-08T15:00:00Z"),
        ),
        remember_at(
            &w,
            &a,
            "We decided the budget for the hackathon: 12k",
            at("2023-06-10T09:30:00Z"),
        ),
    ];
    for (q, want) in [
        ("what budget did we decide on 2023-05-08", &paths[0]),
        ("what budget did we decide in 2023-06", &paths[1]),
    ] {
        let (text, got, _) = ranked(&w, &a, q, 500);
        assert_eq!(&got[0], want, "{q}: {text}");
    }
    let (text, _, handles) = ranked(&w, &a, "when was the budget for the offsite decided", 500);
    assert!(
        text.contains(&format!(
            "{} (2023-05-08) We decided the budget for the offsite",
            handles[0]
        )),
        "{text}"
    );
    // Not asked about time: no dates, they would cost every entry tokens.
    let (text, _, handles) = ranked(&w, &a, "budget offsite", 500);
    assert!(
        text.contains(&format!(
            "{} We decided the budget for the offsite",
            handles[0]
        )),
        "{text}"
    );
    let node = w.store.node(&paths[0]).unwrap().unwrap();
    assert_eq!(node.meta["at"], "2023-05-08T15:00:00.000000+00:00");
}

/// "Yesterday", "last month", "three weeks ago": relative times favour memories of that
/// period, and the timeline places memories at the time they are about.
#[test]
fn relative_times_favour_their_period_and_the_timeline_uses_when_a_memory_is_about() {
    let w = world();
    let a = agent("alice");
    let day: i64 = 86_400_000_000;
    let now = avm_core::time::now_micros();
    let paths: Vec<String> = [
        ("We decided the budget for the offsite: 40k", 1),
        ("We decided the budget for the hackathon: 12k", 21),
        ("We decided the budget for the conference: 90k", 400),
        // About tomorrow: in no timeline of the past.
        ("We will decide the budget for the party: 5k", -1),
    ]
    .into_iter()
    .map(|(text, ago)| remember_at(&w, &a, text, now - ago * day))
    .collect();
    for (q, want) in [
        ("what budget did we decide yesterday", &paths[0]),
        ("what budget did we decide three weeks ago", &paths[1]),
        ("what budget did we decide last year", &paths[2]),
    ] {
        let (text, got, _) = ranked(&w, &a, q, 500);
        assert_eq!(&got[0], want, "{q}: {text}");
    }
    // The timeline of the last week holds only the memory about yesterday, at its date.
    let out = w
        .host
        .read(&a, "/memory/private/alice:timeline?days=7")
        .unwrap();
    let data = out.data();
    let items = data["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{}", out.text);
    assert_eq!(items[0]["path"], paths[0].as_str());
    let yesterday = avm_core::time::to_iso(now - day);
    assert!(
        out.text.contains(&format!("### {}", &yesterday[..10])),
        "{}",
        out.text
    );
    assert_eq!(items[0]["at"].as_str().unwrap()[..10], yesterday[..10]);
    // Thirty days: two of them, newest first.
    let out = w
        .host
        .read(&a, "/memory/private/alice:timeline?days=30")
        .unwrap();
    let data = out.data();
    let got: Vec<&str> = data["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        got,
        vec![paths[0].as_str(), paths[1].as_str()],
        "{}",
        out.text
    );
}
