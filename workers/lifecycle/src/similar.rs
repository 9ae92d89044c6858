//! Near-duplicate detection: word sets compared by Jaccard similarity, joined with prefix
//! filtering so a namespace of thousands of memories is not compared pair by pair.

use std::collections::{BTreeSet, HashMap};

/// The set of lower-cased words (letters and digits, at least 2 characters) of a memory's body:
/// headings and `remember`'s header lines are left out, so two memories that differ only in
/// their time stamps and titles compare by what they say.
pub fn word_set(content: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in content.lines() {
        let t = line.trim();
        if t.starts_with('#') || avm_core::storage::is_header_line(t) {
            continue;
        }
        for w in t.split(|c: char| !c.is_alphanumeric()) {
            if w.chars().count() >= 2 {
                out.insert(w.to_lowercase());
            }
        }
    }
    out
}

/// `|a ∩ b| / |a ∪ b|` (1 for two empty sets).
pub fn jaccard(a: &BTreeSet<String>, b: &BTreeSet<String>) -> f64 {
    if a.is_empty() && b.is_empty() {
        return 1.0;
    }
    let inter = a.intersection(b).count();
    inter as f64 / (a.len() + b.len() - inter) as f64
}

/// Jaccard over two sorted, deduplicated id lists.
fn jaccard_ids(a: &[u32], b: &[u32]) -> f64 {
    let (mut i, mut j, mut inter) = (0, 0, 0usize);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                inter += 1;
                i += 1;
                j += 1;
            }
        }
    }
    let union = a.len() + b.len() - inter;
    if union == 0 {
        1.0
    } else {
        inter as f64 / union as f64
    }
}

/// Every pair `(i, j, similarity)` with `i < j` whose word sets have Jaccard similarity of at
/// least `threshold` (in `(0, 1]`). Empty sets never match.
///
/// Prefix filtering: words are ranked rarest first; two sets with Jaccard ≥ t must share a
/// word among the first `|x| − ⌈t·|x|⌉ + 1` words of each, so only sets sharing such a word
/// are compared, and only when their sizes allow the threshold at all.
pub fn near_duplicates(sets: &[BTreeSet<String>], threshold: f64) -> Vec<(usize, usize, f64)> {
    let threshold = threshold.clamp(f64::MIN_POSITIVE, 1.0);
    let mut freq: HashMap<&str, u32> = HashMap::new();
    for s in sets {
        for w in s {
            *freq.entry(w.as_str()).or_default() += 1;
        }
    }
    // Rarest first, ties by the word, so ids sort in prefix order.
    let mut words: Vec<(&str, u32)> = freq.into_iter().collect();
    words.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(b.0)));
    let id: HashMap<&str, u32> = words
        .iter()
        .enumerate()
        .map(|(i, (w, _))| (*w, u32::try_from(i).unwrap_or(u32::MAX)))
        .collect();
    let docs: Vec<Vec<u32>> = sets
        .iter()
        .map(|s| {
            let mut v: Vec<u32> = s
                .iter()
                .filter_map(|w| id.get(w.as_str()).copied())
                .collect();
            v.sort_unstable();
            v
        })
        .collect();
    let mut index: HashMap<u32, Vec<usize>> = HashMap::new();
    let mut out = Vec::new();
    let mut seen: Vec<usize> = vec![usize::MAX; docs.len()];
    for (i, d) in docs.iter().enumerate() {
        if d.is_empty() {
            continue;
        }
        // A hair below the exact product, so rounding never shortens a prefix.
        let need = ((threshold * d.len() as f64) - 1e-9).ceil().max(0.0) as usize;
        let prefix = d.len() - need.min(d.len()) + 1;
        for w in &d[..prefix.min(d.len())] {
            if let Some(list) = index.get(w) {
                for &j in list {
                    if seen[j] == i {
                        continue;
                    }
                    seen[j] = i;
                    let (a, b) = (d.len() as f64, docs[j].len() as f64);
                    if a.min(b) < threshold * a.max(b) - 1e-9 {
                        continue;
                    }
                    let sim = jaccard_ids(d, &docs[j]);
                    if sim >= threshold {
                        out.push((j, i, sim));
                    }
                }
            }
            index.entry(*w).or_default().push(i);
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
    out
}
