#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The native provider against the real example plugin (`examples/native-hello`), built by
//! these tests with cargo into its own target directories.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use avm_core::{
    Caller, ErrorKind, ListOptions, NodeKind, Provider, Put, Request, WriteInput, contract,
};
use avm_provider_native::{NativeOptions, NativeProvider};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// Builds one variant of native-hello (once per test process) and returns the library.
/// Each variant has its own target directory: the file name is the same for all of them,
/// and a separate directory also keeps clear of the lock of the build running these tests.
fn build(features: &str, dir: &str) -> PathBuf {
    let repo = repo();
    let target = repo.join("target").join(dir);
    let mut cmd = Command::new(env!("CARGO"));
    cmd.arg("build")
        .arg("--locked")
        .arg("--manifest-path")
        .arg(repo.join("examples/native-hello/Cargo.toml"))
        .arg("--target-dir")
        .arg(&target);
    if !features.is_empty() {
        cmd.args(["--features", features]);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "building native-hello ({features}) failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lib = target.join("debug").join(format!(
        "{}native_hello{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    ));
    assert!(lib.is_file(), "{} was not built", lib.display());
    lib
}

fn hello_lib() -> &'static Path {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| build("", "native-hello"))
}

fn read_only_lib() -> &'static Path {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| build("read-only", "native-hello-ro"))
}

fn abi_v2_lib() -> &'static Path {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| build("abi-v2", "native-hello-v2"))
}

fn load(lib: &Path) -> NativeProvider {
    NativeProvider::new(
        "/native/**",
        NativeOptions::new(lib.to_string_lossy().into_owned()),
    )
    .unwrap()
}

fn hello() -> NativeProvider {
    load(hello_lib())
}

fn req(path: &str) -> Request {
    Request::new(path, Caller::Operator)
}

fn text(s: &str) -> WriteInput {
    WriteInput::Text(s.into())
}

#[test]
fn a_read_of_hello_name_greets_by_name() {
    let p = hello();
    assert_eq!(
        p.read(&req("/native/hello/bob")).unwrap().text,
        "Hello, bob!\n"
    );
    assert_eq!(
        p.read(&req("/native/hello/Zoë")).unwrap().text,
        "Hello, Zoë!\n"
    );
}

#[test]
fn written_content_reads_back_and_shows_in_listings() {
    let p = hello();
    p.write(&req("/native/store1/a.md"), text("alpha\n"))
        .unwrap();
    p.write(&req("/native/store1/sub/b.md"), text("beta"))
        .unwrap();
    assert_eq!(p.read(&req("/native/store1/a.md")).unwrap().text, "alpha\n");
    let listing = p
        .list(&req("/native/store1"), &ListOptions::default())
        .unwrap();
    let got: Vec<(&str, NodeKind)> = listing
        .entries
        .iter()
        .map(|e| (e.path.as_str(), e.kind))
        .collect();
    assert_eq!(
        got,
        [
            ("/native/store1/a.md", NodeKind::File),
            ("/native/store1/sub", NodeKind::Dir)
        ]
    );
    assert!(!listing.more);
    let all = p
        .list(
            &req("/native/store1"),
            &ListOptions {
                recursive: true,
                ..ListOptions::default()
            },
        )
        .unwrap();
    let paths: Vec<&str> = all.entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, ["/native/store1/a.md", "/native/store1/sub/b.md"]);
    let page = p
        .list(
            &req("/native/store1"),
            &ListOptions {
                recursive: true,
                limit: Some(1),
                offset: 0,
            },
        )
        .unwrap();
    assert_eq!(page.entries.len(), 1);
    assert!(page.more);
}

#[test]
fn stat_tells_files_from_directories() {
    let p = hello();
    p.write(&req("/native/stat1/f.txt"), text("12345")).unwrap();
    let f = p.stat(&req("/native/stat1/f.txt")).unwrap();
    assert_eq!((f.kind, f.size), (NodeKind::File, 5));
    assert_eq!(p.stat(&req("/native/stat1")).unwrap().kind, NodeKind::Dir);
    assert_eq!(
        p.stat(&req("/native/stat1/none")).unwrap_err().kind(),
        ErrorKind::NotFound
    );
}

#[test]
fn the_example_plugin_passes_the_provider_contract() {
    let p = hello();
    contract::run_all(&p, "/native/contract").unwrap();
}

#[test]
fn plugin_error_codes_map_onto_error_kinds_in_declaration_order() {
    let p = hello();
    for (i, kind) in ErrorKind::ALL.iter().enumerate() {
        let code = i + 1;
        let e = p.read(&req(&format!("/native/fail/{code}"))).unwrap_err();
        assert_eq!(e.kind(), *kind, "code {code}: {e}");
        assert!(e.message().contains("on purpose"), "{e}");
    }
    for code in ["15", "99", "-3"] {
        let e = p.read(&req(&format!("/native/fail/{code}"))).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Internal, "code {code}: {e}");
        assert!(e.message().contains(code), "{e}");
        assert!(e.message().contains("libnative_hello"), "{e}");
    }
}

#[test]
fn a_result_over_max_output_is_too_large() {
    let mut opts = NativeOptions::new(hello_lib().to_string_lossy().into_owned());
    opts.max_output = 100;
    let p = NativeProvider::new("/native/**", opts).unwrap();
    assert_eq!(p.read(&req("/native/big/100")).unwrap().text.len(), 100);
    let e = p.read(&req("/native/big/101")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TooLarge, "{e}");
    assert!(e.message().contains("100"), "{e}");
}

#[test]
fn the_request_json_carries_path_suffix_query_captures_and_caller() {
    let p = hello();
    let mut r = Request::new("/native/echo/x", Caller::Agent("alice".into()));
    r.mount = "/native/**".into();
    r.suffix = Some("meta".into());
    r.query.push("k", "v\"1");
    r.query.push("k", "second");
    r.captures.insert("**".into(), "echo/x".into());
    let sent: serde_json::Value = serde_json::from_str(&p.read(&r).unwrap().text).unwrap();
    assert_eq!(
        sent,
        serde_json::json!({
            "path": "/native/echo/x",
            "suffix": "meta",
            "query": {"k": "v\"1"},
            "captures": {"**": "echo/x"},
            "caller": {"type": "agent", "id": "alice"},
            "mount": "/native/**",
        })
    );
    let op: serde_json::Value =
        serde_json::from_str(&p.read(&req("/native/echo/y")).unwrap().text).unwrap();
    assert_eq!(op["caller"], serde_json::json!({"type": "operator"}));
    assert_eq!(op["suffix"], serde_json::Value::Null);
}

#[test]
fn writes_the_plugin_refuses_or_the_abi_cannot_carry_are_errors() {
    let p = hello();
    let e = p.write(&req("/native/hello/bob"), text("x")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ReadOnly, "{e}");
    let e = p
        .write(&req("/native/w1/nul.md"), text("a\0b"))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    let append = WriteInput::Put(Put {
        content: Some("more".into()),
        append: true,
        ..Put::default()
    });
    let e = p.write(&req("/native/w1/a.md"), append).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    let record = WriteInput::Record(serde_json::json!({"content": "x"}));
    assert_eq!(
        p.write(&req("/native/w1/a.md"), record).unwrap_err().kind(),
        ErrorKind::Unsupported
    );
    let create = |body: &str| {
        WriteInput::Put(Put {
            content: Some(body.into()),
            create_only: true,
            ..Put::default()
        })
    };
    assert_eq!(
        p.write(&req("/native/w1/once.md"), create("first"))
            .unwrap()
            .text,
        "first"
    );
    let e = p
        .write(&req("/native/w1/once.md"), create("second"))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
    assert_eq!(p.read(&req("/native/w1/once.md")).unwrap().text, "first");
}

#[test]
fn concurrent_calls_from_many_threads_all_succeed() {
    let p = std::sync::Arc::new(hello());
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let p = p.clone();
            std::thread::spawn(move || {
                for i in 0..50 {
                    let path = format!("/native/conc/t{t}/n{i}");
                    p.write(&req(&path), text(&format!("{t}-{i}"))).unwrap();
                    assert_eq!(p.read(&req(&path)).unwrap().text, format!("{t}-{i}"));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let all = p
        .list(
            &req("/native/conc"),
            &ListOptions {
                recursive: true,
                ..ListOptions::default()
            },
        )
        .unwrap();
    assert_eq!(all.entries.len(), 400);
}

#[test]
fn info_declares_what_the_library_exports() {
    let info = hello().info();
    assert_eq!(info.kind, "native");
    assert!(info.ops.read && info.ops.write && info.ops.list);
    assert!(!info.ops.remove && !info.ops.search);
    assert!(
        info.description.starts_with("native-hello: greets"),
        "{}",
        info.description
    );
    assert!(
        info.description.contains("libnative_hello"),
        "{}",
        info.description
    );
}

#[test]
fn a_library_without_the_optional_symbols_is_read_only_and_unlistable() {
    let p = load(read_only_lib());
    let info = p.info();
    assert!(info.ops.read && !info.ops.write && !info.ops.list);
    assert_eq!(
        p.read(&req("/native/hello/ro")).unwrap().text,
        "Hello, ro!\n"
    );
    let e = p.write(&req("/native/x.md"), text("x")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ReadOnly, "{e}");
    assert!(e.message().contains("avm_native_write"), "{e}");
    let e = p
        .list(&req("/native"), &ListOptions::default())
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    contract::read_only_rejects_writes(&p, "/native/ro").unwrap();
    contract::missing_is_not_found(&p, "/native/ro/missing").unwrap();
}

#[test]
fn a_library_speaking_another_abi_version_is_refused_naming_both_versions() {
    let lib = abi_v2_lib();
    let e = NativeProvider::new(
        "/native/**",
        NativeOptions::new(lib.to_string_lossy().into_owned()),
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(e.message().contains(&*lib.to_string_lossy()), "{e}");
    assert!(e.message().contains("abi version 2"), "{e}");
    assert!(e.message().contains("version 1"), "{e}");
}

/// The C library this very process has loaded, found in /proc/self/maps.
#[cfg(target_os = "linux")]
fn loaded_libc() -> String {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    maps.lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| {
            let name = p.rsplit('/').next().unwrap_or("");
            name.starts_with("libc.so") || name.starts_with("libc-")
        })
        .expect("libc is mapped")
        .to_string()
}

#[cfg(target_os = "linux")]
#[test]
fn a_shared_library_that_is_not_a_plugin_is_refused_naming_the_missing_symbol() {
    let libc = loaded_libc();
    let e = NativeProvider::new("/native/**", NativeOptions::new(libc.clone())).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(e.message().contains("avm_native_abi_version"), "{e}");
    assert!(e.message().contains(&libc), "{e}");
}

#[test]
fn a_missing_library_file_is_unavailable_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("libnothing.so");
    let e = NativeProvider::new(
        "/native/**",
        NativeOptions::new(missing.to_string_lossy().into_owned()),
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(e.message().contains(&*missing.to_string_lossy()), "{e}");
}

#[test]
fn a_file_that_is_not_a_library_is_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("libfake.so");
    std::fs::write(&fake, "not an ELF file").unwrap();
    let e = NativeProvider::new(
        "/native/**",
        NativeOptions::new(fake.to_string_lossy().into_owned()),
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(e.message().contains("cannot load"), "{e}");
    let e = NativeProvider::new(
        "/native/**",
        NativeOptions::new(dir.path().to_string_lossy().into_owned()),
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
}

#[test]
fn the_library_path_expands_environment_variables() {
    let lib = hello_lib();
    let rel = lib.strip_prefix(repo()).unwrap();
    // Cargo sets CARGO_MANIFEST_DIR for the test process, so it is a variable that exists.
    let opts = NativeOptions::new(format!("${{CARGO_MANIFEST_DIR}}/../../{}", rel.display()));
    let p = NativeProvider::new("/native/**", opts).unwrap();
    assert_eq!(
        p.read(&req("/native/hello/env")).unwrap().text,
        "Hello, env!\n"
    );
    let e = NativeProvider::new(
        "/native/**",
        NativeOptions::new("${AVM_SURELY_UNSET_VARIABLE_4711}/lib.so"),
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert!(
        e.message().contains("AVM_SURELY_UNSET_VARIABLE_4711"),
        "{e}"
    );
}

#[test]
fn options_reject_unknown_fields_and_fill_defaults() {
    let o: NativeOptions = serde_json::from_value(serde_json::json!({"library": "/x.so"})).unwrap();
    assert_eq!(o.max_output, 1024 * 1024);
    assert!(
        serde_json::from_value::<NativeOptions>(serde_json::json!({"library": "/x.so", "lib": 1}))
            .is_err()
    );
    assert!(serde_json::from_value::<NativeOptions>(serde_json::json!({})).is_err());
    let mut zero = NativeOptions::new(hello_lib().to_string_lossy().into_owned());
    zero.max_output = 0;
    assert_eq!(
        NativeProvider::new("/native/**", zero).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
}
