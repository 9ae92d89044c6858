//! Scanning a tree into an index, and comparing a tree with its index.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use avm_core::bytes::hex;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::lang::{EXTRACTOR_VERSION, Signature, extract, is_parsed};
use crate::store::{Change, FileRow, Known};
use crate::walk::{DiskFile, Walk};

/// Where a scan stands, reported after the walk and after each file that had to be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanProgress {
    /// Files handled so far.
    pub done: usize,
    /// Files found by the walk.
    pub total: usize,
    /// The file just handled (relative path; empty for the first report, after the walk).
    pub path: String,
}

/// What a scan did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanReport {
    /// The index.
    pub name: String,
    /// The scanned directory (canonical).
    pub root: PathBuf,
    /// Files tracked after the scan.
    pub files: u64,
    /// Files new to the index.
    pub added: u64,
    /// Files whose content changed.
    pub changed: u64,
    /// Files that vanished from the tree.
    pub removed: u64,
    /// Files whose content is as it was.
    pub unchanged: u64,
    /// Files read and hashed this time (the others were known by size and modification time).
    pub hashed: u64,
    /// Tracked files with at least one signature.
    pub with_signatures: u64,
    /// Signatures in the whole index.
    pub signatures: u64,
    /// Entries that could not be read, with the reason (they are left as they were).
    pub skipped: Vec<String>,
    /// Wall time of the scan.
    pub elapsed: Duration,
}

impl ScanReport {
    /// `Scanned: N files (A added, C changed, R removed), M with signatures`.
    pub fn line(&self) -> String {
        format!(
            "Scanned: {} files ({} added, {} changed, {} removed), {} with signatures",
            self.files, self.added, self.changed, self.removed, self.with_signatures
        )
    }

    /// The report as JSON.
    pub fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "root": self.root.to_string_lossy(),
            "files": self.files,
            "added": self.added,
            "changed": self.changed,
            "removed": self.removed,
            "unchanged": self.unchanged,
            "hashed": self.hashed,
            "with_signatures": self.with_signatures,
            "signatures": self.signatures,
            "skipped": self.skipped,
            "elapsed_ms": self.elapsed.as_secs_f64() * 1e3,
        })
    }

    /// The text reply: the summary line, then skipped entries if any.
    pub fn text(&self) -> String {
        let mut s = self.line();
        s.push('\n');
        if !self.skipped.is_empty() {
            s.push_str(&format!(
                "{} entries could not be read:\n",
                self.skipped.len()
            ));
            for k in self.skipped.iter().take(20) {
                s.push_str(&format!("  {k}\n"));
            }
            if self.skipped.len() > 20 {
                s.push_str(&format!("  … and {} more\n", self.skipped.len() - 20));
            }
        }
        s
    }
}

/// Counts of a planned scan, before the totals are read back.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    pub changes: Vec<Change>,
    pub added: u64,
    pub changed: u64,
    pub removed: u64,
    pub unchanged: u64,
    pub hashed: u64,
    pub skipped: Vec<String>,
}

/// A file that had to be read: its hash and signatures.
struct Read1 {
    sha256: String,
    signatures: Vec<Signature>,
}

/// Hex SHA-256 of a whole file, read in blocks (for files too large to parse).
pub(crate) fn hash_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

/// Reads, hashes and (when small enough and a parsed language) extracts one file.
fn read_one(f: &DiskFile, max_file_bytes: u64) -> std::io::Result<Read1> {
    if f.size > max_file_bytes || !is_parsed(f.language) {
        return Ok(Read1 {
            sha256: hash_file(&f.abs)?,
            signatures: Vec::new(),
        });
    }
    let bytes = std::fs::read(&f.abs)?;
    let sha256 = hex(&Sha256::digest(&bytes));
    let text = String::from_utf8_lossy(&bytes);
    Ok(Read1 {
        sha256,
        signatures: extract(f.language, &text),
    })
}

/// Decides what changes: files known by size and modification time are taken as they are,
/// the rest are read on worker threads.
pub(crate) fn plan(
    walk: Walk,
    known: &HashMap<String, Known>,
    same_root: bool,
    max_file_bytes: u64,
    progress: &mut dyn FnMut(ScanProgress),
) -> Plan {
    let mut plan = Plan {
        skipped: walk.skipped.clone(),
        ..Plan::default()
    };
    let total = walk.files.len();
    progress(ScanProgress {
        done: 0,
        total,
        path: String::new(),
    });
    let mut done = 0usize;
    let mut to_read: Vec<&DiskFile> = Vec::new();
    for f in &walk.files {
        match known.get(&f.rel) {
            Some(k)
                if same_root
                    && k.size == f.size
                    && k.mtime == f.mtime
                    && k.extractor == EXTRACTOR_VERSION =>
            {
                plan.unchanged += 1;
                done += 1;
            }
            _ => to_read.push(f),
        }
    }
    if done > 0 {
        progress(ScanProgress {
            done,
            total,
            path: String::new(),
        });
    }
    let results = read_all(&to_read, max_file_bytes, |path| {
        done += 1;
        progress(ScanProgress {
            done,
            total,
            path: path.to_string(),
        });
    });
    let mut unreadable: HashSet<&str> = HashSet::new();
    for (f, r) in to_read.iter().zip(results) {
        let r = match r {
            Ok(r) => r,
            Err(e) => {
                plan.skipped.push(format!("{}: {e}", f.rel));
                unreadable.insert(f.rel.as_str());
                continue;
            }
        };
        plan.hashed += 1;
        let k = known.get(&f.rel);
        let same_content = k.is_some_and(|k| k.sha256 == r.sha256);
        match k {
            Some(k) if same_content && same_root && k.extractor == EXTRACTOR_VERSION => {
                plan.unchanged += 1;
                plan.changes.push(Change::Touch {
                    path: f.rel.clone(),
                    mtime: f.mtime,
                });
                continue;
            }
            Some(_) if same_content => plan.unchanged += 1,
            Some(_) => plan.changed += 1,
            None => plan.added += 1,
        }
        plan.changes.push(Change::Put {
            row: FileRow {
                path: f.rel.clone(),
                size: f.size,
                mtime: f.mtime,
                sha256: r.sha256,
                language: f.language.to_string(),
                sig_count: r.signatures.len() as u64,
                signatures: r.signatures,
            },
            extractor: EXTRACTOR_VERSION,
        });
    }
    // A file that could not be read (or lies in a directory that could not be listed) keeps
    // its row: it is still there, just not readable now.
    let on_disk: HashSet<&str> = walk.files.iter().map(|f| f.rel.as_str()).collect();
    let kept = |p: &str| {
        unreadable.contains(p)
            || walk.unreadable_dirs.iter().any(|d| {
                d.is_empty()
                    || p.strip_prefix(d.as_str())
                        .is_some_and(|r| r.starts_with('/'))
            })
    };
    let mut gone: Vec<&String> = known
        .keys()
        .filter(|p| !on_disk.contains(p.as_str()) && !kept(p))
        .collect();
    gone.sort();
    for p in gone {
        plan.removed += 1;
        plan.changes.push(Change::Remove { path: p.clone() });
    }
    plan
}

/// Reads `files` on a few threads, calling `each` (on this thread) as each one finishes;
/// results come back in the order of `files`.
fn read_all(
    files: &[&DiskFile],
    max_file_bytes: u64,
    mut each: impl FnMut(&str),
) -> Vec<std::io::Result<Read1>> {
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(1, 8)
        .min(files.len());
    if workers <= 1 {
        return files
            .iter()
            .map(|f| {
                let r = read_one(f, max_file_bytes);
                each(&f.rel);
                r
            })
            .collect();
    }
    let next = AtomicUsize::new(0);
    let mut results: Vec<Option<std::io::Result<Read1>>> = files.iter().map(|_| None).collect();
    std::thread::scope(|scope| {
        let (tx, rx) = mpsc::channel();
        for _ in 0..workers {
            let tx = tx.clone();
            let next = &next;
            scope.spawn(move || {
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    let Some(f) = files.get(k) else { break };
                    if tx.send((k, read_one(f, max_file_bytes))).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        for (k, r) in rx {
            if let Some(f) = files.get(k) {
                each(&f.rel);
            }
            if let Some(slot) = results.get_mut(k) {
                *slot = Some(r);
            }
        }
    });
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(std::io::Error::other("the reader thread stopped"))))
        .collect()
}

/// How a tree differs from its index.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    /// Whether the recorded root still exists.
    pub root_exists: bool,
    /// Files whose content is as recorded.
    pub clean: u64,
    /// Files whose content differs.
    pub modified: Vec<String>,
    /// Tracked files no longer on disk.
    pub missing: Vec<String>,
    /// Files on disk the index does not track.
    pub new: Vec<String>,
    /// Entries that could not be read.
    pub unreadable: Vec<String>,
}

/// Compares `walk` with `known`: size and modification time first, the hash only when they
/// differ (a touched but unchanged file is clean).
pub(crate) fn status(walk: Walk, known: &HashMap<String, Known>, root_exists: bool) -> Status {
    let mut st = Status {
        root_exists,
        unreadable: walk.skipped,
        ..Status::default()
    };
    let mut seen: HashSet<&str> = HashSet::new();
    for f in &walk.files {
        let Some(k) = known.get(&f.rel) else {
            st.new.push(f.rel.clone());
            continue;
        };
        seen.insert(f.rel.as_str());
        if k.size == f.size && k.mtime == f.mtime {
            st.clean += 1;
            continue;
        }
        if k.size != f.size {
            st.modified.push(f.rel.clone());
            continue;
        }
        match hash_file(&f.abs) {
            Ok(h) if h == k.sha256 => st.clean += 1,
            Ok(_) => st.modified.push(f.rel.clone()),
            Err(e) => st.unreadable.push(format!("{}: {e}", f.rel)),
        }
    }
    st.missing = known
        .keys()
        .filter(|p| !seen.contains(p.as_str()))
        .cloned()
        .collect();
    st.missing.sort();
    st
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_lowercase_hex_sha256() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.txt");
        std::fs::write(&p, "abc").unwrap();
        assert_eq!(
            hash_file(&p).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
