//! A corpus of agent memories in English-like prose, and the questions agents ask of it.
//!
//! Each memory (50–400 words) is about one project and one or two of its topics: decisions,
//! owners, settings and reasons in template sentences, between sentences of function words
//! (`the`, `of`, `was`), common content words (a Zipf-distributed list of real ones) and a long
//! tail of rare words. Questions are the kind an agent asks ("what was decided on risk limits
//! for Tamarind"): function words, a common word or two, a topic and a project name — so a
//! plain OR of the words would match most of the store, and the answer is in a few memories.

use crate::{Rng, word};

/// Projects the memories are about (names, each in a fraction of a percent of memories).
pub const PROJECTS: usize = 500;
/// People who decide, own and review.
pub const PEOPLE: usize = 200;

const TOPICS: [&str; 48] = [
    "risk limits",
    "deployment pipeline",
    "retention policy",
    "api keys",
    "rate limiter",
    "budget",
    "hiring plan",
    "on-call rotation",
    "database migration",
    "customer churn",
    "pricing model",
    "release schedule",
    "incident review",
    "security audit",
    "test coverage",
    "latency target",
    "error budget",
    "data model",
    "search index",
    "cache policy",
    "backup plan",
    "access control",
    "vendor contract",
    "roadmap",
    "launch date",
    "feature flags",
    "cost report",
    "support queue",
    "onboarding flow",
    "load balancer",
    "log retention",
    "alert thresholds",
    "schema change",
    "dependency upgrade",
    "code review",
    "design doc",
    "sprint goals",
    "storage quota",
    "network policy",
    "failover plan",
    "license terms",
    "compliance checklist",
    "capacity plan",
    "payment provider",
    "mobile release",
    "analytics events",
    "training data",
    "evaluation suite",
];

const EVENTS: [&str; 10] = [
    "outage",
    "audit",
    "launch",
    "migration",
    "review",
    "incident",
    "upgrade",
    "rollback",
    "offsite",
    "planning meeting",
];

/// Function words, about as frequent in prose as they are here.
const FUNCTION: [&str; 30] = [
    "the", "of", "and", "to", "a", "in", "for", "is", "on", "that", "with", "was", "as", "it",
    "at", "by", "from", "this", "we", "be", "are", "were", "or", "an", "which", "when", "what",
    "who", "how", "did",
];

/// Common content words, most frequent first.
const COMMON: [&str; 120] = [
    "team", "time", "work", "need", "change", "plan", "issue", "new", "next", "week", "data",
    "user", "users", "service", "system", "should", "would", "could", "will", "can", "not", "all",
    "more", "some", "also", "after", "before", "because", "decided", "agreed", "said", "asked",
    "people", "number", "problem", "question", "result", "report", "update", "meeting", "notes",
    "follow", "check", "test", "fix", "build", "release", "review", "owner", "today", "again",
    "still", "first", "last", "good", "bad", "high", "low", "fast", "slow", "small", "large",
    "open", "close", "start", "stop", "keep", "move", "set", "run", "write", "read", "call",
    "send", "show", "find", "give", "take", "make", "know", "think", "want", "look", "use", "try",
    "help", "work", "part", "point", "case", "group", "company", "customer", "product", "process",
    "support", "cost", "value", "level", "order", "price", "quality", "target", "limit", "risk",
    "policy", "plan", "schedule", "goal", "model", "index", "queue", "control", "contract", "flow",
    "rotation", "review", "upgrade", "audit", "incident",
];

fn cap(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// The name of project `i` ("Kalomine"): three syllables of the corpus vocabulary.
pub fn project(i: usize) -> String {
    cap(&word(40_000 + i * 7)[..6]) + ["ra", "vi", "mo", "ke", "xo", "be", "ce", "qu"][i % 8]
}

/// The name of person `i`.
pub fn person(i: usize) -> String {
    cap(&word(60_000 + i * 13)[..6])
}

/// A word of prose: function words, then common words, then the long tail.
fn filler_word(rng: &mut Rng) -> String {
    let r = rng.below(100);
    if r < 42 {
        FUNCTION[rng.zipf(FUNCTION.len())].to_string()
    } else if r < 85 {
        COMMON[rng.zipf(COMMON.len())].to_string()
    } else {
        word(rng.zipf(20_000))
    }
}

/// One memory of the corpus.
pub fn memory(rng: &mut Rng) -> String {
    let p0 = rng.below(PROJECTS);
    let t0 = TOPICS[rng.below(TOPICS.len())];
    let t1 = TOPICS[rng.below(TOPICS.len())];
    let words = 50 + rng.below(351);
    let mut out = String::with_capacity(words * 7);
    let mut n = 0;
    while n < words {
        let p = if rng.below(10) < 9 {
            project(p0)
        } else {
            project(rng.below(PROJECTS))
        };
        let t = match rng.below(10) {
            0..=5 => t0,
            6..=8 => t1,
            _ => TOPICS[rng.below(TOPICS.len())],
        };
        let who = person(rng.below(PEOPLE));
        let e = EVENTS[rng.below(EVENTS.len())];
        let s = match rng.below(20) {
            0 => format!("We decided to change the {t} for {p} after the {e}."),
            1 => format!("{who} said that the {t} of {p} should be reviewed before the {e}."),
            2 => format!(
                "The {t} for {p} was set to {} by {who}.",
                2 + rng.below(900)
            ),
            3 => format!("{who} owns the {t} of {p} now."),
            _ => {
                let k = 6 + rng.below(11);
                let ws: Vec<String> = (0..k).map(|_| filler_word(rng)).collect();
                format!("{}.", cap(&ws.join(" ")))
            }
        };
        n += s.split(' ').count();
        if !out.is_empty() {
            out.push(if rng.below(6) == 0 { '\n' } else { ' ' });
        }
        out.push_str(&s);
    }
    out
}

/// A question and what it is about.
#[derive(Debug, Clone)]
pub struct Question {
    /// The question.
    pub text: String,
    /// The project it names.
    pub project: String,
    /// The topic it names.
    pub topic: &'static str,
}

impl Question {
    /// Whether `content` names the question's project and topic (a memory that could answer).
    pub fn answered_by(&self, content: &str) -> bool {
        content.contains(&self.project) && content.contains(self.topic)
    }
}

/// One question an agent might ask of the corpus.
pub fn question(rng: &mut Rng) -> Question {
    let p = project(rng.below(PROJECTS));
    let t = TOPICS[rng.below(TOPICS.len())];
    let text = match rng.below(5) {
        0 => format!("what was decided on {t} for {p}"),
        1 => format!("who owns the {t} of {p}"),
        2 => format!(
            "why did we change the {t} for {p} after the {}",
            EVENTS[rng.below(EVENTS.len())]
        ),
        3 => format!("what is the current {t} of {p}"),
        _ => format!(
            "when did {} review the {t} for {p}",
            person(rng.below(PEOPLE))
        ),
    };
    Question {
        text,
        project: p,
        topic: t,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memories_are_prose_of_the_stated_length_and_questions_name_a_project() {
        let mut rng = Rng::new(1);
        for _ in 0..50 {
            let m = memory(&mut rng);
            let n = m.split_whitespace().count();
            assert!((50..=430).contains(&n), "{n} words");
        }
        let q = question(&mut rng);
        assert!(
            q.text.contains(&q.project) && q.text.contains(q.topic),
            "{q:?}"
        );
        let names: std::collections::HashSet<String> = (0..PROJECTS).map(project).collect();
        assert_eq!(names.len(), PROJECTS, "project names are distinct");
    }
}
