//! Behaviour tests of the memory provider, through the Host like every front end.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use avm_core::{
    Caller, ErrorKind, Host, ListOptions, Mount, Provider, Put, RemoveOptions, SearchOptions,
    WriteInput,
};

use crate::{MemoryProvider, Store, StoreOptions};

struct Env {
    host: Host,
    mem: MemoryProvider,
    db: std::path::PathBuf,
    _dir: tempfile::TempDir,
    /// The PostgreSQL database behind `mem` when the tests run on PostgreSQL (dropped last).
    _pg: Option<avm_postgres::testing::TestDb>,
}

/// Set in the test process that `the_provider_tests_pass_on_postgres` starts: `env()` then
/// builds every provider on a fresh PostgreSQL database instead of a SQLite file.
const ENGINE_VAR: &str = "AVM_TEST_MEMORY_ENGINE";

fn on_postgres() -> bool {
    std::env::var(ENGINE_VAR).as_deref() == Ok("postgres")
}

/// A memory provider over a fresh store: a SQLite file at `db`, or a PostgreSQL database.
fn fresh_provider(
    db: &std::path::Path,
    opts: StoreOptions,
) -> (MemoryProvider, Option<avm_postgres::testing::TestDb>) {
    if on_postgres() {
        let t = avm_postgres::testing::TestDb::create("provider")
            .unwrap()
            .expect("AVM_TEST_POSTGRES names the server");
        let store = crate::postgres::PgStore::open(
            t.url(),
            crate::postgres::PgStoreOptions {
                max_connections: 4,
                max_node_bytes: opts.max_node_bytes,
                ..Default::default()
            },
        )
        .unwrap();
        (MemoryProvider::new(Arc::new(store)), Some(t))
    } else {
        (MemoryProvider::open(db, opts).unwrap(), None)
    }
}

fn env() -> Env {
    env_with(StoreOptions::default())
}

fn env_with(opts: StoreOptions) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("avm.db");
    let (mem, pg) = fresh_provider(&db, opts);
    let host = Host::new(vec![Mount::new("/**", Arc::new(mem.clone()))]).unwrap();
    Env {
        _dir: dir,
        _pg: pg,
        db,
        host,
        mem,
    }
}

const OP: Caller = Caller::Operator;

fn put(content: &str) -> WriteInput {
    WriteInput::Put(Put {
        content: Some(content.into()),
        ..Put::default()
    })
}

impl Env {
    fn write(&self, path: &str, content: &str) -> serde_json::Value {
        self.host.write(&OP, path, put(content)).unwrap().data()
    }
    fn read(&self, addr: &str) -> String {
        self.host.read(&OP, addr).unwrap().text
    }
    fn search(&self, caller: &Caller, q: &str) -> Vec<String> {
        self.host
            .search(
                caller,
                "/",
                &SearchOptions {
                    query: q.into(),
                    limit: 10,
                },
            )
            .unwrap()
            .into_iter()
            .map(|h| h.path)
            .collect()
    }
}

#[test]
fn memory_provider_passes_the_provider_contract() {
    let e = env();
    avm_core::contract::run_all(&e.mem, "/memory/contract").unwrap();
}

#[test]
fn the_sqlite_engine_passes_the_engine_contract() {
    let dir = tempfile::tempdir().unwrap();
    let n = std::cell::Cell::new(0);
    let make = || -> Arc<dyn crate::Engine> {
        n.set(n.get() + 1);
        let db = dir.path().join(format!("engine-{}.db", n.get()));
        Arc::new(Store::open(&db, StoreOptions::default()).unwrap())
    };
    crate::contract::run_all(&make).unwrap();
}

#[test]
fn the_postgres_engine_passes_the_engine_contract() {
    let made = std::cell::RefCell::new(Vec::new());
    let Some(probe) = avm_postgres::testing::TestDb::create("contract").unwrap() else {
        return;
    };
    drop(probe);
    let make = || -> Arc<dyn crate::Engine> {
        let t = avm_postgres::testing::TestDb::create("contract")
            .unwrap()
            .expect("the server answered a moment ago");
        let store =
            crate::postgres::PgStore::open(t.url(), crate::postgres::PgStoreOptions::default())
                .unwrap();
        made.borrow_mut().push(t);
        Arc::new(store)
    };
    crate::contract::run_all(&make).unwrap();
}

/// Tests of SQLite itself (its file, schema, pragmas, reopening it, FTS5's exact ranking);
/// everything else in this module runs on PostgreSQL too.
const SQLITE_ONLY: &[&str] = &[
    "tests::a_second_store_on_the_same_file_sees_writes_at_once",
    "tests::corrupt_or_foreign_database_files_give_clear_errors",
    "tests::a_schema_4_database_is_migrated_in_place_with_times_and_directory_rows",
    "tests::remember_time_stamps_are_not_indexed_and_an_old_index_is_rebuilt_without_them",
    "tests::a_remembered_whole_word_becomes_a_prefix_when_a_longer_word_arrives",
    "tests::counts_are_remembered_while_the_index_does_not_change",
    "tests::a_common_words_count_is_saved_for_the_next_process",
    "tests::the_sqlite_engine_passes_the_engine_contract",
    // FTS5's BM25 exactly; PostgreSQL ranks with ts_rank over the same matches.
    "tests::search_of_plain_words_is_the_exact_bm25_top_ten",
];

/// The whole module again, in a child test process whose `env()` builds every provider on a
/// fresh PostgreSQL database: the provider's behaviour is the engine's to keep, whichever it is.
#[test]
fn the_provider_tests_pass_on_postgres() {
    if on_postgres() {
        return; // the child itself
    }
    let Some(probe) = avm_postgres::testing::TestDb::create("provider").unwrap() else {
        return;
    };
    drop(probe);
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    cmd.env(ENGINE_VAR, "postgres")
        .args(["tests::", "--test-threads=2"]);
    for name in SQLITE_ONLY {
        cmd.args(["--skip", name]);
    }
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "the provider tests on PostgreSQL:\n{text}"
    );
    let summary = text
        .lines()
        .filter(|l| l.starts_with("test result:"))
        .collect::<Vec<_>>();
    eprintln!("on PostgreSQL: {summary:?}");
}

/// Several hosts (each its own store and connection pool) on one PostgreSQL database, many
/// writers each, half of the writes to shared paths: every acknowledged write is read back
/// through every host, each shared path's versions are exactly 1..n, and the event stream
/// holds each write once, in order.
#[test]
fn hosts_sharing_one_postgres_database_keep_every_write_once() {
    if on_postgres() {
        return; // runs once, in the parent
    }
    let Some(t) = avm_postgres::testing::TestDb::create("hosts").unwrap() else {
        return;
    };
    const HOSTS: usize = 3;
    const WRITERS: usize = 3;
    const EACH: usize = 40;
    let hosts: Vec<Host> = (0..HOSTS)
        .map(|_| {
            let store = crate::postgres::PgStore::open(
                t.url(),
                crate::postgres::PgStoreOptions {
                    max_connections: 4,
                    ..Default::default()
                },
            )
            .unwrap();
            let mem = MemoryProvider::new(Arc::new(store));
            Host::new(vec![Mount::new("/**", Arc::new(mem))]).unwrap()
        })
        .collect();
    let start = avm_core::storage::MemoryStore::last_event(
        &crate::postgres::PgStore::open(t.url(), Default::default()).unwrap(),
    )
    .unwrap();
    let acked = std::sync::Mutex::new(Vec::<(String, i64, String)>::new());
    std::thread::scope(|s| {
        for (h, host) in hosts.iter().enumerate() {
            for w in 0..WRITERS {
                let acked = &acked;
                s.spawn(move || {
                    for i in 0..EACH {
                        let path = if i % 2 == 0 {
                            format!("/shared/s{}.md", i % 5)
                        } else {
                            format!("/own/h{h}-w{w}-{i}.md")
                        };
                        let text = format!("host {h} writer {w} write {i}");
                        let v = host.write(&OP, &path, put(&text)).unwrap().data()["version"]
                            .as_i64()
                            .unwrap();
                        acked.lock().unwrap().push((path, v, text));
                    }
                });
            }
        }
    });
    let acked = acked.into_inner().unwrap();
    assert_eq!(acked.len(), HOSTS * WRITERS * EACH);
    let mut by_path: std::collections::BTreeMap<&str, Vec<i64>> = Default::default();
    for (p, v, _) in &acked {
        by_path.entry(p.as_str()).or_default().push(*v);
    }
    for (p, vs) in &mut by_path {
        vs.sort_unstable();
        let want: Vec<i64> = (1..=vs.len() as i64).collect();
        assert_eq!(*vs, want, "versions of {p}");
    }
    // Every acknowledged write is in the history every host reads, with its content.
    for host in &hosts {
        for (p, v, text) in acked.iter().step_by(7) {
            let old = host.read(&OP, &format!("{p}?version={v}")).unwrap().text;
            assert_eq!(&old, text, "{p} v{v}");
        }
    }
    let store = crate::postgres::PgStore::open(t.url(), Default::default()).unwrap();
    let events = avm_core::storage::MemoryStore::events_after(&store, start, 100_000).unwrap();
    assert!(
        events.windows(2).all(|w| w[0].seq < w[1].seq),
        "events in order, none twice"
    );
    // One event per acknowledged write, on its path.
    let mut events_of: std::collections::BTreeMap<&str, usize> = Default::default();
    for e in &events {
        *events_of.entry(e.path.as_str()).or_default() += 1;
    }
    for (p, vs) in &by_path {
        assert_eq!(events_of.get(p).copied(), Some(vs.len()), "events of {p}");
    }
    assert_eq!(events.len(), acked.len());
}

#[test]
fn content_changes_bump_versions_and_history_travels_in_time() {
    let e = env();
    assert_eq!(e.write("/a.md", "one")["version"], 1);
    std::thread::sleep(Duration::from_millis(5));
    let mid = avm_core::time::now_micros();
    std::thread::sleep(Duration::from_millis(5));
    assert_eq!(e.write("/a.md", "two")["version"], 2);
    assert_eq!(
        e.write("/a.md", "two")["version"],
        2,
        "same content is not a new version"
    );
    assert_eq!(e.read("/a.md?version=1"), "one");
    assert_eq!(e.read("/a.md"), "two");
    let as_of = avm_core::time::to_iso(mid);
    assert_eq!(
        e.read(&format!("/a.md?as_of={}", as_of.replace('+', "%2B"))),
        "one"
    );
    let err = e.host.read(&OP, "/a.md?version=9").unwrap_err();
    assert!(err.message().contains("1..2"), "{err}");
    let hist = e.read("/a.md:history");
    assert!(
        hist.starts_with("v2 [update]") && hist.contains("v1 [create]"),
        "{hist}"
    );
    let diff = e.read("/a.md:diff?from=1&to=2");
    assert!(diff.contains("-one") && diff.contains("+two"), "{diff}");
}

#[test]
fn writes_keep_metadata_the_caller_did_not_mention() {
    let e = env();
    e.host
        .write(
            &OP,
            "/m.md",
            WriteInput::Put(Put {
                content: Some("x".into()),
                tags: Some(vec!["a".into(), "b".into()]),
                importance: Some(0.9),
                meta: Some(json!({"k": 1}).as_object().unwrap().clone()),
                ..Put::default()
            }),
        )
        .unwrap();
    let d = e.write("/m.md", "y");
    assert_eq!(d["meta"]["tags"], json!(["a", "b"]));
    assert_eq!(d["meta"]["importance"], json!(0.9));
    assert_eq!(d["meta"]["k"], json!(1));
    e.host
        .write(
            &OP,
            "/m.md:meta",
            WriteInput::Text("{\"k\": null, \"j\": 2}".into()),
        )
        .unwrap();
    let meta: serde_json::Value = serde_json::from_str(&e.read("/m.md:meta")).unwrap();
    assert_eq!(meta["j"], json!(2));
    assert!(meta.get("k").is_none());
    assert_eq!(meta["tags"], json!(["a", "b"]));
    e.host
        .write(&OP, "/m.md:tags", WriteInput::Text("x, y".into()))
        .unwrap();
    assert_eq!(e.read("/m.md:tags"), "x,y\n");
    let bad = e
        .host
        .write(&OP, "/m.md:meta", WriteInput::Text("{not json".into()))
        .unwrap_err();
    assert_eq!(bad.kind(), ErrorKind::InvalidInput);
    assert_eq!(e.read("/m.md"), "y", "a failed meta write changes nothing");
}

#[test]
fn accessed_at_moves_on_read_but_updated_at_does_not() {
    let e = env();
    let d = e.write("/r.md", "x");
    let updated = d["updated_at"].clone();
    e.read("/r.md");
    e.mem.store().sync().unwrap();
    let out = e.host.read(&OP, "/r.md").unwrap().data();
    assert_eq!(out["updated_at"], updated);
    let st = e.host.stat(&OP, "/r.md").unwrap();
    assert!(
        st.accessed_at.is_some() || out["accessed_at"].is_string(),
        "{out}"
    );
}

#[test]
fn delete_goes_to_trash_and_restore_brings_it_back_with_versions_unbroken() {
    let e = env();
    e.write("/memory/x.md", "hello");
    e.host
        .remove(&OP, "/memory/x.md", RemoveOptions::default())
        .unwrap();
    assert_eq!(
        e.host.read(&OP, "/memory/x.md").unwrap_err().kind(),
        ErrorKind::NotFound
    );
    let meta: serde_json::Value = serde_json::from_str(&e.read("/trash/memory/x.md:meta")).unwrap();
    assert_eq!(meta["original_path"], "/memory/x.md");
    e.host
        .rename(&OP, "/trash/memory/x.md", "/memory/x.md", false)
        .unwrap();
    assert_eq!(e.read("/memory/x.md"), "hello");
    let meta: serde_json::Value = serde_json::from_str(&e.read("/memory/x.md:meta")).unwrap();
    assert!(meta.get("original_path").is_none());
    let hist: Vec<i64> = e
        .host
        .read(&OP, "/memory/x.md:history?limit=100")
        .unwrap()
        .data()
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["version"].as_i64().unwrap())
        .collect();
    assert_eq!(hist, vec![3, 2, 1], "create, move-out, restore");
    // Deleting twice keeps both copies in the trash.
    e.host
        .remove(&OP, "/memory/x.md", RemoveOptions::default())
        .unwrap();
    e.write("/memory/x.md", "again");
    e.host
        .remove(&OP, "/memory/x.md", RemoveOptions::default())
        .unwrap();
    assert_eq!(e.read("/trash/memory/x.md~2"), "again");
    // Removing from the trash is final.
    e.host
        .remove(
            &OP,
            "/trash",
            RemoveOptions {
                recursive: true,
                hard: false,
            },
        )
        .unwrap();
    assert!(e.host.list(&OP, "/trash", &ListOptions::default()).is_err());
}

#[test]
fn directories_need_recursive_and_mv_moves_subtrees_without_overwriting() {
    let e = env();
    e.write("/d/a.md", "a");
    e.write("/d/sub/b.md", "b");
    e.write("/other.md", "o");
    assert_eq!(
        e.host
            .remove(&OP, "/d", RemoveOptions::default())
            .unwrap_err()
            .kind(),
        ErrorKind::IsADirectory
    );
    e.host.rename(&OP, "/d", "/e", false).unwrap();
    assert_eq!(e.read("/e/sub/b.md"), "b");
    assert_eq!(
        e.host.read(&OP, "/d/a.md").unwrap_err().kind(),
        ErrorKind::NotFound
    );
    let err = e
        .host
        .rename(&OP, "/other.md", "/e/a.md", false)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists);
    assert!(err.message().contains("--force"));
    e.host.rename(&OP, "/other.md", "/e/a.md", true).unwrap();
    assert_eq!(e.read("/e/a.md"), "o");
    assert_eq!(
        e.read("/trash/e/a.md"),
        "a",
        "the overwritten node went to the trash"
    );
    // Moving a file into an existing directory keeps its name.
    e.write("/f.md", "f");
    e.host.rename(&OP, "/f.md", "/e", false).unwrap();
    assert_eq!(e.read("/e/f.md"), "f");
    assert_eq!(
        e.host
            .rename(&OP, "/e", "/e/inner", false)
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidInput
    );
}

#[test]
fn files_and_directories_cannot_collide() {
    let e = env();
    e.write("/a/b.md", "x");
    let err = e.host.write(&OP, "/a", put("y")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::IsADirectory);
    let err = e.host.write(&OP, "/a/b.md/c", put("y")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotADirectory);
}

#[test]
fn listing_gives_immediate_children_without_phantoms_or_sibling_leaks() {
    let e = env();
    for p in [
        "/memory/a/x.md",
        "/memory/ab.md",
        "/memory/a/y/z.md",
        "/memory/b.md",
    ] {
        e.write(p, "c");
    }
    let l = e
        .host
        .list(&OP, "/memory/a", &ListOptions::default())
        .unwrap();
    let names: Vec<_> = l.entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(names, vec!["/memory/a/x.md", "/memory/a/y"]);
    let l = e
        .host
        .list(
            &OP,
            "/memory",
            &ListOptions {
                limit: Some(2),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(l.entries.len(), 2);
    assert!(l.more);
    let l = e
        .host
        .list(
            &OP,
            "/memory",
            &ListOptions {
                recursive: true,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(l.entries.len(), 4);
    assert_eq!(
        e.host
            .list(&OP, "/memory/zz", &ListOptions::default())
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        e.host.stat(&OP, "/memory/a").unwrap().kind,
        avm_core::NodeKind::Dir
    );
    assert_eq!(
        e.host.stat(&OP, "/memory/ab").unwrap_err().kind(),
        ErrorKind::NotFound
    );
}

#[test]
fn ttl_hides_expired_nodes_everywhere_and_purges_them() {
    let e = env();
    e.write("/t/keep.md", "alpha keep");
    e.host
        .write(
            &OP,
            "/t/gone.md",
            WriteInput::Put(Put {
                content: Some("alpha gone".into()),
                expires_at: Some(Some(avm_core::time::now_micros() + 50_000)),
                ..Put::default()
            }),
        )
        .unwrap();
    assert_eq!(e.search(&OP, "alpha").len(), 2);
    std::thread::sleep(Duration::from_millis(80));
    assert_eq!(
        e.host.read(&OP, "/t/gone.md").unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(e.search(&OP, "alpha"), vec!["/t/keep.md"]);
    let l = e.host.list(&OP, "/t", &ListOptions::default()).unwrap();
    assert_eq!(l.entries.len(), 1);
    // The purge runs on the writer's next batch.
    e.write("/t/other.md", "x");
    std::thread::sleep(Duration::from_millis(1100));
    e.write("/t/other2.md", "x");
    assert!(
        !e.mem.store().expired_pending("/t/gone.md").unwrap(),
        "expired node purged"
    );
    e.host
        .write(&OP, "/t/keep.md:ttl", WriteInput::Text("2h".into()))
        .unwrap();
    assert!(
        e.read("/t/keep.md:ttl").starts_with("1h 59m")
            || e.read("/t/keep.md:ttl").starts_with("2h")
    );
}

#[test]
fn search_escapes_user_syntax_and_supports_prefix_phrase_and_cjk() {
    let e = env();
    e.write("/a.md", "NVDA RSI at 72, overbought AND NOT rising");
    e.write("/b.md", "cats and dogs spiking near");
    e.write("/c.md", "伊朗军事冲突 中东局势紧张");
    assert_eq!(e.search(&OP, "spik"), vec!["/b.md"]);
    assert_eq!(e.search(&OP, "\"rsi at\""), vec!["/a.md"]);
    assert_eq!(e.search(&OP, "\"at rsi\""), Vec::<String>::new());
    let mut hits = e.search(&OP, "AND OR NOT NEAR(");
    hits.sort();
    assert_eq!(
        hits,
        vec!["/a.md", "/b.md"],
        "FTS operators in user text are plain words (AND and OR, function words, are left out)"
    );
    for q in ["局势", "中东", "冲突", "中东局势紧张", "伊", "势紧"] {
        assert_eq!(e.search(&OP, q), vec!["/c.md"], "query {q}");
    }
    assert!(e.search(&OP, "局紧").is_empty());
    assert!(e.search(&OP, "memory").is_empty(), "paths are not indexed");
    let hits = e
        .host
        .search(
            &OP,
            "/",
            &SearchOptions {
                query: "overbought".into(),
                limit: 5,
            },
        )
        .unwrap();
    assert!(hits[0].snippet.contains("overbought"), "{:?}", hits[0]);
    e.write("/a.md", "now about something else");
    assert!(
        e.search(&OP, "overbought").is_empty(),
        "index follows updates"
    );
}

#[test]
fn agents_never_see_other_agents_private_nodes_in_any_result() {
    let e = env();
    e.write("/memory/private/bob/secret.md", "topsecret plans");
    e.write("/memory/private/alice/mine.md", "topsecret mine");
    e.write("/memory/shared/x.md", "topsecret shared");
    let alice = Caller::Agent("alice".into());
    let hits = e.search(&alice, "topsecret");
    assert_eq!(hits.len(), 2);
    assert!(!hits.iter().any(|h| h.contains("/bob/")));
    let l = e
        .host
        .list(&alice, "/memory/private", &ListOptions::default())
        .unwrap();
    assert_eq!(
        l.entries
            .iter()
            .map(|e| e.path.as_str())
            .collect::<Vec<_>>(),
        vec!["/memory/private/alice"]
    );
    let l = e
        .host
        .list(
            &alice,
            "/",
            &ListOptions {
                recursive: true,
                ..Default::default()
            },
        )
        .unwrap();
    assert!(!l.entries.iter().any(|e| e.path.contains("/bob/")));
    let err = e
        .host
        .rename(&alice, "/memory", "/stolen", false)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied);
    // A recursive remove takes only what the caller can see: bob's node survives.
    let out = e
        .host
        .remove(
            &alice,
            "/memory/private",
            RemoveOptions {
                recursive: true,
                hard: false,
            },
        )
        .unwrap();
    assert_eq!(out.data()["count"], 1, "only alice's own node");
    assert_eq!(e.read("/memory/private/bob/secret.md"), "topsecret plans");
    e.host
        .rename(
            &alice,
            "/trash/memory/private/alice/mine.md",
            "/memory/private/alice/mine.md",
            false,
        )
        .unwrap();
    // A subtree move may not plant nodes in another agent's namespace.
    e.write("/memory/shared/x/private/bob/n.md", "evil");
    let err = e
        .host
        .rename(&alice, "/memory/shared/x/private", "/memory", true)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied);
    assert_eq!(e.read("/memory/private/bob/secret.md"), "topsecret plans");
    e.host
        .remove(
            &OP,
            "/memory/shared/x",
            RemoveOptions {
                recursive: true,
                hard: true,
            },
        )
        .unwrap();
    e.host
        .remove(
            &OP,
            "/memory/private/bob/secret.md",
            RemoveOptions::default(),
        )
        .unwrap();
    assert!(e.search(&alice, "plans").is_empty());
    let l = e.host.list(
        &alice,
        "/trash",
        &ListOptions {
            recursive: true,
            ..Default::default()
        },
    );
    assert!(
        l.map(|l| l.entries.is_empty()).unwrap_or(true),
        "bob's trash is invisible to alice"
    );
    assert_eq!(
        e.search(&Caller::Agent("bob".into()), "plans").len(),
        0,
        "trash is not searched by default"
    );
    let stats = e.host.read(&alice, "/:stats").unwrap().data();
    assert_eq!(stats["nodes"], 2);
    // Author is stamped from the caller.
    let d = e
        .host
        .write(&alice, "/private/n.md", put("x"))
        .unwrap()
        .data();
    assert_eq!(d["meta"]["author"], "alice");
    let err = e
        .host
        .write(
            &OP,
            "/z.md",
            WriteInput::Put(Put {
                content: Some("x".into()),
                meta: Some(json!({"author": "eve"}).as_object().unwrap().clone()),
                ..Put::default()
            }),
        )
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
}

#[test]
fn links_are_typed_and_follow_moves() {
    let e = env();
    e.write("/a.md", "a");
    e.write("/b.md", "b");
    e.host
        .write(
            &OP,
            "/a.md:links",
            WriteInput::Text("/b.md supersedes\n/c.md".into()),
        )
        .unwrap();
    let text = e.read("/a.md:links");
    assert!(
        text.contains("--> [supersedes] /b.md") && text.contains("--> [related] /c.md"),
        "{text}"
    );
    assert!(e.read("/b.md:links").contains("<-- [supersedes] /a.md"));
    e.host.rename(&OP, "/b.md", "/bb.md", false).unwrap();
    assert!(e.read("/a.md:links").contains("--> [supersedes] /bb.md"));
    e.host
        .write(
            &OP,
            "/a.md:links?op=remove",
            WriteInput::Text("/c.md".into()),
        )
        .unwrap();
    assert!(!e.read("/a.md:links").contains("/c.md"));
    let err = e
        .host
        .write(
            &OP,
            "/a.md:links?op=remove",
            WriteInput::Text("/c.md".into()),
        )
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
}

#[test]
fn oversize_writes_are_refused_and_change_nothing() {
    let e = env_with(StoreOptions {
        max_node_bytes: 10,
        ..StoreOptions::default()
    });
    e.write("/s.md", "small");
    let err = e
        .host
        .write(&OP, "/s.md", put("this is far too long"))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TooLarge);
    assert!(err.message().contains("max_node_bytes"));
    let err = e
        .host
        .write(
            &OP,
            "/s.md",
            WriteInput::Put(Put {
                content: Some("123456".into()),
                append: true,
                ..Put::default()
            }),
        )
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TooLarge);
    assert_eq!(e.read("/s.md"), "small");
}

#[test]
fn a_second_store_on_the_same_file_sees_writes_at_once() {
    let e = env();
    let other = MemoryProvider::open(&e.db, StoreOptions::default()).unwrap();
    let h2 = Host::new(vec![Mount::new("/**", Arc::new(other))]).unwrap();
    e.write("/x.md", "v1");
    assert_eq!(h2.read(&OP, "/x.md").unwrap().text, "v1");
    assert_eq!(h2.read(&OP, "/x.md").unwrap().text, "v1", "now cached");
    e.write("/x.md", "v2");
    assert_eq!(
        h2.read(&OP, "/x.md").unwrap().text,
        "v2",
        "cache invalidated by the other store's write"
    );
    e.host
        .remove(
            &OP,
            "/x.md",
            RemoveOptions {
                hard: true,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(
        h2.read(&OP, "/x.md").unwrap_err().kind(),
        ErrorKind::NotFound
    );
}

#[test]
fn export_then_import_round_trips_losslessly() {
    let e = env();
    e.write("/k/a.md", "one");
    e.write("/k/a.md", "two");
    e.host
        .write(&OP, "/k/a.md:tags", WriteInput::Text("x,y".into()))
        .unwrap();
    e.host
        .write(
            &OP,
            "/k/a.md:links",
            WriteInput::Text("/k/b.md derived 0.5".into()),
        )
        .unwrap();
    e.write("/k/b.md", "中文 content");
    let dump = e.read("/:export");
    let f = env();
    for line in dump.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let path = v["path"].as_str().unwrap().to_string();
        f.host.write(&OP, &path, WriteInput::Record(v)).unwrap();
    }
    assert_eq!(f.read("/:export"), dump);
    assert_eq!(f.read("/k/a.md?version=1"), "one");
    assert_eq!(f.search(&OP, "中文"), vec!["/k/b.md"]);
    let first: serde_json::Value = serde_json::from_str(dump.lines().next().unwrap()).unwrap();
    let err = f
        .host
        .write(&OP, "/k/a.md", WriteInput::Record(first.clone()))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists);
    f.host
        .write(&OP, "/k/a.md?force=1", WriteInput::Record(first))
        .unwrap();
}

#[test]
fn corrupt_or_foreign_database_files_give_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.db");
    std::fs::write(&bad, vec![0x42u8; 8192]).unwrap();
    let err = MemoryProvider::open(&bad, StoreOptions::default()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert!(
        err.message().contains("corrupt") && err.message().contains("bad.db"),
        "{err}"
    );
    let foreign = dir.path().join("foreign.db");
    rusqlite::Connection::open(&foreign)
        .unwrap()
        .execute_batch("CREATE TABLE t(x)")
        .unwrap();
    let err = MemoryProvider::open(&foreign, StoreOptions::default()).unwrap_err();
    assert!(err.message().contains("not an avm database"), "{err}");
}

#[test]
fn many_threads_writing_at_once_lose_nothing_and_number_versions_without_gaps() {
    let e = env();
    let host = Arc::new(e.host);
    let mut handles = Vec::new();
    for t in 0..8 {
        let h = host.clone();
        handles.push(std::thread::spawn(move || {
            for i in 0..50 {
                h.write(&OP, &format!("/own/{t}/{i}.md"), put(&format!("{t}-{i}")))
                    .unwrap();
                h.write(
                    &OP,
                    &format!("/same/{}.md", i % 5),
                    put(&format!("{t}-{i}")),
                )
                .unwrap();
            }
        }));
    }
    for h in handles {
        h.join().unwrap();
    }
    for t in 0..8 {
        for i in 0..50 {
            assert_eq!(
                host.read(&OP, &format!("/own/{t}/{i}.md")).unwrap().text,
                format!("{t}-{i}")
            );
        }
    }
    for i in 0..5 {
        let hist = host
            .read(&OP, &format!("/same/{i}.md:history?limit=1000"))
            .unwrap()
            .data();
        let mut vs: Vec<i64> = hist
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["version"].as_i64().unwrap())
            .collect();
        vs.reverse();
        assert_eq!(vs, (1..=vs.len() as i64).collect::<Vec<_>>());
    }
    let _ = &e.mem;
}

#[test]
fn declared_suffixes_answer_info() {
    let e = env();
    e.write("/i.md", "x");
    let info = e.read("/i.md:info");
    assert!(
        info.contains(":meta") && info.contains(":history") && !info.contains(":list"),
        "{info}"
    );
    let info = e.read("/:info");
    assert!(info.contains(":list") && info.contains(":search"), "{info}");
    assert!(e.mem.info().ops.search);
}

#[test]
fn moves_onto_themselves_or_into_collisions_are_refused_without_changes() {
    let e = env();
    e.write("/a/x.md", "x");
    e.write("/a/sub/y.md", "y");
    // A directory onto itself or its own parent is a no-op; into itself is refused.
    e.host.rename(&OP, "/a", "/a", false).unwrap();
    e.host.rename(&OP, "/a/sub", "/a", false).unwrap();
    assert_eq!(e.read("/a/sub/y.md"), "y");
    assert_eq!(
        e.host
            .rename(&OP, "/a", "/a/sub/deeper", false)
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidInput
    );
    // A file where the moved tree needs a directory, and a directory where it needs a file.
    e.write("/b/src/d", "file in the way");
    e.write("/c/src2/x.md/inner.md", "dir in the way");
    e.write("/src/d/z.md", "z");
    e.write("/src2/x.md", "x2");
    assert_eq!(
        e.host.rename(&OP, "/src", "/b", false).unwrap_err().kind(),
        ErrorKind::NotADirectory
    );
    assert_eq!(
        e.host.rename(&OP, "/src2", "/c", false).unwrap_err().kind(),
        ErrorKind::IsADirectory
    );
    assert_eq!(e.read("/src/d/z.md"), "z");
    // Reserved directories never become files.
    for p in [
        "/memory",
        "/memory/private",
        "/memory/private/bob",
        "/trash",
    ] {
        assert_eq!(
            e.host.write(&OP, p, put("x")).unwrap_err().kind(),
            ErrorKind::IsADirectory,
            "{p}"
        );
    }
}

#[test]
fn an_expired_node_goes_to_the_trash_with_its_history_as_its_ttl_setter() {
    let e = env();
    e.write("/keep.md", "keep");
    let alice = Caller::Agent("alice".into());
    e.host
        .write(
            &alice,
            "/gone.md",
            WriteInput::Put(Put {
                content: Some("secret".into()),
                expires_at: Some(Some(avm_core::time::now_micros() + 30_000)),
                ..Put::default()
            }),
        )
        .unwrap();
    e.host
        .write(&OP, "/keep.md:links", WriteInput::Text("/gone.md".into()))
        .unwrap();
    std::thread::sleep(Duration::from_millis(50));
    // Hidden at once, everywhere.
    assert_eq!(
        e.host.read(&OP, "/gone.md").unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert!(!e.read("/:search?q=secret").contains("/gone.md"));
    // A write after the once-a-second check moves it to the trash, whole, as a delete by alice
    // would.
    std::thread::sleep(Duration::from_millis(1100));
    e.write("/other.md", "x");
    let meta = e.host.read(&OP, "/trash/gone.md:meta").unwrap().data();
    assert_eq!(meta["deleted_by"], "alice", "{meta}");
    assert!(meta["expired_at"].is_string(), "{meta}");
    assert_eq!(e.read("/trash/gone.md"), "secret");
    assert_eq!(e.read("/gone.md?version=1"), "secret", "history is kept");
    let events = e.mem.memory_store().events_after(0, 1000).unwrap();
    assert!(
        events.iter().any(|ev| ev.kind == "expire"
            && ev.path == "/gone.md"
            && ev.agent.as_deref() == Some("alice")),
        "{events:?}"
    );
    // The trash copy has no TTL of its own: it stays until the trash is purged.
    std::thread::sleep(Duration::from_millis(50));
    e.write("/other2.md", "x");
    assert_eq!(e.read("/trash/gone.md"), "secret");
}

#[test]
fn ttls_are_set_only_by_those_who_may_remove_the_node_and_never_in_the_past() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("avm.db");
    let (mem, _pg) = fresh_provider(&db, StoreOptions::default());
    let mut agents = std::collections::BTreeMap::new();
    agents.insert(
        "root".to_string(),
        avm_core::policy::AgentConfig {
            role: Some(avm_core::policy::Role::Admin),
            ..Default::default()
        },
    );
    let policy = avm_core::Policy::new(avm_core::policy::Access::Rw, &[], &agents).unwrap();
    let host = Host::new(vec![Mount::new("/**", Arc::new(mem.clone()))])
        .unwrap()
        .with_policy(policy);
    let (dan, bob, root) = (
        Caller::Agent("dan".into()),
        Caller::Agent("bob".into()),
        Caller::Agent("root".into()),
    );
    host.write(&dan, "/memory/shared/team/plan.md", put("the plan"))
        .unwrap();
    let ttl = |who: &Caller, t: &str| {
        host.write(
            who,
            "/memory/shared/team/plan.md:ttl",
            WriteInput::Text(t.into()),
        )
    };
    let err = ttl(&bob, "1s").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    assert!(err.message().contains("dan"), "{err}");
    let meta = WriteInput::Put(Put {
        meta: Some(
            serde_json::from_value(serde_json::json!({"expires_at": "2099-01-01T00:00:00Z"}))
                .unwrap(),
        ),
        ..Put::default()
    });
    assert_eq!(
        host.write(&bob, "/memory/shared/team/plan.md", meta)
            .unwrap_err()
            .kind(),
        ErrorKind::PermissionDenied,
        "nor through metadata"
    );
    for zero in ["0s", "0"] {
        assert_eq!(
            ttl(&dan, zero).unwrap_err().kind(),
            ErrorKind::InvalidInput,
            "{zero}"
        );
    }
    let forged = WriteInput::Put(Put {
        meta: Some(serde_json::from_value(serde_json::json!({"expires_by": "carol"})).unwrap()),
        ..Put::default()
    });
    assert_eq!(
        host.write(&dan, "/memory/shared/team/plan.md", forged)
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidInput
    );
    ttl(&dan, "2h").unwrap();
    ttl(&root, "3h").unwrap();
    ttl(&OP, "never").unwrap();
    ttl(&dan, "1d").unwrap();
    let m = host
        .read(&OP, "/memory/shared/team/plan.md:meta")
        .unwrap()
        .data();
    assert_eq!(m["expires_by"], "dan", "{m}");
    // Bob may time out what is his own.
    host.write(&bob, "/memory/private/bob/n.md", put("mine"))
        .unwrap();
    host.write(
        &bob,
        "/memory/private/bob/n.md:ttl",
        WriteInput::Text("5m".into()),
    )
    .unwrap();
}

#[test]
fn whole_node_operations_refuse_suffixes_and_meta_writes_refuse_content() {
    let e = env();
    e.write("/n.md", "x");
    assert_eq!(
        e.host
            .remove(&OP, "/n.md:tags", RemoveOptions::default())
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidInput
    );
    assert_eq!(
        e.host
            .rename(&OP, "/n.md", "/m.md:meta", false)
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidInput
    );
    let err = e
        .host
        .write(
            &OP,
            "/n.md:meta",
            WriteInput::Put(Put {
                content: Some("y".into()),
                ..Put::default()
            }),
        )
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert_eq!(e.read("/n.md"), "x");
    // Links given in the query may hold spaces; /private expands for agents.
    e.write("/my file.md", "spaces");
    e.host
        .write(
            &OP,
            "/n.md:links?target=%2Fmy%20file.md&type=cites",
            WriteInput::Text(String::new()),
        )
        .unwrap();
    assert!(e.read("/n.md:links").contains("--> [cites] /my file.md"));
    let alice = Caller::Agent("alice".into());
    e.host.write(&alice, "/private/a.md", put("a")).unwrap();
    e.host.write(&alice, "/private/b.md", put("b")).unwrap();
    e.host
        .write(
            &alice,
            "/private/a.md:links",
            WriteInput::Text("/private/b.md".into()),
        )
        .unwrap();
    assert!(
        e.host
            .read(&alice, "/private/a.md:links")
            .unwrap()
            .text
            .contains("/memory/private/alice/b.md")
    );
}

#[test]
fn trash_copies_keep_readable_history_and_records_must_be_whole() {
    let e = env();
    e.write("/t.md", "one");
    e.host
        .remove(&OP, "/t.md", RemoveOptions::default())
        .unwrap();
    assert_eq!(e.read("/trash/t.md?version=1"), "one");
    let rec: serde_json::Value = serde_json::from_str(&e.read("/trash/t.md:record")).unwrap();
    let mut bad = rec.clone();
    bad["version"] = json!(7);
    let err = e
        .host
        .write(&OP, "/trash/t.md?force=1", WriteInput::Record(bad))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    let mut empty = rec;
    empty["versions"] = json!([]);
    assert!(
        e.host
            .write(&OP, "/trash/t.md?force=1", WriteInput::Record(empty))
            .is_err()
    );
}

#[test]
fn a_schema_4_database_is_migrated_in_place_with_times_and_directory_rows() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("old.db");
    {
        let e = MemoryProvider::open(&db, StoreOptions::default()).unwrap();
        let h = Host::new(vec![Mount::new("/**", Arc::new(e.clone()))]).unwrap();
        h.write(&OP, "/memory/shared/a/b/x.md", put("old text"))
            .unwrap();
        e.store().sync().unwrap();
    }
    // Make it what schema 4 wrote: no file attributes, no directory rows.
    {
        let c = rusqlite::Connection::open(&db).unwrap();
        for col in [
            "ftype", "mode", "uid", "gid", "mtime_ns", "ctime_ns", "atime_ns",
        ] {
            c.execute_batch(&format!("ALTER TABLE nodes DROP COLUMN {col}"))
                .unwrap();
        }
        c.execute_batch("DROP TABLE dir_attrs; PRAGMA user_version = 4;")
            .unwrap();
    }
    let mem = MemoryProvider::open(&db, StoreOptions::default()).unwrap();
    let h = Host::new(vec![Mount::new("/**", Arc::new(mem.clone()))]).unwrap();
    let st = h.stat(&OP, "/memory/shared/a/b/x.md").unwrap();
    let updated_ns = st.updated_at.unwrap() * 1000;
    assert_eq!(
        st.attrs.mtime,
        Some(updated_ns),
        "mtime starts as updated_at"
    );
    assert_eq!(
        h.read(&OP, "/memory/shared/a/b/x.md").unwrap().text,
        "old text"
    );
    // Every directory on the way has its row: link counts see the subdirectories.
    assert_eq!(
        h.stat(&OP, "/memory/shared/a").unwrap().attrs.nlink,
        Some(3)
    );
    assert_eq!(
        h.stat(&OP, "/memory/shared/a/b").unwrap().attrs.nlink,
        Some(2)
    );
    // And the node takes binary content and attributes now.
    h.write(
        &OP,
        "/memory/shared/a/b/x.md",
        WriteInput::Put(Put {
            content: Some(avm_core::Content::Bytes(vec![0, 1, 2])),
            ..Put::default()
        }),
    )
    .unwrap();
    assert_eq!(
        h.read(&OP, "/memory/shared/a/b/x.md").unwrap().bytes(),
        [0, 1, 2]
    );
}

#[test]
fn binary_content_round_trips_through_export_and_import_and_stays_out_of_search() {
    let e = env();
    let raw = vec![0u8, 0xff, b'q', b'u', b'o', b'k', b'k', b'a', 0x80];
    e.host
        .write(
            &OP,
            "/bin/x",
            WriteInput::Put(Put {
                content: Some(avm_core::Content::from_bytes(raw.clone())),
                ..Put::default()
            }),
        )
        .unwrap();
    e.write("/bin/t.md", "quokka text");
    let hits = e.search(&OP, "quokka");
    assert_eq!(hits, vec!["/bin/t.md"], "binary content is not indexed");
    let rec = e.host.read(&OP, "/bin/x:record").unwrap().data();
    assert_eq!(rec["encoding"], "base64", "{rec}");
    let e2 = env();
    e2.host
        .write(&OP, "/bin/x?force=true", WriteInput::Record(rec))
        .unwrap();
    assert_eq!(e2.host.read(&OP, "/bin/x").unwrap().bytes(), raw);
}

#[test]
fn posix_rename_replaces_keeps_history_and_exchange_swaps() {
    let e = env();
    e.host
        .write(
            &OP,
            "/d/keep.md",
            WriteInput::Put(Put {
                content: Some("one".into()),
                tags: Some(vec!["kept".into()]),
                ..Put::default()
            }),
        )
        .unwrap();
    e.write("/d/tmp", "two");
    e.host
        .rename_posix(&OP, "/d/tmp", "/d/keep.md", avm_core::Rename::Replace)
        .unwrap();
    assert_eq!(e.read("/d/keep.md"), "two");
    let n = e.host.read(&OP, "/d/keep.md").unwrap().data();
    assert_eq!(n["meta"]["tags"], json!(["kept"]));
    assert!(e.read("/d/keep.md:history").starts_with("v2 [update]"));
    assert_eq!(
        e.host.stat(&OP, "/d/tmp").unwrap_err().kind(),
        ErrorKind::NotFound
    );
    e.write("/x/a", "A");
    e.write("/y/b", "B");
    e.host
        .rename_posix(&OP, "/x", "/y", avm_core::Rename::Exchange)
        .unwrap();
    assert_eq!(e.read("/x/b"), "B");
    assert_eq!(e.read("/y/a"), "A");
    let err = e
        .host
        .rename_posix(&OP, "/x", "/y", avm_core::Rename::NoReplace)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists);
    let err = e
        .host
        .rename_posix(&OP, "/x", "/y", avm_core::Rename::Replace)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotEmpty);
}

/// A host over a fresh store with `rules` (pattern, access) for agents.
fn env_with_rules(rules: &[(&str, avm_core::policy::Access)]) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("avm.db");
    let (mem, pg) = fresh_provider(&db, StoreOptions::default());
    let rules: Vec<avm_core::policy::PermissionRule> = rules
        .iter()
        .map(|(p, a)| avm_core::policy::PermissionRule {
            pattern: p.to_string(),
            access: *a,
        })
        .collect();
    let policy =
        avm_core::Policy::new(avm_core::policy::Access::Rw, &rules, &Default::default()).unwrap();
    let host = Host::new(vec![Mount::new("/**", Arc::new(mem.clone()))])
        .unwrap()
        .with_policy(policy);
    Env {
        _dir: dir,
        _pg: pg,
        db,
        host,
        mem,
    }
}

/// Every read-side view of `scope` `caller` can ask for, joined: listings, export, tag counts,
/// stats, search.
fn everything_seen(e: &Env, caller: &Caller, scope: &str, word: &str) -> String {
    let mut all = String::new();
    for addr in [
        format!("{scope}:export"),
        format!("{scope}:tags"),
        format!("{scope}:stats"),
        format!("{scope}:list?recursive=true"),
        format!("{scope}:search?q={word}"),
    ] {
        if let Ok(o) = e.host.read(caller, &addr) {
            all.push_str(&o.text);
            all.push_str(&o.data().to_string());
        }
    }
    if let Ok(l) = e.host.list(
        caller,
        scope,
        &ListOptions {
            recursive: true,
            limit: None,
            offset: 0,
        },
    ) {
        for en in l.entries {
            all.push_str(&en.path);
        }
    }
    if let Ok(hits) = e.host.search(
        caller,
        scope,
        &SearchOptions {
            query: word.into(),
            limit: 50,
        },
    ) {
        for h in hits {
            all.push_str(&h.path);
            all.push_str(&h.snippet);
        }
    }
    all
}

#[test]
fn archived_and_trashed_private_memories_stay_private_however_nested() {
    let e = env();
    let alice = Caller::Agent("alice".into());
    let bob = Caller::Agent("bob".into());
    e.host
        .write(
            &alice,
            "/memory/private/alice/a/x.md",
            WriteInput::Put(Put {
                content: Some("zanzibarite secret".into()),
                tags: Some(vec!["zanzitag".into()]),
                ..Put::default()
            }),
        )
        .unwrap();
    e.host
        .rename(
            &alice,
            "/memory/private/alice/a/x.md",
            "/archive/memory/private/alice/a/x.md",
            false,
        )
        .unwrap();
    e.host
        .remove(
            &alice,
            "/archive/memory/private/alice/a/x.md",
            RemoveOptions::default(),
        )
        .unwrap();
    let l = e.read("/trash:list?recursive=true");
    assert!(l.contains("x.md"), "the trash of an archive exists: {l}");
    for scope in ["/", "/trash", "/archive", "/trash/archive"] {
        let seen = everything_seen(&e, &bob, scope, "zanzibarite");
        assert!(
            !seen.contains("zanzibarite") && !seen.contains("zanzitag") && !seen.contains("x.md"),
            "bob sees alice's archived-then-trashed memory through {scope}: {seen}"
        );
    }
    let err = e
        .host
        .read(&bob, "/trash/archive/memory/private/alice/a/x.md")
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied);
    let err = e
        .host
        .rename(
            &bob,
            "/trash/archive/memory/private/alice/a/x.md",
            "/memory/shared/stolen.md",
            false,
        )
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied);
    // Alice still sees it.
    let seen = everything_seen(&e, &alice, "/trash", "zanzibarite");
    assert!(seen.contains("zanzibarite"), "{seen}");
}

#[test]
fn a_memory_shared_with_named_agents_is_hidden_from_everyone_else_everywhere() {
    let e = env();
    let dan = Caller::Agent("dan".into());
    let bob = Caller::Agent("bob".into());
    let carol = Caller::Agent("carol".into());
    e.host
        .write(
            &dan,
            "/memory/shared/team/plan.md",
            WriteInput::Put(Put {
                content: Some("quetzalplan for carol".into()),
                tags: Some(vec!["quetztag".into()]),
                ..Put::default()
            }),
        )
        .unwrap();
    e.host
        .write(
            &dan,
            "/memory/shared/team/plan.md:shared",
            WriteInput::Text("carol".into()),
        )
        .unwrap();
    e.host
        .write(
            &dan,
            "/memory/shared/team/open.md:links",
            WriteInput::Text(String::new()),
        )
        .ok();
    e.write("/memory/shared/team/open.md", "open note");
    e.host
        .write(
            &OP,
            "/memory/shared/team/open.md:links",
            WriteInput::Text("/memory/shared/team/plan.md related".into()),
        )
        .unwrap();
    let seen = everything_seen(&e, &bob, "/memory", "quetzalplan");
    assert!(
        !seen.contains("quetzalplan") && !seen.contains("quetztag") && !seen.contains("plan.md"),
        "bob sees what was shared with carol only: {seen}"
    );
    for addr in [
        "/memory/shared/team/plan.md",
        "/memory/shared/team/plan.md:meta",
        "/memory/shared/team/plan.md:history",
    ] {
        let err = e.host.read(&bob, addr).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{addr}");
        assert!(!err.message().contains("quetzal"), "{err}");
    }
    let links = e.read("/memory/shared/team/open.md:links");
    assert!(
        links.contains("plan.md"),
        "the operator sees the link: {links}"
    );
    let bob_links = e
        .host
        .read(&bob, "/memory/shared/team/open.md:links")
        .unwrap()
        .text;
    assert!(!bob_links.contains("plan.md"), "{bob_links}");
    // Bob can neither overwrite, move nor delete it.
    assert_eq!(
        e.host
            .write(&bob, "/memory/shared/team/plan.md", put("bob was here"))
            .unwrap_err()
            .kind(),
        ErrorKind::PermissionDenied
    );
    assert!(
        e.host
            .remove(
                &bob,
                "/memory/shared/team/plan.md",
                RemoveOptions::default()
            )
            .is_err()
    );
    e.host
        .remove(
            &bob,
            "/memory/shared/team",
            RemoveOptions {
                recursive: true,
                hard: true,
            },
        )
        .unwrap();
    // Carol and dan see it; it is untouched.
    assert_eq!(
        e.host
            .read(&carol, "/memory/shared/team/plan.md")
            .unwrap()
            .text,
        "quetzalplan for carol"
    );
    let seen = everything_seen(&e, &carol, "/memory", "quetzalplan");
    assert!(seen.contains("quetzalplan"), "{seen}");
    assert_eq!(
        e.host
            .read(&dan, "/memory/shared/team/plan.md")
            .unwrap()
            .text,
        "quetzalplan for carol"
    );
}

#[test]
fn subtree_operations_obey_the_rules_on_every_node_they_touch() {
    use avm_core::policy::Access;
    let e = env_with_rules(&[
        ("/memory/shared/hr/**", Access::None),
        ("/memory/shared/ann/**", Access::Ro),
    ]);
    let bob = Caller::Agent("bob".into());
    e.write("/memory/shared/hr/salaries.md", "wombatpay");
    e.write("/memory/shared/ann/news.md", "announcement");
    e.write("/memory/shared/free/x.md", "free");
    for (src, dst) in [
        ("/memory/shared", "/memory/s2"),
        ("/memory/shared/ann", "/memory/shared/ann2"),
    ] {
        let err = e.host.rename(&bob, src, dst, false).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{src}: {err}");
        let err = e
            .host
            .rename_posix(&bob, src, dst, avm_core::Rename::Replace)
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{src}: {err}");
    }
    let err = e
        .host
        .remove(
            &bob,
            "/memory/shared",
            RemoveOptions {
                recursive: true,
                hard: true,
            },
        )
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    assert!(
        err.message().contains("/memory/shared/ann/news.md")
            || err.message().contains("/memory/shared/hr"),
        "{err}"
    );
    // Nothing moved or went.
    assert_eq!(e.read("/memory/shared/ann/news.md"), "announcement");
    assert_eq!(e.read("/memory/shared/hr/salaries.md"), "wombatpay");
    assert_eq!(e.read("/memory/shared/free/x.md"), "free");
    // Reads of whole subtrees leave out what the rules hide.
    let seen = everything_seen(&e, &bob, "/memory", "wombatpay");
    assert!(
        !seen.contains("wombatpay") && !seen.contains("salaries"),
        "{seen}"
    );
    assert!(seen.contains("announcement"), "ro is readable: {seen}");
}

#[test]
fn remember_time_stamps_are_not_indexed_and_an_old_index_is_rebuilt_without_them() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("old.db");
    let memory = "# Kestrel\n\n*Created: 2026-12-03 12:00 UTC*\n\nkestrel quorum timeout\n";
    let vocab = |term: &str| -> i64 {
        let c = rusqlite::Connection::open(&db).unwrap();
        c.query_row(
            "SELECT coalesce(sum(doc), 0) FROM nodes_fts_vocab WHERE term = ?1",
            [term],
            |r| r.get(0),
        )
        .unwrap()
    };
    {
        let e = MemoryProvider::open(&db, StoreOptions::default()).unwrap();
        let h = Host::new(vec![Mount::new("/**", Arc::new(e.clone()))]).unwrap();
        h.write(&OP, "/memory/k.md", put(memory)).unwrap();
        e.store().sync().unwrap();
    }
    assert_eq!(vocab("created"), 0, "the stamp is not indexed");
    assert_eq!(vocab("kestrel"), 1);
    // What an older avm left: the raw content indexed, stamps included, at schema 5.
    {
        let c = rusqlite::Connection::open(&db).unwrap();
        c.execute_batch(
            "INSERT INTO nodes_fts(nodes_fts) VALUES('rebuild'); PRAGMA user_version = 5;",
        )
        .unwrap();
    }
    assert_eq!(vocab("created"), 1);
    let e = MemoryProvider::open(&db, StoreOptions::default()).unwrap();
    let h = Host::new(vec![Mount::new("/**", Arc::new(e.clone()))]).unwrap();
    assert_eq!(vocab("created"), 0, "rebuilt without the stamp");
    let found = |q: &str| {
        h.search(
            &OP,
            "/",
            &avm_core::provider::SearchOptions {
                query: q.into(),
                limit: 10,
            },
        )
        .unwrap()
        .len()
    };
    assert_eq!(found("created"), 0);
    assert_eq!(found("kestrel quorum"), 1);
    // Deleting removes exactly what was indexed: nothing of it is left in the index.
    h.remove(
        &OP,
        "/memory/k.md",
        RemoveOptions {
            recursive: false,
            hard: true,
        },
    )
    .unwrap();
    e.store().sync().unwrap();
    assert_eq!(vocab("kestrel"), 0);
    assert_eq!(vocab("quorum"), 0);
}

/// A query of plain words returns exactly the best ten memories by BM25 over every memory the
/// caller may see (computed here by brute force), whatever its mix of rare and common words,
/// prefixes that match several words included; other agents' private memories never count.
#[test]
fn search_of_plain_words_is_the_exact_bm25_top_ten() {
    let e = env();
    // A tiny deterministic generator (xorshift), so a failure names its query.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = |n: usize| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % n as u64) as usize
    };
    // Words drawn Zipf-like, so some are in most memories and some in a few; `lim`, `limit`
    // and `limits` share a prefix.
    let mut vocab: Vec<String> = (0..80)
        .map(|i| format!("{}{}", ["ka", "ro", "ve", "su"][i % 4], i))
        .collect();
    vocab.extend(["lim", "limit", "limits", "risk", "risky"].map(String::from));
    let pick = |r: usize| vocab[(r * r / vocab.len()).min(vocab.len() - 1)].clone();
    let mut docs: Vec<(String, Vec<String>)> = Vec::new();
    let mut batch = Vec::new();
    // More memories than search looks at unranked, so common words are walked in rank order.
    for i in 0..1500 {
        let len = 3 + next(60);
        let words: Vec<String> = (0..len).map(|_| pick(next(vocab.len()))).collect();
        let path = match i % 3 {
            0 => format!("/memory/private/alice/n{i}.md"),
            1 => format!("/memory/private/bob/n{i}.md"),
            _ => format!("/memory/shared/team/n{i}.md"),
        };
        batch.push((path.clone(), put(&words.join(" "))));
        docs.push((path, words));
    }
    for r in e.host.write_many(&OP, batch) {
        r.unwrap();
    }
    let n = docs.len() as f64;
    let avgdl = docs.iter().map(|(_, w)| w.len()).sum::<usize>() as f64 / n;
    let alice = Caller::Agent("alice".into());
    for round in 0..40 {
        let k = 2 + next(4);
        let mut query: Vec<String> = (0..k).map(|_| pick(next(vocab.len()))).collect();
        if round % 5 == 0 {
            query.push("lim".into());
        }
        query.sort();
        query.dedup();
        if query.len() < 2 {
            continue;
        }
        // Document frequency as the vocabulary counts it: per word a prefix matches.
        let mut df: Vec<(f64, String)> = query
            .iter()
            .map(|q| {
                let per_word: usize = vocab
                    .iter()
                    .filter(|v| v.starts_with(q.as_str()))
                    .map(|v| docs.iter().filter(|(_, w)| w.contains(v)).count())
                    .sum();
                ((per_word as f64).min(n), q.clone())
            })
            .collect();
        df.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
        let mut want: Vec<(f64, String)> = docs
            .iter()
            .filter(|(p, _)| !p.starts_with("/memory/private/bob/"))
            .filter_map(|(p, words)| {
                let norm = 1.2 * (0.25 + 0.75 * words.len() as f64 / avgdl);
                let mut score = 0.0;
                let mut any = false;
                for (d, q) in &df {
                    let tf = words.iter().filter(|w| w.starts_with(q.as_str())).count() as f64;
                    if tf > 0.0 {
                        any = true;
                        let idf = ((n - d + 0.5) / (d + 0.5)).ln();
                        let idf = if idf <= 0.0 { 1e-6 } else { idf };
                        score += idf * tf * 2.2 / (tf + norm);
                    }
                }
                any.then(|| (score, p.clone()))
            })
            .collect();
        want.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        want.truncate(10);
        let want: Vec<String> = want.into_iter().map(|(_, p)| p).collect();
        let q = query.join(" ");
        assert_eq!(e.search(&alice, &q), want, "query {q:?}");
    }
}

/// `n` memories `/n/{i}.md` holding "alpha note {i}".
fn alpha_notes(e: &Env, n: usize) {
    let batch: Vec<_> = (0..n)
        .map(|i| (format!("/n/{i}.md"), put(&format!("alpha note {i}"))))
        .collect();
    for r in e.host.write_many(&OP, batch) {
        r.unwrap();
    }
}

/// The document counts of `words` as a search over `conn` finds them, remembered in `cache`.
fn counts(
    conn: &rusqlite::Connection,
    words: &[String],
    cache: &std::sync::Mutex<crate::sqlite::topk::DfCache>,
) -> rusqlite::Result<Vec<crate::sqlite::topk::Freq>> {
    let (rows, tokens) = crate::sqlite::topk::index_size(conn)?.expect("an index");
    crate::sqlite::topk::doc_freqs(conn, words, cache, rows, tokens)
}

/// A common word's count is remembered between searches, and so is that it is a whole word
/// (looked up as a term, not a prefix), until a longer word starting with it is written.
#[test]
fn a_remembered_whole_word_becomes_a_prefix_when_a_longer_word_arrives() {
    let e = env();
    alpha_notes(&e, 1200);
    let cache = std::sync::Mutex::new(crate::sqlite::topk::DfCache::default());
    let conn = rusqlite::Connection::open(&e.db).unwrap();
    let freq =
        |conn: &rusqlite::Connection| counts(conn, &["alpha".to_string()], &cache).unwrap()[0];
    let f = freq(&conn);
    assert!(f.whole && f.df == 1200.0, "{f:?}");
    e.write("/n/new.md", "alphabet soup");
    let f = freq(&conn);
    assert!(!f.whole, "{f:?}");
    assert_eq!(
        e.search(&OP, "alpha soup").first().map(String::as_str),
        Some("/n/new.md")
    );
}

/// While the index does not change, every word's count (rare words too) is remembered as it
/// was: a search asks the vocabulary nothing. Any change to the index counts them again.
#[test]
fn counts_are_remembered_while_the_index_does_not_change() {
    let e = env();
    alpha_notes(&e, 20);
    let cache = std::sync::Mutex::new(crate::sqlite::topk::DfCache::default());
    let conn = rusqlite::Connection::open(&e.db).unwrap();
    let words = ["alpha".to_string(), "not".to_string()];
    let freq = |conn: &rusqlite::Connection| counts(conn, &words, &cache);
    let first = freq(&conn).unwrap();
    assert_eq!(first[0].df, 20.0);
    assert!(!first[1].whole, "{first:?}");
    // Without the vocabulary the counts still come, from memory.
    conn.execute_batch("DROP TABLE nodes_fts_vocab").unwrap();
    assert_eq!(freq(&conn).unwrap(), first);
    // After a change to the index they are counted again, from the vocabulary (gone here).
    e.write("/n/more.md", "alpha again");
    assert!(freq(&conn).is_err());
}

/// A common word's count made by one process is saved in the database, and a later process
/// uses it instead of reading every posting of the word again, until the index has changed by
/// more than 2% of the count.
#[test]
fn a_common_words_count_is_saved_for_the_next_process() {
    let e = env();
    alpha_notes(&e, 1200);
    assert_eq!(
        e.search(&OP, "alpha note 7").first().map(String::as_str),
        Some("/n/7.md")
    );
    e.mem.store().sync().unwrap();
    let conn = rusqlite::Connection::open(&e.db).unwrap();
    let saved = |conn: &rusqlite::Connection| -> i64 {
        conn.query_row("SELECT doc FROM term_df WHERE term = 'alpha'", [], |r| {
            r.get(0)
        })
        .unwrap()
    };
    assert_eq!(saved(&conn), 1200);
    // What a new process (an empty cache) finds: the saved count, not the vocabulary's.
    conn.execute("UPDATE term_df SET doc = 1190 WHERE term = 'alpha'", [])
        .unwrap();
    let freq = |conn: &rusqlite::Connection| {
        let cache = std::sync::Mutex::new(crate::sqlite::topk::DfCache::default());
        counts(conn, &["alpha".to_string()], &cache).unwrap()[0]
    };
    assert_eq!(freq(&conn).df, 1190.0);
    // 30 more memories holding it (over 2% of 1,190): counted again.
    let batch: Vec<_> = (0..30)
        .map(|i| (format!("/m/{i}.md"), put(&format!("alpha more {i}"))))
        .collect();
    for r in e.host.write_many(&OP, batch) {
        r.unwrap();
    }
    assert_eq!(freq(&conn).df, 1230.0);
}

#[test]
fn the_vector_stamp_changes_with_every_change_to_a_models_vectors_and_only_then() {
    use avm_core::storage::{Node, VectorDoc};
    let e = env();
    for i in 0..3 {
        e.write(&format!("/memory/v{i}.md"), &format!("note {i}"));
    }
    let s = e.mem.memory_store();
    let doc = |n: &Node, x: f32| VectorDoc {
        node_id: n.id,
        hash: n.hash.clone(),
        vector: vec![x, 0.0],
    };
    let nodes = s.vectors_stale("a", 10).unwrap();
    assert_eq!(nodes.len(), 3);
    let mut last = s.vectors_stamp("a").unwrap();
    let mut changed = |what: &str| {
        let now = s.vectors_stamp("a").unwrap();
        assert_eq!(now, s.vectors_all("a").unwrap().1, "{what}: one stamp");
        let moved = now != last;
        last = now;
        moved
    };
    s.vectors_put(0, "a", nodes.iter().map(|n| doc(n, 1.0)).collect())
        .unwrap();
    assert!(changed("first vectors"));
    assert!(!changed("nothing written"));
    s.vectors_put(0, "a", vec![doc(&nodes[0], 0.5)]).unwrap();
    assert!(changed("one vector written again"));
    // The vector of another node, not the newest, moves to model b: model a lost it.
    s.vectors_put(0, "b", vec![doc(&nodes[1], 1.0)]).unwrap();
    assert!(changed("a vector left for another model"));
    assert_eq!(s.vectors_all("a").unwrap().0.len(), 2);
    // A stale hash writes nothing.
    let mut old = doc(&nodes[2], 0.25);
    old.hash = "not its hash".into();
    s.vectors_put(0, "b", vec![old]).unwrap();
    assert!(!changed("a vector of a changed node is not written"));
    // Removing a node for good takes its vector.
    let gone = RemoveOptions {
        recursive: true,
        hard: false,
    };
    e.host.remove(&OP, "/memory/v2.md", gone).unwrap();
    e.host.remove(&OP, "/trash", gone).unwrap();
    assert!(changed("a node with a vector deleted"));
    assert_eq!(s.vectors_all("a").unwrap().0.len(), 1);
}
