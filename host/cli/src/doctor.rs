//! `avm doctor`: checks the install and says, for each problem, what to do about it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde_json::{Value, json};

use avm_core::Result;
use avm_core::config;

use crate::app::{self, App};
use crate::cli::Global;

/// How a check came out.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Status {
    Ok,
    Warn,
    Fail,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "fail",
        }
    }

    fn mark(self) -> &'static str {
        match self {
            Status::Ok => "✓",
            Status::Warn => "!",
            Status::Fail => "✗",
        }
    }
}

/// One check: what, how it came out, what was found, what to do.
struct Check {
    name: &'static str,
    status: Status,
    detail: String,
    fix: Option<String>,
}

fn ok(name: &'static str, detail: impl Into<String>) -> Check {
    Check {
        name,
        status: Status::Ok,
        detail: detail.into(),
        fix: None,
    }
}

fn problem(
    name: &'static str,
    status: Status,
    detail: impl Into<String>,
    fix: impl Into<String>,
) -> Check {
    Check {
        name,
        status,
        detail: detail.into(),
        fix: Some(fix.into()),
    }
}

/// Where the program `name` is found on PATH, if it is.
fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn mode(p: &Path) -> Option<u32> {
    std::fs::metadata(p)
        .ok()
        .map(|m| m.permissions().mode() & 0o777)
}

/// Runs `avm doctor`.
pub fn run(g: &Global) -> Result<ExitCode> {
    let exe = std::env::current_exe().ok();
    let mut checks = Vec::new();

    // The binary on PATH (MCP clients start `avm` by name or by absolute path).
    checks.push(match (on_path("avm"), &exe) {
        (Some(p), Some(e)) if std::fs::canonicalize(&p).ok() == std::fs::canonicalize(e).ok() => {
            ok("path", format!("avm on PATH is this one ({})", p.display()))
        }
        (Some(p), _) => problem(
            "path",
            Status::Warn,
            format!("the avm on PATH ({}) is not this one", p.display()),
            "reinstall with `cargo install --locked --path host/cli`, or put this binary's directory first on PATH",
        ),
        (None, _) => problem(
            "path",
            Status::Warn,
            "avm is not on PATH",
            "run `cargo install --locked --path host/cli` (installs into ~/.cargo/bin), or add the directory of target/release/avm to PATH; MCP client configs need the absolute path anyway",
        ),
    });

    // The configuration.
    let sources = app::sources(g);
    let problems = crate::registry::check(&sources);
    checks.push(if problems.is_empty() {
        let files = config::files(&sources);
        ok(
            "config",
            if files.is_empty() {
                "built-in defaults".to_string()
            } else {
                files
                    .iter()
                    .map(|f| f.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        )
    } else {
        problem(
            "config",
            Status::Fail,
            problems
                .iter()
                .map(|p| {
                    format!(
                        "{}{}",
                        if p.key.is_empty() {
                            String::new()
                        } else {
                            format!("{}: ", p.key)
                        },
                        p.message
                    )
                })
                .collect::<Vec<_>>()
                .join("; "),
            "run `avm config check` and fix what it lists",
        )
    });

    let cfg = config::load(&sources).ok();
    // The store: opens, and its files are the owner's only.
    match App::open(g) {
        Ok(app) => {
            let db = app.config.db_path()?;
            match app.config.store_url()? {
                Some(url) => checks.push(ok(
                    "store",
                    format!(
                        "PostgreSQL at {} answers and its tables are current; this host's own files are beside {}",
                        avm_postgres::redact(&url),
                        db.display()
                    ),
                )),
                None => checks.push(ok("store", format!("{} opens", db.display()))),
            }
            let mut loose = Vec::new();
            if let Some(dir) = db.parent()
                && mode(dir).is_some_and(|m| m & 0o077 != 0)
            {
                loose.push(format!(
                    "{} ({:04o})",
                    dir.display(),
                    mode(dir).unwrap_or(0)
                ));
            }
            for f in std::iter::once(db.clone()).chain(avm_core::files::sqlite_companions(&db)) {
                if mode(&f).is_some_and(|m| m & 0o077 != 0) {
                    loose.push(format!("{} ({:04o})", f.display(), mode(&f).unwrap_or(0)));
                }
            }
            checks.push(if loose.is_empty() {
                ok("file modes", "the database and its directory are the owner's only")
            } else {
                problem(
                    "file modes",
                    Status::Warn,
                    format!("readable by others: {}", loose.join(", ")),
                    "chmod 700 the directory and chmod 600 the files (avm tightens the files it opens; a directory you chose is left to you)",
                )
            });
            // The embedding model.
            let missing = app.model_files.missing();
            checks.push(if !app.config.embedding.enabled {
                ok(
                    "model",
                    "semantic search is off ([embedding] enabled = false)",
                )
            } else if missing.is_empty() {
                ok("model", format!("{}", app.model_files.model.display()))
            } else {
                problem(
                    "model",
                    Status::Warn,
                    format!(
                        "missing: {} (recall and search use full text only)",
                        missing
                            .iter()
                            .map(|p| p.display().to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    "run `avm model install` for semantic and hybrid search",
                )
            });
            // A running server.
            let sock = crate::remote::socket_path(&db);
            checks.push(
                match crate::remote::read(&db, &avm_core::Caller::Operator, "/memory:stats") {
                    Some(Ok(_)) => ok("server", format!("avm serve answers on {}", sock.display())),
                    Some(Err(e)) => problem(
                        "server",
                        Status::Warn,
                        format!("{} answers with an error: {}", sock.display(), e.message()),
                        "restart `avm serve`",
                    ),
                    None => ok(
                        "server",
                        "no avm serve running (optional: it keeps indexes warm, serves HTTP and MCP over HTTP, and keeps mounts alive)",
                    ),
                },
            );
        }
        Err(e) => checks.push(problem(
            "store",
            Status::Fail,
            e.message().to_string(),
            "fix the configuration or the --db path; `avm config check` says more",
        )),
    }

    // FUSE.
    let fuse = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse");
    let fusermount = on_path("fusermount3")
        .or_else(|| on_path("fusermount"))
        .is_some();
    checks.push(match (fuse, fusermount) {
        (Ok(_), true) => ok("fuse", "/dev/fuse opens and fusermount3 is installed"),
        (Ok(_), false) => problem(
            "fuse",
            Status::Warn,
            "/dev/fuse opens but fusermount3 is missing (only root can mount)",
            "install the fuse3 package",
        ),
        (Err(e), _) => problem(
            "fuse",
            Status::Warn,
            format!("/dev/fuse cannot be opened ({e}): no mounts here"),
            "install fuse3 and load the fuse module (in a container: --device /dev/fuse --cap-add SYS_ADMIN)",
        ),
    });

    // Mounts kept by the daemon (or serve).
    match (crate::daemon::running(), crate::daemon::load_mounts()) {
        (Ok(pid), Ok(mounts)) => {
            let enabled: Vec<_> = mounts.iter().filter(|m| m.enabled).collect();
            let down: Vec<String> = enabled
                .iter()
                .filter_map(|m| config::expand(&m.path).ok())
                .map(PathBuf::from)
                .filter(|d| !avm_fuse::is_mounted(d))
                .map(|d| d.display().to_string())
                .collect();
            checks.push(if enabled.is_empty() {
                ok(
                    "mounts",
                    "no mounts file entries (avm mount DIR mounts by hand)",
                )
            } else if pid.is_none() {
                problem(
                    "mounts",
                    Status::Warn,
                    format!(
                        "{} mount(s) in the mounts file, no daemon running",
                        enabled.len()
                    ),
                    "run `avm daemon start` (or `avm serve`, which keeps them too)",
                )
            } else if down.is_empty() {
                ok("mounts", format!("{} mount(s) up", enabled.len()))
            } else {
                problem(
                    "mounts",
                    Status::Fail,
                    format!("not mounted: {}", down.join(", ")),
                    "see `avm daemon status` and the daemon log",
                )
            });
        }
        (_, Err(e)) => checks.push(problem(
            "mounts",
            Status::Fail,
            e.message().to_string(),
            "fix the mounts file",
        )),
        (Err(e), _) => checks.push(problem(
            "mounts",
            Status::Warn,
            e.message().to_string(),
            "check $XDG_STATE_HOME",
        )),
    }

    let agent = cfg
        .as_ref()
        .and_then(|c| c.agent.clone())
        .or_else(|| g.agent.clone())
        .unwrap_or_else(|| "claude".into());
    let bin = exe
        .as_ref()
        .and_then(|e| std::fs::canonicalize(e).ok())
        .map(|e| e.display().to_string())
        .unwrap_or_else(|| "avm".into());
    let setups = json!({
        "claude_code": format!("claude mcp add avm -- {bin} --agent {agent} mcp"),
        "json": {"mcpServers": {"avm": {"command": bin, "args": ["--agent", agent, "mcp"]}}},
        "codex_toml": format!("[mcp_servers.avm]\ncommand = \"{bin}\"\nargs = [\"--agent\", \"{agent}\", \"mcp\"]"),
        "http": {"mcpServers": {"avm": {"url": "http://127.0.0.1:7420/mcp", "headers": {"X-Avm-Agent": agent}}}},
    });

    let failed = checks.iter().any(|c| c.status == Status::Fail);
    if g.json {
        let list: Vec<Value> = checks
            .iter()
            .map(|c| json!({"check": c.name, "status": c.status.as_str(), "detail": c.detail, "fix": c.fix}))
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({"ok": !failed, "checks": list, "mcp": setups}))
                .unwrap_or_default()
        );
    } else {
        for c in &checks {
            println!("{} {:<10} {}", c.status.mark(), c.name, c.detail);
            if let Some(f) = &c.fix {
                println!("  → {f}");
            }
        }
        println!("\nMCP client setups (paste one):");
        println!(
            "  Claude Code:  {}",
            setups["claude_code"].as_str().unwrap_or("")
        );
        println!("  Claude Desktop, Cursor (JSON):  {}", setups["json"]);
        println!(
            "  Codex (~/.codex/config.toml):\n    {}",
            setups["codex_toml"]
                .as_str()
                .unwrap_or("")
                .replace('\n', "\n    ")
        );
        println!("  Over HTTP (with avm serve running):  {}", setups["http"]);
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
