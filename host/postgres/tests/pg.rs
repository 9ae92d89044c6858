//! avm-postgres against a real PostgreSQL server (`AVM_TEST_POSTGRES`; each test makes and
//! drops its own database). Without a server these tests say they skipped, except where
//! `REQUIRE_POSTGRES` is set (CI), where they fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use avm_core::{Error, ErrorKind};
use avm_postgres::testing::TestDb;
use avm_postgres::{Failure, Migration, Pg, PgOptions, Queries, lock_log, migrate, notify};

fn db(test: &str) -> Option<TestDb> {
    TestDb::create(test).unwrap_or_else(|e| panic!("{e}"))
}

fn pg(db: &TestDb) -> Pg {
    Pg::connect(db.url(), PgOptions::default()).unwrap_or_else(|e| panic!("{e}"))
}

const DEMO: &[Migration] = &[
    Migration {
        version: 1,
        name: "notes",
        sql: "CREATE TABLE notes(id bigserial PRIMARY KEY, body text NOT NULL)",
    },
    Migration {
        version: 2,
        name: "note tags",
        sql: "ALTER TABLE notes ADD COLUMN tags text[] NOT NULL DEFAULT '{}';
              CREATE INDEX notes_tags ON notes USING gin(tags)",
    },
];

#[test]
fn hosts_starting_at_once_apply_each_migration_exactly_once() {
    let Some(db) = db("migrate") else { return };
    let url = db.url().to_string();
    let start = Arc::new(Barrier::new(8));
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let (url, start) = (url.clone(), start.clone());
            std::thread::spawn(move || {
                let pg = Pg::connect(&url, PgOptions::default())?;
                start.wait();
                migrate(&pg, "demo", DEMO)
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap().unwrap_or_else(|e| panic!("{e}")), 2);
    }
    let pg = pg(&db);
    let mut c = pg.conn().unwrap();
    let rows: Vec<(i32, String)> = c
        .query(
            "SELECT version, name FROM avm_migrations WHERE component = 'demo' ORDER BY version",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        rows,
        vec![(1, "notes".to_string()), (2, "note tags".to_string())]
    );
    // Both migrations took effect, and a later start changes nothing.
    c.execute("INSERT INTO notes(body, tags) VALUES ('x', '{a}')", &[])
        .unwrap();
    assert_eq!(migrate(&pg, "demo", DEMO).unwrap(), 2);
    // Components are versioned apart.
    assert_eq!(migrate(&pg, "other", &DEMO[..0]).unwrap(), 0);
}

#[test]
fn a_database_a_newer_avm_migrated_is_refused_by_name() {
    let Some(db) = db("newer") else { return };
    let pg = pg(&db);
    migrate(&pg, "demo", DEMO).unwrap();
    let e = migrate(&pg, "demo", &DEMO[..1]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    assert!(
        e.to_string().contains("schema 2") && e.to_string().contains("upgrade avm"),
        "{e}"
    );
    // Misnumbered migrations are a bug in avm, caught before anything runs.
    let bad = [Migration {
        version: 2,
        name: "gap",
        sql: "SELECT 1",
    }];
    assert_eq!(
        migrate(&pg, "bad", &bad).unwrap_err().kind(),
        ErrorKind::Internal
    );
}

#[test]
fn a_failing_migration_rolls_back_and_says_which() {
    let Some(db) = db("failing") else { return };
    let pg = pg(&db);
    let broken = [
        DEMO[0],
        Migration {
            version: 2,
            name: "broken",
            sql: "ALTER TABLE notes ADD COLUMN n int; SELECT * FROM no_such_table",
        },
    ];
    let e = migrate(&pg, "demo", &broken).unwrap_err();
    assert!(e.to_string().contains("migration 2 (broken)"), "{e}");
    let mut c = pg.conn().unwrap();
    // Migration 1 stands; none of migration 2 does.
    let cols: i64 = c
        .query_one(
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 'notes' AND column_name = 'n'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(cols, 0);
    assert_eq!(migrate(&pg, "demo", DEMO).unwrap(), 2);
}

/// Writers commit out of sequence order on purpose (each sleeps between its insert and its
/// commit); a follower reading `seq > last` as it goes must still see every row exactly once.
#[test]
fn a_follower_of_an_ordered_log_sees_every_row_once_while_writers_race() {
    let Some(db) = db("ordered") else { return };
    let pg = pg(&db);
    pg.conn()
        .unwrap()
        .batch_execute(
            "CREATE TABLE log(seq bigserial PRIMARY KEY, writer int NOT NULL, n int NOT NULL)",
        )
        .unwrap();
    const WRITERS: i32 = 6;
    const EACH: i32 = 60;
    let done = Arc::new(AtomicBool::new(false));
    let follower = {
        let (pg, done) = (pg.clone(), done.clone());
        std::thread::spawn(move || {
            let mut c = pg.conn().unwrap();
            let mut last = 0i64;
            let mut seen: Vec<(i32, i32)> = Vec::new();
            loop {
                let finished = done.load(Ordering::SeqCst);
                for r in c
                    .query(
                        "SELECT seq, writer, n FROM log WHERE seq > $1 ORDER BY seq",
                        &[&last],
                    )
                    .unwrap()
                {
                    last = r.get(0);
                    seen.push((r.get(1), r.get(2)));
                }
                if finished {
                    return seen;
                }
                std::thread::sleep(Duration::from_micros(300));
            }
        })
    };
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let pg = pg.clone();
            std::thread::spawn(move || {
                for n in 0..EACH {
                    pg.transaction(|tx| {
                        lock_log(tx, "test:log")?;
                        tx.execute("INSERT INTO log(writer, n) VALUES ($1, $2)", &[&w, &n])?;
                        // Hold the transaction open a little, differently per writer.
                        std::thread::sleep(Duration::from_micros(
                            ((w * 7 + n * 13) % 5) as u64 * 400,
                        ));
                        Ok(())
                    })
                    .unwrap_or_else(|e| panic!("{e}"));
                }
            })
        })
        .collect();
    for h in writers {
        h.join().unwrap();
    }
    done.store(true, Ordering::SeqCst);
    let seen = follower.join().unwrap();
    let mut count: HashMap<(i32, i32), usize> = HashMap::new();
    for k in &seen {
        *count.entry(*k).or_default() += 1;
    }
    assert_eq!(
        seen.len(),
        (WRITERS * EACH) as usize,
        "rows seen by the follower"
    );
    assert!(count.values().all(|&c| c == 1), "a row was seen twice");
    // Each writer's rows arrive in the order it wrote them.
    for w in 0..WRITERS {
        let mine: Vec<i32> = seen.iter().filter(|k| k.0 == w).map(|k| k.1).collect();
        assert_eq!(mine, (0..EACH).collect::<Vec<_>>());
    }
}

#[test]
fn serialization_failures_are_retried_until_every_increment_counts() {
    let Some(db) = db("retry") else { return };
    let pg = pg(&db);
    pg.conn()
        .unwrap()
        .batch_execute("CREATE TABLE counter(id int PRIMARY KEY, v int NOT NULL); INSERT INTO counter VALUES (1, 0)")
        .unwrap();
    let tries = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let (pg, tries) = (pg.clone(), tries.clone());
            std::thread::spawn(move || {
                for _ in 0..20 {
                    pg.transaction(|tx| {
                        tries.fetch_add(1, Ordering::SeqCst);
                        tx.batch_execute("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE")?;
                        let v: i32 = tx
                            .query_one("SELECT v FROM counter WHERE id = 1", &[])?
                            .get(0);
                        std::thread::sleep(Duration::from_micros(200));
                        tx.execute("UPDATE counter SET v = $1 WHERE id = 1", &[&(v + 1)])?;
                        Ok(())
                    })
                    .unwrap_or_else(|e| panic!("{e}"));
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let v: i32 = pg
        .conn()
        .unwrap()
        .query_one("SELECT v FROM counter WHERE id = 1", &[])
        .unwrap()
        .get(0);
    assert_eq!(v, 80, "every acknowledged increment counts once");
    eprintln!("80 increments took {} tries", tries.load(Ordering::SeqCst));
}

#[test]
fn a_refused_change_rolls_back_and_is_not_retried() {
    let Some(db) = db("refused") else { return };
    let pg = pg(&db);
    pg.conn()
        .unwrap()
        .batch_execute("CREATE TABLE t(x int)")
        .unwrap();
    let mut runs = 0;
    let e = pg
        .transaction(|tx| {
            runs += 1;
            tx.execute("INSERT INTO t VALUES (1)", &[])?;
            Err::<(), _>(Failure::Refused(Error::new(
                ErrorKind::PermissionDenied,
                "not yours",
            )))
        })
        .unwrap_err();
    assert_eq!((e.kind(), runs), (ErrorKind::PermissionDenied, 1));
    let n: i64 = pg
        .conn()
        .unwrap()
        .query_one("SELECT count(*) FROM t", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
    // A duplicate key is AlreadyExists, named with the server.
    pg.conn()
        .unwrap()
        .batch_execute("CREATE UNIQUE INDEX t_x ON t(x); INSERT INTO t VALUES (2)")
        .unwrap();
    let e = pg
        .transaction(|tx| {
            tx.execute("INSERT INTO t VALUES (2)", &[])?;
            Ok(())
        })
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
    assert!(e.to_string().contains(pg.target()), "{e}");
}

#[test]
fn notifications_arrive_on_commit_and_never_on_rollback() {
    let Some(db) = db("notify") else { return };
    let pg = pg(&db);
    let mut l = pg.listen(&["avm_test"]).unwrap();
    let _ = pg.transaction(|tx| {
        notify(tx, "avm_test", "rolled back")?;
        Err::<(), _>(Failure::Refused(Error::invalid("no")))
    });
    assert_eq!(l.wait(Duration::from_millis(300)).unwrap(), vec![]);
    let sent = Instant::now();
    pg.transaction(|tx| {
        notify(tx, "avm_test", "42")?;
        notify(tx, "avm_test", "43")?;
        Ok(())
    })
    .unwrap();
    let mut notes = Vec::new();
    while notes.len() < 2 && sent.elapsed() < Duration::from_secs(10) {
        notes.extend(l.wait(Duration::from_secs(5)).unwrap());
    }
    let payloads: Vec<&str> = notes.iter().map(|n| n.payload.as_str()).collect();
    assert_eq!(payloads, vec!["42", "43"]);
    assert!(notes.iter().all(|n| n.channel == "avm_test"));
    eprintln!("notified in {:?}", sent.elapsed());
}

#[test]
fn a_missing_database_and_a_wrong_port_are_named_and_say_what_to_do() {
    // A port nothing listens on: no server needed.
    let e = Pg::connect(
        "postgres://avm:hunter2@127.0.0.1:1/avm",
        PgOptions {
            connect_timeout: Duration::from_secs(3),
            ..PgOptions::default()
        },
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("127.0.0.1:1") && msg.contains("is the server running"),
        "{msg}"
    );
    assert!(!msg.contains("hunter2"), "{msg}");
    let e = Pg::connect("postgres://h/db?sslmode=require", PgOptions::default()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");

    let Some(db) = db("missing") else { return };
    let url = db
        .url()
        .replace(&db.url()[db.url().rfind('/').unwrap()..], "/avm_no_such_db");
    let e = Pg::connect(&url, PgOptions::default()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(e.to_string().contains("createdb"), "{e}");
}
