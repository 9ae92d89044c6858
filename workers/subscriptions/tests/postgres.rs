//! The subscription store in PostgreSQL: the same behaviour as the SQLite file, and with
//! several servers on one database, each notice filed and delivered once.
//!
//! Runs against the server that `AVM_TEST_POSTGRES` names (skipped without it, unless
//! `REQUIRE_POSTGRES` is set).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use avm_core::storage::MemoryStore;
use avm_core::{Caller, Host, Mount, Policy, Put, WriteInput};
use avm_postgres::Queries;
use avm_postgres::testing::TestDb;
use avm_provider_memory::postgres::PgStoreOptions;
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

/// A memory store on PostgreSQL and a host over it (one "server").
fn pg_server(url: &str) -> (Host, Arc<dyn MemoryStore>) {
    let mem =
        MemoryProvider::open_location(url, StoreOptions::default(), PgStoreOptions::default())
            .unwrap();
    let store = mem.memory_store();
    let host = Host::new(vec![Mount::new("/**", Arc::new(mem))]).unwrap();
    (host, store)
}

/// One delivery as the receiver saw it: X-Avm-Delivery, X-Avm-Signature, body.
type Got = (String, String, String);

/// A webhook receiver on a free local port: records each POST and answers 200.
fn receiver() -> (String, Arc<Mutex<Vec<Got>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let got = Arc::new(Mutex::new(Vec::new()));
    let seen = got.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut c) = conn else { continue };
            let mut reader = BufReader::new(c.try_clone().unwrap());
            let (mut id, mut sig, mut len) = (String::new(), String::new(), 0usize);
            let mut line = String::new();
            reader.read_line(&mut line).unwrap_or(0);
            loop {
                line.clear();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                let l = line.trim_end();
                if l.is_empty() {
                    break;
                }
                if let Some((k, v)) = l.split_once(':') {
                    let v = v.trim().to_string();
                    match k.to_ascii_lowercase().as_str() {
                        "x-avm-delivery" => id = v,
                        "x-avm-signature" => sig = v,
                        "content-length" => len = v.parse().unwrap_or(0),
                        _ => {}
                    }
                }
            }
            let mut body = vec![0u8; len];
            let _ = reader.read_exact(&mut body);
            seen.lock()
                .unwrap()
                .push((id, sig, String::from_utf8_lossy(&body).into_owned()));
            let _ =
                c.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    (url, got)
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// The modes test of `modes.rs`, on any store; returns what it saw (ids, kinds, paths,
/// counts), to be compared between the SQLite and the PostgreSQL backends.
///
/// Subscriptions are named in it by role, not id: SQLite hands a removed subscription's id to
/// the next one when it was the newest, PostgreSQL never reuses one.
fn modes_scenario(host: &Host, store: &dyn MemoryStore, subs: &Subscriptions) -> Vec<Value> {
    let mut seen_all = Vec::new();
    let names: std::cell::RefCell<HashMap<i64, &str>> = Default::default();
    let name = |id: i64| names.borrow().get(&id).copied().unwrap_or("?");
    let policy = Policy::open();
    let hook = Some("http://127.0.0.1:9/hook");
    let (rt, rt_secret) = subs
        .subscribe(store, "bob", "/memory/**", Mode::Realtime, None, None)
        .unwrap();
    assert_eq!(rt_secret.len(), 64);
    let (th, _) = subs
        .subscribe(
            store,
            "bob",
            "/memory/shared/**",
            Mode::Throttled,
            Some(1),
            hook,
        )
        .unwrap();
    let (dg, _) = subs
        .subscribe(
            store,
            "carol",
            "/memory/shared/**",
            Mode::Digest,
            Some(1),
            hook,
        )
        .unwrap();
    names
        .borrow_mut()
        .extend([(rt, "rt"), (th, "th"), (dg, "dg")]);
    for bad in [
        subs.subscribe(store, "bob", "/memory/**", Mode::Realtime, Some(5), None),
        subs.subscribe(store, "bob", "/memory/**", Mode::Throttled, Some(0), None),
        subs.subscribe(
            store,
            "bob",
            "/memory/**",
            Mode::Realtime,
            None,
            Some("ftp://x/y"),
        ),
        subs.subscribe(
            store,
            "bad agent!",
            "/memory/**",
            Mode::Realtime,
            None,
            None,
        ),
    ] {
        seen_all.push(json!(format!("{:?}", bad.unwrap_err().kind())));
    }

    write(host, "alice", "/memory/shared/a.md", "one");
    write(host, "alice", "/memory/shared/b.md", "two");
    write(host, "alice", "/memory/private/alice/secret.md", "mine");
    write(host, "bob", "/memory/shared/c.md", "bob's own");
    let filed = subs.pump(store, &policy).unwrap();
    seen_all.push(json!({ "filed": filed }));

    let bob = Caller::Agent("bob".into());
    let seen: Vec<(i64, String)> = subs
        .pending(&bob, false)
        .unwrap()
        .into_iter()
        .map(|n| (n.subscription, n.path))
        .collect();
    assert_eq!(
        seen,
        vec![
            (rt, "/memory/shared/a.md".to_string()),
            (th, "/memory/shared/a.md".to_string()),
            (rt, "/memory/shared/b.md".to_string()),
            (th, "/memory/shared/b.md".to_string()),
        ]
    );
    let notices = |c: &Caller| {
        subs.pending(c, false)
            .unwrap()
            .into_iter()
            .map(|n| json!([name(n.subscription), n.kind, n.path, n.by]))
            .collect::<Vec<_>>()
    };
    seen_all.push(json!(notices(&bob)));
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
    std::thread::sleep(Duration::from_millis(1100));
    subs.pump(store, &policy).unwrap();
    assert_eq!(undelivered("bob", th), 1, "one batch for both changes");
    assert_eq!(undelivered("carol", dg), 1, "one digest");
    subs.pump(store, &policy).unwrap();
    assert_eq!(undelivered("bob", th), 1, "nothing new, no new batch");
    let listing = |c: &Caller| {
        let l = subs.list(c).unwrap();
        json!(
            l.iter()
                .map(|s| json!([
                    name(s.id),
                    s.agent,
                    s.pattern,
                    s.mode,
                    s.throttle_secs,
                    s.webhook,
                    s.pending,
                    s.undelivered
                ]))
                .collect::<Vec<_>>()
        )
    };
    seen_all.push(listing(&Caller::Operator));
    seen_all.push(listing(&bob));

    // A failed delivery is retried later, not at once.
    let (ok, failed) = subs.deliver(Duration::from_secs(2)).unwrap();
    seen_all.push(json!({"delivered": ok, "failed": failed}));
    assert_eq!((ok, failed), (0, 2), "the hook's port is closed");
    assert_eq!(subs.deliver(Duration::from_secs(2)).unwrap(), (0, 0));
    assert_eq!(undelivered("bob", th), 1, "waiting for its retry");

    // Clearing removes bob's notices only.
    let cleared = subs.pending(&bob, true).unwrap();
    assert_eq!(cleared.len(), 4);
    assert!(subs.pending(&bob, false).unwrap().is_empty());
    let carol = Caller::Agent("carol".into());
    assert_eq!(subs.pending(&carol, false).unwrap().len(), 3);
    seen_all.push(json!(notices(&carol)));
    seen_all.push(json!(notices(&Caller::Operator)));
    let refused = subs.unsubscribe(&bob, dg).unwrap_err();
    seen_all.push(json!(format!("{:?}", refused.kind())));
    assert!(
        refused.message().contains(&format!("no subscription {dg}")),
        "{refused}"
    );
    subs.unsubscribe(&Caller::Operator, dg).unwrap();
    assert!(subs.list(&carol).unwrap().is_empty());
    assert!(subs.pending(&carol, false).unwrap().is_empty());
    assert!(subs.unsubscribe(&Caller::Operator, dg).is_err(), "gone");
    subs.unsubscribe(&bob, rt).unwrap();
    seen_all.push(listing(&Caller::Operator));
    subs.unsubscribe(&bob, th).unwrap();

    // A subscription made now hears of changes from now on; notices of a webhook-less one
    // are cleared at once, a webhook's wait for their batch.
    let (late, _) = subs
        .subscribe(store, "carol", "/memory/**", Mode::Realtime, None, None)
        .unwrap();
    let (slow, _) = subs
        .subscribe(
            store,
            "bob",
            "/memory/shared/**",
            Mode::Throttled,
            Some(3600),
            hook,
        )
        .unwrap();
    names.borrow_mut().extend([(late, "late"), (slow, "slow")]);
    write(host, "alice", "/memory/shared/d.md", "four");
    subs.pump(store, &policy).unwrap();
    let carol_now = subs.pending(&carol, true).unwrap();
    assert_eq!(carol_now.len(), 1);
    assert_eq!(carol_now[0].subscription, late);
    assert!(subs.pending(&carol, false).unwrap().is_empty());
    let bob_now = subs.pending(&bob, true).unwrap();
    assert_eq!(bob_now.len(), 1);
    assert_eq!(bob_now[0].subscription, slow);
    assert_eq!(
        subs.pending(&bob, false).unwrap().len(),
        1,
        "kept until its batch"
    );
    seen_all.push(json!(notices(&Caller::Operator)));
    seen_all.push(listing(&Caller::Operator));
    seen_all
}

#[test]
fn subscribe_list_unsubscribe_and_pending_on_postgres_match_sqlite() {
    let Some(db) = TestDb::create("subs_modes").unwrap() else {
        return;
    };
    let (host, store) = pg_server(db.url());
    let subs = Subscriptions::open_location(db.url()).unwrap();
    let on_pg = modes_scenario(&host, store.as_ref(), &subs);

    let dir = tempfile::tempdir().unwrap();
    let mem = MemoryProvider::open(&dir.path().join("a.db"), StoreOptions::default()).unwrap();
    let store = mem.memory_store();
    let host = Host::new(vec![Mount::new("/**", Arc::new(mem))]).unwrap();
    let path = dir.path().join("a.subs.db");
    let subs = Subscriptions::open_location(path.to_str().unwrap()).unwrap();
    let on_sqlite = modes_scenario(&host, store.as_ref(), &subs);
    assert_eq!(on_pg, on_sqlite);

    // Opening again (a second server, a restart) finds the tables as they are.
    let again = Subscriptions::open_location(db.url()).unwrap();
    assert_eq!(again.list(&Caller::Operator).unwrap().len(), 2);
}

#[test]
fn two_servers_on_one_database_deliver_each_notice_exactly_once() {
    let Some(db) = TestDb::create("subs_two_servers").unwrap() else {
        return;
    };
    const WRITES: usize = 300;
    let (url, got) = receiver();
    let (host_a, store_a) = pg_server(db.url());
    let (host_b, store_b) = pg_server(db.url());
    let subs_a = Arc::new(Subscriptions::open_location(db.url()).unwrap());
    let subs_b = Arc::new(Subscriptions::open_location(db.url()).unwrap());

    let mut secrets: HashMap<i64, String> = HashMap::new();
    let mut sub = |s: &Subscriptions, who: &str, mode: Mode, throttle: Option<i64>, hook: bool| {
        let (id, secret) = s
            .subscribe(
                store_a.as_ref(),
                who,
                "/memory/shared/**",
                mode,
                throttle,
                hook.then_some(url.as_str()),
            )
            .unwrap();
        secrets.insert(id, secret);
        id
    };
    let bob = sub(&subs_a, "bob", Mode::Realtime, None, true);
    let carol = sub(&subs_b, "carol", Mode::Realtime, None, true);
    let dave = sub(&subs_a, "dave", Mode::Throttled, Some(1), true);
    let erin = sub(&subs_b, "erin", Mode::Realtime, None, false);

    // Two servers' workers, as `avm serve` runs them, until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let workers: Vec<_> = [
        (subs_a.clone(), store_a.clone()),
        (subs_b.clone(), store_b.clone()),
    ]
    .into_iter()
    .map(|(subs, store)| {
        let (stop, errors) = (stop.clone(), errors.clone());
        std::thread::spawn(move || {
            let policy = Policy::open();
            let (mut filed, mut delivered) = (0, 0);
            while !stop.load(Ordering::Relaxed) {
                match subs.pump(store.as_ref(), &policy) {
                    Ok(n) => filed += n,
                    Err(e) => errors.lock().unwrap().push(format!("pump: {e}")),
                }
                match subs.deliver(Duration::from_secs(10)) {
                    Ok((ok, failed)) => {
                        delivered += ok;
                        if failed > 0 {
                            errors
                                .lock()
                                .unwrap()
                                .push(format!("{failed} deliveries failed"));
                        }
                    }
                    Err(e) => errors.lock().unwrap().push(format!("deliver: {e}")),
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            (filed, delivered)
        })
    })
    .collect();

    // Writers on both servers, while the workers run.
    let writers: Vec<_> = [(host_a, "a"), (host_b, "b")]
        .into_iter()
        .map(|(host, name)| {
            std::thread::spawn(move || {
                for i in 0..WRITES / 2 {
                    write(
                        &host,
                        "alice",
                        &format!("/memory/shared/{name}/{i}.md"),
                        &format!("note {i} via {name}"),
                    );
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }

    // Every change reaches every subscription: the pull-mode one has them all, and the
    // receiver has heard of each for every webhook.
    let events_by_sub = || {
        let mut by: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
        for (_, _, body) in got.lock().unwrap().iter() {
            let v: Value = serde_json::from_str(body).unwrap();
            let id = v["subscription"].as_i64().unwrap();
            for e in v["events"].as_array().unwrap() {
                by.entry(id).or_default().push(e["seq"].as_i64().unwrap());
            }
        }
        by
    };
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let by = events_by_sub();
        let heard = |id| by.get(&id).map_or(0, Vec::len);
        if [bob, carol, dave].iter().all(|id| heard(*id) >= WRITES) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not all delivered in time: bob {}, carol {}, dave {} of {WRITES}; errors {:?}",
            heard(bob),
            heard(carol),
            heard(dave),
            errors.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // A while longer, for any duplicate to show itself.
    std::thread::sleep(Duration::from_millis(2500));
    stop.store(true, Ordering::Relaxed);
    let counts: Vec<(usize, usize)> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    eprintln!("(filed, delivered) per server: {counts:?}");
    assert!(
        errors.lock().unwrap().is_empty(),
        "{:?}",
        errors.lock().unwrap()
    );

    let op = Caller::Operator;
    let pulled: Vec<i64> = subs_b
        .pending(&Caller::Agent("erin".into()), false)
        .unwrap()
        .iter()
        .map(|n| n.seq)
        .collect();
    assert_eq!(pulled.len(), WRITES, "one notice per write");
    let expected: BTreeSet<i64> = pulled.iter().copied().collect();
    assert_eq!(expected.len(), WRITES);

    let got = got.lock().unwrap().clone();
    let ids: BTreeSet<&str> = got.iter().map(|(id, _, _)| id.as_str()).collect();
    assert_eq!(ids.len(), got.len(), "a delivery was posted twice");
    for (_, sig, body) in &got {
        let v: Value = serde_json::from_str(body).unwrap();
        let secret = &secrets[&v["subscription"].as_i64().unwrap()];
        assert_eq!(
            sig,
            &format!(
                "sha256={}",
                avm_subscriptions::sign(secret.as_bytes(), body.as_bytes())
            )
        );
    }
    let by = events_by_sub();
    assert!(!by.contains_key(&erin), "erin has no webhook");
    for id in [bob, carol, dave] {
        let mut seqs = by[&id].clone();
        seqs.sort_unstable();
        let distinct: BTreeSet<i64> = seqs.iter().copied().collect();
        assert_eq!(seqs.len(), distinct.len(), "subscription {id}: a duplicate");
        assert_eq!(distinct, expected, "subscription {id}: a loss");
    }
    assert_eq!(
        got.iter()
            .filter(|(_, _, b)| b.contains(r#""mode":"realtime""#))
            .count(),
        2 * WRITES,
        "one post per change for each realtime webhook"
    );
    let total: usize = counts.iter().map(|c| c.1).sum();
    assert_eq!(total, got.len(), "every post was counted once");
    for s in subs_a.list(&op).unwrap() {
        assert_eq!(s.undelivered, 0, "{s:?}");
        assert_eq!(s.pending, WRITES as i64, "{s:?}");
    }
}

#[test]
fn a_delivery_claimed_by_a_dead_server_is_retried_after_its_lease_and_failures_back_off() {
    let Some(db) = TestDb::create("subs_lease").unwrap() else {
        return;
    };
    let (url, got) = receiver();
    let (host, store) = pg_server(db.url());
    let subs = Subscriptions::open_location(db.url()).unwrap();
    let policy = Policy::open();
    let (up, _) = subs
        .subscribe(
            store.as_ref(),
            "bob",
            "/memory/shared/**",
            Mode::Realtime,
            None,
            Some(&url),
        )
        .unwrap();
    let down_url = format!("http://127.0.0.1:{}/hook", closed_port());
    let (down, _) = subs
        .subscribe(
            store.as_ref(),
            "carol",
            "/memory/shared/**",
            Mode::Realtime,
            None,
            Some(&down_url),
        )
        .unwrap();
    write(&host, "alice", "/memory/shared/x.md", "x");
    assert_eq!(subs.pump(store.as_ref(), &policy).unwrap(), 2);

    let pg = avm_postgres::Pg::connect(db.url(), Default::default()).unwrap();
    let mut c = pg.conn().unwrap();
    // A server claimed bob's delivery and died: until its lease runs out, nobody posts it.
    let now = avm_core::time::now_micros();
    c.execute(
        "UPDATE sub_outbox SET claimed_by = 'dead', claimed_until = $1 WHERE sub_id = $2",
        &[&(now + 3_600_000_000), &up],
    )
    .unwrap();
    assert_eq!(
        subs.deliver(Duration::from_secs(2)).unwrap(),
        (0, 1),
        "only carol's, which fails"
    );
    assert!(got.lock().unwrap().is_empty());
    let row = c
        .query_one(
            "SELECT attempts, next_at, last_error, claimed_by FROM sub_outbox WHERE sub_id = $1",
            &[&down],
        )
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 1);
    assert!(row.get::<_, i64>(1) > now, "retried after a backoff");
    assert!(row.get::<_, Option<String>>(2).is_some());
    assert_eq!(row.get::<_, Option<String>>(3), None, "the claim is let go");
    assert_eq!(subs.deliver(Duration::from_secs(2)).unwrap(), (0, 0));

    // The lease runs out: another server delivers it.
    c.execute(
        "UPDATE sub_outbox SET claimed_until = $1 WHERE sub_id = $2",
        &[&(now - 1), &up],
    )
    .unwrap();
    let other = Subscriptions::open_location(db.url()).unwrap();
    assert_eq!(other.deliver(Duration::from_secs(2)).unwrap(), (1, 0));
    assert_eq!(got.lock().unwrap().len(), 1);
    let row = c
        .query_one(
            "SELECT attempts, delivered_at IS NOT NULL, claimed_by FROM sub_outbox WHERE sub_id = $1",
            &[&up],
        )
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 1);
    assert!(row.get::<_, bool>(1));
    assert_eq!(row.get::<_, Option<String>>(2), None);
    assert_eq!(subs.deliver(Duration::from_secs(2)).unwrap(), (0, 0));

    // Past the last attempt, a delivery is a dead letter: never tried again.
    c.execute(
        "UPDATE sub_outbox SET attempts = $1, next_at = 0 WHERE sub_id = $2",
        &[&(avm_subscriptions::MAX_ATTEMPTS - 1), &down],
    )
    .unwrap();
    assert_eq!(subs.deliver(Duration::from_secs(2)).unwrap(), (0, 1));
    let next: i64 = c
        .query_one("SELECT next_at FROM sub_outbox WHERE sub_id = $1", &[&down])
        .unwrap()
        .get(0);
    assert_eq!(next, i64::MAX);
    let listed = subs.list(&Caller::Operator).unwrap();
    assert_eq!(
        listed.iter().map(|s| s.undelivered).collect::<Vec<_>>(),
        vec![0, 1]
    );
}
