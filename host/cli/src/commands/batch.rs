//! `avm batch`: one JSON operation per stdin line, one JSON result per stdout line.

use std::io::BufRead;
use std::process::ExitCode;

use serde_json::{Value, json};

use avm_core::address::Address;
use avm_core::{Content, Error, ErrorKind, Put, RemoveOptions, Result, WriteInput};

use super::output::outln;
use crate::app::App;

/// One `avm batch` operation.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchOp {
    op: String,
    path: String,
    #[serde(default)]
    content: Option<String>,
    /// Binary content, base64-encoded (instead of `content`).
    #[serde(default)]
    content_base64: Option<String>,
    #[serde(default)]
    tags: Option<Vec<String>>,
    #[serde(default)]
    importance: Option<f64>,
    #[serde(default)]
    meta: Option<serde_json::Map<String, Value>>,
    #[serde(default)]
    to: Option<String>,
    #[serde(default)]
    force: bool,
    #[serde(default)]
    recursive: bool,
    #[serde(default)]
    hard: bool,
}

fn batch_one(app: &App, line: &str) -> Result<Value> {
    let (h, c) = (&app.host, &app.caller);
    let b: BatchOp = serde_json::from_str(line)
        .map_err(|e| Error::invalid(format!("not a batch operation: {e}")))?;
    let path = Address::path(&b.path)?.path;
    let o = match b.op.as_str() {
        "write" | "append" => {
            let content: Content = match (b.content, b.content_base64) {
                (Some(t), None) => t.into(),
                (None, Some(b64)) => {
                    Content::from_bytes(avm_core::content::from_base64(&b64, "content_base64")?)
                }
                (Some(_), Some(_)) => {
                    return Err(Error::invalid(format!(
                        "{} takes \"content\" or \"content_base64\", not both",
                        b.op
                    )));
                }
                (None, None) => {
                    return Err(Error::invalid(format!(
                        "{} needs \"content\" (or \"content_base64\")",
                        b.op
                    )));
                }
            };
            if content.len() as u64 > app.config.max_node_bytes {
                return Err(Error::new(
                    ErrorKind::TooLarge,
                    format!(
                        "content for {path} is {} bytes; the limit is {} bytes (max_node_bytes)",
                        content.len(),
                        app.config.max_node_bytes
                    ),
                ));
            }
            h.write(
                c,
                &path,
                WriteInput::Put(Put {
                    content: Some(content),
                    append: b.op == "append",
                    tags: b.tags,
                    importance: b.importance,
                    meta: b.meta,
                    ..Put::default()
                }),
            )?
        }
        "read" => h.read(c, &path)?,
        "delete" => h.remove(
            c,
            &path,
            RemoveOptions {
                recursive: b.recursive,
                hard: b.hard,
            },
        )?,
        "mv" => {
            let to = b.to.ok_or_else(|| Error::invalid("mv needs \"to\""))?;
            h.rename(c, &path, &to, b.force)?
        }
        other => {
            return Err(Error::invalid(format!(
                "unknown op {other:?}; use write, append, delete or mv"
            )));
        }
    };
    Ok(o.data())
}

pub(super) fn batch(app: &App) -> Result<ExitCode> {
    let stdin = std::io::stdin();
    let mut failed = 0usize;
    for (i, line) in stdin.lock().lines().enumerate() {
        let line = line.map_err(|e| Error::invalid(format!("stdin line {}: {e}", i + 1)))?;
        if line.trim().is_empty() {
            continue;
        }
        let v = match batch_one(app, &line) {
            Ok(data) => json!({"ok": true, "line": i + 1, "result": data}),
            Err(e) => {
                failed += 1;
                json!({"ok": false, "line": i + 1, "error": {"kind": e.kind().as_str(), "message": e.message()}})
            }
        };
        outln(&v.to_string());
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
