//! Access control seen from outside: files on disk, and (below) a hostile agent trying every
//! route to what it may not see.

use std::os::unix::fs::PermissionsExt;

use crate::{Env, s};

fn mode(p: &std::path::Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn the_store_on_disk_is_its_owners_only_and_old_readable_files_are_tightened() {
    let env = Env::new();
    env.run(&["-a", "alice", "remember", "the vault code is 0451"])
        .ok();
    env.run(&["-a", "alice", "key", "create"]).ok();
    env.run(&[
        "-a",
        "alice",
        "subscribe",
        "/memory/shared/**",
        "--webhook",
        "http://127.0.0.1:9/hook",
    ])
    .ok();
    let db = env.db();
    let dir = db.parent().unwrap().to_path_buf();
    assert_eq!(mode(&dir), 0o700, "the data directory");
    let mut files = Vec::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            files.push(p);
        }
    }
    assert!(
        files
            .iter()
            .any(|p| p.to_string_lossy().ends_with("avm.db-wal")),
        "{files:?}"
    );
    assert!(
        files
            .iter()
            .any(|p| p.to_string_lossy().contains("subs.db")),
        "{files:?}"
    );
    for f in &files {
        assert_eq!(mode(f), 0o600, "{}", f.display());
    }
    // A store made by an older avm (or copied with cp): tightened on the next open, with a notice.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    for f in &files {
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let r = env.run(&["--agent", "alice", "ls", "/memory"]);
    r.ok();
    assert!(r.stderr.contains("private to its owner"), "{}", r.stderr);
    assert!(r.stderr.contains("0644 → 0600"), "{}", r.stderr);
    assert_eq!(mode(&dir), 0o700);
    for f in &files {
        if f.exists() {
            assert_eq!(mode(f), 0o600, "{}", f.display());
        }
    }
    let again = env.run(&["--agent", "alice", "ls", "/memory"]);
    assert!(
        !again.stderr.contains("private to its owner"),
        "{}",
        again.stderr
    );
    // A database the user placed in a directory of their own: the file is tightened, the
    // directory (perhaps shared on purpose) is left alone.
    let own = env.path("projects");
    std::fs::create_dir_all(&own).unwrap();
    std::fs::set_permissions(&own, std::fs::Permissions::from_mode(0o755)).unwrap();
    let db2 = own.join("team.db");
    env.run(&["--db", s(&db2), "-a", "bob", "remember", "x"])
        .ok();
    assert_eq!(mode(&db2), 0o600);
    assert_eq!(mode(&own), 0o755);
}
