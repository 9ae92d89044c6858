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
//! - `topic` = Σ topic weight × specificity, / the best such sum (see avm-topics);
//! - `vector` = (cosine − floor) / 0.3, clamped to [0, 1], where floor is the median cosine of
//!   the nearest vector candidates (at least 0.2): how much closer than its neighbours a
//!   memory is, so look-alike memories that all sit at one high cosine get no lift. A store
//!   smaller than the vector window (every memory in scope is a candidate) has no
//!   distribution to judge by: there `vector` = (cosine − 0.12) / 0.2, the model's calibrated
//!   thresholds (below 0.12 its cosines say nothing; see `SMALL_FLOOR`);
//! - `link` = weight (≤ 1) × 0.5 × relevance of the memory linking to it;
//! - `hop` (a second hop for questions that reach their answer through another memory: "the
//!   pet of the person who moved to Linden Street"): when the most relevant memory (relevance
//!   ≥ 0.45) lacks some of the query's terms, memories that hold one of its names (capitalised
//!   words not in the query) and one of the missing terms get `hop` = its relevance × (0.6 +
//!   0.4 × share of the missing terms they hold). They rank after the best 30 direct matches.
//!
//! `lexical = 0.40·fts + 0.30·cover + 0.20·topic + 0.10·link`, then `+ (1 − lexical)·0.8·hop`;
//! `relevance = lexical` without
//! vectors, and `relevance = lexical + (1 − lexical)²·0.8·vector` with them (meaning carries a
//! memory that shares no word with the query, but barely moves one that matches the words).
//!
//! `importance` is the memory's importance (0..1); `recency = 0.5^(age / half-life)` with the
//! age in whole minutes since the last change, or since `meta.at` for a memory about another
//! time (`remember --at`; half-life 168 h unless configured). A query naming a period (a date,
//! a month, a year, `yesterday`, `last week`, `three months ago`: see [`periods`]) adds 0.2 to
//! the relevance of memories whose time (`meta.at`, else the last change) falls in it, and
//! gives them recency 1: the question is about their time.
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
use avm_core::storage::{Keep, MemoryStore, Node};
use avm_core::time::{Micros, now_micros};
use avm_core::{Caller, Error, Result};
use avm_topics::TopicIndex;

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
    pub node: Node,
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
    hop: f64,
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
        let mut nodes: BTreeMap<String, Node> = BTreeMap::new();
        let mut rel: BTreeMap<String, f64> = BTreeMap::new();
        for (path, s) in &sig {
            if let Some(n) = self.store.node(path)? {
                let r = relevance(s, &n, &terms, vectors);
                rel.insert(path.clone(), r);
                nodes.insert(path.clone(), n);
            }
        }
        // A second hop through the names in the best matches: "the pet of the person who
        // moved to Linden Street" finds the move, whose teller's name then finds the pet.
        let best = best_first(&rel);
        let hops = match best.first().filter(|(_, r)| *r >= HOP_SEED) {
            Some((seed, r)) => {
                self.second_hop(seed, *r, &mut nodes, &terms, scopes, caller, keep)?
            }
            None => Vec::new(),
        };
        // Memories whose relevance the second hop raised: they rank after the best direct
        // matches (below), as a name shared with a strong match is weaker evidence than the
        // question's own words. A direct match already among the best HOP_AFTER keeps its
        // place as it is.
        let mut hopped: HashSet<String> = HashSet::new();
        let head_floor = best.get(HOP_AFTER - 1).map(|b| b.1);
        for (path, hop) in hops {
            let direct = rel.get(&path).copied();
            if direct.is_some_and(|d| head_floor.is_none_or(|f| d >= f)) {
                continue;
            }
            let Some(n) = nodes.get(&path) else {
                continue;
            };
            let s = sig.entry(path.clone()).or_default();
            s.hop = hop;
            s.sources.push("hop");
            let lifted = relevance(s, n, &terms, vectors);
            if lifted > direct.unwrap_or(0.0) {
                rel.insert(path.clone(), lifted);
                hopped.insert(path);
            }
        }
        // One hop along links from the five most relevant memories.
        let seeds: Vec<(String, f64)> = best_first(&rel).into_iter().take(5).collect();
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
        let periods = periods(query, now);
        let mut out: Vec<Scored> = Vec::new();
        let mut seen_hashes = HashSet::new();
        for (path, node) in nodes {
            let relevance = rel.get(&path).copied().unwrap_or(0.0);
            if relevance < min_relevance {
                continue;
            }
            let importance = node.importance.clamp(0.0, 1.0);
            // When what a memory tells happened (`remember --at`), or else when it was written.
            let when = at(&node).unwrap_or(node.updated_at);
            // A question naming a period favours memories of that period, and judges their
            // recency from that period, not from now.
            let (relevance, recency) = if periods.iter().any(|(a, b)| (*a..*b).contains(&when)) {
                ((relevance + 0.2).min(1.0), 1.0)
            } else {
                (relevance, recency(when, now, half_life_min))
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
        let order = |a: &Scored, b: &Scored| {
            b.score
                .total_cmp(&a.score)
                .then_with(|| b.relevance.total_cmp(&a.relevance))
                .then_with(|| a.path.cmp(&b.path))
        };
        out.sort_by(order);
        if !hopped.is_empty() {
            // The best HOP_AFTER direct matches first, then everything else by score.
            let (mut head, mut tail): (Vec<Scored>, Vec<Scored>) =
                out.into_iter().partition(|s| !hopped.contains(&s.path));
            let rest = head.split_off(HOP_AFTER.min(head.len()));
            tail.extend(rest);
            tail.sort_by(order);
            head.extend(tail);
            out = head;
        }
        // The same content twice (a memory copied to a shared namespace) is shown once.
        out.retain(|s| seen_hashes.insert(s.node.hash.clone()));
        out.truncate(limit);
        Ok(out)
    }
}

impl Engine {
    /// Memories reached through the names in the most relevant memory: when it leaves some
    /// of the query's terms unmatched, the memories holding one of its names (capitalised
    /// words the query does not hold) and one of those missing terms, each scored `hop` =
    /// its relevance × (0.6 + 0.4 × the share of missing terms the memory holds).
    #[allow(clippy::too_many_arguments)]
    fn second_hop(
        &self,
        seed: &str,
        seed_rel: f64,
        nodes: &mut BTreeMap<String, Node>,
        terms: &[String],
        scopes: &[String],
        caller: &Caller,
        keep: Keep<'_>,
    ) -> Result<Vec<(String, f64)>> {
        let lower = |n: &Node| format!("{}\n{}", n.title(), n.text()).to_lowercase();
        let Some(node) = nodes.get(seed) else {
            return Ok(Vec::new());
        };
        let seed_text = lower(node);
        let missing: Vec<String> = terms
            .iter()
            .filter(|t| !seed_text.contains(t.as_str()))
            .cloned()
            .collect();
        let names = names(node.text(), terms);
        if missing.is_empty() || names.is_empty() {
            return Ok(Vec::new());
        }
        let q = names.iter().chain(&missing).cloned().collect::<Vec<_>>();
        let hits = match self
            .store
            .text_search(scopes, caller, keep, &q.join(" "), HOP_WINDOW)
        {
            Ok(h) => h,
            Err(e) if e.kind() == avm_core::ErrorKind::InvalidInput => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        for h in hits {
            if h.path == seed {
                continue;
            }
            // Loaded here once; kept in `nodes` only for the memories the hop reaches.
            let (text, loaded) = match nodes.get(&h.path) {
                Some(n) => (lower(n), None),
                None => match self.store.node(&h.path)? {
                    Some(n) => (lower(&n), Some(n)),
                    None => continue,
                },
            };
            let cover = summary::coverage(&missing, &text);
            if cover == 0.0 || !mentions(&text, &names) {
                continue;
            }
            if let Some(n) = loaded {
                nodes.insert(h.path.clone(), n);
            }
            out.push((h.path, seed_rel * (0.6 + 0.4 * cover)));
        }
        Ok(out)
    }
}

/// `rel`'s memories, most relevant first (ties: smaller path first).
fn best_first(rel: &BTreeMap<String, f64>) -> Vec<(String, f64)> {
    let mut v: Vec<(String, f64)> = rel.iter().map(|(p, r)| (p.clone(), *r)).collect();
    v.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v
}

/// How much of the seed's relevance a second-hop memory inherits (see `relevance`).
const HOP: f64 = 0.8;
/// Direct matches that a second-hop memory never outranks.
const HOP_AFTER: usize = 30;
/// The least relevance a memory needs to seed a second hop.
const HOP_SEED: f64 = 0.45;
/// Memories the second hop's search proposes per seed.
const HOP_WINDOW: usize = 30;

/// Names in `text`: capitalised words of three or more letters that are not stop words and
/// not among the query's `terms`, lower-cased, first four, in order.
fn names(text: &str, terms: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    // Split as `mentions` does: "Bob's" is the name "bob".
    for w in text.split(|c: char| !c.is_alphanumeric()) {
        if out.len() == 4 {
            break;
        }
        let mut chars = w.chars();
        let capital = chars.next().is_some_and(char::is_uppercase);
        if !capital || w.chars().count() < 3 || w.chars().all(char::is_uppercase) {
            continue;
        }
        let lower = w.to_lowercase();
        if summary::terms(&lower).is_empty()
            || terms
                .iter()
                .any(|t| lower.starts_with(t.as_str()) || t.starts_with(&lower))
            || out.contains(&lower)
        {
            continue;
        }
        out.push(lower);
    }
    out
}

/// Does the lower-cased `text` hold one of `names` as a word?
fn mentions(text: &str, names: &[String]) -> bool {
    text.split(|c: char| !c.is_alphanumeric())
        .any(|w| names.iter().any(|n| w == n))
}

/// When what a memory tells happened (`meta.at`, set by `remember --at`), if recorded.
pub fn at(node: &Node) -> Option<Micros> {
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
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
    ];
    !periods(query, now_micros()).is_empty()
        || query
            .to_lowercase()
            .split(|c: char| !c.is_alphanumeric())
            .any(|w| {
                WORDS.contains(&w)
                    || MONTHS.contains(&w)
                    || (w.len() == 4 && w.starts_with("20") && w.parse::<u32>().is_ok())
            })
}

/// The periods a query names, as `[start, end)` in UTC microseconds, relative ones counted
/// from `now`:
///
/// - dates: `2023-05-08` (that day), `2023-05` (that month), `8 May 2023`, `May 8, 2023`,
///   `May 8th` (the last May 8), `May 2023`, `in May` (the last May), `in 2023` (that year);
/// - `today`, `yesterday`; `this`/`last` `week` (Monday to Sunday), `month`, `year`;
///   `past week` (the seven days before now);
/// - `N days|weeks|months|years ago` (N a number, a word up to twelve, `a`/`an`, `a few` = 3):
///   that day (±1 day), that week (±3.5 days), that month, that year.
///
/// May, June, April, August and March (names and verbs too) and three-letter abbreviations
/// are months only beside a day or a year, or after `in`/`during`/`last`/`since`.
pub fn periods(query: &str, now: Micros) -> Vec<(Micros, Micros)> {
    use chrono::{Datelike, Duration, NaiveDate, TimeZone, Utc};
    const DAY: Micros = 86_400_000_000;
    let micros = |d: NaiveDate| {
        d.and_hms_opt(0, 0, 0)
            .map(|t| Utc.from_utc_datetime(&t).timestamp_micros())
    };
    let day = |d: NaiveDate| Some((micros(d)?, micros(d.succ_opt()?)?));
    let month = |y: i32, m: u32| {
        let a = NaiveDate::from_ymd_opt(y, m, 1)?;
        let b = if m == 12 {
            NaiveDate::from_ymd_opt(y + 1, 1, 1)?
        } else {
            NaiveDate::from_ymd_opt(y, m + 1, 1)?
        };
        Some((micros(a)?, micros(b)?))
    };
    let year = |y: i32| {
        Some((
            micros(NaiveDate::from_ymd_opt(y, 1, 1)?)?,
            micros(NaiveDate::from_ymd_opt(y + 1, 1, 1)?)?,
        ))
    };
    let today = Utc
        .timestamp_micros(now)
        .single()
        .unwrap_or_default()
        .date_naive();
    let mut out: Vec<(Micros, Micros)> = Vec::new();
    // ISO dates and months.
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
            Some(d) => NaiveDate::from_ymd_opt(y as i32, m, d).and_then(day),
            None => month(y as i32, m),
        };
        out.extend(range);
    }
    // Words (ISO dates done: `in 2023-06` is June, not the year).
    let lower = query
        .to_lowercase()
        .split_whitespace()
        .filter(|w| !(w.contains('-') && w.chars().any(|c| c.is_ascii_digit())))
        .collect::<Vec<_>>()
        .join(" ");
    let words: Vec<&str> = lower
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    let at = |i: usize| words.get(i).copied().unwrap_or("");
    let day_number = |w: &str| {
        let digits = w.trim_end_matches(['s', 't', 'n', 'd', 'r', 'h']);
        (!digits.is_empty() && digits.len() <= 2)
            .then(|| digits.parse::<u32>().ok())
            .flatten()
            .filter(|d| (1..=31).contains(d))
    };
    let year_number = |w: &str| {
        (w.len() == 4)
            .then(|| w.parse::<i32>().ok())
            .flatten()
            .filter(|y| (1900..=2199).contains(y))
    };
    let count = |i: usize| -> Option<i64> {
        const WORDS: &[&str] = &[
            "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
            "eleven", "twelve",
        ];
        match at(i) {
            "a" | "an" => Some(1),
            "few" if at(i.wrapping_sub(1)) == "a" => Some(3),
            w => w
                .parse::<i64>()
                .ok()
                .filter(|n| (1..=1000).contains(n))
                .or_else(|| WORDS.iter().position(|x| *x == w).map(|p| p as i64 + 1)),
        }
    };
    let monday = today - Duration::days(i64::from(today.weekday().num_days_from_monday()));
    let week = |start: NaiveDate| Some((micros(start)?, micros(start + Duration::days(7))?));
    let months_back = |n: i64| {
        let total = i64::from(today.year()) * 12 + i64::from(today.month0()) - n;
        month(total.div_euclid(12) as i32, total.rem_euclid(12) as u32 + 1)
    };
    for i in 0..words.len() {
        let w = at(i);
        let range = match w {
            "today" => day(today),
            "yesterday" => today.pred_opt().and_then(day),
            "week" | "month" | "year" => match (at(i.wrapping_sub(1)), w) {
                ("this", "week") => week(monday),
                ("last", "week") => week(monday - Duration::days(7)),
                ("past", "week") => Some((now - 7 * DAY, now)),
                ("this", "month") => months_back(0),
                ("last", "month") => months_back(1),
                ("this", "year") => year(today.year()),
                ("last", "year") => year(today.year() - 1),
                _ => None,
            },
            "ago" => {
                let unit = at(i.wrapping_sub(1));
                match count(i.wrapping_sub(2)) {
                    Some(n) => match unit.trim_end_matches('s') {
                        "day" => today.checked_sub_signed(Duration::days(n)).and_then(|d| {
                            Some((micros(d.pred_opt()?)?, micros(d.succ_opt()?.succ_opt()?)?))
                        }),
                        "week" => {
                            let mid = now - n * 7 * DAY;
                            Some((mid - 7 * DAY / 2, mid + 7 * DAY / 2))
                        }
                        "month" => months_back(n),
                        "year" => year(today.year() - n as i32),
                        _ => None,
                    },
                    None => None,
                }
            }
            "in" | "during" => year_number(at(i + 1)).and_then(year),
            _ => match MONTHS.iter().position(|m| *m == w || m.get(..3) == Some(w)) {
                Some(m0) => {
                    let m = m0 as u32 + 1;
                    let (prev, next, after) = (at(i.wrapping_sub(1)), at(i + 1), at(i + 2));
                    let explicit_year = year_number(next)
                        .or_else(|| year_number(after).filter(|_| day_number(next).is_some()));
                    let d = day_number(next).or_else(|| day_number(prev));
                    // The last such month (or day) when no year is named.
                    let past = match d {
                        Some(d) => (m, d) <= (today.month(), today.day()),
                        None => m <= today.month(),
                    };
                    let y =
                        explicit_year.unwrap_or(if past { today.year() } else { today.year() - 1 });
                    let named = explicit_year.is_some() || d.is_some();
                    // Alone, a month that is also a name or a verb (May, June, April,
                    // August, march) is one only after `in`, `during`, `last` or `since`.
                    let loose_ok = (w.len() > 3
                        && !matches!(w, "march" | "april" | "june" | "august"))
                        || matches!(prev, "in" | "during" | "last" | "since");
                    match d {
                        Some(d) => NaiveDate::from_ymd_opt(y, m, d).and_then(day),
                        None if named || loose_ok => month(y, m),
                        None => None,
                    }
                }
                None => None,
            },
        };
        out.extend(range);
    }
    out
}

/// Month names, January first.
const MONTHS: &[&str] = &[
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
];

/// `0.5^(age / half-life)`, age in whole minutes between the minutes `updated_at` and `now`
/// fall in: a score does not drift between two calls a few milliseconds apart, and two
/// memories keep their order as time passes (ages counted from `now` would cross a minute
/// boundary at different calls, and reorder near-ties from one run to the next).
fn recency(updated_at: Micros, now: Micros, half_life_min: f64) -> f64 {
    let minute = |t: Micros| t.div_euclid(60_000_000);
    let age_min = (minute(now) - minute(updated_at)).max(0) as f64;
    0.5f64.powf(age_min / half_life_min)
}

fn relevance(s: &Signals, n: &Node, terms: &[String], vectors: bool) -> f64 {
    let mut text = n.title().to_lowercase();
    text.push('\n');
    text.push_str(&n.text().to_lowercase());
    let cover = summary::coverage(terms, &text);
    let lexical = 0.40 * s.fts + 0.30 * cover + 0.20 * s.topic + 0.10 * s.link;
    // A memory reached through a name in a strong match is nearly as good as one that
    // matches the words.
    let lexical = lexical + (1.0 - lexical) * HOP * s.hop;
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn t(s: &str) -> Micros {
        avm_core::time::parse_time(s).unwrap()
    }

    /// Friday 2026-12-04, noon UTC.
    fn now() -> Micros {
        t("2026-12-04T12:00:00Z")
    }

    fn day(d: &str) -> (Micros, Micros) {
        (
            t(&format!("{d}T00:00:00Z")),
            t(&format!("{d}T00:00:00Z")) + 86_400_000_000,
        )
    }

    fn span(a: &str, b: &str) -> (Micros, Micros) {
        (t(&format!("{a}T00:00:00Z")), t(&format!("{b}T00:00:00Z")))
    }

    #[test]
    fn queries_name_days_months_years_and_relative_periods() {
        let week = 7 * 86_400_000_000;
        let cases: Vec<(&str, Vec<(Micros, Micros)>)> = vec![
            ("what happened on 2023-05-08", vec![day("2023-05-08")]),
            ("budget in 2023-06", vec![span("2023-06-01", "2023-07-01")]),
            ("what did we ship yesterday", vec![day("2026-12-03")]),
            ("notes from today", vec![day("2026-12-04")]),
            (
                "decisions last week",
                vec![span("2026-11-23", "2026-11-30")],
            ),
            (
                "decisions this week",
                vec![span("2026-11-30", "2026-12-07")],
            ),
            ("plans for the past week", vec![(now() - week, now())]),
            (
                "what changed last month",
                vec![span("2026-11-01", "2026-12-01")],
            ),
            (
                "the offsite last year",
                vec![span("2025-01-01", "2026-01-01")],
            ),
            (
                "the move three months ago",
                vec![span("2026-09-01", "2026-10-01")],
            ),
            ("a call 2 days ago", vec![span("2026-12-01", "2026-12-04")]),
            (
                "a talk two weeks ago",
                vec![(now() - 2 * week - week / 2, now() - 2 * week + week / 2)],
            ),
            (
                "the launch a year ago",
                vec![span("2025-01-01", "2026-01-01")],
            ),
            ("the trip in May", vec![span("2026-05-01", "2026-06-01")]),
            ("what does June like", vec![]),
            ("the fair on December 25th", vec![day("2025-12-25")]),
            (
                "what happened on Bob's birthday in November",
                vec![span("2026-11-01", "2026-12-01")],
            ),
            (
                "the party in December",
                vec![span("2026-12-01", "2027-01-01")],
            ),
            ("what did Mel do on 8 May 2023", vec![day("2023-05-08")]),
            ("what did Mel do on May 8th, 2023", vec![day("2023-05-08")]),
            (
                "Mel in January 2024",
                vec![span("2024-01-01", "2024-02-01")],
            ),
            ("the fair in 2022", vec![span("2022-01-01", "2023-01-01")]),
            ("may I ask about the budget", vec![]),
            ("the first time we met", vec![]),
        ];
        for (q, want) in cases {
            assert_eq!(periods(q, now()), want, "{q}");
        }
    }

    #[test]
    fn names_are_capitalised_words_outside_the_query_possessives_included() {
        let terms = vec!["linden".to_string(), "street".to_string()];
        assert_eq!(
            names(
                "Bob's family moved to Linden Street with Ana and The Dog.",
                &terms
            ),
            vec!["bob", "ana", "dog"]
        );
        assert!(mentions("bob's cat is called tom", &["bob".to_string()]));
    }

    #[test]
    fn recency_keeps_two_memories_in_order_as_time_passes() {
        let a = t("2026-12-04T12:00:30Z");
        let b = t("2026-12-04T12:00:50Z");
        for s in 0..120 {
            let now = t("2026-12-04T12:05:00Z") + s * 1_000_000;
            assert_eq!(recency(a, now, 60.0), recency(b, now, 60.0));
        }
    }
}
