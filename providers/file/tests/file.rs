#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The file provider against a real temp directory.

use std::os::unix::fs::symlink;
use std::path::Path;

use avm_core::contract;
use avm_core::{
    Caller, ErrorKind, ListOptions, NodeKind, Provider, Put, RemoveOptions, Request, WriteInput,
};
use avm_provider_file::{FileOptions, FileProvider};
use serde_json::json;

struct Fixture {
    /// The served root.
    root: tempfile::TempDir,
    /// A directory outside root, standing in for anything a link could point at.
    outside: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let root = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.txt"), "top secret").unwrap();
    std::fs::create_dir(root.path().join("docs")).unwrap();
    std::fs::write(root.path().join("docs/a.md"), "alpha\n").unwrap();
    std::fs::write(root.path().join("docs/b.md"), "bravo bravo\n").unwrap();
    std::fs::write(root.path().join(".hidden"), "shh").unwrap();
    std::fs::create_dir_all(root.path().join("deep/er")).unwrap();
    std::fs::write(root.path().join("deep/er/c.txt"), "charlie").unwrap();
    Fixture { root, outside }
}

fn provider(root: &Path, extra: serde_json::Value) -> FileProvider {
    let mut v = json!({"root": root});
    for (k, val) in extra.as_object().unwrap() {
        v[k] = val.clone();
    }
    let opts: FileOptions = serde_json::from_value(v).unwrap();
    FileProvider::new("/files/**", opts).unwrap()
}

fn req(path: &str) -> Request {
    Request::new(path, Caller::Operator)
}

/// A request whose `**` capture is set directly, as a host would; the value may hold what no
/// normalised path can.
fn req_rest(rest: &str) -> Request {
    let mut r = req("/files/x");
    r.captures.insert("**".into(), rest.into());
    r
}

fn text(s: &str) -> WriteInput {
    WriteInput::Text(s.into())
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

#[test]
fn the_provider_passes_the_contract_checks() {
    let f = fixture();
    let p = provider(f.root.path(), json!({}));
    assert_eq!(p.info().kind, "file");
    contract::run_all(&p, "/files").unwrap();
    contract::run_all(&p, "/files/docs").unwrap();
    contract::run_all(&p, "/files/new/dir").unwrap();
    let ro = provider(f.root.path(), json!({"read_only": true}));
    contract::missing_is_not_found(&ro, "/files/nope.md").unwrap();
    contract::read_only_rejects_writes(&ro, "/files/ro.md").unwrap();
}

#[test]
fn read_stat_and_list_see_the_real_directory() {
    let f = fixture();
    let p = provider(f.root.path(), json!({}));
    assert_eq!(p.read(&req("/files/docs/a.md")).unwrap().text, "alpha\n");
    let st = p.stat(&req("/files/docs/b.md")).unwrap();
    assert_eq!((st.kind, st.size, st.version), (NodeKind::File, 12, None));
    let mtime = std::fs::metadata(f.root.path().join("docs/b.md"))
        .unwrap()
        .modified()
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64;
    assert_eq!(st.updated_at, Some(mtime));
    assert_eq!(p.stat(&req("/files")).unwrap().kind, NodeKind::Dir);
    assert_eq!(p.stat(&req("/files/docs")).unwrap().kind, NodeKind::Dir);

    let top = p.list(&req("/files"), &ListOptions::default()).unwrap();
    let paths: Vec<(&str, NodeKind)> = top
        .entries
        .iter()
        .map(|e| (e.path.as_str(), e.kind))
        .collect();
    assert_eq!(
        paths,
        vec![
            ("/files/.hidden", NodeKind::File),
            ("/files/deep", NodeKind::Dir),
            ("/files/docs", NodeKind::Dir),
        ]
    );
    let all = p
        .list(
            &req("/files"),
            &ListOptions {
                recursive: true,
                ..ListOptions::default()
            },
        )
        .unwrap();
    let paths: Vec<&str> = all.entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        vec![
            "/files/.hidden",
            "/files/deep/er/c.txt",
            "/files/docs/a.md",
            "/files/docs/b.md"
        ]
    );
    let page = p
        .list(
            &req("/files"),
            &ListOptions {
                recursive: true,
                limit: Some(2),
                offset: 1,
            },
        )
        .unwrap();
    let paths: Vec<&str> = page.entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, vec!["/files/deep/er/c.txt", "/files/docs/a.md"]);
    assert!(page.more);

    assert_eq!(
        p.read(&req("/files/docs")).unwrap_err().kind(),
        ErrorKind::IsADirectory
    );
    assert_eq!(
        p.list(&req("/files/docs/a.md"), &ListOptions::default())
            .unwrap_err()
            .kind(),
        ErrorKind::NotADirectory
    );
}

#[test]
fn binary_files_are_served_byte_for_byte() {
    let f = fixture();
    std::fs::write(f.root.path().join("img.bin"), [0xff, 0xfe, 0x00, 0x01]).unwrap();
    let p = provider(f.root.path(), json!({}));
    let o = p.read(&req("/files/img.bin")).unwrap();
    assert!(o.is_binary());
    assert_eq!(o.bytes(), [0xff, 0xfe, 0x00, 0x01]);
    assert!(o.text.contains("binary"), "{}", o.text);
    assert_eq!(p.stat(&req("/files/img.bin")).unwrap().size, 4);
    // And written back exactly.
    p.write(
        &req("/files/copy.bin"),
        WriteInput::Put(Put {
            content: Some(avm_core::Content::from_bytes(o.bytes().to_vec())),
            ..Put::default()
        }),
    )
    .unwrap();
    assert_eq!(
        std::fs::read(f.root.path().join("copy.bin")).unwrap(),
        [0xff, 0xfe, 0x00, 0x01]
    );
}

#[test]
fn a_symlink_to_outside_is_refused_for_read_write_and_list() {
    let f = fixture();
    symlink(f.outside.path(), f.root.path().join("out")).unwrap();
    symlink("/etc", f.root.path().join("etc")).unwrap();
    symlink(
        f.outside.path().join("secret.txt"),
        f.root.path().join("docs/secret.md"),
    )
    .unwrap();
    for follow in [false, true] {
        let p = provider(f.root.path(), json!({"follow_symlinks": follow}));
        let denied = |r: avm_core::Result<_>| match r {
            Err(e) if e.kind() == ErrorKind::PermissionDenied => {}
            other => panic!("follow={follow}: expected permission-denied, got {other:?}"),
        };
        denied(p.read(&req("/files/out/secret.txt")).map(|_| ()));
        denied(p.read(&req("/files/etc/passwd")).map(|_| ()));
        denied(p.read(&req("/files/docs/secret.md")).map(|_| ()));
        denied(p.stat(&req("/files/etc/passwd")).map(|_| ()));
        denied(
            p.list(&req("/files/out"), &ListOptions::default())
                .map(|_| ()),
        );
        denied(
            p.list(&req("/files/etc"), &ListOptions::default())
                .map(|_| ()),
        );
        denied(p.write(&req("/files/out/new.txt"), text("x")).map(|_| ()));
        denied(
            p.write(&req("/files/out/sub/new.txt"), text("x"))
                .map(|_| ()),
        );
        denied(
            p.write(&req("/files/docs/secret.md"), text("x"))
                .map(|_| ()),
        );
        denied(p.mkdir(&req("/files/out/made")).map(|_| ()));
        denied(
            p.remove(&req("/files/out/secret.txt"), RemoveOptions::default())
                .map(|_| ()),
        );
        // Listings of root leave the escaping links out, recursive ones do not descend them.
        let top = p.list(&req("/files"), &ListOptions::default()).unwrap();
        assert!(
            top.entries
                .iter()
                .all(|e| e.path != "/files/out" && e.path != "/files/etc"),
            "{top:?}"
        );
        let all = p
            .list(
                &req("/files"),
                &ListOptions {
                    recursive: true,
                    ..ListOptions::default()
                },
            )
            .unwrap();
        assert!(
            all.entries.iter().all(|e| !e.path.contains("secret")),
            "{all:?}"
        );
    }
    assert_eq!(names(f.outside.path()), vec!["secret.txt"]);
    assert_eq!(
        std::fs::read_to_string(f.outside.path().join("secret.txt")).unwrap(),
        "top secret"
    );
}

#[test]
fn a_symlink_inside_root_is_followed_only_with_follow_symlinks() {
    let f = fixture();
    symlink(f.root.path().join("docs"), f.root.path().join("alias")).unwrap();
    let strict = provider(f.root.path(), json!({}));
    let e = strict.read(&req("/files/alias/a.md")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied);
    assert!(e.message().contains("follow_symlinks"), "{e}");
    let relaxed = provider(f.root.path(), json!({"follow_symlinks": true}));
    assert_eq!(
        relaxed.read(&req("/files/alias/a.md")).unwrap().text,
        "alpha\n"
    );
    relaxed
        .write(&req("/files/alias/new.md"), text("via link"))
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(f.root.path().join("docs/new.md")).unwrap(),
        "via link"
    );
    let top = relaxed
        .list(&req("/files"), &ListOptions::default())
        .unwrap();
    assert!(
        top.entries
            .iter()
            .any(|e| e.path == "/files/alias" && e.kind == NodeKind::Dir)
    );
    // A link to an ancestor does not make a recursive listing run forever.
    symlink(f.root.path(), f.root.path().join("docs/loop")).unwrap();
    let all = relaxed
        .list(
            &req("/files"),
            &ListOptions {
                recursive: true,
                ..ListOptions::default()
            },
        )
        .unwrap();
    assert!(all.entries.len() < 20, "{all:?}");
}

#[test]
fn dot_dot_and_absolute_components_smuggled_in_a_capture_are_refused() {
    let f = fixture();
    let p = provider(f.root.path(), json!({}));
    let secret = f.outside.path().join("secret.txt");
    let outside_name = f.outside.path().file_name().unwrap().to_str().unwrap();
    let climbs = [
        "..".to_string(),
        format!("../{outside_name}/secret.txt"),
        format!("docs/../../{outside_name}/secret.txt"),
        format!("docs/../../../../../..{}", secret.display()),
        secret.display().to_string(),
        "/etc/passwd".to_string(),
    ];
    for rest in &climbs {
        let r = req_rest(rest);
        for (op, got) in [
            ("read", p.read(&r).map(|_| ())),
            ("stat", p.stat(&r).map(|_| ())),
            ("list", p.list(&r, &ListOptions::default()).map(|_| ())),
            ("write", p.write(&r, text("pwned")).map(|_| ())),
            ("mkdir", p.mkdir(&r).map(|_| ())),
            ("remove", p.remove(&r, RemoveOptions::default()).map(|_| ())),
        ] {
            let e = got.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{op} {rest:?}: {e}");
        }
    }
    for rest in ["docs//a.md", "./docs/a.md", "docs/.", "a\0b"] {
        let e = p.read(&req_rest(rest)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{rest:?}: {e}");
    }
    // The request path is checked the same way when there are no host captures.
    let e = p.read(&req("/files/../etc/passwd")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied);
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), "top secret");
    assert_eq!(names(f.outside.path()), vec!["secret.txt"]);
}

#[test]
fn writes_are_atomic_and_leave_no_temporary_files() {
    let f = fixture();
    let p = provider(f.root.path(), json!({}));
    std::fs::set_permissions(
        f.root.path().join("docs/a.md"),
        std::os::unix::fs::PermissionsExt::from_mode(0o640),
    )
    .unwrap();
    p.write(&req("/files/docs/a.md"), text("replaced")).unwrap();
    p.write(
        &req("/files/docs/a.md"),
        WriteInput::Put(Put {
            content: Some(" + more".into()),
            append: true,
            ..Put::default()
        }),
    )
    .unwrap();
    p.write(&req("/files/docs/new.md"), text("new ✓")).unwrap();
    p.write(&req("/files/made/on/the/way.md"), text("deep"))
        .unwrap();
    // Failing writes leave nothing behind either.
    assert_eq!(
        p.write(&req("/files/docs"), text("x")).unwrap_err().kind(),
        ErrorKind::IsADirectory
    );
    let e = p
        .write(
            &req("/files/docs/new.md"),
            WriteInput::Put(Put {
                content: Some("x".into()),
                create_only: true,
                ..Put::default()
            }),
        )
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists);

    assert_eq!(
        p.read(&req("/files/docs/a.md")).unwrap().text,
        "replaced + more"
    );
    assert_eq!(p.read(&req("/files/docs/new.md")).unwrap().text, "new ✓");
    assert_eq!(
        p.read(&req("/files/made/on/the/way.md")).unwrap().text,
        "deep"
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(f.root.path().join("docs/a.md"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o640, "permissions kept across the rename");
    assert_eq!(
        names(&f.root.path().join("docs")),
        vec!["a.md", "b.md", "new.md"]
    );
    assert_eq!(names(&f.root.path().join("made/on/the")), vec!["way.md"]);
}

#[test]
fn write_limits_and_shapes_are_checked() {
    let f = fixture();
    let p = provider(f.root.path(), json!({"max_bytes": 5, "create_dirs": false}));
    let e = p.write(&req("/files/big.md"), text("123456")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TooLarge);
    assert!(e.message().contains("max_bytes (5)"), "{e}");
    p.write(&req("/files/ok.md"), text("12345")).unwrap();
    let e = p.write(&req("/files/nodir/x.md"), text("1")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert!(e.message().contains("create_dirs"), "{e}");
    let e = p
        .write(&req("/files/docs/a.md/under"), text("1"))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotADirectory, "{e}");
    let e = p
        .write(
            &req("/files/t.md"),
            WriteInput::Put(Put {
                content: Some("1".into()),
                tags: Some(vec!["x".into()]),
                ..Put::default()
            }),
        )
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    let e = p
        .write(&req("/files/r.md"), WriteInput::Record(json!({})))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(!f.root.path().join("t.md").exists());
}

#[test]
fn read_only_mode_refuses_every_change_with_read_only() {
    let f = fixture();
    let p = provider(f.root.path(), json!({"read_only": true}));
    assert!(!p.info().ops.write && !p.info().ops.remove && !p.info().ops.rename);
    let check = |r: avm_core::Result<avm_core::Output>| {
        assert_eq!(r.unwrap_err().kind(), ErrorKind::ReadOnly);
    };
    check(p.write(&req("/files/docs/a.md"), text("x")));
    check(p.write(&req("/files/new.md"), text("x")));
    check(p.remove(&req("/files/docs/a.md"), RemoveOptions::default()));
    check(p.rename(&req("/files/docs/a.md"), "/files/z.md", false));
    check(p.mkdir(&req("/files/newdir")));
    check(p.rmdir(&req("/files/deep/er")));
    assert_eq!(p.read(&req("/files/docs/a.md")).unwrap().text, "alpha\n");
    assert_eq!(names(&f.root.path().join("docs")), vec!["a.md", "b.md"]);
}

#[test]
fn remove_mkdir_and_rmdir_behave_like_a_filesystem() {
    let f = fixture();
    let p = provider(f.root.path(), json!({}));
    p.remove(&req("/files/docs/a.md"), RemoveOptions::default())
        .unwrap();
    assert!(!f.root.path().join("docs/a.md").exists());
    assert_eq!(
        p.remove(&req("/files/docs/a.md"), RemoveOptions::default())
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        p.remove(&req("/files/deep"), RemoveOptions::default())
            .unwrap_err()
            .kind(),
        ErrorKind::IsADirectory
    );
    assert_eq!(
        p.rmdir(&req("/files/deep")).unwrap_err().kind(),
        ErrorKind::NotEmpty
    );
    assert_eq!(
        p.rmdir(&req("/files/docs/b.md")).unwrap_err().kind(),
        ErrorKind::NotADirectory
    );
    p.remove(
        &req("/files/deep"),
        RemoveOptions {
            recursive: true,
            hard: false,
        },
    )
    .unwrap();
    assert!(!f.root.path().join("deep").exists());
    p.mkdir(&req("/files/empty")).unwrap();
    assert_eq!(
        p.mkdir(&req("/files/empty")).unwrap_err().kind(),
        ErrorKind::AlreadyExists
    );
    assert_eq!(p.stat(&req("/files/empty")).unwrap().kind, NodeKind::Dir);
    p.rmdir(&req("/files/empty")).unwrap();
    assert!(!f.root.path().join("empty").exists());
    let e = p
        .remove(
            &req("/files"),
            RemoveOptions {
                recursive: true,
                hard: true,
            },
        )
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied);
    assert!(f.root.path().join("docs/b.md").exists());
}

#[test]
fn rename_moves_within_root_and_respects_force() {
    let f = fixture();
    let p = provider(f.root.path(), json!({}));
    let out = p
        .rename(&req("/files/docs/a.md"), "/files/moved/a2.md", false)
        .unwrap();
    assert_eq!(out.data()["to"], "/files/moved/a2.md");
    assert_eq!(p.read(&req("/files/moved/a2.md")).unwrap().text, "alpha\n");
    assert!(!f.root.path().join("docs/a.md").exists());
    let e = p
        .rename(&req("/files/docs/b.md"), "/files/moved/a2.md", false)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists);
    p.rename(&req("/files/docs/b.md"), "/files/moved/a2.md", true)
        .unwrap();
    assert_eq!(
        p.read(&req("/files/moved/a2.md")).unwrap().text,
        "bravo bravo\n"
    );
    // Onto an existing directory: into it, keeping the name.
    let out = p
        .rename(&req("/files/.hidden"), "/files/moved", false)
        .unwrap();
    assert_eq!(out.data()["to"], "/files/moved/.hidden");
    assert_eq!(p.read(&req("/files/moved/.hidden")).unwrap().text, "shh");
    assert_eq!(
        p.rename(&req("/files/nope"), "/files/x", false)
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
    let e = p
        .rename(&req("/files/moved"), "/other/x", false)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
}

#[test]
fn a_pattern_without_globstar_maps_the_path_below_its_prefix() {
    let f = fixture();
    let opts: FileOptions =
        serde_json::from_value(json!({"root": f.root.path().join("docs")})).unwrap();
    let p = FileProvider::new("/notes/{name}", opts).unwrap();
    assert_eq!(p.read(&req("/notes/a.md")).unwrap().text, "alpha\n");
    let listing = p.list(&req("/notes"), &ListOptions::default()).unwrap();
    assert_eq!(listing.entries.len(), 2);
    // A hostile capture changes nothing: the path itself is what is served.
    let mut r = req("/notes/a.md");
    r.captures.insert("name".into(), "../../etc/passwd".into());
    assert_eq!(p.read(&r).unwrap().text, "alpha\n");
    assert_eq!(
        p.read(&req("/elsewhere/a.md")).unwrap_err().kind(),
        ErrorKind::NotFound
    );
}

#[test]
fn bad_options_are_refused_at_construction_naming_the_option() {
    let f = fixture();
    let file = f.root.path().join("docs/a.md");
    for (v, needle) in [
        (json!({"root": "/nonexistent/avm-root"}), "root"),
        (json!({"root": file}), "root"),
        (json!({"root": f.root.path(), "max_bytes": 0}), "max_bytes"),
        (json!({"root": "${AVM_SURELY_UNSET_VAR_X}/x"}), "root"),
    ] {
        let opts: FileOptions = serde_json::from_value(v.clone()).unwrap();
        let e = FileProvider::new("/files/**", opts).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{v}");
        assert!(e.message().contains(needle), "{v}: {e}");
    }
    assert!(
        serde_json::from_value::<FileOptions>(json!({"root": "/tmp", "writable": true})).is_err()
    );
}
