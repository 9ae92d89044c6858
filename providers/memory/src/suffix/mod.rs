//! The memory provider's suffixes as one typed table: each row names a suffix, where it
//! applies, its query keys, its help line and the handlers that read and write it. Dispatch
//! and [`Provider::info`](avm_core::Provider::info) both come from this table, so a suffix
//! cannot be declared without a handler or handled without being declared.

mod read;
mod write;

use avm_core::{Output, Request, Result, SuffixOn, SuffixSpec};

use crate::provider::MemoryProvider;

/// Reads a suffix of the node at the request's path.
type Reader = fn(&MemoryProvider, &Request) -> Result<Output>;
/// Writes a suffix of the node at the request's path from a text body.
type Writer = fn(&MemoryProvider, &Request, &str) -> Result<Output>;

/// One suffix of the memory provider.
pub(crate) struct Row {
    /// Name without the colon.
    name: &'static str,
    /// Files, directories or both.
    on: SuffixOn,
    /// Accepted query keys.
    query: &'static [&'static str],
    /// One line of help.
    help: &'static str,
    /// The read handler, when the suffix can be read.
    pub(crate) read: Option<Reader>,
    /// The write handler, when the suffix can be written.
    pub(crate) write: Option<Writer>,
}

use SuffixOn::{Any, Dir, File};

/// Every suffix, in the order `:info` lists them.
const TABLE: &[Row] = &[
    Row {
        name: "data",
        on: File,
        query: &[],
        help: "raw content",
        read: Some(MemoryProvider::read_data),
        write: None,
    },
    Row {
        name: "meta",
        on: File,
        query: &[],
        help: "metadata as JSON; write a JSON object to merge keys (null removes)",
        read: Some(MemoryProvider::read_meta),
        write: Some(MemoryProvider::write_meta),
    },
    Row {
        name: "tags",
        on: Any,
        query: &[],
        help: "tags (comma-separated; write to replace); on a directory: tag counts",
        read: Some(MemoryProvider::read_tags),
        write: Some(MemoryProvider::write_tags),
    },
    Row {
        name: "links",
        on: File,
        query: &["direction", "op", "target", "type", "weight"],
        help: "typed links; write lines `TARGET [TYPE] [WEIGHT]` (op=remove to unlink)",
        read: Some(MemoryProvider::read_links),
        write: Some(MemoryProvider::write_links),
    },
    Row {
        name: "history",
        on: File,
        query: &["limit", "verbose"],
        help: "version history, newest first",
        read: Some(MemoryProvider::read_history),
        write: None,
    },
    Row {
        name: "diff",
        on: File,
        query: &["from", "to"],
        help: "unified diff between two versions",
        read: Some(MemoryProvider::read_diff),
        write: None,
    },
    Row {
        name: "ttl",
        on: File,
        query: &[],
        help: "time to live; write 15m, 2h, 7d or never",
        read: Some(MemoryProvider::read_ttl),
        write: Some(MemoryProvider::write_ttl),
    },
    Row {
        name: "compact",
        on: File,
        query: &[],
        help: "write N to keep only the newest N versions of the history (default 3)",
        read: None,
        write: Some(MemoryProvider::write_compact),
    },
    Row {
        name: "path",
        on: File,
        query: &[],
        help: "the node's path",
        read: Some(MemoryProvider::read_path),
        write: None,
    },
    Row {
        name: "shared",
        on: File,
        query: &[],
        help: "who a shared memory is shared with (all, or agent ids; write to change)",
        read: Some(MemoryProvider::read_shared),
        write: Some(MemoryProvider::write_shared),
    },
    Row {
        name: "delta",
        on: File,
        query: &[],
        help: "what changed since your last :delta or :mark (moves your marker)",
        read: Some(MemoryProvider::read_delta),
        write: None,
    },
    Row {
        name: "mark",
        on: File,
        query: &[],
        help: "your read marker; write anything to mark the current version read",
        read: Some(MemoryProvider::read_mark),
        write: Some(MemoryProvider::write_mark),
    },
    Row {
        name: "changes",
        on: Dir,
        query: &["since", "minutes", "limit"],
        help: "nodes changed below this directory, newest first",
        read: Some(MemoryProvider::read_changes),
        write: None,
    },
    Row {
        name: "record",
        on: File,
        query: &[],
        help: "the lossless export record",
        read: Some(MemoryProvider::read_record),
        write: None,
    },
    Row {
        name: "list",
        on: Dir,
        query: &["limit", "offset", "recursive", "q", "tag"],
        help: "@shortcut, name and first line per entry; q= searches, tag= filters",
        read: Some(MemoryProvider::read_list),
        write: None,
    },
    Row {
        name: "stats",
        on: Dir,
        query: &[],
        help: "counts and sizes below this directory",
        read: Some(MemoryProvider::read_stats),
        write: None,
    },
    Row {
        name: "export",
        on: Dir,
        query: &["after", "limit"],
        help: "JSONL export records below this directory",
        read: Some(MemoryProvider::read_export),
        write: None,
    },
    Row {
        name: "search",
        on: Dir,
        query: &["q", "limit", "mode"],
        help: "search below this directory; mode=fts (default), semantic or hybrid",
        read: Some(MemoryProvider::read_search),
        write: None,
    },
];

/// The row of the suffix called `name`, if the memory provider has one.
pub(crate) fn find(name: &str) -> Option<&'static Row> {
    TABLE.iter().find(|r| r.name == name)
}

/// The table as the [`SuffixSpec`]s that `info()` declares.
pub(crate) fn specs() -> Vec<SuffixSpec> {
    TABLE
        .iter()
        .map(|r| {
            SuffixSpec::new(
                r.name,
                r.on,
                r.read.is_some(),
                r.write.is_some(),
                r.query,
                r.help,
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_suffix_has_one_row_and_at_least_one_handler() {
        let mut names: Vec<&str> = TABLE.iter().map(|r| r.name).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(names.len(), before, "a suffix is declared twice");
        for r in TABLE {
            assert!(
                r.read.is_some() || r.write.is_some(),
                ":{} has no handler",
                r.name
            );
        }
        assert!(find("meta").is_some_and(|r| r.read.is_some() && r.write.is_some()));
        assert!(find("compact").is_some_and(|r| r.read.is_none()));
        assert!(find("nope").is_none());
    }
}
