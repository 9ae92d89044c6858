//! Gossip: each agent publishes a small digest of what it knows — a Bloom filter of its own
//! topics — so other agents can ask "who knows about X?" without reading anyone's memories.
//!
//! A digest lives at `/gossip/<agent>.digest` (JSON). It is built from the topics of the
//! agent's **own** private memories (the reference used the whole store's topics, so every
//! digest looked alike). Parameters as in the reference: 1024 bits, 3 hash functions, bits
//! stored least-significant first within each byte; the hash is the first 4 bytes (big-endian)
//! of SHA-256 of `"<topic>:<i>"` modulo 1024 (the reference used MD5; avm uses the hash it
//! already carries). Versions increase across processes (the next version is the published one
//! plus 1). A digest counts only when the node's author is the agent its name claims, so one
//! agent cannot speak for another.

use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use avm_core::provider::PRIVATE_ROOT;
use avm_core::storage::MemoryStore;
use avm_core::time::{Micros, now_micros, to_iso};
use avm_core::{Caller, Error, ErrorKind, Result};

/// Bits in a digest's Bloom filter.
pub const BLOOM_BITS: usize = 1024;
/// Hash functions per topic.
pub const BLOOM_HASHES: usize = 3;
/// Where digests live.
pub const GOSSIP_DIR: &str = "/gossip";
/// Topics of an agent that go into its filter (most used first).
pub const DIGEST_TOPICS: usize = 100;
/// Topics listed in clear in a digest.
pub const LISTED_TOPICS: usize = 20;
/// A digest loses confidence linearly over a week.
pub const CONFIDENCE_HOURS: f64 = 168.0;

/// A 1024-bit Bloom filter of topics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bloom([u8; BLOOM_BITS / 8]);

impl Default for Bloom {
    fn default() -> Self {
        Bloom([0; BLOOM_BITS / 8])
    }
}

fn bit_positions(topic: &str) -> [usize; BLOOM_HASHES] {
    let t = topic.trim().to_lowercase();
    let mut out = [0usize; BLOOM_HASHES];
    for (i, slot) in out.iter_mut().enumerate() {
        let d = Sha256::digest(format!("{t}:{i}").as_bytes());
        let n = u32::from_be_bytes([d[0], d[1], d[2], d[3]]);
        *slot = n as usize % BLOOM_BITS;
    }
    out
}

impl Bloom {
    /// Adds a topic (case-insensitive).
    pub fn add(&mut self, topic: &str) {
        for b in bit_positions(topic) {
            self.0[b / 8] |= 1 << (b % 8);
        }
    }

    /// False means surely absent; true means probably present.
    pub fn may_contain(&self, topic: &str) -> bool {
        bit_positions(topic)
            .iter()
            .all(|&b| self.0[b / 8] & (1 << (b % 8)) != 0)
    }

    /// Lowercase hex, 256 characters.
    pub fn to_hex(&self) -> String {
        avm_core::bytes::hex(&self.0)
    }

    /// Parses [`Bloom::to_hex`] output.
    pub fn from_hex(s: &str) -> Option<Bloom> {
        if s.len() != BLOOM_BITS / 4 || !s.is_ascii() {
            return None;
        }
        let mut out = [0u8; BLOOM_BITS / 8];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(Bloom(out))
    }
}

/// What one agent publishes about itself.
#[derive(Debug, Clone, PartialEq)]
pub struct Digest {
    /// The agent.
    pub agent: String,
    /// Increases with every publish.
    pub version: u64,
    /// When it was built.
    pub timestamp: Micros,
    /// The agent's topics.
    pub bloom: Bloom,
    /// Its most used topics, in clear.
    pub topics: Vec<String>,
    /// Memories in its private namespace.
    pub memory_count: u64,
    /// Topics in the filter.
    pub topic_count: u64,
}

impl Digest {
    /// The path it is published at.
    pub fn path(agent: &str) -> String {
        format!("{GOSSIP_DIR}/{agent}.digest")
    }

    /// The JSON form stored in the node.
    pub fn to_json(&self) -> Value {
        json!({
            "agent_id": self.agent,
            "version": self.version,
            "timestamp": to_iso(self.timestamp),
            "timestamp_us": self.timestamp,
            "bloom": self.bloom.to_hex(),
            "topics": self.topics,
            "topic_count": self.topic_count,
            "memory_count": self.memory_count,
            "capabilities": [],
        })
    }

    /// Parses [`Digest::to_json`] output.
    pub fn from_json(v: &Value) -> Option<Digest> {
        Some(Digest {
            agent: v["agent_id"].as_str()?.to_string(),
            version: v["version"].as_u64()?,
            timestamp: v["timestamp_us"].as_i64()?,
            bloom: Bloom::from_hex(v["bloom"].as_str()?)?,
            topics: v["topics"]
                .as_array()?
                .iter()
                .filter_map(|t| t.as_str().map(str::to_string))
                .collect(),
            memory_count: v["memory_count"].as_u64().unwrap_or(0),
            topic_count: v["topic_count"].as_u64().unwrap_or(0),
        })
    }

    /// Hours since it was built.
    pub fn age_hours(&self, now: Micros) -> f64 {
        ((now - self.timestamp).max(0) as f64) / 3_600_000_000.0
    }

    /// How much to trust it: 1 when fresh, down to 0.1 after a week.
    pub fn confidence(&self, now: Micros) -> f64 {
        (1.0 - self.age_hours(now) / CONFIDENCE_HOURS).max(0.1)
    }
}

fn everything(_: &str) -> bool {
    true
}

/// Builds `agent`'s next digest from the topics of its own private memories (the topic index
/// must be in sync). `previous` is the version published before, if any. The digest carries
/// the Bloom filter and counts; its most used topic words in clear only with `list_topics`
/// (`[gossip] list_topics = true`), since they are words from private memories.
pub fn build(
    store: &dyn MemoryStore,
    agent: &str,
    previous: Option<u64>,
    list_topics: bool,
) -> Result<Digest> {
    let root = format!("{PRIVATE_ROOT}/{agent}");
    let caller = Caller::Agent(agent.to_string());
    let counts = store.topic_counts(
        std::slice::from_ref(&root),
        &caller,
        &everything,
        DIGEST_TOPICS,
    )?;
    let mut bloom = Bloom::default();
    for (t, _) in &counts {
        bloom.add(t);
    }
    let memory_count = store
        .children_counted(PRIVATE_ROOT, &Caller::Operator, &everything)?
        .into_iter()
        .find(|(p, _, _)| *p == root)
        .map(|(_, _, n)| n)
        .unwrap_or(0);
    Ok(Digest {
        agent: agent.to_string(),
        version: previous.unwrap_or(0) + 1,
        timestamp: now_micros(),
        bloom,
        topics: counts
            .iter()
            .take(if list_topics { LISTED_TOPICS } else { 0 })
            .map(|(t, _)| t.clone())
            .collect(),
        memory_count,
        topic_count: counts.len() as u64,
    })
}

/// The published digest of `agent`, if there is a valid one.
pub fn published(store: &dyn MemoryStore, agent: &str) -> Result<Option<Digest>> {
    let Some(node) = store.node(&Digest::path(agent))? else {
        return Ok(None);
    };
    Ok(valid(&node.path, node.author.as_deref(), node.text()))
}

fn valid(path: &str, author: Option<&str>, content: &str) -> Option<Digest> {
    let name = path
        .strip_prefix(GOSSIP_DIR)?
        .strip_prefix('/')?
        .strip_suffix(".digest")?;
    let v: Value = serde_json::from_str(content).ok()?;
    let d = Digest::from_json(&v)?;
    // The file, the digest and the writer must all be the same agent.
    (d.agent == name && author == Some(name)).then_some(d)
}

/// Every valid digest under `/gossip`, by agent. Forged or malformed ones are skipped.
pub fn all(store: &dyn MemoryStore) -> Result<Vec<Digest>> {
    let mut out = Vec::new();
    let children = match store.children_counted(GOSSIP_DIR, &Caller::Operator, &everything) {
        Ok(c) => c,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for (path, is_dir, _) in children {
        if is_dir || !path.ends_with(".digest") {
            continue;
        }
        if let Some(node) = store.node(&path)?
            && let Some(d) = valid(&node.path, node.author.as_deref(), node.text())
        {
            out.push(d);
        }
    }
    out.sort_by(|a, b| a.agent.cmp(&b.agent));
    Ok(out)
}

/// Agents whose digest probably contains `topic`, with their confidence, best first.
pub fn who_knows(digests: &[Digest], topic: &str, now: Micros) -> Vec<(String, f64)> {
    let mut out: Vec<(String, f64)> = digests
        .iter()
        .filter(|d| d.bloom.may_contain(topic))
        .map(|d| (d.agent.clone(), d.confidence(now)))
        .collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    out
}

/// The request needs an agent identity.
pub fn need_agent(caller: &Caller) -> Result<&str> {
    caller
        .agent()
        .ok_or_else(|| Error::invalid("gossip speaks for an agent: pass --agent NAME"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn bloom_never_misses_an_added_topic_and_rarely_claims_others() {
        let mut b = Bloom::default();
        let topics: Vec<String> = (0..100).map(|i| format!("topic-{i}")).collect();
        for t in &topics {
            b.add(t);
        }
        assert!(topics.iter().all(|t| b.may_contain(t)));
        assert!(b.may_contain("TOPIC-7"), "case-insensitive");
        let false_hits = (0..10_000)
            .filter(|i| b.may_contain(&format!("other-{i}")))
            .count();
        // Theory: (1 - e^(-3·100/1024))^3 ≈ 1.6 %.
        assert!(false_hits < 400, "false positive rate {false_hits}/10000");
        assert!(
            false_hits > 0,
            "a 1024-bit filter of 100 topics cannot be perfect"
        );
    }

    #[test]
    fn digests_round_trip_through_json_and_age_lowers_confidence() {
        let mut bloom = Bloom::default();
        bloom.add("rust");
        let d = Digest {
            agent: "alice".into(),
            version: 3,
            timestamp: 1_000_000,
            bloom,
            topics: vec!["rust".into()],
            memory_count: 5,
            topic_count: 1,
        };
        let back = Digest::from_json(&d.to_json()).unwrap();
        assert_eq!(back, d);
        assert_eq!(Bloom::from_hex(&d.bloom.to_hex()), Some(d.bloom.clone()));
        assert!(Bloom::from_hex("zz").is_none());
        let week = 168 * 3_600_000_000i64;
        assert!((d.confidence(1_000_000) - 1.0).abs() < 1e-9);
        assert!((d.confidence(1_000_000 + week / 2) - 0.5).abs() < 1e-9);
        assert!((d.confidence(1_000_000 + 4 * week) - 0.1).abs() < 1e-9);
        let found = who_knows(std::slice::from_ref(&d), "Rust", 1_000_000);
        assert_eq!(found, vec![("alice".to_string(), 1.0)]);
        assert!(who_knows(&[d], "cooking", 1_000_000).is_empty());
    }

    #[test]
    fn a_digest_written_by_someone_else_is_not_believed() {
        let d = Digest {
            agent: "alice".into(),
            version: 1,
            timestamp: 1,
            bloom: Bloom::default(),
            topics: vec![],
            memory_count: 0,
            topic_count: 0,
        };
        let text = d.to_json().to_string();
        assert!(valid("/gossip/alice.digest", Some("alice"), &text).is_some());
        assert!(valid("/gossip/alice.digest", Some("mallory"), &text).is_none());
        assert!(valid("/gossip/bob.digest", Some("bob"), &text).is_none());
        assert!(valid("/gossip/alice.digest", None, &text).is_none());
        assert!(valid("/gossip/alice.digest", Some("alice"), "{not json").is_none());
    }
}
