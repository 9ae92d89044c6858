//! avm-librarian: which agents know about something, without revealing private
//! content to the one asking.
//!
//! The librarian searches every memory (full text and topics) on the asker's behalf. What the
//! asker may read comes back as paths and one-line excerpts; what it may not read is reduced to
//! suggestions whose detail depends on the privacy level:
//!
//! | level       | suggestion for memories the asker cannot read                 |
//! |-------------|----------------------------------------------------------------|
//! | `full`      | the owner, the topics of the matching memories, how many match |
//! | `owner`     | the owner only (default)                                       |
//! | `existence` | "another agent" (that something exists, not who)               |
//! | `none`      | nothing                                                        |
//!
//! Never, at any level, a path, an excerpt or content of a memory the asker cannot read.

pub mod gossip;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value, json};

use avm_core::address::{basename, is_within};
use avm_core::provider::private_owner;
use avm_core::storage::{Keep, MemoryStore};
use avm_core::time::to_iso;
use avm_core::{
    Caller, Error, Ops, Output, Provider, ProviderInfo, Request, Result, SuffixOn, SuffixSpec,
};
use avm_topics::TopicIndex;

/// What `ask` reveals about memories the asker cannot read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Privacy {
    /// Owner, topics and counts.
    Full,
    /// Owner only.
    Owner,
    /// That another agent knows.
    Existence,
    /// Nothing.
    None,
}

impl Privacy {
    /// Parses a level name.
    pub fn parse(s: &str) -> Result<Privacy> {
        match s {
            "full" => Ok(Privacy::Full),
            "owner" => Ok(Privacy::Owner),
            "existence" => Ok(Privacy::Existence),
            "none" => Ok(Privacy::None),
            other => Err(Error::invalid(format!(
                "privacy {other:?} is not accepted; use full, owner, existence or none"
            ))),
        }
    }

    /// The name.
    pub fn as_str(self) -> &'static str {
        match self {
            Privacy::Full => "full",
            Privacy::Owner => "owner",
            Privacy::Existence => "existence",
            Privacy::None => "none",
        }
    }
}

/// The librarian over one store.
#[derive(Clone)]
pub struct Librarian {
    store: Arc<dyn MemoryStore>,
    topics: TopicIndex,
    privacy: Privacy,
    configured: Vec<(String, Option<String>)>,
}

/// Per owner of unreadable matches: how many, the best score, topics (at `full`).
type Hidden = (usize, f64, Vec<String>);

/// A match found on the asker's behalf.
struct Found {
    path: String,
    score: f64,
}

fn everything(_: &str) -> bool {
    true
}

impl Librarian {
    /// A librarian with a default privacy level and the agents named in configuration
    /// (id, description).
    pub fn new(
        store: Arc<dyn MemoryStore>,
        privacy: Privacy,
        configured: Vec<(String, Option<String>)>,
    ) -> Self {
        Librarian {
            topics: TopicIndex::new(store.clone()),
            store,
            privacy,
            configured,
        }
    }

    /// Every match for `query` in `/memory`, whoever owns it, best first.
    fn search_all(&self, query: &str, limit: usize) -> Result<Vec<Found>> {
        let scopes = vec!["/memory".to_string()];
        let mut best: BTreeMap<String, f64> = BTreeMap::new();
        match self
            .store
            .text_search(&scopes, &Caller::Operator, &everything, query, limit)
        {
            Ok(hits) => {
                let top = hits.iter().map(|h| h.score).fold(0.0, f64::max);
                for h in hits {
                    let s = if top > 0.0 { h.score / top } else { 0.0 };
                    best.insert(h.path, s);
                }
            }
            Err(e) if e.kind() == avm_core::ErrorKind::InvalidInput => {}
            Err(e) => return Err(e),
        }
        self.topics.sync()?;
        for m in self
            .topics
            .query(query, &scopes, &Caller::Operator, &everything, limit)?
        {
            let e = best.entry(m.path).or_insert(0.0);
            *e = e.max(m.score);
        }
        let mut out: Vec<Found> = best
            .into_iter()
            .map(|(path, score)| Found { path, score })
            .collect();
        out.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then_with(|| a.path.cmp(&b.path))
        });
        out.truncate(limit);
        Ok(out)
    }

    /// Answers "who knows about `query`" for `caller`: readable matches as paths and excerpts,
    /// the rest as suggestions at the privacy level.
    pub fn ask(
        &self,
        caller: &Caller,
        keep: Keep<'_>,
        query: &str,
        limit: usize,
        privacy: Option<Privacy>,
    ) -> Result<Output> {
        if query.trim().is_empty() {
            return Err(Error::invalid("ask needs a question"));
        }
        let privacy = privacy.unwrap_or(self.privacy);
        let found = self.search_all(query, limit.saturating_mul(2).max(10))?;
        let total = found.len();
        let mut accessible = Vec::new();
        let mut hidden: BTreeMap<String, Hidden> = BTreeMap::new();
        for f in found {
            let node = self.store.node(&f.path)?;
            let sees = caller.may_see(&f.path)
                && keep(&f.path)
                && node.as_ref().is_none_or(|n| n.visible_to(caller));
            if sees {
                if accessible.len() < limit
                    && let Some(n) = node
                {
                    let excerpt = avm_core::storage::excerpt(n.text(), 100);
                    accessible.push(json!({"path": f.path, "score": f.score, "excerpt": excerpt}));
                }
                continue;
            }
            let owner = private_owner(&f.path).unwrap_or("unknown").to_string();
            if Some(owner.as_str()) == caller.agent() {
                continue;
            }
            let e = hidden.entry(owner).or_insert((0, 0.0, Vec::new()));
            e.0 += 1;
            e.1 = e.1.max(f.score);
            if privacy == Privacy::Full {
                for (t, _) in self.topics.of(&f.path)?.into_iter().take(3) {
                    if !e.2.contains(&t) {
                        e.2.push(t);
                    }
                }
            }
        }
        let mut suggestions: Vec<Value> = Vec::new();
        if privacy != Privacy::None {
            let mut rows: Vec<(String, Hidden)> = hidden.into_iter().collect();
            rows.sort_by(|a, b| b.1.1.total_cmp(&a.1.1).then_with(|| a.0.cmp(&b.0)));
            for (owner, (n, score, topics)) in rows {
                suggestions.push(match privacy {
                    Privacy::Full => json!({
                        "agent": owner,
                        "topic": topics.join(", "),
                        "relevance": score,
                        "reason": format!("has {n} relevant {}", if n == 1 { "memory" } else { "memories" }),
                    }),
                    Privacy::Owner => json!({"agent": owner, "topic": "related information", "relevance": score}),
                    _ => json!({"agent": "another agent", "topic": "related information", "relevance": score}),
                });
            }
            if privacy == Privacy::Existence {
                // One line is enough: how many agents would also say who.
                suggestions.truncate(1);
            }
        }
        let requester = caller.agent().unwrap_or("(operator)");
        let mut text = format!(
            "Query: {query}\nRequester: {requester}\nMatches: {}/{total} accessible\n",
            accessible.len()
        );
        if !accessible.is_empty() {
            text.push_str("\n## Accessible Content\n");
            for a in accessible.iter().take(5) {
                text.push_str(&format!(
                    "  {}\n    {}\n",
                    a["path"].as_str().unwrap_or(""),
                    a["excerpt"].as_str().unwrap_or("")
                ));
            }
        }
        if !suggestions.is_empty() {
            text.push_str("\n## Collaboration Suggestions\n");
            for s in &suggestions {
                text.push_str(&format!(
                    "  • Ask **{}** about: {}\n",
                    s["agent"].as_str().unwrap_or(""),
                    s["topic"].as_str().unwrap_or("")
                ));
                if let Some(r) = s.get("reason").and_then(Value::as_str) {
                    text.push_str(&format!("    ({r})\n"));
                }
            }
        }
        Ok(Output::new(
            text,
            json!({
                "query": query,
                "requester": caller.agent(),
                "privacy": privacy.as_str(),
                "accessible_count": accessible.len(),
                "total_matches": total,
                "accessible": accessible,
                "suggestions": suggestions,
            }),
        ))
    }

    /// Which agents know about `topic`, by their own private memories and the shared ones
    /// they wrote. Reveals ids and counts only, and at `existence` not even ids.
    pub fn who_knows(&self, caller: &Caller, topic: &str, limit: usize) -> Result<Output> {
        if topic.trim().is_empty() {
            return Err(Error::invalid("who-knows needs a topic"));
        }
        let found = self.search_all(topic, 300)?;
        let mut by: BTreeMap<String, (usize, f64)> = BTreeMap::new();
        for f in found {
            let owner = match private_owner(&f.path) {
                Some(o) => Some(o.to_string()),
                None if is_within(&f.path, "/memory/shared") => {
                    self.store.node(&f.path)?.and_then(|n| n.author)
                }
                None => None,
            };
            if let Some(o) = owner {
                let e = by.entry(o).or_insert((0, 0.0));
                e.0 += 1;
                e.1 = e.1.max(f.score);
            }
        }
        let mut rows: Vec<(String, (usize, f64))> = by.into_iter().collect();
        rows.sort_by(|a, b| {
            b.1.1
                .total_cmp(&a.1.1)
                .then(b.1.0.cmp(&a.1.0))
                .then_with(|| a.0.cmp(&b.0))
        });
        rows.truncate(limit);
        let reveal = match self.privacy {
            Privacy::Full | Privacy::Owner => true,
            Privacy::Existence | Privacy::None => caller.agent().is_none(),
        };
        if self.privacy == Privacy::None && caller.agent().is_some() {
            return Ok(Output::new(
                "The librarian's privacy level is none: it does not say who knows what.\n",
                json!({"topic": topic, "agents": []}),
            ));
        }
        let mut text = format!("Agents who might know about '{topic}':\n");
        let mut data = Vec::new();
        if rows.is_empty() {
            text = format!("No agent seems to know about '{topic}'.\n");
        } else if !reveal {
            text.push_str(&format!(
                "  {} agent(s) know about it (the privacy level hides who)\n",
                rows.len()
            ));
            data.push(json!({"agents": rows.len()}));
        } else {
            for (id, (n, score)) in &rows {
                text.push_str(&format!(
                    "  • {id} - {n} {} (best match {score:.2})\n",
                    if *n == 1 { "memory" } else { "memories" }
                ));
                data.push(json!({"id": id, "memories": n, "relevance": score}));
            }
        }
        Ok(Output::new(text, json!({"topic": topic, "agents": data})))
    }

    /// The directory of agents: ids, memory counts, last activity, descriptions; topics only at
    /// privacy `full` (or for the agent itself and operators).
    pub fn agents(&self, caller: &Caller) -> Result<Output> {
        let mut dir: BTreeMap<String, (u64, Option<String>)> = BTreeMap::new();
        for (id, desc) in &self.configured {
            dir.insert(id.clone(), (0, desc.clone()));
        }
        for (path, is_dir, n) in
            self.store
                .children_counted("/memory/private", &Caller::Operator, &everything)?
        {
            if is_dir {
                dir.entry(basename(&path).to_string())
                    .or_insert((0, None))
                    .0 = n;
            }
        }
        let mut text = format!("Agents ({} total):\n", dir.len());
        let mut data = Vec::new();
        self.topics.sync()?;
        for (id, (n, desc)) in &dir {
            let root = format!("/memory/private/{id}");
            let last = self
                .store
                .recent(
                    std::slice::from_ref(&root),
                    &Caller::Operator,
                    &everything,
                    None,
                    1,
                )?
                .first()
                .map(|m| to_iso(m.updated_at));
            let show_topics = self.privacy == Privacy::Full
                || caller.agent().is_none()
                || caller.agent() == Some(id.as_str());
            let topics: Vec<String> = if show_topics {
                self.topics
                    .top(
                        std::slice::from_ref(&root),
                        &Caller::Operator,
                        &everything,
                        5,
                    )?
                    .into_iter()
                    .map(|(t, _)| t)
                    .collect()
            } else {
                Vec::new()
            };
            text.push_str(&format!(
                "  • {id} - {n} {}{}{}{}\n",
                if *n == 1 { "memory" } else { "memories" },
                last.as_deref()
                    .map(|l| format!(", last active {l}"))
                    .unwrap_or_default(),
                desc.as_deref()
                    .map(|d| format!(" — {d}"))
                    .unwrap_or_default(),
                if topics.is_empty() {
                    String::new()
                } else {
                    format!(" [{}]", topics.join(", "))
                }
            ));
            data.push(json!({
                "id": id,
                "memory_count": n,
                "last_active": last,
                "description": desc,
                "topics": topics,
            }));
        }
        Ok(Output::new(
            text,
            json!({"agents": data, "total_agents": dir.len()}),
        ))
    }
}

/// The librarian as a service: `:ask?q=`, `:who-knows?topic=`, `:agents`.
pub struct LibrarianProvider {
    librarian: Librarian,
}

impl LibrarianProvider {
    /// Serves `librarian`.
    pub fn new(librarian: Librarian) -> Self {
        LibrarianProvider { librarian }
    }
}

impl Provider for LibrarianProvider {
    fn info(&self) -> ProviderInfo {
        ProviderInfo {
            kind: "librarian".into(),
            description: "who knows what, without revealing private content".into(),
            ops: Ops {
                read: true,
                ..Ops::default()
            },
            suffixes: vec![
                SuffixSpec::new(
                    "ask",
                    SuffixOn::Dir,
                    true,
                    false,
                    &["q", "limit", "privacy"],
                    "readable matches for q, and which agents to ask about the rest",
                ),
                SuffixSpec::new(
                    "who-knows",
                    SuffixOn::Dir,
                    true,
                    false,
                    &["topic", "limit"],
                    "agents whose memories are about topic",
                ),
                SuffixSpec::new(
                    "agents",
                    SuffixOn::Dir,
                    true,
                    false,
                    &[],
                    "the directory of agents",
                ),
            ],
        }
    }

    fn read(&self, req: &Request) -> Result<Output> {
        let keep = |p: &str| req.may_read(p);
        match req.suffix.as_deref() {
            Some("ask") => {
                let q = req
                    .query
                    .get("q")
                    .ok_or_else(|| Error::invalid(":ask needs ?q=QUESTION"))?;
                let privacy = match req.query.get("privacy") {
                    // An agent may ask for less than the configured level, never for more.
                    Some(p) => {
                        let p = Privacy::parse(p)?;
                        Some(stricter(p, self.librarian.privacy))
                    }
                    None => None,
                };
                self.librarian.ask(
                    &req.caller,
                    &keep,
                    q,
                    req.query.parsed("limit")?.unwrap_or(10),
                    privacy,
                )
            }
            Some("who-knows") => {
                let t = req
                    .query
                    .get("topic")
                    .ok_or_else(|| Error::invalid(":who-knows needs ?topic=TOPIC"))?;
                self.librarian
                    .who_knows(&req.caller, t, req.query.parsed("limit")?.unwrap_or(5))
            }
            Some("agents") => self.librarian.agents(&req.caller),
            _ => Err(Error::unsupported("read", &req.path)),
        }
    }
}

/// The stricter of two levels.
fn stricter(a: Privacy, b: Privacy) -> Privacy {
    let rank = |p: Privacy| match p {
        Privacy::Full => 0,
        Privacy::Owner => 1,
        Privacy::Existence => 2,
        Privacy::None => 3,
    };
    if rank(a) >= rank(b) { a } else { b }
}
