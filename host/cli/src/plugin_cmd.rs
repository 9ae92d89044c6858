//! `avm plugin new|build|info`, `avm index scan|status|sigs|list` and `avm gossip …`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use serde_json::json;

use avm_core::provider::WriteInput;
use avm_core::{Error, ErrorKind, Provider, Result};
use avm_provider_wasm::{WasmEnv, WasmOptions, WasmProvider};

use crate::app::App;
use crate::cli::{GossipAction, IndexAction, PluginAction};
use crate::commands::{addr, emit, ensure_nl, print_json};

const SDK_SRC: &str = include_str!("../../../plugins/sdk/src/lib.rs");
const WIT: &str = include_str!("../../../wit/avm-provider-0.1.0/provider.wit");
const LOCK: &str = include_str!("../../../plugins/Cargo.lock");
const TARGET: &str = "wasm32-wasip2";

fn io(what: &str, p: &Path, e: std::io::Error) -> Error {
    Error::new(
        ErrorKind::Unavailable,
        format!("cannot {what} {}: {e}", p.display()),
    )
}

fn write_file(path: &Path, text: &str) -> Result<()> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).map_err(|e| io("create", d, e))?;
    }
    std::fs::write(path, text).map_err(|e| io("write", path, e))
}

fn valid_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "plugin name {name:?}: use a letter, then letters, digits, - or _ (at most 64)"
        )))
    }
}

fn type_name(name: &str) -> String {
    let mut out = String::new();
    let mut up = true;
    for c in name.chars() {
        if c == '-' || c == '_' {
            up = true;
        } else if up {
            out.push(c.to_ascii_uppercase());
            up = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// Writes a plugin crate `dir/name`: its source, a vendored copy of the SDK and the WIT.
pub fn scaffold(parent: &Path, name: &str) -> Result<PathBuf> {
    valid_name(name)?;
    let root = parent.join(name);
    if root.exists() {
        return Err(Error::new(
            ErrorKind::AlreadyExists,
            format!(
                "{} already exists; pick another name or --dir",
                root.display()
            ),
        ));
    }
    let ty = type_name(name);
    write_file(
        &root.join("Cargo.toml"),
        &format!(
            r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
crate-type = ["cdylib"]

[dependencies]
avm-plugin = {{ path = "vendor/avm-plugin" }}

[profile.release]
opt-level = "s"
lto = true
strip = true
codegen-units = 1

# A plugin is its own workspace, even inside another project.
[workspace]
"#
        ),
    )?;
    write_file(
        &root.join("src/lib.rs"),
        &format!(
            r#"//! {name}: an avm WASM plugin. Build with `avm plugin build`.

use avm_plugin::{{Caller, Entry, Error, Info, Provider, Request, Result, Suffix, export}};

struct {ty};

impl Provider for {ty} {{
    /// What the plugin offers; the host validates suffixes and queries against it.
    fn describe() -> Info {{
        Info::new("{name}: greets whoever the path names")
            .lists()
            .suffix(Suffix::file("shout", "the greeting in capitals"))
    }}

    /// `cat /{name}/world` → `Hello, world!`
    fn read(req: Request) -> Result<String> {{
        let name = req
            .capture("name")
            .or_else(|| req.capture("**"))
            .filter(|n| !n.is_empty())
            .ok_or_else(|| Error::is_a_directory(&req.path))?;
        let asked_by = match &req.caller {{
            Caller::Agent(a) => format!(" (asked by {{a}})"),
            Caller::Operator => String::new(),
        }};
        let text = format!("Hello, {{name}}!{{asked_by}}\n");
        Ok(match req.suffix.as_deref() {{
            Some("shout") => text.to_uppercase(),
            _ => text,
        }})
    }}

    /// `ls /{name}`
    fn list(_req: Request) -> Result<Vec<Entry>> {{
        Ok(vec![Entry::file("world", 14)])
    }}
}}

export!({ty});
"#
        ),
    )?;
    write_file(
        &root.join("vendor/avm-plugin/Cargo.toml"),
        r#"[package]
name = "avm-plugin"
version = "0.1.0"
edition = "2024"
publish = false

[dependencies]
wit-bindgen = { version = "0.63", default-features = false, features = ["macros", "realloc", "std"] }
"#,
    )?;
    write_file(&root.join("vendor/avm-plugin/src/lib.rs"), SDK_SRC)?;
    // The SDK reads the WIT from ../../wit relative to its own manifest.
    write_file(&root.join("wit/avm-provider-0.1.0/provider.wit"), WIT)?;
    write_file(&root.join("Cargo.lock"), LOCK)?;
    write_file(&root.join(".gitignore"), "/target\n")?;
    Ok(root)
}

fn cargo() -> std::ffi::OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

/// The cdylib targets of the crate or workspace at `manifest` and its target directory, from
/// `cargo metadata`.
fn cdylibs(manifest: &Path) -> Result<(Vec<String>, PathBuf)> {
    let o = std::process::Command::new(cargo())
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--manifest-path",
        ])
        .arg(manifest)
        .output()
        .map_err(|e| Error::new(ErrorKind::Unavailable, format!("cannot run cargo: {e}")))?;
    if !o.status.success() {
        return Err(Error::invalid(format!(
            "cargo metadata failed for {}: {}",
            manifest.display(),
            String::from_utf8_lossy(&o.stderr).trim()
        )));
    }
    let v: serde_json::Value = serde_json::from_slice(&o.stdout)
        .map_err(|e| Error::new(ErrorKind::Internal, format!("cargo metadata: {e}")))?;
    let mut names = Vec::new();
    for p in v["packages"].as_array().into_iter().flatten() {
        for t in p["targets"].as_array().into_iter().flatten() {
            let is_cdylib = t["crate_types"]
                .as_array()
                .is_some_and(|a| a.iter().any(|c| c == "cdylib"));
            if is_cdylib && let Some(n) = t["name"].as_str() {
                names.push(n.replace('-', "_"));
            }
        }
    }
    let target = PathBuf::from(v["target_directory"].as_str().unwrap_or("target"));
    Ok((names, target))
}

fn target_installed() -> Option<bool> {
    let o = std::process::Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .ok()?;
    Some(
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .any(|l| l.trim() == TARGET),
    )
}

fn describe(file: &Path) -> Result<serde_json::Value> {
    let env = WasmEnv::standard();
    let mut opts = WasmOptions::new(file.to_string_lossy());
    // Loading only asks the plugin to describe itself; no key-value access happens.
    opts.kv = Some(":memory:".into());
    let p = WasmProvider::new("/plugin/**", opts, &env)?;
    let info = p.info();
    Ok(json!({
        "file": file.display().to_string(),
        "description": info.description,
        "ops": info.ops,
        "suffixes": info.suffixes,
    }))
}

fn print_info(v: &serde_json::Value) {
    println!("{}", v["file"].as_str().unwrap_or(""));
    println!("  {}", v["description"].as_str().unwrap_or(""));
    let ops = &v["ops"];
    let mut can = vec!["read"];
    for k in ["list", "write", "remove"] {
        if ops[k].as_bool() == Some(true) {
            can.push(k);
        }
    }
    println!("  ops: {}", can.join(", "));
    if let Some(sfx) = v["suffixes"].as_array() {
        for s in sfx {
            let q = s["query"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str())
                        .collect::<Vec<_>>()
                        .join("&")
                })
                .unwrap_or_default();
            let q = if q.is_empty() { q } else { format!("?{q}") };
            println!(
                "  :{}{}  {}",
                s["name"].as_str().unwrap_or(""),
                q,
                s["help"].as_str().unwrap_or("")
            );
        }
    }
}

/// Runs `avm plugin …` (needs no database).
pub fn plugin_cmd(action: &PluginAction, j: bool) -> Result<ExitCode> {
    match action {
        PluginAction::New { name, dir } => {
            let parent = dir.clone().unwrap_or_else(|| PathBuf::from("."));
            let root = scaffold(&parent, name)?;
            if j {
                print_json(&json!({"created": root.display().to_string()}));
            } else {
                println!("Created plugin {name} in {}", root.display());
                println!("Next: cd {} && avm plugin build", root.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        PluginAction::Build { dir } => {
            let dir = dir.clone().unwrap_or_else(|| PathBuf::from("."));
            let manifest = dir.join("Cargo.toml");
            if !manifest.is_file() {
                return Err(Error::new(
                    ErrorKind::NotFound,
                    format!(
                        "no Cargo.toml in {}; run `avm plugin new NAME` first",
                        dir.display()
                    ),
                ));
            }
            if target_installed() == Some(false) {
                return Err(Error::new(
                    ErrorKind::Unavailable,
                    format!(
                        "the Rust target {TARGET} is not installed; run: rustup target add {TARGET}"
                    ),
                ));
            }
            let (names, target_dir) = cdylibs(&manifest)?;
            if names.is_empty() {
                return Err(Error::invalid(format!(
                    "{} has no cdylib target; a plugin needs [lib] crate-type = [\"cdylib\"]",
                    manifest.display()
                )));
            }
            let mut build = std::process::Command::new(cargo());
            build
                .args(["build", "--release", "--target", TARGET, "--manifest-path"])
                .arg(&manifest);
            let run_error = |e: std::io::Error| {
                Error::new(ErrorKind::Unavailable, format!("cannot run cargo: {e}"))
            };
            // With --json, stdout holds only the answer: cargo's output is kept, and its end
            // goes into the error when the build fails.
            let (ok, why) = if j {
                let o = build.output().map_err(run_error)?;
                let text = String::from_utf8_lossy(&o.stderr);
                // Cargo's progress lines say nothing about why it failed.
                let progress = [
                    "Compiling ",
                    "Downloaded ",
                    "Downloading ",
                    "Updating ",
                    "Locking ",
                    "Adding ",
                ];
                let lines: Vec<&str> = text
                    .lines()
                    .filter(|l| !progress.iter().any(|p| l.trim_start().starts_with(p)))
                    .collect();
                let tail = lines[lines.len().saturating_sub(20)..].join("\n");
                (o.status.success(), format!(":\n{tail}"))
            } else {
                let status = build.status().map_err(run_error)?;
                (status.success(), " (see its output above)".to_string())
            };
            if !ok {
                return Err(Error::new(
                    ErrorKind::Unavailable,
                    format!("cargo build for {TARGET} failed in {}{why}", dir.display()),
                ));
            }
            let out = target_dir.join(TARGET).join("release");
            let files: Vec<PathBuf> = names
                .iter()
                .map(|n| out.join(format!("{n}.wasm")))
                .filter(|p| p.is_file())
                .collect();
            if files.is_empty() {
                return Err(Error::new(
                    ErrorKind::NotFound,
                    format!("the build produced no .wasm under {}", out.display()),
                ));
            }
            let mut all = Vec::new();
            for f in &files {
                let f = f.canonicalize().unwrap_or_else(|_| f.clone());
                all.push(describe(&f)?);
            }
            if j {
                print_json(&json!(all));
            } else {
                for v in &all {
                    print_info(v);
                }
                if let Some(f) = all.first().and_then(|v| v["file"].as_str()) {
                    println!(
                        "\nMount it (config.toml):\n  [[mounts]]\n  pattern = \"/plugin/{{name}}\"\n  type = \"wasm\"\n  options = {{ component = \"{f}\" }}"
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        PluginAction::Info { file } => {
            let v = describe(file)?;
            if j {
                print_json(&v);
            } else {
                print_info(&v);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// A spinner on stderr while `f` runs, when stderr is a terminal.
fn with_spinner<T>(msg: String, f: impl FnOnce() -> T) -> T {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return f();
    }
    let pb = indicatif::ProgressBar::new_spinner();
    pb.set_message(msg);
    pb.enable_steady_tick(Duration::from_millis(100));
    let r = f();
    pb.finish_and_clear();
    r
}

/// Runs `avm index …` through the host (so mounts and permissions apply).
pub fn index_cmd(app: &App, action: IndexAction, j: bool) -> Result<ExitCode> {
    let h = &app.host;
    let c = &app.caller;
    match action {
        IndexAction::Scan { name, dir } => {
            let target = format!("/index/{name}:scan");
            let o = match dir {
                Some(d) => {
                    let abs = d.canonicalize().map_err(|e| io("open", &d, e))?;
                    with_spinner(format!("scanning {}", abs.display()), || {
                        h.write(
                            c,
                            &target,
                            WriteInput::Text(abs.to_string_lossy().to_string()),
                        )
                    })?
                }
                None => with_spinner(format!("rescanning {name}"), || h.read(c, &target))?,
            };
            emit(j, &o, &ensure_nl(&o.text));
        }
        IndexAction::Status { name } => {
            let o = h.read(c, &format!("/index/{name}:status"))?;
            emit(j, &o, &ensure_nl(&o.text));
        }
        IndexAction::Sigs { name, lang, query } => {
            let mut pairs = Vec::new();
            if let Some(l) = lang {
                pairs.push(("lang", l));
            }
            if let Some(q) = query {
                pairs.push(("q", q));
            }
            let a = addr(&format!("/index/{name}"), "sigs", &pairs)?;
            let o = h.read(c, &a)?;
            emit(j, &o, &ensure_nl(&o.text));
        }
        IndexAction::List => {
            let o = h.read(c, "/index")?;
            emit(j, &o, &ensure_nl(&o.text));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `avm gossip …`.
pub fn gossip_cmd(app: &App, action: GossipAction, j: bool) -> Result<ExitCode> {
    use avm_core::time::now_micros;
    use avm_librarian::gossip::{self, Digest};
    let store = app.store.as_ref();
    let now = now_micros();
    match action {
        GossipAction::Publish => {
            let agent = gossip::need_agent(&app.caller)?;
            avm_topics::TopicIndex::new(app.store.clone()).sync()?;
            let previous = gossip::published(store, agent)?.map(|d| d.version);
            let d = gossip::build(store, agent, previous, app.config.gossip.list_topics)?;
            let body = serde_json::to_string_pretty(&d.to_json())
                .map_err(|e| Error::new(ErrorKind::Internal, e.to_string()))?;
            let mut meta = serde_json::Map::new();
            meta.insert("type".into(), json!("gossip_digest"));
            meta.insert("version".into(), json!(d.version));
            app.host.write(
                &app.caller,
                &Digest::path(agent),
                WriteInput::Put(avm_core::Put {
                    content: Some(body.into()),
                    meta: Some(meta),
                    ..Default::default()
                }),
            )?;
            if j {
                print_json(&d.to_json());
            } else {
                println!(
                    "Published digest v{} with {} topics",
                    d.version, d.topic_count
                );
            }
        }
        GossipAction::Refresh => {
            let all = gossip::all(store)?;
            if j {
                print_json(&json!(all.iter().map(Digest::to_json).collect::<Vec<_>>()));
            } else {
                println!("Refreshed. Known agents: {}", all.len());
                for d in &all {
                    println!("  • {} (v{}, {} topics)", d.agent, d.version, d.topic_count);
                }
            }
        }
        GossipAction::WhoKnows { topic } => {
            let all = gossip::all(store)?;
            let found = gossip::who_knows(&all, &topic, now);
            if j {
                print_json(&json!(
                    found
                        .iter()
                        .map(|(a, c)| json!({"agent": a, "confidence": c}))
                        .collect::<Vec<_>>()
                ));
            } else if found.is_empty() {
                println!("No agents found for topic: {topic}");
            } else {
                for (a, c) in &found {
                    println!("  • {a} ({:.0}% confidence)", c * 100.0);
                }
            }
        }
        GossipAction::Stats => {
            let all = gossip::all(store)?;
            let own = app
                .caller
                .agent()
                .and_then(|a| all.iter().find(|d| d.agent == a))
                .map(|d| d.version);
            let v = json!({
                "known_agents": all.len(),
                "own_version": own,
                "agents": all.iter().map(|d| json!({
                    "id": d.agent,
                    "version": d.version,
                    "topics": d.topic_count,
                    "memories": d.memory_count,
                    "age_hours": (d.age_hours(now) * 10.0).round() / 10.0,
                })).collect::<Vec<_>>(),
            });
            if j {
                print_json(&v);
            } else {
                println!("Known agents: {}", all.len());
                if let Some(o) = own {
                    println!("Own version:  {o}");
                }
                for d in &all {
                    println!(
                        "  • {}  v{}  {} topics  {} memories  {:.1} h old",
                        d.agent,
                        d.version,
                        d.topic_count,
                        d.memory_count,
                        d.age_hours(now)
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
