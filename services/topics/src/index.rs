//! The topic index: postings kept in the store, maintained from the events table.
//!
//! Writes never wait for topics. Whoever needs the index up to date calls [`TopicIndex::sync`],
//! which reads the events after the index's cursor, re-extracts the topics of every node those
//! events touched and hands them to the store in one transaction together with the new cursor.
//! Extraction is deterministic and idempotent, and the store ignores topics extracted from a
//! node state that has changed since, so several processes may sync at once.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde::Serialize;

use avm_core::storage::{Keep, MemoryStore, TopicDoc};
use avm_core::{Caller, Result};

use crate::extract::{extract, query_topics};

/// Events read per sync round.
const ROUND: usize = 2000;

/// A node's relevance to a topic query.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TopicMatch {
    /// Path.
    pub path: String,
    /// Σ over matched topics of weight × specificity, normalised so the best match is 1.
    pub score: f64,
    /// The query topics this node carries.
    pub topics: Vec<String>,
}

/// The topic index over one store.
#[derive(Clone)]
pub struct TopicIndex {
    store: Arc<dyn MemoryStore>,
}

/// Specificity of a topic carried by `docs` nodes: 1 for a topic only one node has, falling
/// slowly (1 / ln(e + docs − 1)) as it becomes common, so rare topics decide.
pub fn specificity(docs: u64) -> f64 {
    1.0 / (std::f64::consts::E + docs.saturating_sub(1) as f64).ln()
}

impl TopicIndex {
    /// The index over `store`.
    pub fn new(store: Arc<dyn MemoryStore>) -> Self {
        TopicIndex { store }
    }

    /// Brings the index up to date with the events table; returns how many nodes were
    /// (re)indexed.
    pub fn sync(&self) -> Result<usize> {
        let mut cursor = self.store.topic_cursor()?;
        let mut done = 0;
        loop {
            let events = self.store.events_after(cursor, ROUND)?;
            let Some(last) = events.last().map(|e| e.seq) else {
                return Ok(done);
            };
            let mut paths = BTreeSet::new();
            for e in &events {
                paths.insert(e.path.clone());
                if let Some(d) = &e.detail {
                    paths.insert(d.clone());
                }
            }
            let mut docs = Vec::new();
            for p in paths {
                if let Some(n) = self.store.node(&p)? {
                    let topics = extract(&n.title(), &n.tags, n.text())
                        .into_iter()
                        .map(|t| (t.name, f64::from(t.weight)))
                        .collect();
                    docs.push(TopicDoc {
                        node_id: n.id,
                        signature: format!("{}:{}", n.hash, n.path),
                        topics,
                    });
                }
            }
            done += docs.len();
            self.store.topic_update(last, docs, Vec::new())?;
            cursor = last;
            if events.len() < ROUND {
                return Ok(done);
            }
        }
    }

    /// Nodes within `scopes` that carry topics of `query`, best first.
    pub fn query(
        &self,
        query: &str,
        scopes: &[String],
        caller: &Caller,
        keep: Keep<'_>,
        limit: usize,
    ) -> Result<Vec<TopicMatch>> {
        let keys = query_topics(query);
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let postings = self
            .store
            .topic_postings(&keys, scopes, caller, keep, limit.max(10))?;
        let mut scored: std::collections::BTreeMap<String, (f64, Vec<String>)> =
            std::collections::BTreeMap::new();
        for p in postings {
            let e = scored.entry(p.path).or_insert((0.0, Vec::new()));
            e.0 += p.weight * specificity(p.docs);
            e.1.push(p.topic);
        }
        let best = scored.values().map(|v| v.0).fold(0.0, f64::max);
        let mut out: Vec<TopicMatch> = scored
            .into_iter()
            .map(|(path, (s, topics))| TopicMatch {
                path,
                score: if best > 0.0 { s / best } else { 0.0 },
                topics,
            })
            .collect();
        out.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then_with(|| a.path.cmp(&b.path))
        });
        out.truncate(limit);
        Ok(out)
    }

    /// The most common topics within `scopes`.
    pub fn top(
        &self,
        scopes: &[String],
        caller: &Caller,
        keep: Keep<'_>,
        limit: usize,
    ) -> Result<Vec<(String, u64)>> {
        self.store.topic_counts(scopes, caller, keep, limit)
    }

    /// The topics of one node.
    pub fn of(&self, path: &str) -> Result<Vec<(String, f64)>> {
        self.store.topics_of(path)
    }
}
