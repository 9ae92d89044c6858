//! `avm config show|types|check`: commands that work without opening a database.

use std::process::ExitCode;

use serde_json::json;

use avm_core::Result;
use avm_core::config;

use super::output::{out, outln, print_json};
use crate::app::{self, App};
use crate::cli::ConfigAction;

pub(super) fn config_cmd(g: &crate::cli::Global, action: &ConfigAction) -> Result<ExitCode> {
    let sources = app::sources(g);
    match action {
        ConfigAction::Show => {
            let cfg = config::load(&sources)?;
            let files: Vec<String> = config::files(&sources)
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            let db = cfg.db_path()?.display().to_string();
            if g.json {
                print_json(&json!({"config": cfg, "files": files, "database": db}));
            } else {
                let mut s = String::new();
                s.push_str(&format!("# database: {db}\n"));
                if files.is_empty() {
                    s.push_str("# files: none (built-in defaults, AVM_* environment and flags)\n");
                } else {
                    for f in &files {
                        s.push_str(&format!("# file: {f}\n"));
                    }
                }
                s.push_str(&toml_of(&cfg));
                out(&s);
            }
            Ok(ExitCode::SUCCESS)
        }
        ConfigAction::Types => {
            if g.json {
                print_json(&json!(
                    crate::registry::TYPES
                        .iter()
                        .map(|t| json!({"type": t.name, "about": t.about}))
                        .collect::<Vec<_>>()
                ));
            } else {
                for t in crate::registry::TYPES {
                    outln(&format!("{:<8} {}", t.name, t.about));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        ConfigAction::Check => {
            let mut problems = crate::registry::check(&sources);
            if problems.is_empty() {
                // The keys are right; now build what every command builds (the store, each
                // mount's provider, plugins), so a mount that every command would refuse is
                // reported here, not at first use.
                if let Err(e) = App::open(g) {
                    problems.push(config::Problem {
                        key: String::new(),
                        message: format!(
                            "every command would stop with: {} ({})",
                            e.message(),
                            e.kind()
                        ),
                        source: None,
                    });
                }
            }
            let files: Vec<String> = config::files(&sources)
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            if g.json {
                print_json(
                    &json!({"ok": problems.is_empty(), "problems": problems, "files": files}),
                );
            } else if problems.is_empty() {
                outln(&format!(
                    "config OK ({})",
                    if files.is_empty() {
                        "built-in defaults".to_string()
                    } else {
                        files.join(", ")
                    }
                ));
            } else {
                eprintln!("{} problem(s) in the configuration:", problems.len());
                for p in &problems {
                    let src = p
                        .source
                        .as_ref()
                        .map(|s| format!(" [{s}]"))
                        .unwrap_or_default();
                    let key = if p.key.is_empty() {
                        String::new()
                    } else {
                        format!("{}: ", p.key)
                    };
                    eprintln!("  {key}{}{src}", p.message);
                }
            }
            Ok(if problems.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}

/// The effective configuration as TOML: every section, so that what `show` prints can be
/// pasted into a config file as it is.
fn toml_of(cfg: &config::Config) -> String {
    toml::to_string(cfg).unwrap_or_else(|e| format!("# cannot print as TOML: {e}\n"))
}
