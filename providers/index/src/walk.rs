//! Walking a project tree: which files an index tracks.
//!
//! Symbolic links are never followed (a link to a directory outside the project must not pull
//! that directory in, and a link to a file would track the same content twice). Build output,
//! dependency and cache directories and hidden directories are skipped, and so is whatever the
//! project's top-level `.gitignore` excludes (with git's own rules: [`GitIgnore`]).

use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use ignore::gitignore::{Gitignore, GitignoreBuilder};

use crate::lang::language_for;

/// Directory names never descended into.
pub const SKIPPED_DIRS: &[&str] = &[
    ".git",
    "target",
    "node_modules",
    ".venv",
    "venv",
    "__pycache__",
    "dist",
    "build",
    ".mypy_cache",
    ".pytest_cache",
    ".tox",
];

/// A tracked file found on disk.
#[derive(Debug, Clone)]
pub struct DiskFile {
    /// Path relative to the root, `/`-separated.
    pub rel: String,
    /// Absolute path.
    pub abs: PathBuf,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime: i64,
    /// Language, from the extension.
    pub language: &'static str,
}

/// What a walk found.
#[derive(Debug, Default)]
pub struct Walk {
    /// Tracked files, sorted by relative path.
    pub files: Vec<DiskFile>,
    /// Entries that could not be read (unreadable directories, names that are not UTF-8),
    /// with the reason.
    pub skipped: Vec<String>,
    /// Relative paths of directories that could not be listed (`""` for the start itself).
    pub unreadable_dirs: Vec<String>,
}

/// Nanoseconds since the epoch (negative before it, saturating far from it).
pub fn mtime_nanos(meta: &std::fs::Metadata) -> i64 {
    match meta.modified() {
        Ok(t) => match t.duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
            Err(e) => i64::try_from(e.duration().as_nanos()).map_or(i64::MIN, |n| -n),
        },
        Err(_) => 0,
    }
}

/// Walks `root/sub` (`sub` relative, `""` for the whole tree).
pub fn walk(root: &Path, sub: &str, ignore: &GitIgnore) -> Walk {
    let mut out = Walk::default();
    let start = if sub.is_empty() {
        root.to_path_buf()
    } else {
        root.join(sub)
    };
    if !sub.is_empty() {
        // A scope inside the tree may be a single file, or gone (its files are then missing).
        match std::fs::symlink_metadata(&start) {
            Ok(meta) if meta.is_file() => {
                let name = sub.rsplit('/').next().unwrap_or(sub);
                if let Some(language) = language_for(name) {
                    out.files.push(DiskFile {
                        rel: sub.to_string(),
                        abs: start,
                        size: meta.len(),
                        mtime: mtime_nanos(&meta),
                        language,
                    });
                }
                return out;
            }
            Ok(meta) if meta.is_dir() => {}
            _ => return out,
        }
    }
    let mut stack: Vec<(PathBuf, String)> = vec![(start, sub.to_string())];
    while let Some((dir, rel_dir)) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) => {
                out.skipped.push(format!("{}: {e}", shown(&rel_dir)));
                out.unreadable_dirs.push(rel_dir);
                continue;
            }
        };
        for entry in entries {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    out.skipped.push(format!("{}: {e}", shown(&rel_dir)));
                    continue;
                }
            };
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                out.skipped.push(format!(
                    "{}: name is not UTF-8",
                    entry.path().to_string_lossy()
                ));
                continue;
            };
            let rel = if rel_dir.is_empty() {
                name.clone()
            } else {
                format!("{rel_dir}/{name}")
            };
            // `file_type` does not follow links: a link is a link, whatever it points to.
            let Ok(ft) = entry.file_type() else {
                out.skipped.push(format!("{rel}: cannot read its type"));
                continue;
            };
            if ft.is_symlink() {
                continue;
            }
            if ft.is_dir() {
                if name.starts_with('.') || SKIPPED_DIRS.contains(&name.as_str()) {
                    continue;
                }
                if ignore.ignores(&rel, true) {
                    continue;
                }
                stack.push((entry.path(), rel));
            } else if ft.is_file() {
                let Some(language) = language_for(&name) else {
                    continue;
                };
                if ignore.ignores(&rel, false) {
                    continue;
                }
                match entry.metadata() {
                    Ok(meta) => out.files.push(DiskFile {
                        rel,
                        abs: entry.path(),
                        size: meta.len(),
                        mtime: mtime_nanos(&meta),
                        language,
                    }),
                    Err(e) => out.skipped.push(format!("{rel}: {e}")),
                }
            }
        }
    }
    out.files.sort_by(|a, b| a.rel.cmp(&b.rel));
    out
}

fn shown(rel: &str) -> &str {
    if rel.is_empty() { "." } else { rel }
}

/// The rules of a project's top-level `.gitignore`, with git's own semantics (the `ignore`
/// crate's matcher, as ripgrep uses it): comments, `!` negation (the last matching rule wins; a
/// file inside an ignored directory stays ignored, as in git), a trailing `/` for directories
/// only, anchoring by a leading or inner `/`, `*`, `?`, `**` and character classes. Nested
/// `.gitignore` files and global excludes are not read.
#[derive(Debug, Clone)]
pub struct GitIgnore {
    matcher: Gitignore,
}

impl Default for GitIgnore {
    fn default() -> Self {
        GitIgnore {
            matcher: Gitignore::empty(),
        }
    }
}

impl GitIgnore {
    /// Reads `root/.gitignore`; a missing or unreadable file means no rules, and a line git
    /// would not understand either is left out.
    pub fn load(root: &Path) -> Self {
        match std::fs::read_to_string(root.join(".gitignore")) {
            Ok(text) => Self::parse(&text),
            Err(_) => Self::default(),
        }
    }

    /// Parses `.gitignore` text.
    pub fn parse(text: &str) -> Self {
        // Matched against relative paths, so the root only anchors: any fixed one will do.
        let mut b = GitignoreBuilder::new("/");
        for line in text.lines() {
            // A line the matcher refuses (an unclosed class) is skipped, as git skips it.
            let _ = b.add_line(None, line);
        }
        GitIgnore {
            matcher: b.build().unwrap_or_else(|_| Gitignore::empty()),
        }
    }

    /// Is `rel` (relative to the root, `/`-separated) ignored? Ancestors are checked by the
    /// walk itself, which never descends into an ignored directory.
    pub fn ignores(&self, rel: &str, is_dir: bool) -> bool {
        self.matcher
            .matched(Path::new("/").join(rel), is_dir)
            .is_ignore()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gitignore_patterns_match_like_git() {
        let g = GitIgnore::parse(
            "# comment\n*.log\n/out\ngenerated/\ndocs/*.md\n**/fixtures/**\n!keep.log\n[ab].txt\n[unclosed\n",
        );
        assert!(g.ignores("a.log", false));
        assert!(g.ignores("deep/b.log", false));
        assert!(!g.ignores("keep.log", false));
        assert!(g.ignores("out", true));
        assert!(g.ignores("out", false));
        assert!(!g.ignores("src/out", true));
        assert!(g.ignores("generated", true));
        assert!(g.ignores("src/generated", true));
        assert!(!g.ignores("generated", false));
        assert!(g.ignores("docs/a.md", false));
        assert!(!g.ignores("docs/sub/a.md", false));
        assert!(g.ignores("x/fixtures/y/z.rs", false));
        assert!(g.ignores("a.txt", false) && !g.ignores("c.txt", false));
    }

    #[test]
    fn star_stays_within_one_segment_and_classes_work() {
        let g = GitIgnore::parse("src/*.rs\nlib/**/*.py\n[ab].txt\nc?t\n");
        assert!(g.ignores("src/lib.rs", false));
        assert!(!g.ignores("src/a/lib.rs", false));
        assert!(g.ignores("lib/a/b/x.py", false));
        assert!(g.ignores("lib/x.py", false));
        assert!(g.ignores("a.txt", false) && g.ignores("b.txt", false));
        assert!(!g.ignores("c.txt", false));
        assert!(g.ignores("cat", false));
        assert!(!g.ignores("c/t", false));
    }
}
