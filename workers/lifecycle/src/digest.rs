//! Digest: what changed in a scope over the last days, grouped by topic.

use std::collections::BTreeMap;

use serde_json::json;

use avm_core::storage::Node;
use avm_core::time::{Micros, now_micros, to_iso};
use avm_core::{Error, Output, Result};
use avm_topics::TopicIndex;

use crate::{DAY, Lifecycle, first_sentence, is_summary, plural};

/// Importance at which a memory is listed under "High importance".
const HIGH: f64 = 0.8;

impl Lifecycle<'_> {
    /// A Markdown digest of the memories below `scope` changed in the last `days` days:
    /// counts, then up to `max_items` memories per topic (their heaviest topic), then the
    /// important ones. Reads only.
    pub fn digest(
        &self,
        scope: &str,
        days: f64,
        max_items: usize,
        topics: &TopicIndex,
    ) -> Result<Output> {
        if !(days > 0.0 && days.is_finite()) {
            return Err(Error::invalid(format!(
                "days must be a positive number, not {days}"
            )));
        }
        if max_items == 0 {
            return Err(Error::invalid("max must be at least 1"));
        }
        let now = now_micros();
        let since = now.saturating_sub((days * DAY) as Micros);
        let nodes: Vec<Node> = self
            .scan(scope, Some(since))?
            .into_iter()
            .filter(|n| !is_summary(n))
            .collect();
        let span = format!("{days} {}", if days == 1.0 { "day" } else { "days" });
        let stamp = to_iso(now);
        let stamp = stamp.get(..16).unwrap_or(&stamp).replace('T', " ");
        if nodes.is_empty() {
            return Ok(Output::new(
                format!("# Memory Digest: {scope}\n\n*No activity in the last {span}.*\n"),
                json!({"scope": scope, "days": days, "memories": 0, "topics": [], "high_importance": []}),
            ));
        }
        topics.sync()?;
        let mut groups: BTreeMap<String, Vec<&Node>> = BTreeMap::new();
        for n in &nodes {
            let t = topics
                .of(&n.path)?
                .into_iter()
                .next()
                .map(|(t, _)| t)
                .unwrap_or_else(|| "uncategorized".into());
            groups.entry(t).or_default().push(n);
        }
        let mut ordered: Vec<(String, Vec<&Node>)> = groups.into_iter().collect();
        ordered.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then_with(|| a.0.cmp(&b.0)));
        let avg = nodes.iter().map(|n| n.importance).sum::<f64>() / nodes.len() as f64;
        let mut text = format!(
            "# Memory Digest: {scope}\n\n*{} {} changed in the last {span} · generated {stamp} UTC*\n\n## Summary\n\n- memories: {}\n- topics: {}\n- average importance: {avg:.2}\n\n## By topic\n",
            nodes.len(),
            plural(nodes.len(), "memory", "memories"),
            nodes.len(),
            ordered.len(),
        );
        let preview = |n: &Node| {
            let s = first_sentence(n.text(), 100);
            if s.is_empty() { n.title() } else { s }
        };
        let mut groups_json = Vec::new();
        for (topic, members) in &ordered {
            text.push_str(&format!("\n### {topic} ({})\n\n", members.len()));
            for n in members.iter().take(max_items) {
                text.push_str(&format!(
                    "- [{:.1}] {} ({})\n",
                    n.importance,
                    preview(n),
                    n.path
                ));
            }
            if members.len() > max_items {
                text.push_str(&format!("- … and {} more\n", members.len() - max_items));
            }
            groups_json.push(json!({
                "topic": topic,
                "count": members.len(),
                "memories": members.iter().take(max_items).map(|n| json!({"path": n.path, "importance": n.importance, "preview": preview(n), "updated_at": to_iso(n.updated_at)})).collect::<Vec<_>>(),
            }));
        }
        let mut high: Vec<&Node> = nodes.iter().filter(|n| n.importance >= HIGH).collect();
        high.sort_by(|a, b| {
            b.importance
                .total_cmp(&a.importance)
                .then_with(|| a.path.cmp(&b.path))
        });
        high.truncate(5);
        if !high.is_empty() {
            text.push_str("\n## High importance\n\n");
            for n in &high {
                text.push_str(&format!(
                    "- **[{:.1}]** {} ({})\n",
                    n.importance,
                    preview(n),
                    n.path
                ));
            }
        }
        Ok(Output::new(
            text,
            json!({
                "scope": scope,
                "days": days,
                "memories": nodes.len(),
                "average_importance": crate::round3(avg),
                "topics": groups_json,
                "high_importance": high.iter().map(|n| json!({"path": n.path, "importance": n.importance, "preview": preview(n)})).collect::<Vec<_>>(),
            }),
        ))
    }
}
