//! The plugin host through the real CLI: scaffold, build, mount and read a WASM plugin; project
//! indexes; every built-in provider type mounted from a config file.

use crate::{Env, s};

/// `avm plugin build` runs cargo: give it the real toolchain and registry cache.
fn with_toolchain(env: &Env, args: &[&str]) -> crate::Run {
    let mut c = env.cmd(args);
    let home = std::env::var_os("HOME").unwrap_or_default();
    let home = std::path::PathBuf::from(home);
    c.env(
        "CARGO_HOME",
        std::env::var_os("CARGO_HOME").unwrap_or_else(|| home.join(".cargo").into()),
    )
    .env(
        "RUSTUP_HOME",
        std::env::var_os("RUSTUP_HOME").unwrap_or_else(|| home.join(".rustup").into()),
    )
    .env("CARGO", env!("CARGO"));
    // The toolchain these tests run under (pinned, with the wasm32-wasip2 target .ci/run adds),
    // not rustup's default one, which the scaffold outside the repository would otherwise get:
    // that one may lack the target, or be mid-update (a run failed as rustup synced "stable").
    if let Some(t) = std::env::var_os("RUSTUP_TOOLCHAIN") {
        c.env("RUSTUP_TOOLCHAIN", t);
    }
    crate::Run::from_output(c.output().unwrap())
}

#[test]
fn a_scaffolded_plugin_builds_mounts_and_answers_through_the_cli() {
    let env = Env::new();
    let work = env.path("work");
    std::fs::create_dir_all(&work).unwrap();
    let out = env.run(&["plugin", "new", "greet", "--dir", s(&work)]);
    assert!(out.ok().contains("Created plugin greet"), "{out:?}");
    env.run(&["plugin", "new", "greet", "--dir", s(&work)])
        .fails(1);
    env.run(&["plugin", "new", "bad name", "--dir", s(&work)])
        .fails(2);

    let built = with_toolchain(&env, &["--json", "plugin", "build", s(&work.join("greet"))]);
    let v = built.json();
    let file = v[0]["file"].as_str().unwrap().to_string();
    assert!(file.ends_with("greet.wasm"), "{v}");
    assert_eq!(v[0]["description"], "greet: greets whoever the path names");

    env.write_file(
        "config/avm/config.toml",
        &format!(
            "[[mounts]]\npattern = \"/**\"\ntype = \"memory\"\n\n[[mounts]]\npattern = \"/greet/{{name}}\"\ntype = \"wasm\"\noptions = {{ component = \"{file}\", timeout = \"500ms\", memory = \"16MiB\" }}\n"
        ),
    );
    env.run(&["config", "check"]).ok();
    assert_eq!(env.run(&["read", "/greet/world"]).ok(), "Hello, world!\n");
    assert_eq!(
        env.run(&["read", "/greet/world:shout"]).ok(),
        "HELLO, WORLD!\n"
    );
    assert_eq!(
        env.run(&["--agent", "alice", "read", "/greet/bob"]).ok(),
        "Hello, bob! (asked by alice)\n"
    );
    let info = env.run(&["plugin", "info", &file]);
    assert!(info.ok().contains(":shout"), "{info:?}");
    // Memories still live beside the plugin.
    env.run(&["write", "/memory/a.md", "-c", "kept"]).ok();
    assert_eq!(env.run(&["read", "/memory/a.md"]).ok(), "kept");
    // A plugin that does not compile says why, also when the answer is JSON.
    let lib = work.join("greet/src/lib.rs");
    let mut src = std::fs::read_to_string(&lib).unwrap();
    src.push_str("\nthis is not rust\n");
    std::fs::write(&lib, src).unwrap();
    let broken = with_toolchain(&env, &["--json", "plugin", "build", s(&work.join("greet"))]);
    let msg = broken.fails(1);
    assert!(
        msg.contains("src/lib.rs") && msg.contains("this is not rust"),
        "{msg}"
    );
    assert!(broken.stdout.is_empty(), "{broken:?}");
}

#[test]
fn a_bad_wasm_mount_is_a_clear_configuration_error() {
    let env = Env::new();
    env.write_file(
        "config/avm/config.toml",
        "[[mounts]]\npattern = \"/p/**\"\ntype = \"wasm\"\noptions = { component = \"/nonexistent.wasm\", fuel = 3 }\n",
    );
    let err = env.run(&["read", "/memory/x"]);
    let msg = err.fails(2);
    assert!(msg.contains("fuel"), "{msg}");
}

#[test]
fn project_indexes_scan_report_changes_and_list_signatures() {
    let env = Env::new();
    let proj = env.path("proj");
    std::fs::create_dir_all(proj.join("src")).unwrap();
    std::fs::write(
        proj.join("src/main.rs"),
        "/// entry\npub fn main() {\n    run(1);\n}\n\nfn run(n: u32) -> u32 {\n    n\n}\n",
    )
    .unwrap();
    std::fs::write(
        proj.join("tool.py"),
        "class Tool:\n    def go(self, x):\n        return x\n",
    )
    .unwrap();
    let agent = env.run(&["--agent", "alice", "index", "scan", "proj", s(&proj)]);
    assert!(agent.fails(1).contains("only an operator"), "{agent:?}");
    let out = env.run(&["index", "scan", "proj", s(&proj)]);
    assert!(out.ok().starts_with("Scanned: 2 files"), "{out:?}");
    let sigs = env.run(&["index", "sigs", "proj"]);
    let text = sigs.ok();
    assert!(text.contains("pub fn main()"), "{text}");
    assert!(text.contains("def go(self, x):"), "{text}");
    let rs = env.run(&["index", "sigs", "proj", "--lang", "rs"]);
    assert!(!rs.ok().contains("def go"), "{rs:?}");
    assert!(
        env.run(&["index", "status", "proj"])
            .ok()
            .contains("All files clean.")
    );

    std::fs::write(proj.join("tool.py"), "def other():\n    pass\n").unwrap();
    std::fs::write(
        proj.join("new.go"),
        "package x\nfunc New() int { return 1 }\n",
    )
    .unwrap();
    std::fs::remove_file(proj.join("src/main.rs")).unwrap();
    let status = env.run(&["index", "status", "proj"]);
    let st = status.ok();
    assert!(st.contains("M tool.py"), "{st}");
    assert!(st.contains("D src/main.rs"), "{st}");
    assert!(st.contains("? new.go"), "{st}");
    let again = env.run(&["index", "scan", "proj"]);
    assert!(again.ok().starts_with("Scanned: 2 files"), "{again:?}");
    let listed = env.run(&["--json", "index", "list"]);
    assert!(listed.ok().contains("proj"), "{listed:?}");
    let missing = env.run(&["index", "status", "nope"]);
    assert!(
        missing.fails(1).contains("avm index scan nope"),
        "{missing:?}"
    );
}

#[test]
fn file_script_sqlite_and_http_providers_mount_from_config_and_keep_captures_in_their_slot() {
    use std::io::{Read, Write};
    let env = Env::new();
    // file
    let docs = env.path("docs");
    std::fs::create_dir_all(docs.join("guide")).unwrap();
    std::fs::write(docs.join("guide/intro.md"), "read me\n").unwrap();
    // script: prints its arguments one per line
    let script = env.write_file(
        "bin/args.sh",
        "#!/bin/sh\nfor a in \"$@\"; do echo \"arg:$a\"; done\n",
    );
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    // sqlite
    let db = env.path("app.db");
    {
        let c = rusqlite::Connection::open(&db).unwrap();
        c.execute_batch(
            "CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT); INSERT INTO users VALUES (1,'ada'),(2,'bob');",
        )
        .unwrap();
    }
    // http: a server that echoes the request line
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let mut buf = [0u8; 4096];
            let n = s.read(&mut buf).unwrap_or(0);
            let req = String::from_utf8_lossy(&buf[..n]);
            let line = req.lines().next().unwrap_or("").to_string();
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{line}",
                line.len()
            );
        }
    });
    env.write_file(
        "config/avm/config.toml",
        &format!(
            r#"[[mounts]]
pattern = "/**"
type = "memory"

[[mounts]]
pattern = "/docs/**"
type = "file"
options = {{ root = "{docs}", read_only = true }}

[[mounts]]
pattern = "/tools/args/{{word}}"
type = "script"
options = {{ program = "{script}", args = ["--word", "{{word}}"] }}

[[mounts]]
pattern = "/db/users/{{id}}"
type = "sqlite"
options = {{ db = "{db}", query = "SELECT id, name FROM users WHERE id = :id", list_query = "SELECT id FROM users ORDER BY id", format = "csv" }}

[[mounts]]
pattern = "/web/{{q}}"
type = "http"
options = {{ url = "http://{addr}/search?q={{q}}" }}
"#,
            docs = s(&docs),
            script = s(&script),
            db = s(&db),
        ),
    );
    env.run(&["config", "check"]).ok();
    assert_eq!(env.run(&["read", "/docs/guide/intro.md"]).ok(), "read me\n");
    env.run(&["write", "/docs/guide/new.md", "-c", "x"])
        .fails(1);

    let hostile = "a b;touch pwned;$(id)`id`'\"";
    let out = env.run(&["read", &format!("/tools/args/{hostile}")]);
    let text = out.ok();
    assert_eq!(text, format!("arg:--word\narg:{hostile}\n"), "{out:?}");
    assert!(!env.path("pwned").exists() && !std::path::Path::new("pwned").exists());

    assert_eq!(env.run(&["read", "/db/users/1"]).ok(), "id,name\n1,ada\n");
    let inj = env.run(&["read", "/db/users/1 OR 1=1"]);
    assert!(
        inj.fails(1).contains("not found") || inj.stderr.contains("no rows"),
        "{inj:?}"
    );
    let ls = env.run(&["ls", "--shallow", "/db/users"]);
    let listed = ls.ok();
    assert!(
        listed.contains("/db/users/1") && listed.contains("/db/users/2"),
        "{listed}"
    );

    let web = env.run(&["read", "/web/a&b=c#d%2F..%2F"]);
    let line = web.ok();
    // Paths are not percent-decoded, so the literal `%` is encoded too.
    assert_eq!(
        line, "GET /search?q=a%26b%3Dc%23d%252F..%252F HTTP/1.1",
        "{web:?}"
    );
}
