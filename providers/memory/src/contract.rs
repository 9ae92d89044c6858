//! The engine contract: what every [`Engine`] must do, checked through the seam alone.
//!
//! Each check takes a fresh, empty engine and returns `Err(description)` instead of
//! panicking, so the calling test names the clause that failed. The SQLite engine runs the
//! suite in this crate's tests; another engine (PostgreSQL) runs the same [`run_all`].
//! Checks write under `/contract/` and into two agents' private namespaces.

use std::sync::Arc;

use avm_core::{Caller, Content, NodeKind, Policy, Put};

use crate::engine::Engine;
use crate::ops::{Outcome, WriteOp};

type Check = Result<(), String>;

/// One clause of the contract, named.
type Clause = (&'static str, fn(&dyn Engine) -> Check);

fn put_op(path: &str, text: &str, agent: Option<&str>) -> WriteOp {
    WriteOp::Put {
        path: path.into(),
        put: Put {
            content: Some(Content::Text(text.into())),
            ..Put::default()
        },
        agent: agent.map(str::to_string),
        admin: false,
    }
}

fn put(e: &dyn Engine, path: &str, text: &str, agent: Option<&str>) -> Result<Outcome, String> {
    e.apply(put_op(path, text, agent))
        .map_err(|err| format!("put {path}: {err}"))
}

fn text_of(e: &dyn Engine, path: &str) -> Result<Option<String>, String> {
    Ok(e.get(path)
        .map_err(|err| format!("get {path}: {err}"))?
        .map(|n| n.content.text_or_empty().to_string()))
}

fn agent(name: &str) -> Caller {
    Caller::Agent(name.into())
}

fn open_policy() -> Arc<Policy> {
    Arc::new(Policy::open())
}

fn ensure(ok: bool, what: impl FnOnce() -> String) -> Check {
    if ok { Ok(()) } else { Err(what()) }
}

/// A put is read back; a second put of other content is version 2; the history lists both,
/// newest first, and each old version keeps its content.
pub fn writes_are_read_back_with_their_history(e: &dyn Engine) -> Check {
    let p = "/contract/history.md";
    let first = put(e, p, "first words", None)?;
    let n = first.node.ok_or("a put answers with the node it wrote")?;
    ensure(n.version == 1 && n.path == p, || {
        format!("first put: {n:?}")
    })?;
    put(e, p, "second words", None)?;
    ensure(text_of(e, p)? == Some("second words".into()), || {
        format!("read after the second put: {:?}", text_of(e, p))
    })?;
    let h = e.history(p, 10).map_err(|err| err.to_string())?;
    ensure(
        h.iter().map(|v| v.version).collect::<Vec<_>>() == [2, 1],
        || format!("history, newest first: {h:?}"),
    )?;
    let (info, old) = e
        .version(p, 1)
        .map_err(|err| err.to_string())?
        .ok_or("version 1 is kept")?;
    ensure(
        info.version == 1 && old == Content::Text("first words".into()),
        || format!("version 1: {info:?} {old:?}"),
    )?;
    ensure(e.kind(p).ok().flatten() == Some(NodeKind::File), || {
        format!("kind of {p}")
    })?;
    ensure(
        e.kind("/contract").ok().flatten() == Some(NodeKind::Dir),
        || "a node's parent is a directory".into(),
    )
}

/// Reads, listings and searches return only what the caller may see: another agent's
/// private namespace stays out of every answer, filtered inside the engine.
pub fn visibility_is_filtered_inside_the_engine(e: &dyn Engine) -> Check {
    let secret = "/memory/private/alice/secret.md";
    put(e, secret, "zanzibarine plans of alice", Some("alice"))?;
    put(
        e,
        "/memory/shared/open.md",
        "zanzibarine notes for all",
        Some("bob"),
    )?;
    let seen = |who: &Caller| -> Result<Vec<String>, String> {
        Ok(e.search("/", who, "zanzibarine", 10)
            .map_err(|err| err.to_string())?
            .into_iter()
            .map(|h| h.path)
            .collect())
    };
    let bob = seen(&agent("bob"))?;
    ensure(bob == ["/memory/shared/open.md"], || {
        format!("bob's search: {bob:?}")
    })?;
    let alice = seen(&agent("alice"))?;
    ensure(alice.len() == 2, || format!("alice's search: {alice:?}"))?;
    let under = e
        .descendants("/memory/private", &agent("bob"), 0, None)
        .map_err(|err| err.to_string())?;
    ensure(under.is_empty(), || {
        format!("bob lists alice's namespace: {under:?}")
    })?;
    let kids = e
        .children("/memory/private/alice", &agent("bob"), 0, None)
        .map_err(|err| err.to_string())?;
    ensure(kids.is_empty(), || format!("bob's children: {kids:?}"))?;
    let mine = e
        .descendants("/memory/private/alice", &agent("alice"), 0, None)
        .map_err(|err| err.to_string())?;
    ensure(mine.len() == 1, || format!("alice's own: {mine:?}"))
}

/// A rename moves the node with its history; the old path holds nothing.
pub fn a_rename_carries_the_history(e: &dyn Engine) -> Check {
    let (a, b) = ("/contract/move-a.md", "/contract/move-b.md");
    put(e, a, "moving text", None)?;
    e.apply(WriteOp::Rename {
        src: a.into(),
        dst: b.into(),
        force: false,
        caller: Caller::Operator,
        policy: open_policy(),
    })
    .map_err(|err| format!("rename: {err}"))?;
    ensure(text_of(e, a)?.is_none(), || format!("{a} still reads"))?;
    ensure(text_of(e, b)? == Some("moving text".into()), || {
        format!("{b} after the move")
    })?;
    let h = e.history(b, 10).map_err(|err| err.to_string())?;
    ensure(h.iter().any(|v| v.kind == "move-in"), || {
        format!("history of {b}: {h:?}")
    })
}

fn remove(e: &dyn Engine, path: &str, hard: bool) -> Check {
    e.apply(WriteOp::Remove {
        path: path.into(),
        recursive: false,
        hard,
        caller: Caller::Operator,
        policy: open_policy(),
    })
    .map(drop)
    .map_err(|err| format!("remove {path} (hard: {hard}): {err}"))
}

/// A removed node reads as nothing: a soft remove moves it to `/trash` (its history says
/// where), a hard one erases it (its history says `delete`).
pub fn a_remove_leaves_nothing_to_read(e: &dyn Engine) -> Check {
    let p = "/contract/gone.md";
    put(e, p, "to be removed", None)?;
    remove(e, p, false)?;
    ensure(text_of(e, p)?.is_none(), || format!("{p} still reads"))?;
    ensure(e.kind(p).ok().flatten().is_none(), || {
        format!("{p} still has a kind")
    })?;
    let h = e.history(p, 10).map_err(|err| err.to_string())?;
    let trash = "/trash/contract/gone.md";
    ensure(
        h.first()
            .is_some_and(|v| v.kind == "move-out" && v.note.as_deref() == Some(trash)),
        || format!("history of {p}: {h:?}"),
    )?;
    ensure(text_of(e, trash)? == Some("to be removed".into()), || {
        format!("{trash} after a soft remove")
    })?;
    let q = "/contract/erased.md";
    put(e, q, "to be erased", None)?;
    remove(e, q, true)?;
    ensure(text_of(e, q)?.is_none(), || format!("{q} still reads"))?;
    let h = e.history(q, 10).map_err(|err| err.to_string())?;
    ensure(h.first().is_some_and(|v| v.kind == "delete"), || {
        format!("history of {q}: {h:?}")
    })
}

/// Writes applied together are answered one by one: a refused write does not undo the
/// others.
pub fn a_batch_answers_each_write_alone(e: &dyn Engine) -> Check {
    let ok = "/contract/batch-ok.md";
    let results = e.apply_many(vec![
        put_op(ok, "kept", None),
        WriteOp::Rename {
            src: "/contract/batch-missing.md".into(),
            dst: "/contract/batch-elsewhere.md".into(),
            force: false,
            caller: Caller::Operator,
            policy: open_policy(),
        },
        put_op("/contract/batch-two.md", "kept too", None),
    ]);
    ensure(results.len() == 3, || {
        format!("{} answers to 3 writes", results.len())
    })?;
    ensure(
        results[0].is_ok() && results[1].is_err() && results[2].is_ok(),
        || format!("answers: {results:?}"),
    )?;
    ensure(text_of(e, ok)? == Some("kept".into()), || {
        format!("{ok} was undone")
    })
}

/// Every change is an event, in order, in the same transaction as the change.
pub fn changes_are_an_ordered_event_stream(e: &dyn Engine) -> Check {
    let start = e.last_event().map_err(|err| err.to_string())?;
    put(e, "/contract/ev-1.md", "one", None)?;
    put(e, "/contract/ev-2.md", "two", None)?;
    put(e, "/contract/ev-1.md", "one again", None)?;
    let evs = e.events_after(start, 100).map_err(|err| err.to_string())?;
    let paths: Vec<&str> = evs.iter().map(|v| v.path.as_str()).collect();
    ensure(
        paths
            == [
                "/contract/ev-1.md",
                "/contract/ev-2.md",
                "/contract/ev-1.md",
            ],
        || format!("events: {evs:?}"),
    )?;
    ensure(evs.windows(2).all(|w| w[0].seq < w[1].seq), || {
        format!("sequence numbers: {evs:?}")
    })?;
    ensure(
        e.last_event().map_err(|err| err.to_string())? == evs[2].seq,
        || "last_event is the newest event".into(),
    )
}

/// Full-text search ranks the document that says the word more often first and only
/// returns documents holding it.
pub fn search_ranks_by_the_words(e: &dyn Engine) -> Check {
    put(
        e,
        "/contract/s-many.md",
        "quokka quokka quokka and a wombat",
        None,
    )?;
    put(
        e,
        "/contract/s-once.md",
        "one quokka and a wombat and more",
        None,
    )?;
    put(
        e,
        "/contract/s-none.md",
        "a wombat alone and more words",
        None,
    )?;
    let hits = e
        .search("/contract", &Caller::Operator, "quokka", 10)
        .map_err(|err| err.to_string())?;
    let paths: Vec<&str> = hits.iter().map(|h| h.path.as_str()).collect();
    ensure(
        paths == ["/contract/s-many.md", "/contract/s-once.md"],
        || format!("hits: {hits:?}"),
    )?;
    ensure(hits[0].score > hits[1].score, || {
        format!("scores: {hits:?}")
    })
}

/// Links are kept both ways.
pub fn links_are_seen_from_both_ends(e: &dyn Engine) -> Check {
    let (a, b) = ("/contract/link-a.md", "/contract/link-b.md");
    put(e, a, "a", None)?;
    put(e, b, "b", None)?;
    e.apply(WriteOp::Link {
        source: a.into(),
        target: b.into(),
        kind: "related".into(),
        weight: 1.0,
    })
    .map_err(|err| format!("link: {err}"))?;
    let (out, _) = e
        .links(a, &Caller::Operator)
        .map_err(|err| err.to_string())?;
    let (_, inc) = e
        .links(b, &Caller::Operator)
        .map_err(|err| err.to_string())?;
    ensure(
        out.len() == 1 && out[0].target == b && inc.len() == 1 && inc[0].source == a,
        || format!("out of a: {out:?}; into b: {inc:?}"),
    )
}

/// Runs every check on `make()`'s engine, a fresh one per check.
pub fn run_all(make: &dyn Fn() -> Arc<dyn Engine>) -> Check {
    let checks: [Clause; 8] = [
        ("history", writes_are_read_back_with_their_history),
        ("visibility", visibility_is_filtered_inside_the_engine),
        ("rename", a_rename_carries_the_history),
        ("remove", a_remove_leaves_nothing_to_read),
        ("batch", a_batch_answers_each_write_alone),
        ("events", changes_are_an_ordered_event_stream),
        ("search", search_ranks_by_the_words),
        ("links", links_are_seen_from_both_ends),
    ];
    for (name, check) in checks {
        let e = make();
        check(e.as_ref()).map_err(|why| format!("engine contract, {name}: {why}"))?;
    }
    Ok(())
}
