#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The index provider end to end: real project trees in a temp dir, a real SQLite file, and
//! requests routed by a real host mounted at `/index/**`.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use avm_core::{Caller, ErrorKind, Host, ListOptions, Mount, NodeKind, WriteInput};
use avm_provider_index::{IndexOptions, IndexProvider, ScanProgress};

const LIB_RS: &str = r#"//! Crate docs mention fn not_in_docs() too.
use std::fmt;

// fn fake() is only mentioned in this comment
pub struct Config {
    pub name: String,
}

impl Config {
    pub fn new(name: &str) -> Self {
        Config { name: name.to_string() }
    }
}

pub async fn fetch_all<T, E>(
    urls: &[String],
    retries: u32,
) -> Result<Vec<T>, E>
where
    T: From<String>,
    E: fmt::Debug,
{
    todo!()
}

impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name)
    }
}
"#;

const MODELS_PY: &str = r#""""Models.

def not_a_function():
"""

class User:
    def __init__(self, name):
        self.name = name

    def greet(self, other: "User") -> str:
        return f"hi {other.name}"


def load_users(path):
    return []
"#;

const API_TS: &str = r#"export interface User { id: number }

export const fetchUser = async (id: number): Promise<User> => {
  return { id };
};

export default class Client {
  get(path: string): string {
    return path;
  }
}
"#;

const SERVER_GO: &str = r#"package server

type Server struct {
	Addr string
}

func (s *Server) Start(port int) error {
	return nil
}

func NewServer(addr string) *Server {
	return &Server{Addr: addr}
}
"#;

struct Env {
    _dir: tempfile::TempDir,
    project: PathBuf,
    db: PathBuf,
    provider: Arc<IndexProvider>,
    host: Host,
}

fn write(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

/// A project in all four languages, plus directories that must never be tracked.
fn project(root: &Path) {
    write(&root.join("src/lib.rs"), LIB_RS);
    write(&root.join("app/models.py"), MODELS_PY);
    write(&root.join("web/api.ts"), API_TS);
    write(&root.join("go/server.go"), SERVER_GO);
    write(&root.join("README.md"), "# Project\n");
    write(&root.join("target/debug/gen.rs"), "pub fn generated() {}\n");
    write(
        &root.join("node_modules/pkg/index.js"),
        "function dep() {}\n",
    );
    write(&root.join(".git/hooks/pre-commit.sh"), "echo hi\n");
    write(&root.join(".hidden/secret.py"), "def secret():\n    pass\n");
    write(
        &root.join("app/__pycache__/models.py"),
        "def cached():\n    pass\n",
    );
    write(&root.join("ignored/skip.rs"), "fn skip() {}\n");
    write(&root.join("web/types.gen.ts"), "export type T = number;\n");
    write(&root.join("image.png"), "not tracked: unknown extension");
    write(&root.join(".gitignore"), "ignored/\n*.gen.ts\n");
}

fn env_with(opts: impl FnOnce(String) -> IndexOptions) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let project_dir = dir.path().join("project");
    project(&project_dir);
    let db = dir.path().join("data/index.db");
    let provider =
        Arc::new(IndexProvider::new("/index/**", opts(db.to_string_lossy().into())).unwrap());
    let host = Host::new(vec![Mount::new("/index/**", provider.clone())]).unwrap();
    Env {
        project: project_dir,
        db,
        provider,
        host,
        _dir: dir,
    }
}

fn env() -> Env {
    env_with(|db| IndexOptions {
        db: Some(db),
        ..IndexOptions::default()
    })
}

impl Env {
    fn read(&self, path: &str) -> avm_core::Output {
        self.host
            .read(&Caller::Operator, path)
            .unwrap_or_else(|e| panic!("read {path}: {e}"))
    }

    fn read_err(&self, path: &str) -> avm_core::Error {
        match self.host.read(&Caller::Operator, path) {
            Ok(o) => panic!("read {path} should fail, got {:?}", o.text),
            Err(e) => e,
        }
    }

    fn scan(&self, name: &str, dir: &Path) -> avm_core::Output {
        self.host
            .write(
                &Caller::Operator,
                &format!("/index/{name}:scan"),
                WriteInput::Text(format!("{}\n", dir.display())),
            )
            .unwrap_or_else(|e| panic!("scan {name}: {e}"))
    }

    fn scan_project(&self) -> avm_core::Output {
        self.scan("proj", &self.project)
    }
}

/// Rewrites `path` with `text` and moves its modification time, so the change is seen even
/// when the size stays the same and the clock has not ticked.
fn rewrite(path: &Path, text: &str, shift_secs: u64) {
    let before = fs::metadata(path).unwrap().modified().unwrap();
    fs::write(path, text).unwrap();
    set_mtime(path, before + Duration::from_secs(shift_secs));
}

fn set_mtime(path: &Path, t: SystemTime) {
    fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(t)
        .unwrap();
}

#[test]
fn signatures_are_extracted_for_every_language() {
    let e = env();
    e.scan_project();

    let rs = e.read("/index/proj/src/lib.rs").text;
    assert!(rs.starts_with("## src/lib.rs\n"), "{rs}");
    assert!(rs.contains("- L5 pub struct Config\n"), "{rs}");
    assert!(
        rs.contains("- L9 impl Config\n  - L10 pub fn new(name: &str) -> Self\n"),
        "{rs}"
    );
    // The signature spans four lines and has a where-clause; it is shown on one line.
    assert!(
        rs.contains(
            "- L15 pub async fn fetch_all<T, E>(urls: &[String], retries: u32) -> Result<Vec<T>, E>\n"
        ),
        "{rs}"
    );
    assert!(rs.contains("- L26 impl fmt::Display for Config\n"), "{rs}");
    assert!(
        rs.contains("  - L27 fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result\n"),
        "{rs}"
    );

    let py = e.read("/index/proj/app/models.py").text;
    assert!(py.contains("- L6 class User:\n"), "{py}");
    assert!(
        py.contains("  - L10 def greet(self, other: \"User\") -> str:\n"),
        "{py}"
    );
    assert!(py.contains("- L14 def load_users(path):\n"), "{py}");
    assert!(!py.contains("not_a_function"), "{py}");

    let ts = e.read("/index/proj/web/api.ts").text;
    assert!(ts.contains("- L1 export interface User\n"), "{ts}");
    assert!(
        ts.contains("- L3 export const fetchUser = async (id: number): Promise<User> =>\n"),
        "{ts}"
    );
    assert!(
        ts.contains("- L7 export default class Client\n  - L8 get(path: string): string\n"),
        "{ts}"
    );

    let go = e.read("/index/proj/go/server.go").text;
    assert!(go.contains("- L3 type Server struct\n"), "{go}");
    assert!(
        go.contains("- L7 func (s *Server) Start(port int) error\n"),
        "{go}"
    );
    assert!(
        go.contains("- L11 func NewServer(addr string) *Server\n"),
        "{go}"
    );

    // The structured form carries kind, name, line and depth.
    let data = e.read("/index/proj/go/server.go").data();
    let sigs = data["signatures"].as_array().unwrap();
    assert_eq!(sigs[1]["kind"], "method");
    assert_eq!(sigs[1]["name"], "Start");
    assert_eq!(sigs[1]["line"], 7);
    assert_eq!(data["language"], "go");
    assert_eq!(data["sha256"].as_str().unwrap().len(), 64);
}

#[test]
fn a_comment_mentioning_fn_fake_is_not_a_signature() {
    let e = env();
    e.scan_project();
    let all = e.read("/index/proj:sigs").text;
    assert!(!all.contains("fake"), "{all}");
    assert!(!all.contains("not_in_docs"), "{all}");
    assert!(all.contains("pub fn new"), "{all}");
}

#[test]
fn scan_reports_what_it_found_and_an_unchanged_rescan_changes_nothing() {
    let e = env();
    let first = e.scan_project();
    // src/lib.rs, app/models.py, web/api.ts, go/server.go, README.md
    assert_eq!(
        first.text.lines().next().unwrap(),
        "Scanned: 5 files (5 added, 0 changed, 0 removed), 4 with signatures"
    );
    let d = first.data();
    assert_eq!(d["files"], 5);
    assert_eq!(d["hashed"], 5);

    let again = e.scan_project().data();
    assert_eq!(again["added"], 0);
    assert_eq!(again["changed"], 0);
    assert_eq!(again["removed"], 0);
    assert_eq!(again["unchanged"], 5);
    // Size and modification time vouch for every file: nothing is read again.
    assert_eq!(again["hashed"], 0);
}

#[test]
fn status_shows_modified_missing_and_new_files_and_a_rescan_clears_it() {
    let e = env();
    e.scan_project();
    assert_eq!(
        e.read("/index/proj:status").text,
        "[5 clean, 0 modified, 0 missing, 0 new]\nAll files clean.\n"
    );

    // Same size, different content: only the hash can tell.
    let same_size = LIB_RS.replace("fn new(", "fn old(");
    assert_eq!(same_size.len(), LIB_RS.len());
    rewrite(&e.project.join("src/lib.rs"), &same_size, 5);
    fs::remove_file(e.project.join("README.md")).unwrap();
    write(
        &e.project.join("go/extra.go"),
        "package server\n\nfunc Extra() {}\n",
    );

    let st = e.read("/index/proj:status");
    assert_eq!(
        st.text,
        "[3 clean, 1 modified, 1 missing, 1 new]\nM src/lib.rs\nD README.md\n? go/extra.go\n"
    );
    assert_eq!(st.data()["modified"][0], "src/lib.rs");

    let report = e.scan_project().data();
    assert_eq!(report["added"], 1);
    assert_eq!(report["changed"], 1);
    assert_eq!(report["removed"], 1);
    let rs = e.read("/index/proj/src/lib.rs").text;
    assert!(rs.contains("pub fn old(name: &str) -> Self"), "{rs}");
    assert!(!rs.contains("pub fn new("), "{rs}");
    assert!(
        e.read("/index/proj/go/extra.go")
            .text
            .contains("- L3 func Extra()\n")
    );
    assert!(
        e.read("/index/proj:status")
            .text
            .ends_with("All files clean.\n")
    );
    assert_eq!(
        e.read_err("/index/proj/README.md").kind(),
        ErrorKind::NotFound
    );
}

#[test]
fn touching_a_file_without_changing_it_keeps_it_clean() {
    let e = env();
    e.scan_project();
    let path = e.project.join("app/models.py");
    let before = fs::metadata(&path).unwrap().modified().unwrap();
    set_mtime(&path, before + Duration::from_secs(60));
    assert!(
        e.read("/index/proj:status")
            .text
            .ends_with("All files clean.\n")
    );
    let report = e.scan_project().data();
    assert_eq!(report["changed"], 0);
    assert_eq!(report["hashed"], 1);
    // The new time is recorded, so the next scan does not read the file again.
    assert_eq!(e.scan_project().data()["hashed"], 0);
}

#[test]
fn status_can_be_scoped_to_a_directory() {
    let e = env();
    e.scan_project();
    write(&e.project.join("web/new.ts"), "export function n() {}\n");
    write(&e.project.join("go/new.go"), "package server\n");
    let st = e.read("/index/proj/web:status").text;
    assert_eq!(
        st,
        "[1 clean, 0 modified, 0 missing, 1 new]\n? web/new.ts\n"
    );
    rewrite(&e.project.join("go/server.go"), "package server\n", 5);
    assert_eq!(
        e.read("/index/proj/go/server.go:status").text,
        "[0 clean, 1 modified, 0 missing, 0 new]\nM go/server.go\n"
    );
    fs::remove_file(e.project.join("go/server.go")).unwrap();
    assert_eq!(
        e.read("/index/proj/go/server.go:status").text,
        "[0 clean, 0 modified, 1 missing, 0 new]\nD go/server.go\n"
    );
    assert_eq!(
        e.read("/index/proj/web/api.ts:status").text,
        "[1 clean, 0 modified, 0 missing, 0 new]\nAll files clean.\n"
    );
}

#[test]
fn skipped_and_ignored_directories_are_not_tracked() {
    let e = env();
    e.scan_project();
    let files = e.read("/index/proj:files").text;
    assert_eq!(
        files,
        "README.md\napp/models.py\ngo/server.go\nsrc/lib.rs\nweb/api.ts\n"
    );
    for gone in [
        "target",
        "node_modules",
        ".git",
        ".hidden",
        "__pycache__",
        "ignored",
        "gen.ts",
    ] {
        assert!(!files.contains(gone), "{gone} tracked: {files}");
    }
    // Nor do they show up as new in the status.
    assert!(
        e.read("/index/proj:status")
            .text
            .ends_with("All files clean.\n")
    );
}

#[cfg(unix)]
#[test]
fn a_symlink_to_a_directory_outside_is_not_followed() {
    let e = env();
    let outside = e.project.parent().unwrap().join("outside");
    write(&outside.join("evil.rs"), "pub fn outside() {}\n");
    std::os::unix::fs::symlink(&outside, e.project.join("linked")).unwrap();
    std::os::unix::fs::symlink(outside.join("evil.rs"), e.project.join("src/link.rs")).unwrap();
    e.scan_project();
    let files = e.read("/index/proj:files").text;
    assert!(!files.contains("linked"), "{files}");
    assert!(!files.contains("link.rs"), "{files}");
    assert!(!e.read("/index/proj:sigs").text.contains("outside"));
    assert!(
        e.read("/index/proj:status")
            .text
            .ends_with("All files clean.\n")
    );
}

#[test]
fn index_names_may_contain_spaces() {
    let e = env();
    let out = e.scan("my project", &e.project);
    assert!(out.text.starts_with("Scanned: 5 files"), "{}", out.text);
    let summary = e.read("/index/my project").text;
    assert!(summary.starts_with("# my project\n"), "{summary}");
    assert!(
        e.read("/index/my project/src/lib.rs")
            .text
            .contains("pub struct Config")
    );
    assert!(e.read("/index").text.starts_with("my project  "));
    let err = e.read_err("/index/other project");
    assert_eq!(
        err.message(),
        "index 'other project' not found; create it with: avm index scan 'other project' DIR"
    );
}

#[test]
fn a_missing_index_is_not_found_with_the_command_that_creates_it() {
    let e = env();
    for path in [
        "/index/x",
        "/index/x:status",
        "/index/x:sigs",
        "/index/x/src/lib.rs",
    ] {
        let err = e.read_err(path);
        assert_eq!(err.kind(), ErrorKind::NotFound, "{path}");
        assert_eq!(
            err.message(),
            "index 'x' not found; create it with: avm index scan x DIR"
        );
    }
    let err = e.host.stat(&Caller::Operator, "/index/x").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    let err = e
        .host
        .write(
            &Caller::Operator,
            "/index/x:describe",
            WriteInput::Text("d".into()),
        )
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
}

#[test]
fn the_provider_meets_the_applicable_contract_checks() {
    let e = env();
    e.scan_project();
    let p: &dyn avm_core::Provider = e.provider.as_ref();
    avm_core::contract::missing_is_not_found(p, "/index/proj/src/nope.rs").unwrap();
    avm_core::contract::missing_is_not_found(p, "/index/nope").unwrap();
    avm_core::contract::declared_suffixes_work(p, "/index/proj/src/lib.rs").unwrap();
    avm_core::contract::declared_suffixes_work(p, "/index/nope/src/lib.rs").unwrap();
}

#[test]
fn plain_writes_are_refused_as_read_only() {
    let e = env();
    e.scan_project();
    for path in [
        "/index/proj/src/lib.rs",
        "/index/proj",
        "/index/proj/new.md",
    ] {
        let err = e
            .host
            .write(&Caller::Operator, path, WriteInput::Text("x".into()))
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ReadOnly, "{path}");
        assert!(err.message().contains(":scan"), "{}", err.message());
    }
    let err = e
        .host
        .write(
            &Caller::Operator,
            "/index/proj:status",
            WriteInput::Text("x".into()),
        )
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ReadOnly);
}

#[test]
fn scan_refuses_relative_and_missing_directories() {
    let e = env();
    let err = e
        .host
        .write(
            &Caller::Operator,
            "/index/p:scan",
            WriteInput::Text("relative/dir".into()),
        )
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.message().contains("absolute"), "{}", err.message());
    let missing = e.project.join("does-not-exist");
    let err = e
        .host
        .write(
            &Caller::Operator,
            "/index/p:scan",
            WriteInput::Text(missing.display().to_string()),
        )
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    let err = e
        .host
        .write(
            &Caller::Operator,
            "/index/p:scan",
            WriteInput::Text(" \n".into()),
        )
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    let err = e
        .host
        .write(
            &Caller::Operator,
            "/index/p:scan",
            WriteInput::Text("/".into()),
        )
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    let file = e.project.join("README.md");
    let err = e
        .host
        .write(
            &Caller::Operator,
            "/index/p:scan",
            WriteInput::Text(file.display().to_string()),
        )
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotADirectory);
    // Nothing was created by the failed scans.
    assert_eq!(e.read_err("/index/p").kind(), ErrorKind::NotFound);
}

#[test]
fn reading_scan_rescans_the_recorded_root() {
    let e = env();
    e.scan_project();
    write(&e.project.join("src/more.rs"), "pub fn more() {}\n");
    let out = e.read("/index/proj:scan");
    assert_eq!(
        out.text,
        "Scanned: 6 files (1 added, 0 changed, 0 removed), 5 with signatures\n"
    );
}

#[test]
fn sigs_filter_by_language_and_substring() {
    let e = env();
    e.scan_project();
    let py = e.read("/index/proj:sigs?lang=py").text;
    assert!(py.starts_with("## app/models.py\n\n"), "{py}");
    assert!(py.contains("def greet"), "{py}");
    assert!(!py.contains("fn "), "{py}");

    let fetch = e.read("/index/proj:sigs?q=FETCH").text;
    assert!(
        fetch.contains("## src/lib.rs\n\n- L15 pub async fn fetch_all"),
        "{fetch}"
    );
    assert!(
        fetch.contains("## web/api.ts\n\n- L3 export const fetchUser"),
        "{fetch}"
    );
    assert!(!fetch.contains("greet"), "{fetch}");
    let data = e.read("/index/proj:sigs?q=fetch&lang=ts").data();
    assert_eq!(data.as_array().unwrap().len(), 1);
    assert_eq!(data[0]["path"], "web/api.ts");

    assert_eq!(
        e.read("/index/proj:sigs?q=nothing-like-this").text,
        "(no signatures match)\n"
    );
    assert_eq!(
        e.read_err("/index/proj:sigs?lang=cobol").kind(),
        ErrorKind::InvalidInput
    );
    // Keys the suffix does not declare are refused by the host.
    assert_eq!(
        e.read_err("/index/proj:sigs?bogus=1").kind(),
        ErrorKind::InvalidInput
    );
    // Scoped to a directory.
    let go = e.read("/index/proj/go:sigs").text;
    assert!(go.starts_with("## go/server.go\n"), "{go}");
    assert!(!go.contains("lib.rs"), "{go}");
}

#[test]
fn listing_shows_the_tree_and_stat_agrees_with_read() {
    let e = env();
    e.scan_project();
    let top = e
        .host
        .list(&Caller::Operator, "/index/proj", &ListOptions::default())
        .unwrap();
    let got: Vec<(&str, NodeKind)> = top
        .entries
        .iter()
        .map(|x| (x.path.as_str(), x.kind))
        .collect();
    assert_eq!(
        got,
        vec![
            ("/index/proj/README.md", NodeKind::File),
            ("/index/proj/app", NodeKind::Dir),
            ("/index/proj/go", NodeKind::Dir),
            ("/index/proj/src", NodeKind::Dir),
            ("/index/proj/web", NodeKind::Dir),
        ]
    );
    let rec = e
        .host
        .list(
            &Caller::Operator,
            "/index/proj/src",
            &ListOptions {
                recursive: true,
                ..ListOptions::default()
            },
        )
        .unwrap();
    assert_eq!(rec.entries.len(), 1);
    let lib = &rec.entries[0];
    assert_eq!(lib.path, "/index/proj/src/lib.rs");
    let text = e.read("/index/proj/src/lib.rs").text;
    assert_eq!(lib.size, text.len() as u64);
    let st = e
        .host
        .stat(&Caller::Operator, "/index/proj/src/lib.rs")
        .unwrap();
    assert_eq!(st.kind, NodeKind::File);
    assert_eq!(st.size, text.len() as u64);
    assert_eq!(
        e.host
            .stat(&Caller::Operator, "/index/proj/src")
            .unwrap()
            .kind,
        NodeKind::Dir
    );
    let err = e
        .host
        .list(
            &Caller::Operator,
            "/index/proj/src/lib.rs",
            &ListOptions::default(),
        )
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotADirectory);
    let err = e.read_err("/index/proj/src");
    assert_eq!(err.kind(), ErrorKind::IsADirectory);
    let page = e
        .host
        .list(
            &Caller::Operator,
            "/index/proj",
            &ListOptions {
                limit: Some(2),
                offset: 1,
                ..ListOptions::default()
            },
        )
        .unwrap();
    assert_eq!(page.entries.len(), 2);
    assert_eq!(page.entries[0].path, "/index/proj/app");
    assert!(page.more);
}

#[test]
fn the_root_lists_indexes_and_the_summary_counts_languages() {
    let e = env();
    assert!(e.read("/index").text.starts_with("No indexes yet"));
    e.scan_project();
    let root = e.read("/index").text;
    let canonical = fs::canonicalize(&e.project).unwrap();
    let prefix = format!("proj  {}  5 files  scanned ", canonical.display());
    assert!(root.starts_with(&prefix), "{root}");
    let names = e
        .host
        .list(&Caller::Operator, "/index", &ListOptions::default())
        .unwrap();
    assert_eq!(names.entries[0].path, "/index/proj");
    assert_eq!(names.entries[0].kind, NodeKind::Dir);

    e.host
        .write(
            &Caller::Operator,
            "/index/proj:describe",
            WriteInput::Text("the demo project\n".into()),
        )
        .unwrap();
    let summary = e.read("/index/proj").text;
    assert!(summary.starts_with("# proj\n\nRoot: "), "{summary}");
    assert!(
        summary.contains("Description: the demo project\n"),
        "{summary}"
    );
    assert!(
        summary.contains("Files: 5 (4 with signatures, "),
        "{summary}"
    );
    assert!(summary.contains("- rust: 1\n"), "{summary}");
    assert!(summary.contains("- markdown: 1\n"), "{summary}");
    assert_eq!(e.read("/index/proj:describe").text, "the demo project\n");

    let json = e.read("/index/proj:json").data();
    assert_eq!(json["files"], 5);
    assert_eq!(json["languages"]["go"], 1);
    assert_eq!(json["description"], "the demo project");
    let parsed: serde_json::Value = serde_json::from_str(&e.read("/index/proj:json").text).unwrap();
    assert_eq!(parsed, json);
}

#[test]
fn the_index_persists_in_its_database_file() {
    let e = env();
    e.scan_project();
    let db = e.db.to_string_lossy().into_owned();
    let again = IndexProvider::new(
        "/index/**",
        IndexOptions {
            db: Some(db),
            ..IndexOptions::default()
        },
    )
    .unwrap();
    // A second provider on the same file (as a second avm process would be) sees the scan
    // and can rescan without re-reading anything.
    let report = again.scan("proj", &e.project, &mut |_| {}).unwrap();
    assert_eq!(report.added, 0);
    assert_eq!(report.hashed, 0);
    assert_eq!(report.files, 5);
}

#[test]
fn large_files_are_tracked_by_hash_but_not_parsed() {
    let e = env_with(|db| IndexOptions {
        db: Some(db),
        max_file_bytes: 200,
    });
    let big = format!("pub fn big() {{}}\n{}", "// padding\n".repeat(50));
    write(&e.project.join("src/big.rs"), &big);
    e.scan_project();
    let text = e.read("/index/proj/src/big.rs").text;
    assert!(text.contains("(no signatures:"), "{text}");
    assert!(text.contains("over max_file_bytes (200)"), "{text}");
    assert!(e.read("/index/proj:files").text.contains("src/big.rs\n"));
    // Its hash is still tracked: a change shows in the status.
    rewrite(&e.project.join("src/big.rs"), &big.replace("big", "bog"), 5);
    assert!(e.read("/index/proj:status").text.contains("M src/big.rs\n"));
}

#[test]
fn scan_reports_progress_up_to_the_total() {
    let e = env();
    let mut seen: Vec<ScanProgress> = Vec::new();
    let report = e
        .provider
        .scan("proj", &e.project, &mut |p| seen.push(p))
        .unwrap();
    assert_eq!(report.files, 5);
    let last = seen.last().unwrap();
    assert_eq!((last.done, last.total), (5, 5));
    assert_eq!(seen[0].done, 0);
    let mut paths: Vec<&str> = seen[1..].iter().map(|p| p.path.as_str()).collect();
    paths.sort_unstable();
    assert_eq!(
        paths,
        vec![
            "README.md",
            "app/models.py",
            "go/server.go",
            "src/lib.rs",
            "web/api.ts"
        ]
    );
}

#[test]
fn bad_index_names_and_options_are_refused() {
    let e = env();
    let err = e.provider.scan("a:b", &e.project, &mut |_| {}).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    let err = e.provider.scan("", &e.project, &mut |_| {}).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    let err = IndexProvider::new(
        "/index/**",
        IndexOptions {
            db: None,
            max_file_bytes: 0,
        },
    )
    .err()
    .unwrap();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    let unknown: Result<IndexOptions, _> =
        serde_json::from_value(serde_json::json!({"db": "x.db", "root": "/"}));
    assert!(unknown.is_err());
    let defaults: IndexOptions = serde_json::from_value(serde_json::json!({})).unwrap();
    assert_eq!(defaults.max_file_bytes, 1 << 20);
}

#[test]
fn suffixes_that_belong_to_the_index_are_refused_on_files() {
    let e = env();
    e.scan_project();
    let err = e.read_err("/index/proj/src/lib.rs:json");
    assert_eq!(err.kind(), ErrorKind::Unsupported);
    assert!(
        err.message().contains("/index/proj:json"),
        "{}",
        err.message()
    );
    // The file-level suffixes work there.
    assert!(
        e.read("/index/proj/src/lib.rs:sigs")
            .text
            .starts_with("## src/lib.rs\n")
    );
    assert_eq!(e.read("/index/proj/src/lib.rs:files").text, "src/lib.rs\n");
}
