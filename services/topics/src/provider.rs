//! `:topics` on any path: the topics of a file, or the most common topics below a directory.

use serde_json::json;

use avm_core::address::is_within;
use avm_core::{Error, Ops, Output, Provider, ProviderInfo, Request, Result, SuffixOn, SuffixSpec};

use crate::index::TopicIndex;

/// The topic index as a service provider.
pub struct TopicsProvider {
    index: TopicIndex,
}

impl TopicsProvider {
    /// Serves `index`.
    pub fn new(index: TopicIndex) -> Self {
        TopicsProvider { index }
    }
}

/// Scopes for a topic or recall request on `path`: the path itself for operators; for agents
/// the path, which the host has already checked they may read.
fn scope_of(req: &Request) -> Vec<String> {
    vec![req.path.clone()]
}

impl Provider for TopicsProvider {
    fn info(&self) -> ProviderInfo {
        ProviderInfo {
            kind: "topics".into(),
            description:
                "topic index: topics of a memory, or the most common topics below a directory"
                    .into(),
            ops: Ops {
                read: true,
                ..Ops::default()
            },
            suffixes: vec![SuffixSpec::new(
                "topics",
                SuffixOn::Any,
                true,
                false,
                &["limit"],
                "topics of this file, or the most common topics below this directory",
            )],
        }
    }

    fn read(&self, req: &Request) -> Result<Output> {
        let limit: usize = req.query.parsed("limit")?.unwrap_or(30);
        if limit == 0 {
            return Err(Error::invalid("limit must be at least 1"));
        }
        self.index.sync()?;
        let own = self.index.of(&req.path)?;
        if !own.is_empty() && req.may_read(&req.path) {
            let mut text = String::new();
            for (t, w) in own.iter().take(limit) {
                text.push_str(&format!("{t}\t{w:.2}\n"));
            }
            let data: Vec<_> = own
                .iter()
                .take(limit)
                .map(|(t, w)| json!({"topic": t, "weight": w}))
                .collect();
            return Ok(Output::new(text, json!({"path": req.path, "topics": data})));
        }
        let keep = |p: &str| req.may_read(p) && (req.path == "/" || is_within(p, &req.path));
        let top = self.index.top(&scope_of(req), &req.caller, &keep, limit)?;
        let mut text = format!("## Memory Topics ({})\n\n", req.path);
        if top.is_empty() {
            text.push_str("No topics yet: remember something first.\n");
        }
        for (t, n) in &top {
            text.push_str(&format!(
                "  {t}: {n} {}\n",
                if *n == 1 { "memory" } else { "memories" }
            ));
        }
        let data: Vec<_> = top
            .iter()
            .map(|(t, n)| json!({"topic": t, "memories": n}))
            .collect();
        Ok(Output::new(
            text,
            json!({"scope": req.path, "topics": data}),
        ))
    }
}
