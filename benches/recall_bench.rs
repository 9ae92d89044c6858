//! Retrieval quality and latency of recall: `avm bench recall`.
//!
//! A deterministic corpus of agent memories about synthetic systems ("the timeout of Kavolomi
//! after the audit is 412ms; Rudu changed it …"), spread over one asking agent's private
//! namespace, shared namespaces written by several agents, and other agents' private
//! namespaces. Each question names a fact whose answer memory is known by construction; near
//! misses (same system, other setting; same setting, other system; same fact in another
//! agent's private namespace) compete with it. A question is a hit when the answer's memory is
//! among the recall's entries; its evidence is *delivered* when the answer's fact sentence is in
//! the text recall returns (not cut from its summary). Beside it, the same ranking (recall at an
//! unlimited budget) packed greedily as plain text — whole memories, in rank order, skipping
//! those that do not fit — gives the plain-text figure at each budget: what an answer made of
//! raw memories would deliver. A leak is any other agent's private memory among the entries
//! (must stay 0).

use std::time::Instant;

use serde::Serialize;

use avm_core::storage::MemoryStore;
use avm_core::{Caller, Host, Mount, Result};
use avm_provider_memory::{MemoryProvider, StoreOptions};
use avm_recall::{Engine, Memory, RecallProvider, Tuning, remember_many};

use crate::{Rng, Summary, word};

const ATTRS: [&str; 12] = [
    "timeout",
    "replica count",
    "budget",
    "deadline",
    "owner",
    "region",
    "version",
    "threshold",
    "quota",
    "priority",
    "port",
    "retention",
];
const EVENTS: [&str; 8] = [
    "outage",
    "audit",
    "launch",
    "migration",
    "review",
    "incident",
    "upgrade",
    "rollback",
];

fn cap(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// Who writes a fact, and into which shared namespace (none = private).
type Placed = (Caller, Option<String>, Fact);

/// One fact: system, setting, event, value, person.
#[derive(Clone)]
struct Fact {
    system: String,
    attr: &'static str,
    event: &'static str,
    value: String,
    person: String,
}

fn filler(rng: &mut Rng, words: usize) -> String {
    let mut s = String::new();
    for k in 0..words {
        if k > 0 {
            s.push(' ');
        }
        // Common words from the head of the vocabulary, like real prose.
        s.push_str(&word(5000 + rng.zipf(3000)));
    }
    s
}

/// The sentence of a memory that states its fact.
fn fact_sentence(f: &Fact) -> String {
    format!(
        "{} {} after the {}: set to {} by {}.",
        cap(&f.system),
        f.attr,
        f.event,
        f.value,
        cap(&f.person),
    )
}

fn text(f: &Fact, rng: &mut Rng) -> String {
    let (a, b) = (25 + rng.below(30), 10 + rng.below(10));
    let (one, two) = (filler(rng, a), filler(rng, b));
    format!("{}\n{}.\nFollow-up: {}.", fact_sentence(f), one, two)
}

/// Options of the run.
#[derive(Debug, Clone)]
pub struct RecallBenchOptions {
    /// Memories in the corpus.
    pub n: usize,
    /// Questions asked.
    pub questions: usize,
    /// Budgets to measure.
    pub budgets: Vec<usize>,
    /// Model files: recall also uses vectors (hybrid); every memory is embedded first.
    pub vectors: Option<avm_embedding::model::ModelFiles>,
}

/// Results of the run.
#[derive(Debug, Clone, Serialize)]
pub struct RecallBenchResult {
    /// Memories.
    pub memories: usize,
    /// Questions.
    pub questions: usize,
    /// Per budget: hit rate, rank-1 rate, leaks, latency.
    pub budgets: Vec<BudgetResult>,
    /// Seconds spent writing the corpus.
    pub load_secs: f64,
    /// Seconds the first topic-index sync took.
    pub topic_sync_secs: f64,
    /// Seconds embedding the corpus took (hybrid runs).
    pub embed_secs: Option<f64>,
    /// Whether recall used vectors.
    pub hybrid: bool,
    /// The questions asked, as the asker (`agent0`), for runs in other processes.
    #[serde(skip)]
    pub asked: Vec<String>,
}

/// Results at one budget.
#[derive(Debug, Clone, Serialize)]
pub struct BudgetResult {
    /// Token budget.
    pub max_tokens: usize,
    /// Share of questions whose answer is among the entries.
    pub hit_rate: f64,
    /// Share of questions whose answer's fact sentence is in the text returned.
    pub delivered_rate: f64,
    /// Share of questions whose answer is in the same ranking packed as plain text.
    pub plain_rate: f64,
    /// Share of questions whose answer is the first entry.
    pub first_rate: f64,
    /// Other agents' private paths seen in outputs (must be 0).
    pub leaks: usize,
    /// Mean entries per output.
    pub mean_items: f64,
    /// Latency.
    pub latency: Summary,
}

/// A corpus written to `<dir>/recall.db` and the questions to ask about it.
pub struct Corpus {
    /// The database file.
    pub db: std::path::PathBuf,
    /// `(question, path of the memory that answers it)`, asked as `asker`.
    pub questions: Vec<(String, String)>,
    /// The fact sentence of each question's answer, in the order of `questions`.
    pub evidence: Vec<String>,
    /// The agent the questions are asked as.
    pub asker: Caller,
    /// Seconds spent writing the corpus.
    pub load_secs: f64,
    /// Seconds the first topic-index sync took.
    pub topic_sync_secs: f64,
    /// The store (open).
    pub store: std::sync::Arc<dyn MemoryStore>,
    /// The host, with recall mounted.
    pub host: Host,
    /// The recall engine.
    pub engine: Engine,
    /// The memory provider (flush it with `store().sync()` before other processes read).
    pub memory: MemoryProvider,
    /// Semantic search backing recall, when asked for.
    pub semantic: Option<std::sync::Arc<avm_embedding::Semantic>>,
    /// Memories written (the corpus and its traps).
    pub memories: usize,
}

/// A fresh database with recall mounted over it, for the recall benchmarks.
pub struct RecallWorld {
    /// The memory provider.
    pub mem: MemoryProvider,
    /// Its store.
    pub store: std::sync::Arc<dyn MemoryStore>,
    /// Semantic search backing recall, when model files were given.
    pub semantic: Option<std::sync::Arc<avm_embedding::Semantic>>,
    /// The recall engine.
    pub engine: Engine,
    /// The host: the store at `/**`, recall as a service.
    pub host: Host,
}

/// Asks `host` for `who`'s recall of `q` within `max` tokens.
pub fn ask(host: &Host, who: &Caller, q: &str, max: usize) -> Result<avm_core::Output> {
    let addr = format!(
        "/:recall?q={}&max_tokens={max}",
        q.replace(' ', "%20").replace('?', "%3F")
    );
    host.read(who, &addr)
}

/// The paths of a recall's entries, best first (from its structured form).
pub fn item_paths(out: &avm_core::Output) -> Vec<String> {
    out.data()["items"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|i| i["path"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// A ranking packed greedily as plain text into `max` tokens: given each entry's cost in rank
/// order, whether it is in (entries that do not fit are skipped for the next ones that do).
pub fn plain_packed(costs: impl IntoIterator<Item = usize>, max: usize) -> Vec<bool> {
    let mut room = max;
    costs
        .into_iter()
        .map(|c| {
            let fits = c <= room;
            if fits {
                room -= c;
            }
            fits
        })
        .collect()
}

/// Opens (creating) `db` with recall over it; with `vectors`, recall is hybrid.
pub fn recall_world(
    db: &std::path::Path,
    vectors: Option<&avm_embedding::model::ModelFiles>,
) -> Result<RecallWorld> {
    let mem = MemoryProvider::open(db, StoreOptions::default())?;
    let store: std::sync::Arc<dyn MemoryStore> = mem.memory_store();
    let semantic = vectors.map(|f| {
        std::sync::Arc::new(avm_embedding::Semantic::new(
            store.clone(),
            f.clone(),
            false,
        ))
    });
    let mut engine = Engine::new(store.clone(), Tuning::default());
    if let Some(s) = &semantic {
        engine = engine.with_vectors(s.clone());
    }
    let host = Host::new(vec![Mount::new("/**", std::sync::Arc::new(mem.clone()))])
        .map_err(|e| {
            e.into_iter()
                .next()
                .unwrap_or_else(|| avm_core::Error::internal("mount"))
        })?
        .with_service(std::sync::Arc::new(RecallProvider::new(engine.clone())));
    Ok(RecallWorld {
        mem,
        store,
        semantic,
        engine,
        host,
    })
}

/// Writes the corpus of `n` memories into a fresh database under `dir`, brings the topic
/// index up to date, and picks `questions` questions; with `vectors`, recall is hybrid.
pub fn corpus(
    dir: &std::path::Path,
    n: usize,
    n_questions: usize,
    vectors: Option<&avm_embedding::model::ModelFiles>,
) -> Result<Corpus> {
    let RecallWorld {
        mem,
        store,
        semantic,
        engine,
        host,
    } = recall_world(&dir.join("recall.db"), vectors)?;
    let mut rng = Rng::new(42);
    let systems: Vec<String> = (0..(n / 25).max(8)).map(|i| word(i * 7 + 11)).collect();
    let people: Vec<String> = (0..60).map(|i| word(i * 13 + 3001)).collect();
    let asker = Caller::Agent("agent0".into());
    // Who writes each memory, and where: 30% the asker's private namespace, 30% shared
    // namespaces (various authors), 40% other agents' private namespaces.
    let mut facts: Vec<Placed> = Vec::with_capacity(n);
    let mut used = std::collections::HashSet::new();
    while facts.len() < n {
        let f = Fact {
            system: systems[rng.zipf(systems.len())].clone(),
            attr: ATTRS[rng.below(ATTRS.len())],
            event: EVENTS[rng.below(EVENTS.len())],
            value: format!(
                "{}{}",
                10 + rng.below(990),
                ["ms", "GB", "", "%"][rng.below(4)]
            ),
            person: people[rng.below(people.len())].clone(),
        };
        let r = rng.below(10);
        let (who, ns) = match r {
            0..=2 => (asker.clone(), None),
            3..=5 => (
                Caller::Agent(format!("agent{}", 1 + rng.below(7))),
                Some(format!("team{}", rng.below(6))),
            ),
            _ => (Caller::Agent(format!("agent{}", 1 + rng.below(7))), None),
        };
        facts.push((who, ns, f));
    }
    // Questions: facts the asker can see whose (system, setting, event) is unique among them.
    let mut count = std::collections::HashMap::new();
    for (who, ns, f) in &facts {
        if *who == asker || ns.is_some() {
            *count
                .entry((f.system.clone(), f.attr, f.event))
                .or_insert(0usize) += 1;
        }
    }
    let mut question_idx = Vec::new();
    for (i, (who, ns, f)) in facts.iter().enumerate() {
        if (*who == asker || ns.is_some())
            && count.get(&(f.system.clone(), f.attr, f.event)) == Some(&1)
            && used.insert((f.system.clone(), f.attr, f.event))
        {
            question_idx.push(i);
        }
    }
    // Spread the questions over the corpus deterministically.
    let step = (question_idx.len() / n_questions.max(1)).max(1);
    let question_idx: Vec<usize> = question_idx
        .into_iter()
        .step_by(step)
        .take(n_questions)
        .collect();
    let wanted: std::collections::HashSet<usize> = question_idx.iter().copied().collect();
    // The same fact, with another value, in another agent's private namespace: a trap.
    let traps: Vec<Placed> = question_idx
        .iter()
        .map(|&i| {
            let mut f = facts[i].2.clone();
            f.value = "999TRAP".into();
            (Caller::Agent("agent9".into()), None, f)
        })
        .collect();
    let started = Instant::now();
    let mut answer_path = std::collections::HashMap::new();
    let memories = facts.len() + traps.len();
    let all: Vec<(usize, Placed)> = facts.into_iter().chain(traps).enumerate().collect();
    let mut by_agent: std::collections::BTreeMap<String, Vec<(usize, Memory, Fact)>> =
        Default::default();
    for (i, (who, ns, f)) in all {
        let m = Memory {
            content: text(&f, &mut rng),
            title: (rng.below(2) == 0).then(|| format!("{} {}", f.system, f.attr)),
            importance: Some(rng.below(101) as f64 / 100.0),
            tags: Vec::new(),
            source: Some("bench".into()),
            namespace: ns,
            path: None,
            ttl: None,
            at: None,
        };
        by_agent
            .entry(who.agent().unwrap_or("").to_string())
            .or_default()
            .push((i, m, f));
    }
    let mut questions: Vec<(String, String)> = Vec::new();
    let mut evidence: Vec<String> = Vec::new();
    for (agent, items) in by_agent {
        let who = Caller::Agent(agent);
        for chunk in items.chunks(500) {
            let ms: Vec<Memory> = chunk.iter().map(|(_, m, _)| m.clone()).collect();
            for ((i, _, f), r) in chunk
                .iter()
                .zip(remember_many(&host, store.as_ref(), &who, &ms))
            {
                let r = r?;
                if wanted.contains(i) {
                    answer_path.insert(*i, (r.path, f.clone()));
                }
            }
        }
    }
    let load_secs = started.elapsed().as_secs_f64();
    for i in &question_idx {
        if let Some((p, f)) = answer_path.get(i) {
            questions.push((
                format!(
                    "what is the {} of {} after the {}?",
                    f.attr,
                    cap(&f.system),
                    f.event
                ),
                p.clone(),
            ));
            evidence.push(fact_sentence(f));
        }
    }
    let t = Instant::now();
    engine.topics().sync()?;
    let topic_sync_secs = t.elapsed().as_secs_f64();
    Ok(Corpus {
        db: dir.join("recall.db"),
        questions,
        evidence,
        asker,
        load_secs,
        topic_sync_secs,
        store,
        host,
        engine,
        memory: mem,
        semantic,
        memories,
    })
}

/// Builds the corpus in a fresh database under `dir` and asks the questions.
pub fn recall_bench(dir: &std::path::Path, o: &RecallBenchOptions) -> Result<RecallBenchResult> {
    let Corpus {
        questions,
        evidence,
        store,
        asker,
        load_secs,
        topic_sync_secs,
        host,
        semantic,
        memories,
        memory,
        ..
    } = corpus(dir, o.n, o.questions, o.vectors.as_ref())?;
    let embed_secs = match &semantic {
        Some(s) => {
            let t = Instant::now();
            s.sync(None, &mut |_, _| {})?;
            Some(t.elapsed().as_secs_f64())
        }
        None => None,
    };
    // The full ranking of each question and the cl100k size of each memory in it, for the
    // plain-text packing.
    let mut rankings: Vec<Vec<(String, usize)>> = Vec::with_capacity(questions.len());
    for (q, _) in &questions {
        let out = ask(&host, &asker, q, 1_000_000)?;
        let mut ranked = Vec::new();
        for p in item_paths(&out) {
            let content = store
                .node(&p)?
                .map(|n| n.text().to_string())
                .unwrap_or_default();
            ranked.push((p, avm_recall::tokens::count(&content)? + 1));
        }
        rankings.push(ranked);
    }
    let mut budgets = Vec::new();
    for &max in &o.budgets {
        let mut hits = 0;
        let mut delivered = 0;
        let mut plain = 0;
        let mut firsts = 0;
        let mut leaks = 0;
        let mut items = 0;
        let mut lat = Vec::with_capacity(questions.len());
        let wall = Instant::now();
        for (((q, answer), fact), ranking) in questions.iter().zip(&evidence).zip(&rankings) {
            let t = Instant::now();
            let out = ask(&host, &asker, q, max)?;
            lat.push(t.elapsed());
            let entries = item_paths(&out);
            items += entries.len();
            if entries.contains(answer) {
                hits += 1;
            }
            if out.text.contains(fact.as_str()) {
                delivered += 1;
            }
            if entries.first() == Some(answer) {
                firsts += 1;
            }
            leaks += entries
                .iter()
                .filter(|p| {
                    p.starts_with("/memory/private/") && !p.starts_with("/memory/private/agent0/")
                })
                .count();
            if ranking
                .iter()
                .zip(plain_packed(ranking.iter().map(|r| r.1), max))
                .any(|((p, _), fits)| fits && p == answer)
            {
                plain += 1;
            }
        }
        let n = questions.len().max(1) as f64;
        budgets.push(BudgetResult {
            max_tokens: max,
            hit_rate: hits as f64 / n,
            delivered_rate: delivered as f64 / n,
            plain_rate: plain as f64 / n,
            first_rate: firsts as f64 / n,
            leaks,
            mean_items: items as f64 / n,
            latency: crate::summarize(&format!("recall, budget {max}"), lat, wall.elapsed()),
        });
    }
    memory.store().sync()?;
    Ok(RecallBenchResult {
        memories,
        questions: questions.len(),
        budgets,
        load_secs,
        topic_sync_secs,
        embed_secs,
        hybrid: semantic.is_some(),
        asked: questions.into_iter().map(|(q, _)| q).collect(),
    })
}
