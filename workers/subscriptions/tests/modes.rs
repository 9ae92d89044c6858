//! Filing and batching against a real memory store.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use avm_core::{Caller, Host, Mount, Policy, Put, WriteInput};
use avm_provider_memory::{MemoryProvider, StoreOptions};
use avm_subscriptions::{Mode, Subscriptions};

fn write(host: &Host, who: &str, path: &str, text: &str) {
    host.write(
        &Caller::Agent(who.into()),
        path,
        WriteInput::Put(Put {
            content: Some(text.into()),
            ..Put::default()
        }),
    )
    .unwrap();
}

#[test]
fn notices_respect_patterns_privacy_and_authorship_and_batches_wait_for_their_period() {
    let dir = tempfile::tempdir().unwrap();
    let mem = MemoryProvider::open(&dir.path().join("a.db"), StoreOptions::default()).unwrap();
    let store = mem.memory_store();
    let host = Host::new(vec![Mount::new("/**", Arc::new(mem.clone()))]).unwrap();
    let subs = Subscriptions::open(&dir.path().join("a.subs.db")).unwrap();
    let policy = Policy::open();
    // A closed port: deliveries stay queued, which is what this test counts.
    let hook = Some("http://127.0.0.1:9/hook");
    let (rt, _) = subs
        .subscribe(
            store.as_ref(),
            "bob",
            "/memory/**",
            Mode::Realtime,
            None,
            None,
        )
        .unwrap();
    let (th, _) = subs
        .subscribe(
            store.as_ref(),
            "bob",
            "/memory/shared/**",
            Mode::Throttled,
            Some(1),
            hook,
        )
        .unwrap();
    let (dg, _) = subs
        .subscribe(
            store.as_ref(),
            "carol",
            "/memory/shared/**",
            Mode::Digest,
            Some(1),
            hook,
        )
        .unwrap();
    assert!(
        subs.subscribe(
            store.as_ref(),
            "bob",
            "/memory/**",
            Mode::Realtime,
            Some(5),
            None
        )
        .is_err()
    );

    write(&host, "alice", "/memory/shared/a.md", "one");
    write(&host, "alice", "/memory/shared/b.md", "two");
    write(&host, "alice", "/memory/private/alice/secret.md", "mine");
    write(&host, "bob", "/memory/shared/c.md", "bob's own");
    subs.pump(store.as_ref(), &policy).unwrap();

    let bob = Caller::Agent("bob".into());
    let seen: Vec<(i64, String)> = subs
        .pending(&bob, false)
        .unwrap()
        .into_iter()
        .map(|n| (n.subscription, n.path))
        .collect();
    // alice's private note and bob's own write are not filed.
    assert_eq!(
        seen,
        vec![
            (rt, "/memory/shared/a.md".to_string()),
            (th, "/memory/shared/a.md".to_string()),
            (rt, "/memory/shared/b.md".to_string()),
            (th, "/memory/shared/b.md".to_string()),
        ]
    );
    let undelivered = |who: &str, id: i64| {
        subs.list(&Caller::Agent(who.into()))
            .unwrap()
            .into_iter()
            .find(|s| s.id == id)
            .unwrap()
            .undelivered
    };
    assert_eq!(
        undelivered("bob", th),
        0,
        "the throttle period has not passed"
    );
    std::thread::sleep(std::time::Duration::from_millis(1100));
    subs.pump(store.as_ref(), &policy).unwrap();
    assert_eq!(undelivered("bob", th), 1, "one batch for both changes");
    assert_eq!(undelivered("carol", dg), 1, "one digest");
    subs.pump(store.as_ref(), &policy).unwrap();
    assert_eq!(undelivered("bob", th), 1, "nothing new, no new batch");

    // Clearing removes bob's notices only.
    subs.pending(&bob, true).unwrap();
    assert!(subs.pending(&bob, false).unwrap().is_empty());
    // carol hears of a.md, b.md and bob's c.md.
    assert_eq!(
        subs.pending(&Caller::Agent("carol".into()), false)
            .unwrap()
            .len(),
        3
    );
    assert!(
        subs.unsubscribe(&bob, dg).is_err(),
        "carol's subscription is not bob's"
    );
    subs.unsubscribe(&Caller::Operator, dg).unwrap();
}
