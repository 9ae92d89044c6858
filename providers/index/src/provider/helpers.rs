//! Small helpers of the provider: the errors it gives, name checks, path tests and the
//! entries and stats of directories.

use avm_core::{Entry, Error, ErrorKind, NodeKind, Request, Result, Stat};

use crate::lang::Signature;
use crate::store::IndexRow;

/// The NotFound every missing index gives, with the command that creates one.
pub(super) fn missing_index(name: &str) -> Error {
    Error::new(
        ErrorKind::NotFound,
        format!(
            "index '{name}' not found; create it with: avm index scan {} DIR",
            shell_word(name)
        ),
    )
}

pub(super) fn require(row: Option<IndexRow>, name: &str) -> Result<IndexRow> {
    row.ok_or_else(|| missing_index(name))
}

pub(super) fn not_tracked(path: &str, name: &str, rel: &str) -> Error {
    Error::new(
        ErrorKind::NotFound,
        format!(
            "no such node: {path} (index '{name}' tracks no file or directory '{rel}'; read its :files, or rescan with :scan)"
        ),
    )
}

pub(super) fn on_index_only(req: &Request, suffix: &str, index: &str) -> Error {
    Error::new(
        ErrorKind::Unsupported,
        format!(
            "{}:{suffix} is not served on a file; use it on the index itself: {index}:{suffix}",
            req.path
        ),
    )
}

/// Quotes `s` for a POSIX shell when it is not a plain word.
fn shell_word(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-+@%".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Is `path` strictly below the directory `dir` (both relative)?
pub(super) fn within(path: &str, dir: &str) -> bool {
    path.strip_prefix(dir).is_some_and(|r| r.starts_with('/'))
}

/// Index names are single path segments that the address grammar can carry.
pub(super) fn validate_name(name: &str) -> Result<()> {
    let bad = name.is_empty()
        || name == "."
        || name == ".."
        || name.len() > avm_core::address::MAX_SEGMENT_BYTES
        || name
            .chars()
            .any(|c| c.is_control() || matches!(c, '/' | '\\' | ':' | '?'));
    if bad || name.trim() != name {
        return Err(Error::invalid(format!(
            "index name {name:?} is not accepted; use one path segment of up to 255 bytes without '/', '\\', ':', '?', control characters or surrounding spaces, e.g. my-project"
        )));
    }
    Ok(())
}

pub(super) fn push_sigs<'a>(s: &mut String, sigs: impl Iterator<Item = &'a Signature>, flat: bool) {
    for sig in sigs {
        let depth = if flat { 0 } else { sig.depth as usize };
        s.push_str(&format!(
            "{}- L{} {}\n",
            "  ".repeat(depth.min(8)),
            sig.line,
            sig.text
        ));
    }
}

pub(super) fn dir_stat(updated_at: Option<i64>, created_at: Option<i64>) -> Stat {
    Stat {
        kind: NodeKind::Dir,
        size: 0,
        version: None,
        created_at,
        updated_at,
        accessed_at: None,
        attrs: avm_core::Attrs::default(),
    }
}

pub(super) fn dir_entry(path: String, updated_at: Option<i64>) -> Entry {
    Entry {
        path,
        kind: NodeKind::Dir,
        size: 0,
        version: None,
        updated_at,
    }
}
