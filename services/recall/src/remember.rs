//! `remember`: store a memory under a unique, readable name, stamped by the host.
//!
//! Paths: `/memory/private/<agent>/<ts>_<slug>.md` by default, `/memory/shared/<ns>/<ts>_<slug>.md`
//! with a namespace (`<ts>` = UTC `YYYYMMDD_HHMMSS_ffffff`; the slug and its `_` are left out
//! without a title). The timestamp makes two memories with the same title two files, never an
//! overwrite. Content is stored in the reference format:
//!
//! ```text
//! # <title>
//!
//! *Created: YYYY-MM-DD HH:MM:SS UTC*
//! *Tags: a, b*
//!
//! ---
//!
//! <content>
//! ```
//!
//! The author is stamped by the host from the caller; `meta.source` says which front end or tool
//! the memory came through. The same agent remembering the same content again in the same
//! namespace gets the existing memory back (`meta.remember_hash` finds it).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value, json};

use avm_core::storage::{MemoryStore, Telemetry};
use avm_core::time::now_micros;
use avm_core::{Caller, Error, ErrorKind, Host, Put, Result, WriteInput};

/// What to remember.
#[derive(Debug, Clone, Default)]
pub struct Memory {
    /// The content (required, non-empty).
    pub content: String,
    /// Optional title (becomes the slug and the heading).
    pub title: Option<String>,
    /// Importance 0..=1 (default 0.5).
    pub importance: Option<f64>,
    /// Tags.
    pub tags: Vec<String>,
    /// Where it came from (`cli`, `mcp`, an agent's tool name, …); default `agent`.
    pub source: Option<String>,
    /// Shared namespace to write into instead of the private one.
    pub namespace: Option<String>,
    /// An explicit path instead of a generated one.
    pub path: Option<String>,
    /// Time to live.
    pub ttl: Option<Duration>,
    /// When what the memory tells happened (microseconds since the epoch), when that is not
    /// the moment it is remembered: a conversation turn of last May, a meeting's notes written
    /// the day after. Stored as `meta.at`; recall's recency counts from it, and questions that
    /// name a date favour memories of that day or month.
    pub at: Option<avm_core::time::Micros>,
}

/// What `remember` did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Remembered {
    /// Where the memory lives.
    pub path: String,
    /// False when identical content was already remembered there (nothing was written).
    pub created: bool,
    /// Importance stored.
    pub importance: f64,
}

/// The file-name slug of a title: lower case, word characters kept (any script), spaces and
/// underscores folded to one `_`, at most 30 characters.
pub fn slug(title: &str) -> String {
    let mut out = String::new();
    let mut gap = false;
    for c in title.trim().to_lowercase().chars() {
        if c.is_alphanumeric() || c == '-' {
            if gap && !out.is_empty() {
                out.push('_');
            }
            gap = false;
            out.push(c);
        } else if c.is_whitespace() || c == '_' {
            gap = true;
        }
    }
    out.chars()
        .take(30)
        .collect::<String>()
        .trim_end_matches('_')
        .to_string()
}

fn stamp(now: DateTime<Utc>) -> String {
    now.format("%Y%m%d_%H%M%S_%6f").to_string()
}

/// The stored text of a memory.
pub fn format_content(m: &Memory, now: DateTime<Utc>) -> String {
    let mut out = String::new();
    if let Some(t) = m.title.as_deref().filter(|t| !t.trim().is_empty()) {
        out.push_str(&format!("# {}\n\n", t.trim()));
    }
    out.push_str(&format!(
        "*Created: {} UTC*\n",
        now.format("%Y-%m-%d %H:%M:%S")
    ));
    if !m.tags.is_empty() {
        out.push_str(&format!("*Tags: {}*\n", m.tags.join(", ")));
    }
    out.push_str("\n---\n\n");
    out.push_str(m.content.trim_end());
    out.push('\n');
    out
}

/// Where a new memory goes (before the timestamp and slug).
fn target_dir(caller: &Caller, m: &Memory) -> Result<String> {
    avm_core::host::remember_dir(caller, m.namespace.as_deref())
}

fn validate(m: &Memory) -> Result<()> {
    if m.content.trim().is_empty() {
        return Err(Error::invalid("nothing to remember: the content is empty"));
    }
    if let Some(i) = m.importance
        && !(0.0..=1.0).contains(&i)
    {
        return Err(Error::invalid(format!(
            "importance {i} must be between 0 and 1"
        )));
    }
    Ok(())
}

/// Builds the write for one memory: `(path, input, dedupe hash, namespace root)`.
fn prepare(
    store: &dyn MemoryStore,
    caller: &Caller,
    m: &Memory,
    now: DateTime<Utc>,
    taken: &mut Vec<String>,
) -> Result<(String, WriteInput, String, String)> {
    validate(m)?;
    let hash = store.content_hash(m.content.trim());
    let (path, root) = match &m.path {
        Some(p) => (p.clone(), avm_core::address::parent(p).to_string()),
        None => {
            let dir = target_dir(caller, m)?;
            let base = match m.title.as_deref().map(slug).filter(|s| !s.is_empty()) {
                Some(s) => format!("{}_{s}", stamp(now)),
                None => stamp(now),
            };
            let mut path = format!("{dir}/{base}.md");
            let mut n = 2;
            while taken.contains(&path) {
                path = format!("{dir}/{base}_{n}.md");
                n += 1;
            }
            (path, dir)
        }
    };
    taken.push(path.clone());
    let mut meta = Map::new();
    meta.insert(
        "source".into(),
        Value::String(m.source.clone().unwrap_or_else(|| "agent".into())),
    );
    if let Some(t) = m.title.as_deref().filter(|t| !t.trim().is_empty()) {
        meta.insert("title".into(), Value::String(t.trim().to_string()));
    }
    meta.insert("remember_hash".into(), Value::String(hash.clone()));
    if let Some(at) = m.at {
        meta.insert("at".into(), Value::String(avm_core::time::to_iso(at)));
    }
    let expires_at = m.ttl.map(|d| Some(now_micros() + d.as_micros() as i64));
    let put = Put {
        content: Some(format_content(m, now).into()),
        meta: Some(meta),
        tags: Some(m.tags.clone()),
        importance: Some(m.importance.unwrap_or(0.5)),
        expires_at,
        create_only: m.path.is_none(),
        ..Put::default()
    };
    Ok((path, WriteInput::Put(put), hash, root))
}

/// Remembers one memory through `host` (so the caller's rights and quota apply).
pub fn remember(
    host: &Host,
    store: &dyn MemoryStore,
    caller: &Caller,
    m: &Memory,
) -> Result<Remembered> {
    let mut out = remember_many(host, store, caller, std::slice::from_ref(m));
    out.pop()
        .unwrap_or_else(|| Err(Error::internal("remember lost its result")))
}

/// Remembers many memories; new ones are written in one transaction. Results in input order.
pub fn remember_many(
    host: &Host,
    store: &dyn MemoryStore,
    caller: &Caller,
    items: &[Memory],
) -> Vec<Result<Remembered>> {
    let started = std::time::Instant::now();
    let now = Utc::now();
    let mut taken = Vec::new();
    let mut results: Vec<Option<Result<Remembered>>> = Vec::new();
    let mut writes = Vec::new();
    let mut index = Vec::new();
    let mut tokens_in = 0i64;
    for m in items {
        let prepared =
            prepare(store, caller, m, now, &mut taken).and_then(|(path, input, hash, root)| {
                // Resolve /private so the duplicate check looks in the right place.
                let root = avm_core::host::expand_private(caller, &root)?;
                let existing = store.find_by_hash(&root, &hash, caller.agent())?;
                Ok((path, input, existing))
            });
        match prepared {
            Err(e) => results.push(Some(Err(e))),
            Ok((_, _, Some(existing))) => results.push(Some(Ok(Remembered {
                path: existing,
                created: false,
                importance: m.importance.unwrap_or(0.5),
            }))),
            Ok((path, input, None)) => {
                tokens_in += (m.content.chars().count() / 4) as i64;
                index.push((results.len(), m.importance.unwrap_or(0.5)));
                results.push(None);
                writes.push((path, input));
            }
        }
    }
    let outs = host.write_many(caller, writes);
    for ((i, importance), out) in index.into_iter().zip(outs) {
        results[i] = Some(out.and_then(|o| {
            let path = o
                .data()
                .get("path")
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| Error::new(ErrorKind::Internal, "write returned no path"))?;
            Ok(Remembered {
                path,
                created: true,
                importance,
            })
        }));
    }
    let done: Vec<Result<Remembered>> = results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(Error::internal("remember lost a result"))))
        .collect();
    store.record(Telemetry {
        at: now_micros(),
        op: if items.len() == 1 {
            "remember".into()
        } else {
            "batch_remember".into()
        },
        agent: caller.agent().map(str::to_string),
        query: None,
        tokens_returned: 0,
        tokens_available: tokens_in,
        results: done.iter().filter(|r| r.is_ok()).count() as i64,
        latency_us: started.elapsed().as_micros() as i64,
    });
    done
}

/// JSON of a result.
pub fn to_json(r: &Remembered) -> Value {
    json!({"path": r.path, "created": r.created, "importance": r.importance})
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn slugs_keep_words_of_any_script_and_fold_spaces() {
        assert_eq!(slug("NVDA note"), "nvda_note");
        assert_eq!(slug("  Fed: rate   decision! "), "fed_rate_decision");
        assert_eq!(slug("中东 局势"), "中东_局势");
        assert_eq!(slug("a_b-c"), "a_b-c");
        assert_eq!(slug(&"x".repeat(50)).len(), 30);
        assert_eq!(slug("!!!"), "");
    }

    #[test]
    fn content_follows_the_reference_format() {
        let m = Memory {
            content: "NVDA RSI at 72 overbought".into(),
            title: Some("NVDA note".into()),
            tags: vec!["market".into()],
            ..Memory::default()
        };
        let now = DateTime::parse_from_rfc3339("2026-11-21T07:44:22Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            format_content(&m, now),
            "# NVDA note\n\n*Created: 2026-11-21 07:44:22 UTC*\n*Tags: market*\n\n---\n\nNVDA RSI at 72 overbought\n"
        );
        assert_eq!(stamp(now), "20261121_074422_000000");
    }
}
