//! Ranking memories for a query, and rendering a token-budgeted recall.
//!
//! # Scoring
//!
//! Candidates come from full-text search (bm25), the topic index, vectors (when an embedder
//! is configured, through [`VectorSearch`]) and one hop along links from the best of those.
//! Every signal is brought into [0, 1] before it is combined:
//!
//! - `fts` = bm25 / best bm25 among the candidates;
//! - `cover` = share of the query's terms that occur in the memory (title + content);
//! - `topic` = Σ topic weight × specificity, / the best such sum (see avm-provider-topics);
//! - `vector` = (cosine − floor) / 0.3, clamped to [0, 1], where floor is the median cosine of
//!   the nearest vector candidates (at least 0.2): how much closer than its neighbours a
//!   memory is, so look-alike memories that all sit at one high cosine get no lift. A store
//!   smaller than the vector window (every memory in scope is a candidate) has no
//!   distribution to judge by: there `vector` = (cosine − 0.12) / 0.2, the model's calibrated
//!   thresholds (below 0.12 its cosines say nothing; see `SMALL_FLOOR`);
//! - `link` = weight (≤ 1) × 0.5 × relevance of the memory linking to it.
//!
//! `lexical = 0.40·fts + 0.30·cover + 0.20·topic + 0.10·link`; `relevance = lexical` without
//! vectors, and `relevance = lexical + (1 − lexical)²·0.8·vector` with them (meaning carries a
//! memory that shares no word with the query, but barely moves one that matches the words).
//!
//! `importance` is the memory's importance (0..1); `recency = 0.5^(age / half-life)` with the
//! age in whole minutes since the last change, or since `meta.at` for a memory about another
//! time (`remember --at`; half-life 168 h unless configured). A query naming a day or a month
//! (`2023-05-08`, `2023-05`) adds 0.2 to the relevance of memories whose `meta.at` falls in it.
//!
//! The final score depends on the strategy: `relevance`, `importance` and `recency` use that
//! signal alone; `balanced` = `relevance × (0.5 + 0.3·importance + 0.2·recency)`: importance
//! and recency (the reference's 0.3 and 0.2 weights) decide between memories of similar
//! relevance but never lift an off-topic memory over an on-topic one. Candidates whose
//! relevance is below `min_relevance` are dropped; ties go to the lexically smaller path, so
//! the same store answers the same query the same way.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use serde::Serialize;

pub use avm_core::storage::VectorSearch;
use avm_core::storage::{Keep, MemoryNode, MemoryStore};
use avm_core::time::{Micros, now_micros};
use avm_core::{Caller, Error, Result};
use avm_provider_topics::TopicIndex;

use crate::summary;

/// Small stores: the cosine below which all-MiniLM-L6-v2 (int8) says nothing about meaning.
/// Measured on three unrelated memories: unrelated queries reach at most 0.02–0.15 (`git rebase
/// conflict resolution` 0.02, `the capital of Australia` 0.04, `quantum chromodynamics on a
/// lattice` 0.15), paraphrases 0.18–0.40 (`central bank interest rate decision` → `The Fed
/// hiked by 25 basis points` 0.18, `feline pets` → a kitten 0.40).
const SMALL_FLOOR: f64 = 0.12;
/// Small stores: the cosine span above [`SMALL_FLOOR`] that maps to full vector evidence.
const SMALL_SPAN: f64 = 0.2;

/// How candidates are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// Relevance, importance and recency together.
    Balanced,
    /// Relevance alone.
    Relevance,
    /// Importance alone.
    Importance,
    /// Recency alone.
    Recency,
}

impl Strategy {
    /// Parses a strategy name.
    pub fn parse(s: &str) -> Result<Strategy> {
        match s {
            "balanced" => Ok(Strategy::Balanced),
            "relevance" => Ok(Strategy::Relevance),
            "importance" => Ok(Strategy::Importance),
            "recency" => Ok(Strategy::Recency),
            other => Err(Error::invalid(format!(
                "strategy {other:?} is not accepted; use balanced, relevance, importance or recency"
            ))),
        }
    }

    /// The name.
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Balanced => "balanced",
            Strategy::Relevance => "relevance",
            Strategy::Importance => "importance",
            Strategy::Recency => "recency",
        }
    }
}

/// Tuning that comes from configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Tuning {
    /// Default budget.
    pub max_tokens: usize,
    /// Default strategy.
    pub strategy: Strategy,
    /// Default relevance floor.
    pub min_relevance: f64,
    /// Longest summary, in characters.
    pub max_chars: usize,
    /// Recency half-life in hours.
    pub half_life_hours: f64,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            max_tokens: 4000,
            strategy: Strategy::Balanced,
            min_relevance: 0.15,
            max_chars: 320,
            half_life_hours: 168.0,
        }
    }
}

/// A ranked memory.
#[derive(Debug, Clone, Serialize)]
pub struct Scored {
    /// The memory.
    #[serde(skip)]
    pub node: MemoryNode,
    /// Path.
    pub path: String,
    /// Final score for the strategy.
    pub score: f64,
    /// Fused relevance.
    pub relevance: f64,
    /// Importance.
    pub importance: f64,
    /// Recency.
    pub recency: f64,
    /// Which sources proposed it (`fts`, `topic`, `vector`, `link`).
    pub sources: Vec<&'static str>,
}

#[derive(Default, Clone)]
struct Signals {
    fts: f64,
    topic: f64,
    vector: f64,
    link: f64,
    sources: Vec<&'static str>,
}

/// The recall engine over one store.
#[derive(Clone)]
pub struct Engine {
    store: Arc<dyn MemoryStore>,
    topics: TopicIndex,
    vectors: Option<Arc<dyn VectorSearch>>,
    /// Configured defaults.
    pub tuning: Tuning,
}

/// Where an agent's recall looks: its private namespace and the shared namespaces (all of
/// them, or the named ones); operators look at all of `/memory` (or the named namespaces).
pub fn scopes(caller: &Caller, include_shared: bool, namespaces: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(root) = caller.private_root() {
        out.push(root);
    }
    if include_shared || caller.agent().is_none() {
        if namespaces.is_empty() {
            if caller.agent().is_none() {
                out = vec!["/memory".to_string()];
            } else {
                out.push("/memory/shared".to_string());
            }
        } else {
            for ns in namespaces {
                out.push(format!("/memory/shared/{}", ns.trim_matches('/')));
            }
        }
    }
    out
}

/// Narrows `scopes` to what lies within `within` (a request path): scopes inside it stay,
/// a scope containing it becomes it, others go.
pub fn narrow(scopes: Vec<String>, within: &str) -> Vec<String> {
    use avm_core::address::is_within;
    if within == "/" {
        return scopes;
    }
    let mut out: Vec<String> = Vec::new();
    for s in scopes {
        let n = if is_within(&s, within) {
            Some(s)
        } else if is_within(within, &s) {
            Some(within.to_string())
        } else {
            None
        };
        if let Some(n) = n
            && !out.contains(&n)
        {
            out.push(n);
        }
    }
    out
}

impl Engine {
    /// An engine over `store` and its topic index.
    pub fn new(store: Arc<dyn MemoryStore>, tuning: Tuning) -> Self {
        Engine {
            topics: TopicIndex::new(store.clone()),
            store,
            vectors: None,
            tuning,
        }
    }

    /// Adds a vector candidate source.
    pub fn with_vectors(mut self, v: Arc<dyn VectorSearch>) -> Self {
        self.vectors = Some(v);
        self
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn MemoryStore> {
        &self.store
    }

    /// The topic index.
    pub fn topics(&self) -> &TopicIndex {
        &self.topics
    }

    /// Ranks memories within `scopes` for `query`, best first, dropping those whose relevance
    /// is below `min_relevance`.
    #[allow(clippy::too_many_arguments)]
    pub fn rank(
        &self,
        query: &str,
        scopes: &[String],
        caller: &Caller,
        keep: Keep<'_>,
        strategy: Strategy,
        min_relevance: f64,
        limit: usize,
    ) -> Result<Vec<Scored>> {
        if query.trim().is_empty() {
            return Err(Error::invalid("empty query: give at least one word"));
        }
        if scopes.is_empty() {
            return Ok(Vec::new());
        }
        let terms = summary::terms(query);
        // Full text and vectors each propose their best `window`; topics, a weaker signal
        // that mostly confirms them, half as many.
        let window = limit.clamp(20, 200);
        let per_source = (window / 2).max(20);
        let mut sig: BTreeMap<String, Signals> = BTreeMap::new();
        // Stop words would match (by prefix) nearly every memory and blur bm25: search for
        // the query's terms only (the whole query when it has nothing else, e.g. "the who").
        let fts_query = if terms.is_empty() {
            query.to_string()
        } else {
            terms.join(" ")
        };
        match self
            .store
            .text_search(scopes, caller, keep, &fts_query, window)
        {
            Ok(hits) => {
                let best = hits.iter().map(|h| h.score).fold(0.0, f64::max);
                for h in hits {
                    let s = sig.entry(h.path).or_default();
                    s.fts = if best > 0.0 { h.score / best } else { 0.0 };
                    s.sources.push("fts");
                }
            }
            // A query of only punctuation has nothing for FTS; topics and vectors may still match.
            Err(e) if e.kind() == avm_core::ErrorKind::InvalidInput => {}
            Err(e) => return Err(e),
        }
        self.topics.sync()?;
        for m in self.topics.query(query, scopes, caller, keep, per_source)? {
            let s = sig.entry(m.path).or_default();
            s.topic = m.score;
            s.sources.push("topic");
        }
        if let Some(v) = &self.vectors {
            let hits = v.similar(query, scopes, caller, keep, window)?;
            // How much closer than its neighbours a memory is: cosines are measured from the
            // median of the nearest candidates (at least 0.2, below which all-MiniLM-L6-v2
            // text is unrelated), so a corpus of look-alike memories, all at the same high
            // cosine, gives no memory a lift, while a true match still stands out.
            let mut cos: Vec<f64> = hits.iter().map(|h| h.1).collect();
            cos.sort_by(|a, b| a.total_cmp(b));
            // Fewer hits than asked for means they are every memory in scope: a store too
            // small for its own distribution to say what is close. Then the calibrated
            // thresholds of this model judge: below SMALL_FLOOR its cosines carry no meaning.
            let (floor, span) = if cos.len() < window {
                (SMALL_FLOOR, SMALL_SPAN)
            } else {
                (cos[cos.len() / 2].max(0.2), 0.3)
            };
            for (path, c) in hits {
                let s = sig.entry(path).or_default();
                s.vector = ((c - floor) / span).clamp(0.0, 1.0);
                if s.vector > 0.0 {
                    s.sources.push("vector");
                }
            }
        }
        let vectors = self.vectors.is_some();
        let now = now_micros();
        let mut nodes: BTreeMap<String, MemoryNode> = BTreeMap::new();
        let mut rel: BTreeMap<String, f64> = BTreeMap::new();
        for (path, s) in &sig {
            if let Some(n) = self.store.node(path)? {
                let r = relevance(s, &n, &terms, vectors);
                rel.insert(path.clone(), r);
                nodes.insert(path.clone(), n);
            }
        }
        // One hop along links from the five most relevant memories.
        let mut seeds: Vec<(&String, &f64)> = rel.iter().collect();
        seeds.sort_by(|a, b| b.1.total_cmp(a.1).then_with(|| a.0.cmp(b.0)));
        let seeds: Vec<(String, f64)> = seeds
            .into_iter()
            .take(5)
            .map(|(p, r)| (p.clone(), *r))
            .collect();
        let in_scope = |p: &str| {
            scopes.iter().any(|s| avm_core::address::is_within(p, s))
                && !avm_core::address::is_within(p, "/trash")
                && caller.may_see(p)
                && keep(p)
        };
        for (seed, r) in seeds {
            for (src, dst, _, w) in self.store.links_of(&seed)? {
                let other = if src == seed { dst } else { src };
                if other == seed || !in_scope(&other) {
                    continue;
                }
                let link = (w.clamp(0.0, 1.0) * 0.5 * r).min(1.0);
                let s = sig.entry(other.clone()).or_default();
                if link > s.link {
                    s.link = link;
                }
                if !s.sources.contains(&"link") {
                    s.sources.push("link");
                }
                if !nodes.contains_key(&other)
                    && let Some(n) = self.store.node(&other)?
                {
                    nodes.insert(other.clone(), n);
                }
                if let Some(n) = nodes.get(&other) {
                    let s = sig.get(&other).cloned().unwrap_or_default();
                    rel.insert(other.clone(), relevance(&s, n, &terms, vectors));
                }
            }
        }
        let half_life_min = self.tuning.half_life_hours.max(0.01) * 60.0;
        let periods = periods(query);
        let mut out: Vec<Scored> = Vec::new();
        let mut seen_hashes = HashSet::new();
        for (path, node) in nodes {
            let relevance = rel.get(&path).copied().unwrap_or(0.0);
            if relevance < min_relevance {
                continue;
            }
            let importance = node.importance.clamp(0.0, 1.0);
            let at = at(&node);
            // A memory about another time (`remember --at`) is as recent as that time.
            let recency = recency(at.unwrap_or(node.updated_at), now, half_life_min);
            // A question naming a day or month favours memories of that period.
            let relevance =
                if at.is_some_and(|t| periods.iter().any(|(a, b)| (*a..*b).contains(&t))) {
                    (relevance + 0.2).min(1.0)
                } else {
                    relevance
                };
            let score = match strategy {
                Strategy::Balanced => relevance * (0.5 + 0.3 * importance + 0.2 * recency),
                Strategy::Relevance => relevance,
                Strategy::Importance => importance,
                Strategy::Recency => recency,
            };
            let sources = sig
                .get(&path)
                .map(|s| s.sources.clone())
                .unwrap_or_default();
            out.push(Scored {
                path: path.clone(),
                score,
                relevance,
                importance,
                recency,
                sources,
                node,
            });
        }
        out.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then_with(|| b.relevance.total_cmp(&a.relevance))
                .then_with(|| a.path.cmp(&b.path))
        });
        // The same content twice (a memory copied to a shared namespace) is shown once.
        out.retain(|s| seen_hashes.insert(s.node.hash.clone()));
        out.truncate(limit);
        Ok(out)
    }
}

/// When what a memory tells happened (`meta.at`, set by `remember --at`), if recorded.
pub fn at(node: &MemoryNode) -> Option<Micros> {
    node.meta
        .get("at")
        .and_then(serde_json::Value::as_str)
        .and_then(|s| avm_core::time::parse_time(s).ok())
}

/// Does `query` ask about time: when something happened, a date, a period? Then recall shows
/// the dates of memories about another time.
pub fn about_time(query: &str) -> bool {
    const WORDS: &[&str] = &[
        "when",
        "date",
        "day",
        "days",
        "week",
        "weeks",
        "month",
        "months",
        "year",
        "years",
        "ago",
        "before",
        "after",
        "since",
        "until",
        "yesterday",
        "today",
        "tomorrow",
        "last",
        "first",
        "recently",
        "earlier",
        "later",
        "time",
        "january",
        "february",
        "march",
        "april",
        "may",
        "june",
        "july",
        "august",
        "september",
        "october",
        "november",
        "december",
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
    ];
    !periods(query).is_empty()
        || query
            .to_lowercase()
            .split(|c: char| !c.is_alphanumeric())
            .any(|w| {
                WORDS.contains(&w)
                    || (w.len() == 4 && w.starts_with("20") && w.parse::<u32>().is_ok())
            })
}

/// The days and months a query names as `YYYY-MM-DD` or `YYYY-MM`, as `[start, end)` in UTC
/// microseconds.
fn periods(query: &str) -> Vec<(Micros, Micros)> {
    use chrono::{NaiveDate, TimeZone, Utc};
    let micros = |d: NaiveDate| {
        d.and_hms_opt(0, 0, 0)
            .map(|t| Utc.from_utc_datetime(&t).timestamp_micros())
    };
    let mut out = Vec::new();
    for word in query.split(|c: char| !(c.is_ascii_digit() || c == '-')) {
        let parts: Vec<&str> = word.split('-').collect();
        let num = |s: &str, len: usize| (s.len() == len).then(|| s.parse::<u32>().ok()).flatten();
        let (Some(y), Some(m)) = (
            parts.first().and_then(|p| num(p, 4)),
            parts.get(1).and_then(|p| num(p, 2)),
        ) else {
            continue;
        };
        let range = match parts.get(2).and_then(|p| num(p, 2)) {
            Some(d) => NaiveDate::from_ymd_opt(y as i32, m, d)
                .and_then(|a| Some((micros(a)?, micros(a.succ_opt()?)?))),
            None => NaiveDate::from_ymd_opt(y as i32, m, 1).and_then(|a| {
                let next = if m == 12 {
                    NaiveDate::from_ymd_opt(y as i32 + 1, 1, 1)?
                } else {
                    NaiveDate::from_ymd_opt(y as i32, m + 1, 1)?
                };
                Some((micros(a)?, micros(next)?))
            }),
        };
        if let Some(r) = range {
            out.push(r);
        }
    }
    out
}

/// `0.5^(age / half-life)`, age in whole minutes (so a score does not drift between two calls
/// a few milliseconds apart).
fn recency(updated_at: Micros, now: Micros, half_life_min: f64) -> f64 {
    let age_min = ((now - updated_at).max(0) / 60_000_000) as f64;
    0.5f64.powf(age_min / half_life_min)
}

fn relevance(s: &Signals, n: &MemoryNode, terms: &[String], vectors: bool) -> f64 {
    let mut text = n.title().to_lowercase();
    text.push('\n');
    text.push_str(&n.content.to_lowercase());
    let cover = summary::coverage(terms, &text);
    let lexical = 0.40 * s.fts + 0.30 * cover + 0.20 * s.topic + 0.10 * s.link;
    let r = if vectors {
        // Meaning fills in where words are missing: it can carry a memory that shares no
        // word with the query, but barely moves one that matches the words well (so vector
        // noise never reorders strong lexical matches).
        lexical + (1.0 - lexical).powi(2) * 0.8 * s.vector
    } else {
        lexical
    };
    r.clamp(0.0, 1.0)
}
