//! The memory lifecycle: importance decay, cold memories, archive, consolidation, digests
//! and trash retention.
//!
//! **Decay** is computed, never written: a memory's *decayed importance* is
//! `importance · 2^(−Δt / half_life)`, where `Δt` runs from its last read or change (whichever
//! is later) and `half_life` is `[lifecycle] half_life_days` (14 days by default: a memory of
//! importance 0.5 nobody touched for 24.4 days falls below the default cold threshold 0.15).
//! Because nothing is written back, listing cold memories, building a digest or consolidating
//! moves no `updated_at` of a memory that is only read — recency ranking stays honest.
//!
//! Every change goes through the [`Host`] as the caller, so permissions, quotas, events,
//! subscriptions and the embedding queue see lifecycle writes like any other. Archived memories
//! move to `/archive` + their path, which keeps private memories private
//! ([`avm_core::provider::private_owner`] knows `/archive`), keeps history, links and vectors,
//! and takes them out of recall (which reads `/memory`).

mod consolidate;
mod digest;
mod similar;

pub use similar::{jaccard, near_duplicates, word_set};

use std::time::Duration;

use serde_json::{Map, Value, json};

use avm_core::address::is_within;
use avm_core::config::LifecycleConfig;
use avm_core::storage::{MemoryStore, Node};
use avm_core::time::{Micros, now_micros, parse_time, to_iso};
use avm_core::{Caller, Error, ErrorKind, Host, Output, Put, RemoveOptions, Result, WriteInput};

/// Microseconds in a day.
const DAY: f64 = 86_400_000_000.0;

/// Most nodes one lifecycle pass reads from one scope.
pub const SCAN_LIMIT: usize = 100_000;

/// Where archived memories live: `/archive` + the original path.
pub const ARCHIVE_ROOT: &str = "/archive";

/// `importance · 2^(−age/half_life)` with the age from `last_touch` to `now` in days; a
/// half-life of 0 or less turns decay off.
pub fn decayed(importance: f64, last_touch: Micros, now: Micros, half_life_days: f64) -> f64 {
    if half_life_days <= 0.0 || !half_life_days.is_finite() {
        return importance;
    }
    importance * 0.5f64.powf(idle_days(last_touch, now) / half_life_days)
}

/// Days from `t` to `now` (0 for times in the future).
pub fn idle_days(t: Micros, now: Micros) -> f64 {
    now.saturating_sub(t).max(0) as f64 / DAY
}

/// The later of a memory's last read and last change.
pub fn last_touch(n: &Node) -> Micros {
    n.accessed_at.map_or(n.updated_at, |a| a.max(n.updated_at))
}

/// The namespace a memory belongs to: `/memory/private/<agent>`, `/memory/shared/<ns>`, or
/// another directory right below `/memory` (`/memory/notes`). A memory in none of them (a file
/// right in `/memory`, `/memory/private` or `/memory/shared`, or outside `/memory`) has no
/// namespace and is never merged or summarised. Consolidation never merges or summarises
/// across namespaces, so one agent's private memories never flow into another place.
pub fn namespace(path: &str) -> Option<String> {
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match segs.as_slice() {
        ["memory", kind @ ("private" | "shared"), ns, _, ..] => {
            Some(format!("/memory/{kind}/{ns}"))
        }
        ["memory", "private" | "shared", ..] => None,
        ["memory", dir, _, ..] => Some(format!("/memory/{dir}")),
        _ => None,
    }
}

/// Refuses scopes outside the live memories (`/memory`): the trash, the archive, gossip
/// digests and plugin mounts are not memories to archive or consolidate.
fn check_live(scope: &str, what: &str) -> Result<()> {
    if is_within(scope, "/memory") {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "{what} works on memories below /memory, not {scope}"
        )))
    }
}

/// Is this a summary consolidation wrote (they are never inputs to consolidation)?
pub fn is_summary(n: &Node) -> bool {
    n.meta.get("type").and_then(Value::as_str) == Some("summary") || is_summary_path(&n.path)
}

fn is_summary_path(path: &str) -> bool {
    path.contains("/summaries/")
}

/// The scope lifecycle commands use when none is given: the agent's private namespace, or
/// all of `/memory` for the operator.
pub fn default_scope(caller: &Caller) -> String {
    match caller.agent() {
        Some(a) => format!("/memory/private/{a}"),
        None => "/memory".to_string(),
    }
}

/// The archive path of `path`.
pub fn archive_path(path: &str) -> String {
    format!("{ARCHIVE_ROOT}{path}")
}

/// Lifecycle operations for one caller.
pub struct Lifecycle<'a> {
    host: &'a Host,
    store: &'a dyn MemoryStore,
    caller: &'a Caller,
    config: &'a LifecycleConfig,
}

/// A memory whose decayed importance fell below the threshold.
#[derive(Debug, Clone)]
pub struct Cold {
    /// The memory.
    pub node: Node,
    /// Its decayed importance.
    pub decayed: f64,
    /// Days since it was last read or changed.
    pub idle_days: f64,
}

impl<'a> Lifecycle<'a> {
    /// Lifecycle operations on `store` through `host`, acting as `caller`.
    pub fn new(
        host: &'a Host,
        store: &'a dyn MemoryStore,
        caller: &'a Caller,
        config: &'a LifecycleConfig,
    ) -> Self {
        Lifecycle {
            host,
            store,
            caller,
            config,
        }
    }

    /// The configuration in use.
    pub fn config(&self) -> &LifecycleConfig {
        self.config
    }

    /// Refuses a scope the caller may not read.
    fn check_readable(&self, scope: &str) -> Result<()> {
        if self.host.may_read(self.caller, scope) {
            Ok(())
        } else {
            Err(Error::denied(format!(
                "{scope} is not readable for {}",
                self.caller.agent().unwrap_or("the operator")
            )))
        }
    }

    /// Live nodes below `scope` the caller may read, newest change first.
    fn scan(&self, scope: &str, since: Option<Micros>) -> Result<Vec<Node>> {
        self.check_readable(scope)?;
        let keep = |p: &str| self.host.may_read(self.caller, p);
        self.store
            .recent(&[scope.to_string()], self.caller, &keep, since, SCAN_LIMIT)
    }

    /// Live nodes below `scope` the caller may read, changed before `before`, oldest first:
    /// what ages out is found first, however large the store.
    fn scan_old(&self, scope: &str, before: Micros) -> Result<Vec<Node>> {
        self.check_readable(scope)?;
        let keep = |p: &str| self.host.may_read(self.caller, p);
        self.store
            .oldest(&[scope.to_string()], self.caller, &keep, before, SCAN_LIMIT)
    }

    /// Memories below `scope` whose decayed importance is under `threshold` (default
    /// `cold_threshold`), coldest first, at most `limit`.
    pub fn cold_memories(
        &self,
        scope: &str,
        threshold: Option<f64>,
        limit: usize,
    ) -> Result<Vec<Cold>> {
        let threshold = threshold.unwrap_or(self.config.cold_threshold);
        check_unit("threshold", threshold)?;
        check_live(scope, "cold")?;
        let now = now_micros();
        // Importance is at most 1, so nothing changed within half_life · log2(1 / threshold)
        // days can be cold yet.
        let hl = self.config.half_life_days;
        let before = if hl > 0.0 && hl.is_finite() && threshold > 0.0 {
            let days = hl * (1.0 / threshold).log2();
            now.saturating_sub((days * DAY) as Micros)
        } else if threshold > 0.0 && threshold <= 1.0 && hl <= 0.0 {
            // No decay: only importance decides.
            Micros::MAX
        } else {
            return Ok(Vec::new());
        };
        let mut cold: Vec<Cold> = self
            .scan_old(scope, before.saturating_add(1))?
            .into_iter()
            .filter_map(|n| {
                let t = last_touch(&n);
                let d = decayed(n.importance, t, now, self.config.half_life_days);
                (d < threshold).then(|| Cold {
                    decayed: d,
                    idle_days: idle_days(t, now),
                    node: n,
                })
            })
            .collect();
        cold.sort_by(|a, b| {
            a.decayed
                .total_cmp(&b.decayed)
                .then_with(|| a.node.path.cmp(&b.node.path))
        });
        cold.truncate(limit);
        Ok(cold)
    }

    /// [`Self::cold_memories`] as text and JSON.
    pub fn cold(&self, scope: &str, threshold: Option<f64>, limit: usize) -> Result<Output> {
        let threshold = threshold.unwrap_or(self.config.cold_threshold);
        let cold = self.cold_memories(scope, Some(threshold), limit)?;
        let mut text = format!(
            "{} cold {} below {scope} (decayed importance < {threshold}, half-life {} d)\n",
            cold.len(),
            plural(cold.len(), "memory", "memories"),
            self.config.half_life_days
        );
        for c in &cold {
            text.push_str(&format!(
                "  {:.3}  (importance {:.2}, idle {:.0} d)  {}\n",
                c.decayed, c.node.importance, c.idle_days, c.node.path
            ));
        }
        let data: Vec<Value> = cold
            .iter()
            .map(|c| {
                json!({"path": c.node.path, "importance": c.node.importance,
                       "decayed": round3(c.decayed), "idle_days": round3(c.idle_days)})
            })
            .collect();
        Ok(Output::new(
            text,
            json!({"scope": scope, "threshold": threshold,
                   "half_life_days": self.config.half_life_days, "memories": data}),
        ))
    }

    /// Moves cold memories below `scope` to `/archive` + their path (history, links and
    /// vectors travel with them); with `dry_run` only says what it would move.
    pub fn archive(
        &self,
        scope: &str,
        threshold: Option<f64>,
        limit: usize,
        dry_run: bool,
    ) -> Result<Output> {
        check_live(scope, "archive")?;
        let cold = self.cold_memories(scope, threshold, limit)?;
        let mut moved = Vec::new();
        let mut failed = Vec::new();
        for c in &cold {
            let src = &c.node.path;
            let dst = self.free_path(&archive_path(src))?;
            if dry_run {
                moved.push((src.clone(), dst));
                continue;
            }
            match self.archive_one(src, &dst) {
                Ok(()) => moved.push((src.clone(), dst)),
                Err(e) => failed.push((src.clone(), e)),
            }
        }
        let verb = if dry_run { "would archive" } else { "archived" };
        let mut text = format!(
            "{verb} {} {}\n",
            moved.len(),
            plural(moved.len(), "memory", "memories")
        );
        for (s, d) in &moved {
            text.push_str(&format!("  {s} -> {d}\n"));
        }
        let failed = failures(&mut text, &failed);
        Ok(Output::new(
            text,
            json!({
                "dry_run": dry_run,
                "archived": moved.iter().map(|(s, d)| json!({"from": s, "to": d})).collect::<Vec<_>>(),
                "failed": failed,
            }),
        ))
    }

    fn archive_one(&self, src: &str, dst: &str) -> Result<()> {
        self.host.rename(self.caller, src, dst, false)?;
        let mut meta = Map::new();
        meta.insert("archived_at".into(), json!(to_iso(now_micros())));
        meta.insert("archived_from".into(), json!(src));
        self.put(dst, None, Some(meta), None)
    }

    /// Brings an archived memory back to where it was (give its archive path or its original
    /// path); refuses to overwrite a live memory unless `force`.
    pub fn unarchive(&self, path: &str, force: bool) -> Result<Output> {
        let (from, to) = if is_within(path, ARCHIVE_ROOT) {
            let n = self.store.node(path)?;
            let to = n
                .as_ref()
                .and_then(|n| n.meta.get("archived_from").and_then(Value::as_str))
                .map(str::to_string)
                .unwrap_or_else(|| path[ARCHIVE_ROOT.len()..].to_string());
            (path.to_string(), to)
        } else {
            (archive_path(path), path.to_string())
        };
        if to.is_empty() || to == "/" {
            return Err(Error::invalid(format!(
                "{path} is the archive itself; name an archived memory"
            )));
        }
        if self.store.node(&from)?.is_none() || !self.host.may_read(self.caller, &from) {
            return Err(Error::not_found(&from));
        }
        self.host.rename(self.caller, &from, &to, force)?;
        let mut meta = Map::new();
        meta.insert("archived_at".into(), Value::Null);
        meta.insert("archived_from".into(), Value::Null);
        self.put(&to, None, Some(meta), None)?;
        Ok(Output::new(
            format!("restored {from} -> {to}\n"),
            json!({"from": from, "to": to}),
        ))
    }

    /// Deletes trash entries deleted longer ago than `older_than` (default
    /// `trash_retention`) for good; with `dry_run` only lists them.
    pub fn purge_trash(&self, older_than: Option<Duration>, dry_run: bool) -> Result<Output> {
        let age = match older_than {
            Some(d) => d,
            None => match self.config.trash_retention()? {
                Some(d) => d,
                None => {
                    return Ok(Output::new(
                        "trash retention is `never`: nothing purged\n",
                        json!({"dry_run": dry_run, "purged": [], "failed": []}),
                    ));
                }
            },
        };
        let cutoff =
            now_micros().saturating_sub(Micros::try_from(age.as_micros()).unwrap_or(Micros::MAX));
        let mut purged = Vec::new();
        let mut failed = Vec::new();
        for n in self.scan_old("/trash", cutoff.saturating_add(1))? {
            let deleted = n
                .meta
                .get("deleted_at")
                .and_then(Value::as_str)
                .and_then(|s| parse_time(s).ok())
                .unwrap_or(n.updated_at);
            if deleted > cutoff {
                continue;
            }
            if dry_run {
                purged.push(n.path);
                continue;
            }
            let opts = RemoveOptions {
                recursive: false,
                hard: true,
            };
            match self.host.remove(self.caller, &n.path, opts) {
                Ok(_) => purged.push(n.path),
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => failed.push((n.path, e)),
            }
        }
        purged.sort();
        let verb = if dry_run { "would purge" } else { "purged" };
        let mut text = format!(
            "{verb} {} trash {} deleted more than {} ago\n",
            purged.len(),
            plural(purged.len(), "entry", "entries"),
            human(age)
        );
        for p in &purged {
            text.push_str(&format!("  {p}\n"));
        }
        let failed = failures(&mut text, &failed);
        Ok(Output::new(
            text,
            json!({
                "dry_run": dry_run,
                "older_than_secs": age.as_secs(),
                "purged": purged,
                "failed": failed,
            }),
        ))
    }

    /// `path`, or `path~2`, `path~3`… when a live node already holds it.
    fn free_path(&self, path: &str) -> Result<String> {
        let mut candidate = path.to_string();
        let mut i = 2;
        while self.store.node(&candidate)?.is_some() {
            candidate = format!("{path}~{i}");
            i += 1;
        }
        Ok(candidate)
    }

    /// One write through the host as the caller.
    fn put(
        &self,
        path: &str,
        content: Option<String>,
        meta: Option<Map<String, Value>>,
        importance: Option<f64>,
    ) -> Result<()> {
        let put = Put {
            content: content.map(Into::into),
            meta,
            importance,
            ..Put::default()
        };
        self.host
            .write(self.caller, path, WriteInput::Put(put))
            .map(|_| ())
    }
}

/// Lists what failed under a report's text (`  failed: PATH: message`) and returns it as JSON
/// (`[{path, kind, message}]`).
pub fn failures(text: &mut String, failed: &[(String, Error)]) -> Value {
    for (p, e) in failed {
        text.push_str(&format!("  failed: {p}: {}\n", e.message()));
    }
    Value::Array(
        failed
            .iter()
            .map(|(p, e)| json!({"path": p, "kind": e.kind().as_str(), "message": e.message()}))
            .collect(),
    )
}

fn check_unit(what: &str, v: f64) -> Result<()> {
    if !(0.0..=1.0).contains(&v) {
        return Err(Error::invalid(format!(
            "{what} must lie between 0 and 1, not {v}"
        )));
    }
    Ok(())
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

fn plural<'s>(n: usize, one: &'s str, many: &'s str) -> &'s str {
    if n == 1 { one } else { many }
}

/// `30d`, `12h`, `15m` or seconds.
fn human(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 86_400 && s.is_multiple_of(86_400) {
        format!("{}d", s / 86_400)
    } else if s >= 3600 && s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else if s >= 60 && s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

/// The first sentence of a memory's body: headings and `remember`'s header lines skipped,
/// cut at the first `.`, `!` or `?` that ends a sentence, at most `max` characters.
pub fn first_sentence(content: &str, max: usize) -> String {
    let line = content
        .lines()
        .map(str::trim)
        .find(|l| {
            !l.is_empty()
                && !l.starts_with('#')
                && !avm_core::storage::is_header_line(l)
                && *l != "---"
        })
        .unwrap_or("");
    let mut end = line.len();
    let bytes = line.as_bytes();
    for (i, c) in line.char_indices() {
        if matches!(c, '.' | '!' | '?')
            && bytes.get(i + 1).is_none_or(|b| b.is_ascii_whitespace())
            && i > 0
        {
            end = i + 1;
            break;
        }
    }
    let s = &line[..end];
    if s.chars().count() <= max {
        return s.to_string();
    }
    let cut: String = s.chars().take(max.saturating_sub(1)).collect();
    format!("{}…", cut.trim_end())
}

#[cfg(test)]
mod tests;

/// `:digest` as a service on any path (the path is the scope): what changed there in the last
/// `?days=` (default 1), grouped by topic, at most `?max=` per topic (default 10). Reads only.
pub struct DigestProvider {
    store: std::sync::Arc<dyn MemoryStore>,
    config: LifecycleConfig,
    topics: avm_topics::TopicIndex,
}

impl DigestProvider {
    /// Digests of the memories in `store`, decayed as `config` says.
    pub fn new(
        store: std::sync::Arc<dyn MemoryStore>,
        config: LifecycleConfig,
        topics: avm_topics::TopicIndex,
    ) -> Self {
        DigestProvider {
            store,
            config,
            topics,
        }
    }
}

impl avm_core::Provider for DigestProvider {
    fn info(&self) -> avm_core::ProviderInfo {
        avm_core::ProviderInfo {
            kind: "digest".into(),
            description: "what changed recently, grouped by topic".into(),
            ops: avm_core::Ops {
                read: true,
                ..avm_core::Ops::default()
            },
            suffixes: vec![avm_core::SuffixSpec::new(
                "digest",
                avm_core::SuffixOn::Any,
                true,
                false,
                &["days", "max"],
                "memories changed in the last ?days= (default 1) below this path, grouped by topic, important ones on top",
            )],
        }
    }

    fn read_via(&self, host: &Host, req: &avm_core::Request) -> Result<Output> {
        if req.suffix.as_deref() != Some("digest") {
            return Err(Error::unsupported("read", &req.path));
        }
        Lifecycle::new(host, self.store.as_ref(), &req.caller, &self.config).digest(
            &req.path,
            req.query.parsed("days")?.unwrap_or(1.0),
            req.query.parsed("max")?.unwrap_or(10),
            &self.topics,
        )
    }
}
