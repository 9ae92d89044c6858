//! Conversational recall quality: `avm bench quality`.
//!
//! A deterministic corpus of multi-session dialogues between pairs of people, every turn one
//! memory (`Speaker: utterance`) remembered with the session's date as `at`. Among small talk,
//! turns state facts about the speakers (a pet and its name, a move to a city, a new job, a
//! hobby). Questions have known evidence turns:
//!
//! - *single*: one turn answers it ("What did Mira name her beagle?");
//! - *temporal*: one turn, and the answer is its date ("When did Mira adopt her beagle?");
//! - *paraphrase*: one turn that shares few words with the question ("Which animal lives with
//!   Mira now?" for "I adopted a beagle");
//! - *two-hop*: two turns ("What is the name of the pet of the person who moved to Lisbon?").
//!
//! Reported: evidence recall at 5 and 10 of recall's ranking (its list at an unlimited budget),
//! and at each budget the share of evidence turns *delivered* in the text recall returns (the
//! turn's utterance present), next to the same ranking packed greedily as plain text (whole
//! turns in rank order, skipping those that do not fit), and recall's latency.

use std::collections::HashMap;
use std::time::Instant;

use serde::Serialize;

use avm_core::{Caller, Result};
use avm_recall::{Memory, remember_many};

use crate::{Rng, Summary};

const NAMES: [&str; 24] = [
    "Mira", "Tobias", "Ines", "Kwame", "Yuki", "Lars", "Amara", "Dmitri", "Sofia", "Rafael",
    "Noor", "Elliot", "Hana", "Joaquin", "Priya", "Soren", "Leila", "Matteo", "Zara", "Oskar",
    "Chiara", "Femi", "Astrid", "Dev",
];
const PETS: [(&str, &str); 8] = [
    ("beagle", "dog"),
    ("tabby", "cat"),
    ("parrot", "bird"),
    ("corgi", "dog"),
    ("gecko", "lizard"),
    ("siamese", "cat"),
    ("rabbit", "rabbit"),
    ("greyhound", "dog"),
];
const PET_NAMES: [&str; 16] = [
    "Pixel", "Biscuit", "Nimbus", "Pepper", "Juniper", "Waffles", "Comet", "Mochi", "Basil",
    "Tango", "Olive", "Sprout", "Ziggy", "Clover", "Noodle", "Maple",
];
const CITIES: [&str; 12] = [
    "Lisbon",
    "Osaka",
    "Tallinn",
    "Valparaiso",
    "Accra",
    "Montreal",
    "Gdansk",
    "Hobart",
    "Cusco",
    "Tbilisi",
    "Bergen",
    "Mombasa",
];
const JOBS: [&str; 8] = [
    "a bakery",
    "a shipyard",
    "a seed library",
    "a climbing gym",
    "a radio station",
    "a bicycle workshop",
    "a planetarium",
    "a ceramics studio",
];
const HOBBIES: [&str; 8] = [
    "bouldering",
    "sourdough baking",
    "birdwatching",
    "salsa dancing",
    "woodcarving",
    "kite surfing",
    "chess problems",
    "urban sketching",
];
const SMALL_TALK: [&str; 16] = [
    "How was your weekend? Mine was quiet, mostly errands and a long walk.",
    "The weather has been strange lately, sunny in the morning and rain by noon.",
    "I finally finished that book you recommended, the ending surprised me.",
    "Work has been busy, we had three deadlines in one week.",
    "Did you watch the match on Sunday? What a comeback in the second half.",
    "I tried a new recipe last night, it needed more salt but it was fine.",
    "My neighbours are renovating again, the drilling starts at eight.",
    "We should plan a trip together sometime this summer.",
    "I have been sleeping badly, too much coffee in the afternoon probably.",
    "The new cafe near the station has really good pastries.",
    "Traffic was terrible today, it took me an hour to get home.",
    "I started learning a few words of Portuguese with an app.",
    "My sister called, she says hello and asks when you visit.",
    "I cleaned out the garage and found my old guitar.",
    "There is a street festival next month, we should go.",
    "I am thinking about repainting the kitchen, maybe a light green.",
];

/// Options of the run.
#[derive(Debug, Clone)]
pub struct QualityOptions {
    /// Conversations (pairs of people), each with several sessions.
    pub conversations: usize,
    /// Budgets to measure.
    pub budgets: Vec<usize>,
    /// Model files: recall also uses vectors (every turn is embedded first).
    pub vectors: Option<avm_embedding::model::ModelFiles>,
}

/// Results of one question kind or of all questions.
#[derive(Debug, Clone, Serialize)]
pub struct KindResult {
    /// Question kind (`all`, `single`, `temporal`, `paraphrase`, `two-hop`).
    pub kind: String,
    /// Questions of this kind.
    pub questions: usize,
    /// Share of evidence turns in the top 5 of the ranking.
    pub recall_at_5: f64,
    /// Share of evidence turns in the top 10 of the ranking.
    pub recall_at_10: f64,
    /// Per budget: (budget, delivered in recall's answer, delivered by plain packing).
    pub delivered: Vec<(usize, f64, f64)>,
}

/// Results of the run.
#[derive(Debug, Clone, Serialize)]
pub struct QualityResult {
    /// Turns remembered.
    pub turns: usize,
    /// Per kind, `all` first.
    pub kinds: Vec<KindResult>,
    /// Recall latency per budget.
    pub latency: Vec<Summary>,
    /// Whether recall used vectors.
    pub hybrid: bool,
}

/// One question's figures: kind, evidence turns, in the top 5, in the top 10, and per budget
/// (delivered in recall's answer, delivered by plain packing).
type Row = (&'static str, usize, usize, usize, Vec<(usize, usize)>);

struct Question {
    kind: &'static str,
    text: String,
    /// Indices of the evidence turns.
    evidence: Vec<usize>,
}

struct Person {
    name: String,
    pet: (&'static str, &'static str),
    pet_name: &'static str,
    city: &'static str,
    job: &'static str,
    hobby: &'static str,
}

const SURNAMES: [&str; 12] = [
    "Okafor",
    "Lindqvist",
    "Moreau",
    "Tanaka",
    "Haddad",
    "Novak",
    "Ferreira",
    "Kowalski",
    "Mensah",
    "Ivanova",
    "Castillo",
    "Brennan",
];

/// The street person `i` moves to: unique to them.
fn street(i: usize) -> String {
    const TREES: [&str; 12] = [
        "Linden", "Alder", "Rowan", "Juniper", "Hazel", "Cedar", "Willow", "Aspen", "Larch",
        "Hawthorn", "Elm", "Sycamore",
    ];
    format!("{} Street {}", TREES[i % TREES.len()], 10 + i / TREES.len())
}

/// The corpus: turns (`(speaker line, at)`) and questions about them.
fn generate(conversations: usize) -> (Vec<(String, i64)>, Vec<Question>) {
    let mut rng = Rng::new(7);
    // Everyone is somebody else: one teller per conversation, with facts of their own.
    let name = |i: usize| {
        format!(
            "{} {}",
            NAMES[i % NAMES.len()],
            SURNAMES[(i / NAMES.len()) % SURNAMES.len()]
        )
    };
    let people: Vec<Person> = (0..conversations)
        .map(|i| Person {
            name: name(i),
            pet: PETS[rng.below(PETS.len())],
            pet_name: PET_NAMES[rng.below(PET_NAMES.len())],
            city: CITIES[rng.below(CITIES.len())],
            job: JOBS[rng.below(JOBS.len())],
            hobby: HOBBIES[rng.below(HOBBIES.len())],
        })
        .collect();
    let day = 86_400_000_000i64;
    let start = 1_672_531_200_000_000i64; // 2023-01-01
    let mut turns: Vec<(String, i64)> = Vec::new();
    let mut questions = Vec::new();
    // Where each person's facts were told: (pet turn, move turn).
    let mut told: HashMap<usize, (usize, usize)> = HashMap::new();
    for c in 0..conversations {
        let a = c;
        let listener = name(c * 7 + 3 + conversations);
        let sessions = 4;
        // One fact per session from `a`, in session order: pet, move, job, hobby.
        for s in 0..sessions {
            let at = start + (c as i64 * 3 + s as i64 * 9) * day;
            let n = 8 + rng.below(6);
            let fact_turn = rng.below(n);
            for t in 0..n {
                let speaker = if t % 2 == 0 {
                    people[a].name.as_str()
                } else {
                    listener.as_str()
                };
                let text = if t == fact_turn {
                    let p = &people[a];
                    match s {
                        0 => format!(
                            "{}: I finally adopted a {} last week, we named her {}.",
                            p.name, p.pet.0, p.pet_name
                        ),
                        1 => format!(
                            "{}: Big news, I moved to {} for good, we live on {} now.",
                            p.name,
                            p.city,
                            street(a)
                        ),
                        2 => format!("{}: I started a new job at {} on Monday.", p.name, p.job),
                        _ => format!(
                            "{}: I picked up {} this spring, I go twice a week.",
                            p.name, p.hobby
                        ),
                    }
                } else {
                    format!("{speaker}: {}", SMALL_TALK[rng.below(SMALL_TALK.len())])
                };
                if t == fact_turn {
                    let idx = turns.len();
                    let e = told.entry(a).or_insert((usize::MAX, usize::MAX));
                    match s {
                        0 => e.0 = idx,
                        1 => e.1 = idx,
                        _ => {}
                    }
                    let p = &people[a];
                    match s {
                        0 => {
                            questions.push(Question {
                                kind: "single",
                                text: format!("What did {} name the {}?", p.name, p.pet.0),
                                evidence: vec![idx],
                            });
                            questions.push(Question {
                                kind: "temporal",
                                text: format!("When did {} adopt the {}?", p.name, p.pet.0),
                                evidence: vec![idx],
                            });
                            questions.push(Question {
                                kind: "paraphrase",
                                text: format!("Which {} lives with {} now?", p.pet.1, p.name),
                                evidence: vec![idx],
                            });
                        }
                        2 => questions.push(Question {
                            kind: "single",
                            text: format!("Where does {} work now?", p.name),
                            evidence: vec![idx],
                        }),
                        3 => questions.push(Question {
                            kind: "paraphrase",
                            text: format!("What sport or pastime did {} take up?", p.name),
                            evidence: vec![idx],
                        }),
                        _ => {}
                    }
                }
                turns.push((text, at + t as i64 * 60_000_000));
            }
        }
    }
    // Two hops: the pet of whoever moved to a street (each street has one newcomer).
    for (&p, &(pet, moved)) in &told {
        if pet != usize::MAX && moved != usize::MAX {
            questions.push(Question {
                kind: "two-hop",
                text: format!(
                    "What is the name of the pet of the person who moved to {}?",
                    street(p)
                ),
                evidence: vec![moved, pet],
            });
        }
    }
    questions.sort_by(|a, b| a.kind.cmp(b.kind).then_with(|| a.text.cmp(&b.text)));
    questions.dedup_by(|a, b| a.text == b.text);
    (turns, questions)
}

/// Builds the corpus in a fresh database under `dir` and measures recall on it.
pub fn quality_bench(dir: &std::path::Path, o: &QualityOptions) -> Result<QualityResult> {
    let crate::recall_bench::RecallWorld {
        mem,
        store,
        semantic,
        engine,
        host,
    } = crate::recall_bench::recall_world(&dir.join("quality.db"), o.vectors.as_ref())?;
    let (turns, questions) = generate(o.conversations.max(1));
    let who = Caller::Agent("bench".into());
    let mut paths: Vec<String> = Vec::with_capacity(turns.len());
    for chunk in turns.chunks(500) {
        let ms: Vec<Memory> = chunk
            .iter()
            .map(|(text, at)| Memory {
                content: text.clone(),
                source: Some("bench".into()),
                at: Some(*at),
                ..Memory::default()
            })
            .collect();
        for r in remember_many(&host, store.as_ref(), &who, &ms) {
            paths.push(r?.path);
        }
    }
    engine.topics().sync()?;
    if let Some(s) = &semantic {
        s.sync(None, &mut |_, _| {})?;
    }
    let by_path: HashMap<&str, usize> = paths
        .iter()
        .enumerate()
        .map(|(i, p)| (p.as_str(), i))
        .collect();
    let cost: Vec<usize> = turns
        .iter()
        .map(|(t, _)| avm_recall::tokens::count(t).map(|n| n + 1))
        .collect::<Result<_>>()?;
    let ask = |q: &str, max: usize| crate::recall_bench::ask(&host, &who, q, max);
    let ranked = |out: &avm_core::Output| -> Vec<usize> {
        crate::recall_bench::item_paths(out)
            .iter()
            .filter_map(|p| by_path.get(p.as_str()).copied())
            .collect()
    };
    // Per question: its kind, evidence turns, found in the top 5 and 10, and per budget the
    // evidence delivered by recall's answer and by plain packing.
    let mut rows: Vec<Row> = Vec::new();
    let mut lat: Vec<Vec<std::time::Duration>> = vec![Vec::new(); o.budgets.len()];
    for q in &questions {
        let full = ranked(&ask(&q.text, 1_000_000)?);
        let at = |k: usize| {
            q.evidence
                .iter()
                .filter(|e| full.iter().take(k).any(|r| r == *e))
                .count()
        };
        let mut per_budget = Vec::new();
        for (bi, &max) in o.budgets.iter().enumerate() {
            let t = Instant::now();
            let out = ask(&q.text, max)?;
            lat[bi].push(t.elapsed());
            let delivered = q
                .evidence
                .iter()
                .filter(|e| {
                    let line = &turns[**e].0;
                    let said = line.split_once(": ").map_or(line.as_str(), |(_, s)| s);
                    out.text.contains(said)
                })
                .count();
            let plain = full
                .iter()
                .zip(crate::recall_bench::plain_packed(
                    full.iter().map(|r| cost[*r]),
                    max,
                ))
                .filter(|(r, fits)| *fits && q.evidence.contains(r))
                .count();
            per_budget.push((delivered, plain));
        }
        rows.push((q.kind, q.evidence.len(), at(5), at(10), per_budget));
    }
    let mut kinds = Vec::new();
    for kind in ["all", "single", "temporal", "paraphrase", "two-hop"] {
        let sel: Vec<_> = rows
            .iter()
            .filter(|r| kind == "all" || r.0 == kind)
            .collect();
        let ev: usize = sel.iter().map(|r| r.1).sum::<usize>().max(1);
        let share = |n: usize| n as f64 / ev as f64;
        kinds.push(KindResult {
            kind: kind.to_string(),
            questions: sel.len(),
            recall_at_5: share(sel.iter().map(|r| r.2).sum()),
            recall_at_10: share(sel.iter().map(|r| r.3).sum()),
            delivered: o
                .budgets
                .iter()
                .enumerate()
                .map(|(bi, &b)| {
                    (
                        b,
                        share(sel.iter().map(|r| r.4[bi].0).sum()),
                        share(sel.iter().map(|r| r.4[bi].1).sum()),
                    )
                })
                .collect(),
        });
    }
    let latency = o
        .budgets
        .iter()
        .zip(lat)
        .map(|(b, l)| {
            let wall = l.iter().sum();
            crate::summarize(&format!("recall, budget {b}"), l, wall)
        })
        .collect();
    mem.store().sync()?;
    Ok(QualityResult {
        turns: turns.len(),
        kinds,
        latency,
        hybrid: semantic.is_some(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The small CI run: recall's answer delivers at least 95 % of what the same ranking packed
    /// as plain text delivers, at every budget, and keeps finding the evidence it finds now.
    #[test]
    fn recall_delivers_what_plain_packing_of_its_ranking_would() {
        let dir = tempfile::tempdir().unwrap();
        let r = quality_bench(
            dir.path(),
            &QualityOptions {
                conversations: 12,
                budgets: vec![250, 500, 1000, 2000],
                vectors: None,
            },
        )
        .unwrap();
        let all = &r.kinds[0];
        assert!(all.questions > 40, "{all:?}");
        for (b, delivered, plain) in &all.delivered {
            assert!(
                *delivered >= 0.95 * plain,
                "budget {b}: delivered {delivered} < 95% of plain {plain}"
            );
        }
        // Floors at the figures measured when this benchmark was written (deterministic
        // corpus): a ranking change that loses evidence fails here.
        assert!(all.recall_at_10 >= 0.6, "{all:?}");
        let temporal = &r.kinds[2];
        assert_eq!(temporal.recall_at_5, 1.0, "{temporal:?}");
    }
}
