//! Tests of the core without a kernel: open files shared by their handles, stores at close,
//! inode lifetimes, generated content and shortcuts.

use super::*;
use avm_core::{ErrorKind, ListOptions, Mount, WriteInput};
use avm_provider_memory::MemoryProvider;

const ALICE: &str = "/memory/private/alice";

fn core(agent: &str) -> (tempfile::TempDir, Core, Arc<Host>) {
    let dir = tempfile::tempdir().unwrap();
    let mem = MemoryProvider::open(&dir.path().join("a.db"), Default::default()).unwrap();
    let store = mem.memory_store();
    let tell = Arc::new(avm_tell::TellProvider::new(store.clone()));
    let recall = avm_recall::Engine::new(store, avm_recall::Tuning::default());
    let host = Arc::new(
        Host::new(vec![
            Mount::new("/**", Arc::new(mem)),
            Mount::new("/tell/**", tell.clone()),
        ])
        .unwrap()
        .with_service(tell)
        .with_service(Arc::new(avm_recall::RecallProvider::new(recall))),
    );
    let c = Core::new(host.clone(), Caller::Agent(agent.into()));
    (dir, c, host)
}

/// The inode of a directory path, looked up component by component as the kernel does.
fn dir_ino(c: &Core, path: &str) -> u64 {
    let mut ino = ROOT;
    for part in path.split('/').filter(|p| !p.is_empty()) {
        ino = c.lookup(ino, part).unwrap().ino;
    }
    ino
}

fn rw() -> OpenMode {
    OpenMode {
        write: true,
        ..OpenMode::default()
    }
}

#[test]
fn a_created_file_is_stored_once_at_close_and_listed_meanwhile() {
    let (_d, c, host) = core("alice");
    let dir = dir_ino(&c, ALICE);
    let (a, fh) = c
        .create(dir, "n.md", 0o644, rw(), Owner::default())
        .unwrap();
    assert_eq!(c.getattr(a.ino).unwrap().kind, Kind::File);
    assert!(c.readdir(dir).unwrap().iter().any(|(n, _, _)| n == "n.md"));
    c.write(fh, 0, b"hello").unwrap();
    c.release(fh).unwrap();
    let h = host
        .read(c.caller(), "/memory/private/alice/n.md:history")
        .unwrap();
    assert_eq!(h.text.lines().count(), 1, "{}", h.text);
    assert_eq!(c.getattr(a.ino).unwrap().size, 5);
}

/// The kernel sends a close's release without waiting for it, so an open of the same
/// file can run while the release decides that its handle was the last one. The open
/// must join the file or start a new one, never hold one the release dropped (its
/// writes and its size would be lost to every other descriptor and to stat).
#[test]
fn an_open_racing_a_release_keeps_its_file() {
    let (_d, c, _h) = core("alice");
    let c = Arc::new(c);
    let dir = dir_ino(&c, ALICE);
    let (a, fh) = c
        .create(dir, "r.md", 0o644, rw(), Owner::default())
        .unwrap();
    c.write(fh, 0, b"zzzzzz").unwrap();
    c.release(fh).unwrap();
    let ino = a.ino;
    let spawn = |bytes: &'static [u8], truncate: bool| {
        let c = c.clone();
        std::thread::spawn(move || {
            for i in 0..400 {
                let mode = OpenMode { truncate, ..rw() };
                let (fh, _) = c.open(ino, mode).unwrap();
                c.write(fh, 0, bytes)
                    .unwrap_or_else(|e| panic!("write {i}: {e}"));
                let size = c.getattr(ino).unwrap().size;
                assert_eq!(size, 6, "round {i}: stat of a file open with 6 bytes");
                let back = c.read(fh, 0, 10).unwrap();
                assert!(
                    back == b"abcdef" || back == b"yyyyyy",
                    "round {i}: read {back:?}"
                );
                c.release(fh).unwrap();
            }
        })
    };
    let t1 = spawn(b"abcdef", true);
    let t2 = spawn(b"yyyyyy", false);
    t1.join().unwrap();
    t2.join().unwrap();
    assert!(
        lock(&c.files).is_empty(),
        "an open file outlived its handles"
    );
}

#[test]
fn bytes_that_are_not_text_are_kept_exactly() {
    let (_d, c, host) = core("alice");
    let dir = dir_ino(&c, ALICE);
    let raw = [0u8, 0x80, 0xff, b'\n', 0xc3];
    let (a, fh) = c
        .create(dir, "b.bin", 0o644, rw(), Owner::default())
        .unwrap();
    c.write(fh, 0, &raw).unwrap();
    c.release(fh).unwrap();
    let (fh, _) = c.open(a.ino, OpenMode::default()).unwrap();
    assert_eq!(c.read(fh, 0, 100).unwrap(), raw);
    c.release(fh).unwrap();
    let o = host
        .read(c.caller(), "/memory/private/alice/b.bin")
        .unwrap();
    assert!(o.is_binary());
    assert_eq!(o.bytes(), raw);
}

#[test]
fn writes_are_seen_at_once_through_every_descriptor_and_by_stat() {
    let (_d, c, _h) = core("alice");
    let dir = dir_ino(&c, ALICE);
    let (a, w) = c
        .create(dir, "s.md", 0o644, rw(), Owner::default())
        .unwrap();
    let (r, _) = c.open(a.ino, OpenMode::default()).unwrap();
    c.write(w, 0, b"abc").unwrap();
    assert_eq!(c.read(r, 0, 10).unwrap(), b"abc");
    assert_eq!(c.getattr(a.ino).unwrap().size, 3);
    // A hole reads as zeros.
    c.write(w, 6, b"z").unwrap();
    assert_eq!(c.read(r, 0, 10).unwrap(), b"abc\0\0\0z");
    c.release(w).unwrap();
    c.release(r).unwrap();
}

#[test]
fn two_writers_merge_and_appends_land_at_the_end() {
    let (_d, c, host) = core("alice");
    let dir = dir_ino(&c, ALICE);
    let (a, w1) = c
        .create(dir, "m.md", 0o644, rw(), Owner::default())
        .unwrap();
    c.write(w1, 0, b"0123456789").unwrap();
    c.flush(w1).unwrap();
    let (w2, _) = c.open(a.ino, rw()).unwrap();
    let (ap, _) = c
        .open(
            a.ino,
            OpenMode {
                write: true,
                append: true,
                ..OpenMode::default()
            },
        )
        .unwrap();
    c.write(w1, 0, b"AB").unwrap();
    c.write(w2, 5, b"xy").unwrap();
    c.write(ap, 0, b"!").unwrap();
    for h in [w1, w2, ap] {
        c.release(h).unwrap();
    }
    assert_eq!(
        host.read(c.caller(), "/memory/private/alice/m.md")
            .unwrap()
            .text,
        "AB234xy789!"
    );
}

#[test]
fn an_unlinked_open_file_stays_usable_and_is_never_stored_again() {
    let (_d, c, host) = core("alice");
    let dir = dir_ino(&c, ALICE);
    let (a, fh) = c
        .create(dir, "u.md", 0o644, rw(), Owner::default())
        .unwrap();
    c.write(fh, 0, b"one").unwrap();
    c.flush(fh).unwrap();
    c.unlink(dir, "u.md").unwrap();
    c.write(fh, 3, b" two").unwrap();
    assert_eq!(c.read(fh, 0, 100).unwrap(), b"one two");
    assert_eq!(c.getattr(a.ino).unwrap().nlink, 0);
    c.release(fh).unwrap();
    assert_eq!(
        host.stat(c.caller(), "/memory/private/alice/u.md")
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
}

#[test]
fn create_then_unlink_leaves_nothing_behind() {
    let (_d, c, host) = core("alice");
    let dir = dir_ino(&c, ALICE);
    for i in 0..50 {
        let name = format!("f{i}");
        let (_, fh) = c.create(dir, &name, 0o644, rw(), Owner::default()).unwrap();
        c.flush(fh).unwrap();
        c.unlink(dir, &name).unwrap();
        c.release(fh).unwrap();
    }
    let l = host
        .list(c.caller(), ALICE, &ListOptions::default())
        .unwrap();
    assert!(l.entries.is_empty(), "{:?}", l.entries);
}

#[test]
fn a_write_past_the_size_limit_is_refused_without_allocating() {
    let (_d, c, _h) = core("alice");
    let dir = dir_ino(&c, ALICE);
    let (a, fh) = c.create(dir, "big", 0o644, rw(), Owner::default()).unwrap();
    let e = c
        .setattr(
            a.ino,
            Some(fh),
            AttrChange {
                size: Some(999_999_999_999_999),
                ..AttrChange::default()
            },
        )
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TooLarge);
    let e = c.write(fh, u64::MAX - 2, b"abc").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TooLarge);
    c.release(fh).unwrap();
}

#[test]
fn lookups_of_missing_names_keep_no_inodes_and_forget_drops_known_ones() {
    let (_d, c, _h) = core("alice");
    let dir = dir_ino(&c, ALICE);
    let before = c.inode_count();
    for i in 0..1000 {
        assert!(c.lookup(dir, &format!("missing{i}")).is_err());
    }
    assert_eq!(c.inode_count(), before);
    let (a, fh) = c
        .create(dir, "k.md", 0o644, rw(), Owner::default())
        .unwrap();
    c.release(fh).unwrap();
    assert_eq!(c.inode_count(), before + 1);
    c.forget(a.ino, 1);
    assert_eq!(c.inode_count(), before);
}

#[test]
fn suffixes_queries_help_and_tell_are_virtual_and_not_removable() {
    let (_d, c, _h) = core("alice");
    let dir = dir_ino(&c, ALICE);
    let (_, fh) = c
        .create(dir, "v.md", 0o644, rw(), Owner::default())
        .unwrap();
    c.write(fh, 0, b"x").unwrap();
    c.release(fh).unwrap();
    for v in [
        format!("{ALICE}/v.md:meta"),
        "/:help".to_string(),
        "/memory:search?q=x".to_string(),
        "/tell/bob".to_string(),
    ] {
        assert_eq!(c.stat_path(&v).unwrap().kind, Kind::Virtual, "{v}");
    }
    assert_eq!(
        c.unlink(dir, "v.md:meta").unwrap_err().kind(),
        ErrorKind::PermissionDenied
    );
    let help_ino = c.lookup(ROOT, ":help").unwrap().ino;
    let (fh, direct) = c.open(help_ino, OpenMode::default()).unwrap();
    assert!(direct);
    let a = c.read(fh, 0, 5).unwrap();
    let b = c.read(fh, 5, 1 << 20).unwrap();
    assert_eq!(
        String::from_utf8([a, b].concat()).unwrap(),
        help(Some("alice"))
    );
}

#[test]
fn shortcuts_resolve_by_node_id_and_private_paths_of_others_are_refused() {
    let (_d, c, host) = core("alice");
    host.write(
        c.caller(),
        "/memory/shared/s.md",
        WriteInput::Text("shared".into()),
    )
    .unwrap();
    let list = host.read(c.caller(), "/memory/shared:list").unwrap().text;
    let short = list.split_whitespace().next().unwrap().to_string();
    let shared = dir_ino(&c, "/memory/shared");
    let ino = c.lookup(shared, &short).unwrap().ino;
    let (fh, _) = c.open(ino, OpenMode::default()).unwrap();
    assert_eq!(c.read(fh, 0, 100).unwrap(), b"shared");
    let private = dir_ino(&c, "/memory/private");
    let e = c.lookup(private, "bob").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied);
    assert_eq!(crate::fs::errno(e.kind()), fuser::Errno::EACCES);
    let dir = dir_ino(&c, ALICE);
    assert!(
        c.create(dir, "@bad", 0o644, rw(), Owner::default())
            .is_err()
    );
}
