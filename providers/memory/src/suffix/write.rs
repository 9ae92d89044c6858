//! Writing the memory provider's suffixes: one handler per writable row of the suffix table.

use serde_json::{Value, json};

use avm_core::address::normalize_path;
use avm_core::time::{Micros, now_micros, parse_duration};
use avm_core::{Error, Output, Put, Request, Result};

use crate::ops::WriteOp;
use crate::provider::MemoryProvider;

impl MemoryProvider {
    /// `:meta` write.
    pub(super) fn write_meta(&self, req: &Request, text: &str) -> Result<Output> {
        let v: Value = serde_json::from_str(text.trim())
            .map_err(|e| Error::invalid(format!("{}:meta takes a JSON object: {e}", req.path)))?;
        let Value::Object(m) = v else {
            return Err(Error::invalid(format!(
                "{}:meta takes a JSON object such as {{\"k\": 1}}",
                req.path
            )));
        };
        let put = Put {
            meta: Some(m),
            ..Put::default()
        };
        self.put_suffix(req, put)
    }

    /// `:tags` write.
    pub(super) fn write_tags(&self, req: &Request, text: &str) -> Result<Output> {
        let put = Put {
            tags: Some(
                text.split([',', '\n'])
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect(),
            ),
            ..Put::default()
        };
        self.put_suffix(req, put)
    }

    /// `:ttl` write.
    pub(super) fn write_ttl(&self, req: &Request, text: &str) -> Result<Output> {
        let t = text.trim();
        let exp = if t.is_empty() || t == "never" {
            None
        } else {
            let d = if t.chars().all(|c| c.is_ascii_digit()) {
                parse_duration(&format!("{t}m"))?
            } else {
                parse_duration(t)?
            };
            Some(
                now_micros().saturating_add(Micros::try_from(d.as_micros()).unwrap_or(Micros::MAX)),
            )
        };
        let put = Put {
            expires_at: Some(exp),
            ..Put::default()
        };
        self.put_suffix(req, put)
    }

    /// `:shared` write.
    pub(super) fn write_shared(&self, req: &Request, text: &str) -> Result<Output> {
        let t = text.trim();
        let list: Vec<Value> = if t.is_empty() || t == "all" {
            Vec::new()
        } else {
            t.split([',', '\n'])
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| Value::String(s.to_string()))
                .collect()
        };
        let n = self.node(req)?;
        if let (Some(a), Some(author)) = (req.caller.agent(), n.author.as_deref())
            && a != author
        {
            return Err(Error::denied(format!(
                "only {author}, who created {}, may change who it is shared with",
                req.path
            )));
        }
        let mut m = serde_json::Map::new();
        m.insert(
            "shared_with".into(),
            if list.is_empty() {
                Value::Null
            } else {
                Value::Array(list)
            },
        );
        let put = Put {
            meta: Some(m),
            ..Put::default()
        };
        self.put_suffix(req, put)
    }

    /// `:mark` write.
    pub(super) fn write_mark(&self, req: &Request, _text: &str) -> Result<Output> {
        let n = self.node(req)?;
        let agent = req.caller.agent().ok_or_else(|| {
            Error::denied(format!("{}:mark needs an agent (--agent NAME)", req.path))
        })?;
        self.apply(WriteOp::Mark {
            agent: agent.to_string(),
            path: req.path.clone(),
            version: n.version,
        })?;
        Ok(Output::new(
            format!("marked: v{}, current: v{}\n", n.version, n.version),
            json!({"marked": n.version, "current": n.version}),
        ))
    }

    /// `:compact`: keep the newest N versions of the history (body: N, default 3).
    pub(super) fn write_compact(&self, req: &Request, text: &str) -> Result<Output> {
        let t = text.trim();
        let keep: usize = if t.is_empty() {
            3
        } else {
            t.parse().map_err(|_| {
                Error::invalid(format!(
                    "{}:compact takes the number of versions to keep (1 or more), not {t:?}",
                    req.path
                ))
            })?
        };
        let before = self.store.history(&req.path, usize::MAX)?;
        let out = self.apply(WriteOp::Compact {
            path: req.path.clone(),
            keep,
        })?;
        let freed: u64 = before
            .iter()
            .skip(keep)
            .map(|v| u64::try_from(v.size).unwrap_or(0))
            .sum();
        let kept = before.len() - out.count;
        Ok(Output::new(
            format!(
                "compacted {}: removed {} old version{}, kept {kept}, freed {freed} bytes\n",
                req.path,
                out.count,
                if out.count == 1 { "" } else { "s" }
            ),
            json!({"path": req.path, "removed": out.count, "kept": kept, "freed_bytes": freed}),
        ))
    }

    /// `:links` write: lines `TARGET [TYPE] [WEIGHT]` (op=remove to unlink).
    pub(super) fn write_links(&self, req: &Request, text: &str) -> Result<Output> {
        let op = req.query.get("op").unwrap_or("add");
        if !["add", "remove"].contains(&op) {
            return Err(Error::invalid(format!(
                "op={op:?} is not accepted for :links; use add or remove"
            )));
        }
        // One link can come in the query (paths with spaces travel safely there), or many as
        // body lines `TARGET [TYPE] [WEIGHT]` (what a shell writes through a file).
        let mut specs: Vec<(String, Option<String>, Option<String>)> = Vec::new();
        if let Some(t) = req.query.get("target") {
            specs.push((
                t.to_string(),
                req.query.get("type").map(str::to_string),
                req.query.get("weight").map(str::to_string),
            ));
        }
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let mut parts = line.split_whitespace();
            specs.push((
                parts.next().unwrap_or_default().to_string(),
                parts.next().map(str::to_string),
                parts.next().map(str::to_string),
            ));
        }
        let mut ops = Vec::new();
        for (target, kind, weight) in specs {
            let target = avm_core::host::expand_private(&req.caller, &normalize_path(&target)?)?;
            if !req.caller.may_see(&target) {
                return Err(Error::denied(format!(
                    "cannot link to {target}: it is in another agent's private namespace (rule: private namespaces belong to their agent)"
                )));
            }
            let hidden = op == "add"
                && (!req.policy.may_read(&req.caller, &target)
                    || self
                        .store
                        .get(&target)?
                        .is_some_and(|n| !n.visible_to(&req.caller)));
            if hidden {
                return Err(Error::denied(format!(
                    "cannot link to {target}: the caller may not read it"
                )));
            }
            let weight = match weight {
                Some(w) => w
                    .parse::<f64>()
                    .map_err(|_| Error::invalid(format!("link weight {w:?} is not a number")))?,
                None => 1.0,
            };
            ops.push(if op == "add" {
                WriteOp::Link {
                    source: req.path.clone(),
                    target,
                    kind: kind.unwrap_or_else(|| "related".into()),
                    weight,
                }
            } else {
                WriteOp::Unlink {
                    source: req.path.clone(),
                    target,
                    kind,
                }
            });
        }
        if ops.is_empty() {
            return Err(Error::invalid(
                "no links given; write lines of `TARGET [TYPE] [WEIGHT]`",
            ));
        }
        let n = ops.len();
        let results = self.store.apply_many(ops);
        let mut count = 0;
        for r in results {
            count += r?.count;
        }
        Ok(Output::new(
            format!(
                "{} {count} link(s) of {}",
                if op == "add" { "Added" } else { "Removed" },
                req.path
            ),
            json!({"path": req.path, "op": op, "lines": n, "count": count}),
        ))
    }
}
