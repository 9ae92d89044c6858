//! Consolidation: merge near-duplicate memories, write extractive topic summaries.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

use avm_core::storage::Node;
use avm_core::time::{Micros, now_micros, to_iso};
use avm_core::{Error, Output, RemoveOptions, Result};
use avm_topics::TopicIndex;

use crate::similar::{near_duplicates, word_set};
use crate::{DAY, Lifecycle, decayed, first_sentence, is_summary, last_touch, namespace, plural};

/// Topics per namespace that can get a summary in one run.
const SUMMARY_TOPICS: usize = 20;

/// One merge: `survivor` absorbed `absorbed` (which went to the trash).
#[derive(Debug, Clone)]
pub struct Merge {
    /// The memory that stays.
    pub survivor: String,
    /// The memories folded into it.
    pub absorbed: Vec<String>,
    /// Lowest pairwise similarity that joined the group.
    pub similarity: f64,
}

impl Lifecycle<'_> {
    /// Consolidates the memories below `scope`, namespace by namespace: near-duplicates (word
    /// sets with Jaccard ≥ `merge_similarity`, both unchanged for `merge_min_age_days`) merge
    /// into the most important of them — paragraphs the survivor lacks are appended, the
    /// others go to the trash with `merged_into` — and every topic carried by at least
    /// `summary_min_memories` memories gets an extractive summary at
    /// `<namespace>/summaries/<topic>.md`. Nothing is written with `dry_run`.
    pub fn consolidate(&self, scope: &str, topics: &TopicIndex, dry_run: bool) -> Result<Output> {
        let started = std::time::Instant::now();
        let cfg = self.config;
        crate::check_unit("merge_similarity", cfg.merge_similarity)?;
        crate::check_live(scope, "consolidate")?;
        let now = now_micros();
        let nodes: Vec<Node> = self
            .scan(scope, None)?
            .into_iter()
            .filter(|n| !is_summary(n))
            .collect();
        let processed = nodes.len();
        let mut by_ns: BTreeMap<String, Vec<Node>> = BTreeMap::new();
        for n in nodes {
            if let Some(ns) = namespace(&n.path) {
                by_ns.entry(ns).or_default().push(n);
            }
        }
        let min_age = (cfg.merge_min_age_days * DAY) as Micros;
        let mut merges = Vec::new();
        let mut failed = Vec::new();
        for group in by_ns.values() {
            let old: Vec<&Node> = group
                .iter()
                .filter(|n| now.saturating_sub(n.updated_at) >= min_age)
                .collect();
            for m in plan_merges(&old, cfg.merge_similarity, now, cfg.half_life_days) {
                if dry_run {
                    merges.push(m);
                    continue;
                }
                match self.apply_merge(&m, &old) {
                    Ok(()) => merges.push(m),
                    Err(e) => failed.push((m.survivor.clone(), e)),
                }
            }
        }
        // Summaries read the topic index, which must see the merges first.
        topics.sync()?;
        let mut summaries = Vec::new();
        for ns in by_ns.keys() {
            match self.summarise(ns, topics, now, dry_run) {
                Ok(written) => summaries.extend(written),
                Err(e) => failed.push((ns.clone(), e)),
            }
        }
        let absorbed: usize = merges.iter().map(|m| m.absorbed.len()).sum();
        let ms = started.elapsed().as_millis();
        let pre = if dry_run { "would " } else { "" };
        let mut text = format!(
            "consolidated {scope}: {processed} {} read, {pre}merge {absorbed} into {} (near-duplicates), {pre}write {} {} ({ms} ms)\n",
            plural(processed, "memory", "memories"),
            merges.len(),
            summaries.len(),
            plural(summaries.len(), "summary", "summaries"),
        );
        for m in &merges {
            text.push_str(&format!(
                "  merge {} <- {} (similarity ≥ {:.2})\n",
                m.survivor,
                m.absorbed.join(", "),
                m.similarity
            ));
        }
        for s in &summaries {
            text.push_str(&format!("  summary {s}\n"));
        }
        let failed = crate::failures(&mut text, &failed);
        Ok(Output::new(
            text,
            json!({
                "scope": scope,
                "dry_run": dry_run,
                "memories_processed": processed,
                "memories_merged": absorbed,
                "merges": merges.iter().map(|m| json!({"survivor": m.survivor, "absorbed": m.absorbed, "similarity": crate::round3(m.similarity)})).collect::<Vec<_>>(),
                "summaries_written": summaries,
                "failed": failed,
                "duration_ms": ms,
            }),
        ))
    }

    fn apply_merge(&self, m: &Merge, nodes: &[&Node]) -> Result<()> {
        let find = |p: &str| {
            nodes
                .iter()
                .find(|n| n.path == p)
                .copied()
                .ok_or_else(|| Error::not_found(p))
        };
        // Merge only what the plan saw: a memory changed since the scan is left for next time.
        for p in std::iter::once(&m.survivor).chain(&m.absorbed) {
            let seen = find(p)?;
            match self.store.node(p)? {
                Some(now) if now.version == seen.version && now.updated_at == seen.updated_at => {}
                _ => {
                    return Err(Error::new(
                        avm_core::ErrorKind::Busy,
                        format!("{p} changed while consolidating; run consolidate again"),
                    ));
                }
            }
        }
        let survivor = find(&m.survivor)?;
        let mut content = survivor.text().to_string();
        let mut have: BTreeSet<String> = paragraphs(&content).collect();
        let mut importance = survivor.importance;
        let mut tags: Vec<String> = survivor.tags.clone();
        for p in &m.absorbed {
            let n = find(p)?;
            importance = importance.max(n.importance);
            for t in &n.tags {
                if !tags.contains(t) {
                    tags.push(t.clone());
                }
            }
            let new: Vec<String> = paragraphs(n.text())
                .filter(|para| !have.contains(para))
                .collect();
            if !new.is_empty() {
                content.push_str("\n\n---\n\n");
                content.push_str(&new.join("\n\n"));
                have.extend(new);
            }
        }
        let mut meta = Map::new();
        let mut from: Vec<Value> = survivor
            .meta
            .get("consolidated_from")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        from.extend(m.absorbed.iter().map(|p| json!(p)));
        meta.insert("consolidated_from".into(), Value::Array(from));
        meta.insert("consolidated_at".into(), json!(to_iso(now_micros())));
        let put = avm_core::Put {
            content: (content != survivor.text()).then_some(content.into()),
            meta: Some(meta),
            tags: (tags != survivor.tags).then_some(tags),
            importance: Some(importance),
            ..avm_core::Put::default()
        };
        self.host
            .write(self.caller, &m.survivor, avm_core::WriteInput::Put(put))?;
        for p in &m.absorbed {
            let mut meta = Map::new();
            meta.insert("merged_into".into(), json!(m.survivor));
            self.put(p, None, Some(meta), None)?;
            self.host.remove(
                self.caller,
                p,
                RemoveOptions {
                    recursive: false,
                    hard: false,
                },
            )?;
        }
        Ok(())
    }

    /// Writes `<ns>/summaries/<topic>.md` for the namespace's common topics; returns the paths
    /// written (or that would be).
    fn summarise(
        &self,
        ns: &str,
        topics: &TopicIndex,
        now: Micros,
        dry_run: bool,
    ) -> Result<Vec<String>> {
        let cfg = self.config;
        let min = cfg.summary_min_memories.max(2);
        let keep = |p: &str| {
            self.host.may_read(self.caller, p)
                && !crate::is_summary_path(p)
                && namespace(p).as_deref() == Some(ns)
        };
        let scopes = [ns.to_string()];
        let common = topics.top(&scopes, self.caller, &keep, SUMMARY_TOPICS)?;
        let mut written = Vec::new();
        // Topics carried by exactly the same memories say the same thing: one summary each.
        let mut covered: BTreeSet<Vec<String>> = BTreeSet::new();
        // Candidates first: among topics carried by the same memories, the one weighing most
        // in them names the summary.
        let mut candidates: Vec<(String, f64, Vec<Node>)> = Vec::new();
        for (topic, count) in common {
            if (count as usize) < min {
                continue;
            }
            let postings = self.store.topic_postings(
                std::slice::from_ref(&topic),
                &scopes,
                self.caller,
                &keep,
                200,
            )?;
            let mut weight = 0.0;
            let mut sources: Vec<Node> = Vec::new();
            for p in postings {
                if let Some(n) = self.store.node(&p.path)?
                    && !is_summary(&n)
                {
                    weight += p.weight;
                    sources.push(n);
                }
            }
            if sources.len() >= min {
                candidates.push((topic, weight, sources));
            }
        }
        candidates.sort_by(|a, b| {
            b.2.len()
                .cmp(&a.2.len())
                .then(b.1.total_cmp(&a.1))
                .then_with(|| a.0.cmp(&b.0))
        });
        for (topic, _, mut sources) in candidates {
            let mut set: Vec<String> = sources.iter().map(|n| n.path.clone()).collect();
            set.sort();
            if !covered.insert(set) {
                continue;
            }
            let path = format!("{ns}/summaries/{}.md", slug(&topic));
            if let Some(old) = self.store.node(&path)?
                && now.saturating_sub(old.updated_at) < (cfg.summary_refresh_days * DAY) as Micros
            {
                continue;
            }
            sources.sort_by(|a, b| {
                let da = decayed(a.importance, last_touch(a), now, cfg.half_life_days);
                let db = decayed(b.importance, last_touch(b), now, cfg.half_life_days);
                db.total_cmp(&da).then_with(|| a.path.cmp(&b.path))
            });
            let content = summary_text(&topic, ns, &sources, cfg.summary_max_items, now);
            if !dry_run {
                let mut meta = Map::new();
                meta.insert("type".into(), json!("summary"));
                meta.insert("topic".into(), json!(topic));
                meta.insert("source_count".into(), json!(sources.len()));
                meta.insert(
                    "sources".into(),
                    json!(
                        sources
                            .iter()
                            .take(cfg.summary_max_items)
                            .map(|n| n.path.as_str())
                            .collect::<Vec<_>>()
                    ),
                );
                meta.insert("generated_at".into(), json!(to_iso(now)));
                meta.insert("title".into(), json!(format!("Summary: {topic}")));
                self.put(&path, Some(content), Some(meta), Some(0.8))?;
            }
            written.push(path);
        }
        Ok(written)
    }
}

/// The merges among `nodes` (one namespace): connected groups of near-duplicates, each led by
/// its most important member (decayed importance, then the newest, then the path).
fn plan_merges(nodes: &[&Node], threshold: f64, now: Micros, half_life: f64) -> Vec<Merge> {
    if nodes.len() < 2 {
        return Vec::new();
    }
    let sets: Vec<_> = nodes.iter().map(|n| word_set(n.text())).collect();
    let pairs = near_duplicates(&sets, threshold);
    let mut parent: Vec<usize> = (0..nodes.len()).collect();
    fn root(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    let mut weakest: BTreeMap<usize, f64> = BTreeMap::new();
    for &(a, b, sim) in &pairs {
        let (ra, rb) = (root(&mut parent, a), root(&mut parent, b));
        let w = weakest
            .remove(&ra)
            .unwrap_or(1.0)
            .min(weakest.remove(&rb).unwrap_or(1.0))
            .min(sim);
        let r = ra.min(rb);
        parent[ra] = r;
        parent[rb] = r;
        weakest.insert(r, w);
    }
    let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for i in 0..nodes.len() {
        let r = root(&mut parent, i);
        groups.entry(r).or_default().push(i);
    }
    let rank = |n: &Node| decayed(n.importance, last_touch(n), now, half_life);
    let mut out = Vec::new();
    for (r, mut members) in groups {
        if members.len() < 2 {
            continue;
        }
        members.sort_by(|&a, &b| {
            let (na, nb) = (nodes[a], nodes[b]);
            rank(nb)
                .total_cmp(&rank(na))
                .then(nb.updated_at.cmp(&na.updated_at))
                .then_with(|| na.path.cmp(&nb.path))
        });
        let mut absorbed: Vec<String> = members[1..]
            .iter()
            .map(|&i| nodes[i].path.clone())
            .collect();
        absorbed.sort();
        out.push(Merge {
            survivor: nodes[members[0]].path.clone(),
            absorbed,
            similarity: weakest.get(&r).copied().unwrap_or(1.0),
        });
    }
    out.sort_by(|a, b| a.survivor.cmp(&b.survivor));
    out
}

/// Paragraphs of a body (header lines out), trimmed, as merge units.
fn paragraphs(content: &str) -> impl Iterator<Item = String> + '_ {
    content.split("\n\n").filter_map(|p| {
        let kept: Vec<&str> = p
            .lines()
            .filter(|l| !avm_core::storage::is_header_line(l) && !l.trim_start().starts_with("# "))
            .collect();
        let t = kept.join("\n").trim().to_string();
        (!t.is_empty()).then_some(t)
    })
}

/// A file-name-safe form of a topic.
fn slug(topic: &str) -> String {
    let s: String = topic
        .chars()
        .map(|c| if c.is_alphanumeric() { c } else { '-' })
        .collect();
    let s = s.trim_matches('-').to_string();
    if s.is_empty() { "topic".into() } else { s }
}

fn summary_text(topic: &str, ns: &str, sources: &[Node], max: usize, now: Micros) -> String {
    let mut text = format!(
        "# Summary: {topic}\n\n*Generated from {} memories in {ns}, {}*\n\n",
        sources.len(),
        &to_iso(now)[..10.min(to_iso(now).len())]
    );
    for n in sources.iter().take(max.max(1)) {
        let s = first_sentence(n.text(), 160);
        let line = if s.is_empty() { n.title() } else { s };
        text.push_str(&format!("- {line} ({})\n", n.path));
    }
    text
}
