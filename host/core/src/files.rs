//! Files on disk that hold memories: private to their owner.
//!
//! A database holds every agent's private memories, and its `-wal` holds the newest of them in
//! clear, so every file avm keeps is created `0600` in a `0700` directory. Files made earlier with
//! wider modes are tightened when avm opens them, with a notice saying what changed.

use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The files SQLite keeps beside a database (`x.db-wal`, `x.db-shm`, `x.db-journal`).
pub fn sqlite_companions(db: &Path) -> Vec<PathBuf> {
    ["-wal", "-shm", "-journal"]
        .iter()
        .map(|s| {
            let mut p = db.as_os_str().to_owned();
            p.push(s);
            PathBuf::from(p)
        })
        .collect()
}

/// Creates `dir` and any missing parents with mode `0700` (an existing directory is left as it
/// is: see [`tighten_dir`]).
pub fn private_dir(dir: &Path) -> io::Result<()> {
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Creates the database file `db` empty with mode `0600` when it does not exist, so that SQLite
/// (which gives its `-wal` and `-shm` the database's mode) never makes a readable one.
pub fn create_private(db: &Path) -> io::Result<()> {
    if let Some(dir) = db.parent() {
        private_dir(dir)?;
    }
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(db)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// [`create_private`] with avm's error for a database that cannot be made (`Unavailable`, naming
/// the file): what every store calls before SQLite opens its file.
pub fn prepare_db(db: &Path) -> crate::Result<()> {
    if db.is_dir() {
        return Err(crate::Error::new(
            crate::ErrorKind::Unavailable,
            format!(
                "database path {} is a directory; give a file path",
                db.display()
            ),
        ));
    }
    create_private(db).map_err(|e| {
        crate::Error::new(
            crate::ErrorKind::Unavailable,
            format!("cannot create the database {}: {e}", db.display()),
        )
    })
}

/// Makes `path` (a file) readable and writable by its owner only when group or others have any
/// access to it; returns a notice saying so, or `None` when it was private already or is absent.
pub fn tighten_file(path: &Path) -> io::Result<Option<String>> {
    tighten(path, 0o600)
}

/// Makes the directory `dir` its owner's only (`0700`) when group or others have any access;
/// returns a notice, or `None`.
pub fn tighten_dir(dir: &Path) -> io::Result<Option<String>> {
    tighten(dir, 0o700)
}

fn tighten(path: &Path, private: u32) -> io::Result<Option<String>> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if meta.file_type().is_symlink() {
        return Ok(None);
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 == 0 {
        return Ok(None);
    }
    let new = mode & private & 0o700 | if meta.is_dir() { 0o700 } else { 0o600 };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(new))?;
    Ok(Some(format!(
        "made {} private to its owner (mode {mode:04o} → {new:04o}): it holds memories",
        path.display()
    )))
}

/// Tightens a database and its SQLite companions; returns a notice per file changed.
pub fn tighten_db(db: &Path) -> io::Result<Vec<String>> {
    let mut notices = Vec::new();
    for p in std::iter::once(db.to_path_buf()).chain(sqlite_companions(db)) {
        notices.extend(tighten_file(&p)?);
    }
    Ok(notices)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn new_databases_and_directories_are_private_and_old_ones_are_tightened() {
        let t = tempfile::tempdir().unwrap();
        let db = t.path().join("a/b/avm.db");
        create_private(&db).unwrap();
        assert_eq!(mode(&db), 0o600);
        assert_eq!(mode(&t.path().join("a/b")), 0o700);
        assert_eq!(mode(&t.path().join("a")), 0o700);
        // An old, readable store and its WAL.
        let old = t.path().join("old.db");
        std::fs::write(&old, b"").unwrap();
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o644)).unwrap();
        let wal = sqlite_companions(&old)[0].clone();
        std::fs::write(&wal, b"").unwrap();
        std::fs::set_permissions(&wal, std::fs::Permissions::from_mode(0o666)).unwrap();
        let notices = tighten_db(&old).unwrap();
        assert_eq!(notices.len(), 2, "{notices:?}");
        assert!(notices[0].contains("0644 → 0600"), "{notices:?}");
        assert_eq!((mode(&old), mode(&wal)), (0o600, 0o600));
        assert!(
            tighten_db(&old).unwrap().is_empty(),
            "nothing to say the second time"
        );
        let dir = t.path().join("shared-dir");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(tighten_dir(&dir).unwrap().is_some());
        assert_eq!(mode(&dir), 0o700);
    }
}
