//! The real model: golden vectors, similarity ordering, semantic search over a real store.
//!
//! Needs the model files (`avm model install`, or AVM_EMBEDDING__DIR); without them each test
//! says so and returns. CI installs them before running the tests.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;

use avm_core::storage::VectorSearch;
use avm_core::{Caller, Put, WriteInput};
use avm_embedding::Semantic;
use avm_embedding::embedder::{Embedder, OrtEmbedder, dot};
use avm_embedding::model::{ModelFiles, dir_from_env};

fn files() -> Option<ModelFiles> {
    let dir = dir_from_env()?;
    let f = ModelFiles::in_dir(&dir);
    if f.missing().is_empty() {
        Some(f)
    } else {
        assert!(
            std::env::var_os("REQUIRE_AVM_MODEL").is_none(),
            "REQUIRE_AVM_MODEL is set but the model files are missing in {}",
            dir.display()
        );
        eprintln!(
            "SKIP: model files missing in {} (run `avm model install` or set AVM_EMBEDDING__DIR)",
            dir.display()
        );
        None
    }
}

fn embedder() -> Option<OrtEmbedder> {
    files().map(|f| OrtEmbedder::load(&f).unwrap())
}

#[test]
fn a_fixed_sentence_matches_the_golden_vector() {
    let Some(e) = embedder() else { return };
    let golden: serde_json::Value = serde_json::from_str(include_str!("golden.json")).unwrap();
    for (text, want) in golden.as_object().unwrap() {
        let want: Vec<f32> = want
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect();
        let got = e.embed(&[text]).unwrap().pop().unwrap();
        assert_eq!(got.len(), 384);
        let cos = dot(&got, &want);
        assert!(cos >= 0.999, "{text}: cosine {cos}");
        // The query path (cache) gives the same vector.
        let q = e.embed_query(text).unwrap();
        assert!(dot(&q, &got) > 0.99999);
    }
}

#[test]
fn paraphrases_score_higher_than_unrelated_pairs() {
    let Some(e) = embedder() else { return };
    let pairs = [
        (
            "Interest rates were raised by the central bank.",
            "The Fed hiked rates by 25 basis points.",
        ),
        ("The cat sat on the mat.", "A kitten is sitting on a rug."),
        (
            "memory store for AI agents",
            "a database that remembers what the assistant learned",
        ),
    ];
    let unrelated = [
        ("I love pizza", "Quantum entanglement experiment results"),
        (
            "The cat sat on the mat.",
            "The Fed hiked rates by 25 basis points.",
        ),
    ];
    let sim = |a: &str, b: &str| {
        let v = e.embed(&[a, b]).unwrap();
        dot(&v[0], &v[1])
    };
    let worst_para = pairs.iter().map(|(a, b)| sim(a, b)).fold(1.0, f32::min);
    let best_unrel = unrelated
        .iter()
        .map(|(a, b)| sim(a, b))
        .fold(-1.0, f32::max);
    assert!(
        worst_para > best_unrel + 0.2,
        "{worst_para} vs {best_unrel}"
    );
}

#[test]
fn semantic_search_finds_meaning_without_shared_words_and_respects_isolation() {
    let Some(f) = files() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mem =
        avm_provider_memory::MemoryProvider::open(&dir.path().join("a.db"), Default::default())
            .unwrap();
    let store = mem.memory_store();
    let host = avm_core::Host::new(vec![avm_core::Mount::new("/**", Arc::new(mem))]).unwrap();
    let alice = Caller::Agent("alice".into());
    let bob = Caller::Agent("bob".into());
    let w = |c: &Caller, p: &str, t: &str| {
        host.write(
            c,
            p,
            WriteInput::Put(Put {
                content: Some(t.into()),
                ..Put::default()
            }),
        )
        .unwrap();
    };
    w(
        &alice,
        "/memory/shared/market/fed.md",
        "Fed hiked rates by 25bp",
    );
    w(
        &alice,
        "/memory/shared/market/lunch.md",
        "Lunch at the noodle bar was great",
    );
    w(
        &alice,
        "/memory/shared/market/code.md",
        "The build broke because of a missing semicolon",
    );
    w(
        &bob,
        "/memory/private/bob/secret.md",
        "Central bank raised borrowing costs again",
    );
    let s = Semantic::new(store.clone(), f, false);
    let all = |_: &str| true;
    let scopes = vec!["/memory".to_string()];
    let r = s
        .similar("interest rate decision", &scopes, &alice, &all, 2)
        .unwrap();
    assert_eq!(r[0].0, "/memory/shared/market/fed.md", "{r:?}");
    assert!(r.iter().all(|(p, _)| !p.contains("/bob/")), "{r:?}");
    let r = s
        .similar("interest rate decision", &scopes, &bob, &all, 2)
        .unwrap();
    assert!(
        r.iter().any(|(p, _)| p == "/memory/private/bob/secret.md"),
        "{r:?}"
    );
    // Changed content is re-embedded; deleted memories leave the results.
    w(
        &alice,
        "/memory/shared/market/fed.md",
        "Pasta recipe with tomatoes and basil",
    );
    let r = s
        .similar("interest rate decision", &scopes, &alice, &all, 5)
        .unwrap();
    let fed = r.iter().find(|(p, _)| p.ends_with("fed.md")).unwrap();
    assert!(fed.1 < 0.2, "re-embedded after the change: {r:?}");
    host.remove(&alice, "/memory/shared/market/lunch.md", Default::default())
        .unwrap();
    let r = s
        .similar("noodles for lunch", &scopes, &alice, &all, 5)
        .unwrap();
    assert!(r.iter().all(|(p, _)| !p.ends_with("lunch.md")), "{r:?}");
    // Nothing is left in the queue.
    assert_eq!(s.sync(None, &mut |_, _| {}).unwrap().remaining, 0);
}

#[test]
fn recall_with_vectors_finds_a_memory_that_shares_no_words_with_the_query() {
    let Some(f) = files() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mem =
        avm_provider_memory::MemoryProvider::open(&dir.path().join("a.db"), Default::default())
            .unwrap();
    let store = mem.memory_store();
    let sem = Arc::new(Semantic::new(store.clone(), f, false));
    let engine = avm_recall::Engine::new(store.clone(), avm_recall::Tuning::default());
    let fts_only = avm_recall::Engine::new(store.clone(), avm_recall::Tuning::default());
    let engine = engine.with_vectors(sem);
    let host = avm_core::Host::new(vec![avm_core::Mount::new("/**", Arc::new(mem))]).unwrap();
    let alice = Caller::Agent("alice".into());
    for (c, t) in [
        ("Fed hiked rates by 25bp", "fed"),
        ("Lunch at the noodle bar was great", "lunch"),
        ("The build broke because of a missing semicolon", "build"),
    ] {
        avm_recall::remember(
            &host,
            store.as_ref(),
            &alice,
            &avm_recall::Memory {
                content: c.into(),
                title: Some(t.into()),
                ..Default::default()
            },
        )
        .unwrap();
    }
    let req = avm_recall::RecallRequest {
        query: "central bank monetary tightening".into(),
        max_tokens: 400,
        strategy: avm_recall::Strategy::Balanced,
        min_relevance: 0.05,
        scopes: avm_recall::engine::scopes(&alice, true, &[]),
        paths: false,
    };
    let all = |_: &str| true;
    let without = fts_only.recall(&alice, &all, &req).unwrap();
    assert!(
        without.items.is_empty(),
        "no shared words: {}",
        without.text
    );
    let with = engine.recall(&alice, &all, &req).unwrap();
    assert!(with.items[0].path.ends_with("_fed.md"), "{}", with.text);
    assert!(with.items[0].sources.contains(&"vector"));
}

#[test]
fn a_three_memory_store_recalls_the_paraphrase_and_nothing_for_an_unrelated_query() {
    let Some(f) = files() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mem =
        avm_provider_memory::MemoryProvider::open(&dir.path().join("a.db"), Default::default())
            .unwrap();
    let store = mem.memory_store();
    let sem = Arc::new(Semantic::new(store.clone(), f, false));
    let engine =
        avm_recall::Engine::new(store.clone(), avm_recall::Tuning::default()).with_vectors(sem);
    let host = avm_core::Host::new(vec![avm_core::Mount::new("/**", Arc::new(mem))]).unwrap();
    let alice = Caller::Agent("alice".into());
    let mut fed = String::new();
    for c in [
        "The Fed hiked by 25 basis points on Wednesday.",
        "Our kitten learned to open the fridge door.",
        "The office pizza party is on Friday at noon.",
    ] {
        let r = avm_recall::remember(
            &host,
            store.as_ref(),
            &alice,
            &avm_recall::Memory {
                content: c.into(),
                ..Default::default()
            },
        )
        .unwrap();
        if c.contains("Fed") {
            fed = r.path;
        }
    }
    let all = |_: &str| true;
    let ask = |q: &str| {
        engine
            .recall(
                &alice,
                &all,
                &avm_recall::RecallRequest {
                    query: q.into(),
                    max_tokens: 500,
                    strategy: avm_recall::Strategy::Balanced,
                    min_relevance: avm_recall::Tuning::default().min_relevance,
                    scopes: avm_recall::engine::scopes(&alice, true, &[]),
                    paths: false,
                },
            )
            .unwrap()
    };
    // No word in common with the Fed memory: meaning alone, at the default relevance floor.
    let r = ask("central bank interest rate decision");
    assert_eq!(r.items.len(), 1, "{}", r.text);
    assert_eq!(r.items[0].path, fed, "{}", r.text);
    for unrelated in [
        "git rebase conflict resolution",
        "the capital of Australia",
        "install ubuntu graphics drivers",
    ] {
        let r = ask(unrelated);
        assert!(r.items.is_empty(), "{unrelated}: {}", r.text);
        assert!(
            r.text.contains("No memory matches this query."),
            "{}",
            r.text
        );
    }
}
