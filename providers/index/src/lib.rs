//! avm-provider-index: indexes of project source trees (config type `index`).
//!
//! An index tracks the files of one directory tree (by size, modification time and SHA-256),
//! knows which changed since the last scan, and holds the code signatures extracted from
//! Rust, Python, TypeScript/JavaScript and Go files. The state lives in its own SQLite file.
//!
//! Mounted at `/index/**` (the CLI's default), the paths are:
//!
//! | Path | Read | Write |
//! |---|---|---|
//! | `/index` | one line per index: `name  root  N files  scanned <time>` | — |
//! | `/index/<name>` | summary: root, description, counts by language, last scan | — |
//! | `/index/<name>/<rel path>` | the file's signatures as Markdown | — |
//! | `…:status` | `[c clean, m modified, d missing, n new]`, then `M`/`D`/`?` lines | — |
//! | `…:sigs?lang=rs&q=foo` | all signatures, grouped per file | — |
//! | `…:files` | tracked relative paths | — |
//! | `/index/<name>:json` | the summary as JSON | — |
//! | `/index/<name>:scan` | rescans the recorded root | an absolute directory: scans it |
//! | `/index/<name>:describe` | the description | sets the description |
//!
//! `:status`, `:sigs` and `:files` also work on a directory or file inside an index, scoped to
//! it. [`IndexProvider::scan`] is the same scan as a library call, with progress reports.

mod lang;
mod provider;
mod scan;
mod store;
mod walk;

pub use lang::{EXTRACTOR_VERSION, MAX_SIG_CHARS, Signature, extract, language_for};
pub use provider::{DEFAULT_MAX_FILE_BYTES, IndexOptions, IndexProvider};
pub use scan::{ScanProgress, ScanReport, Status};
pub use walk::SKIPPED_DIRS;
