//! Token-budgeted recall: the ranked memories, summarised, inside a budget of real tokens.
//!
//! Output (every token counted with cl100k_base; the whole text, header and footer included,
//! never exceeds `max_tokens`; the header appears from 500 tokens, the footer from 1,000):
//!
//! ```text
//! ## Memory (2 of 14)
//!
//! @3k NVDA note: NVDA RSI at 72 overbought
//!
//! @1f Fed hiked rates by 25bp …
//!
//! ---
//! *fetch @id: the whole memory*
//! ```
//!
//! Each entry is a short handle (`@id`, the node's shortcut, which `avm fetch`, MCP
//! `avm_fetch` and `cat MNT/@id` resolve) or, with `paths`, the full path in brackets; then the
//! memory's title when it has one, and its text: whole when short, else the lines that match
//! the query best. Scores and paths are always in the JSON form. The ranking does not depend
//! on the budget: a larger budget only shows more of the same list, and entries that do not
//! fit are skipped for the next ones that do.

use std::time::Instant;

use serde::Serialize;
use serde_json::{Value, json};

use avm_core::storage::{Keep, Telemetry};
use avm_core::time::now_micros;
use avm_core::{Caller, Error, Result};

use crate::engine::{Engine, Scored, Strategy};
use crate::{summary, tokens};

/// The smallest budget recall accepts: room for a header, one short entry and a footer.
pub const MIN_TOKENS: usize = 30;

/// What to recall.
#[derive(Debug, Clone)]
pub struct RecallRequest {
    /// The query.
    pub query: String,
    /// Budget in cl100k tokens.
    pub max_tokens: usize,
    /// Ordering.
    pub strategy: Strategy,
    /// Relevance floor.
    pub min_relevance: f64,
    /// Where to look.
    pub scopes: Vec<String>,
    /// Entries named by full path instead of their `@id` handle.
    pub paths: bool,
}

/// Candidates ranked for every recall, whatever its budget (full text and vectors each propose
/// their best this many, topics half as many): the budget only cuts this list,
/// so a query orders its memories the same way at every budget.
pub const CANDIDATES: usize = 100;

/// One recalled memory.
#[derive(Debug, Clone, Serialize)]
pub struct RecallItem {
    /// Path.
    pub path: String,
    /// The short handle shown instead of the path (`@` and the node's shortcut).
    pub shortcut: String,
    /// Final score.
    pub score: f64,
    /// Fused relevance.
    pub relevance: f64,
    /// The summary shown.
    pub summary: String,
    /// Tokens of this entry in the output.
    pub tokens: usize,
    /// Candidate sources.
    pub sources: Vec<&'static str>,
}

/// A rendered recall.
#[derive(Debug, Clone, Serialize)]
pub struct Recall {
    /// The Markdown handed to the agent.
    pub text: String,
    /// The entries it holds.
    pub items: Vec<RecallItem>,
    /// Tokens of `text`.
    pub tokens: usize,
    /// The budget.
    pub max_tokens: usize,
    /// Candidates that passed the relevance floor.
    pub candidates: usize,
    /// Estimated tokens of the candidates' full content (chars / 4).
    pub tokens_available: usize,
    /// Strategy used.
    pub strategy: Strategy,
    /// The query.
    pub query: String,
}

impl Recall {
    /// The structured form for `--json`, MCP and HTTP.
    pub fn to_json(&self) -> Value {
        json!({
            "query": self.query,
            "strategy": self.strategy,
            "max_tokens": self.max_tokens,
            "tokens": self.tokens,
            "candidates": self.candidates,
            "tokens_available": self.tokens_available,
            "items": self.items,
            "text": self.text,
        })
    }
}

/// How an entry names its memory: `@id`, or `[path]` when full paths are asked for.
fn handle(s: &Scored, paths: bool) -> String {
    if paths {
        format!("[{}]", s.path)
    } else {
        format!("@{}", avm_core::storage::shortcut(s.node.id))
    }
}

/// The title a memory was given (`meta.title`, or "").
fn given_title(s: &Scored) -> &str {
    s.node
        .meta
        .get("title")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("")
        .trim()
}

/// The title to show before `text`: the given one, unless `text` already starts with it.
fn title_before<'a>(given: &'a str, text: &str) -> Option<&'a str> {
    (!given.is_empty() && !text.to_lowercase().starts_with(&given.to_lowercase())).then_some(given)
}

fn entry(handle: &str, title: Option<&str>, text: &str) -> String {
    match (title, text.is_empty()) {
        (Some(t), true) => format!("{handle} {t}"),
        (Some(t), false) => format!("{handle} {t}: {text}"),
        (None, true) => handle.to_string(),
        (None, false) => format!("{handle} {text}"),
    }
}

/// The footer: how to get a whole memory. Budgets under 1,000 tokens go without it (every
/// token there is better spent on one more memory).
fn footer(paths: bool, max: usize) -> &'static str {
    match (max >= 1000, paths) {
        (false, _) => "",
        (true, false) => "*fetch @id: the whole memory*",
        (true, true) => "*fetch PATH: the whole memory*",
    }
}

/// The answer's first line and the blank line after it.
/// Under 500 tokens there is none: every token there is better spent on one more memory.
fn header(items: usize, of: usize, max: usize) -> String {
    if max < 500 {
        return String::new();
    }
    format!("## Memory ({items} of {of})\n\n")
}

fn render(entries: &[String], of: usize, max: usize, footer: &str) -> String {
    let mut out = header(entries.len(), of, max);
    for e in entries {
        out.push_str(e);
        out.push_str("\n\n");
    }
    if entries.is_empty() {
        out.push_str("No memory matches this query.\n\n");
    }
    if !footer.is_empty() {
        out.push_str("---\n");
        out.push_str(footer);
    }
    out
}

/// Tokens an entry adds to the rendered text: the entry and the blank line after it.
///
/// cl100k's pre-tokenizer never lets a piece run past a newline into a following character
/// that is not whitespace (its newline-bearing patterns, `[\r\n]*`, `\s*[\r\n]+` and
/// `\s+(?!\S)`, all stop there), and every entry, like the footer's `---`, starts with such a
/// character. So the rendered text's count is exactly the sum of its header's, each
/// entry-with-blank-line's and the footer block's: [`rendered_tokens`] adds them instead of
/// counting the whole text again (debug builds check the two agree).
fn chunk_tokens(line: &str) -> Result<usize> {
    tokens::count(&format!("{line}\n\n"))
}

/// The exact token count of [`render`]`(entries, of, max, footer)` from the entries' chunk
/// counts (see [`chunk_tokens`]).
fn rendered_tokens(
    entries: &[String],
    of: usize,
    max: usize,
    footer: &str,
    costs: impl Iterator<Item = usize>,
) -> Result<usize> {
    if entries.is_empty() {
        return tokens::count(&render(entries, of, max, footer));
    }
    Ok(frame_tokens(entries.len(), of, max, footer)? + costs.sum::<usize>())
}

/// Tokens of the header for `items` of `of` entries and of the footer block: the rendered text
/// less its entries.
fn frame_tokens(items: usize, of: usize, max: usize, footer: &str) -> Result<usize> {
    Ok(tokens::count(&header(items, of, max))?
        + if footer.is_empty() {
            0
        } else {
            tokens::count(&format!("---\n{footer}"))?
        })
}

impl Engine {
    /// Recalls memories for `req` within its budget.
    pub fn recall(&self, caller: &Caller, keep: Keep<'_>, req: &RecallRequest) -> Result<Recall> {
        let started = Instant::now();
        if req.max_tokens < MIN_TOKENS {
            return Err(Error::invalid(format!(
                "max_tokens={} is too small; recall needs at least {MIN_TOKENS} tokens",
                req.max_tokens
            )));
        }
        if !(0.0..=1.0).contains(&req.min_relevance) {
            return Err(Error::invalid(format!(
                "min_relevance={} must be between 0 and 1",
                req.min_relevance
            )));
        }
        tokens::prewarm();
        let ranked = self.rank(
            &req.query,
            &req.scopes,
            caller,
            keep,
            req.strategy,
            req.min_relevance,
            CANDIDATES,
        )?;
        let of = ranked.len();
        let terms = summary::terms(&req.query);
        let max = req.max_tokens;
        let count_digits: usize = "9".repeat(of.to_string().len()).parse().unwrap_or(of);
        let footer = footer(req.paths, max);
        let about_time = crate::engine::about_time(&req.query);
        // The header (its counts at their widest) and the footer; entries get the rest.
        let reserved = frame_tokens(count_digits, count_digits, max, footer)?;
        let mut avail = max.saturating_sub(reserved);
        // (rank, entry, tokens, handle)
        let mut chosen: Vec<(usize, String, usize, String)> = Vec::new();
        let mut misses = 0;
        for (i, s) in ranked.iter().enumerate() {
            // No entry is shorter than its handle; stop when none can fit, or after many
            // misses in a row (the rest are less relevant and no shorter).
            if avail < 4 || misses > 40 {
                break;
            }
            let given = given_title(s);
            let sum = summary::summarize(s.node.text(), given, &terms, self.tuning.max_chars);
            let title = title_before(given, &sum);
            // A memory about another time shows its date when the question is about time
            // (elsewhere the date would cost every entry tokens that answer nothing).
            let h = match crate::engine::at(&s.node).filter(|_| about_time) {
                Some(t) => format!(
                    "{} ({})",
                    handle(s, req.paths),
                    avm_core::time::to_iso(t).get(..10).unwrap_or_default()
                ),
                None => handle(s, req.paths),
            };
            let mut line = entry(&h, title, &sum);
            // Every whitespace-separated word starts at least one token: a line with more
            // words than the room left cannot fit, and needs no exact count.
            if !chosen.is_empty() && line.split_whitespace().count() >= avail {
                misses += 1;
                continue;
            }
            let mut cost = chunk_tokens(&line)?;
            if cost > avail {
                if !chosen.is_empty() {
                    misses += 1;
                    continue;
                }
                // The best memory always gets in, its text cut to what is left.
                let head = entry(&h, title, "");
                let head_cost = tokens::count(&head)? + 3;
                if head_cost >= avail {
                    continue;
                }
                let cut = tokens::truncate(&sum, avail - head_cost)?;
                line = entry(&h, title, &format!("{}…", cut.trim_end()));
                cost = chunk_tokens(&line)?;
                if cost > avail {
                    continue;
                }
            }
            avail -= cost;
            misses = 0;
            chosen.push((i, line, cost, h));
        }
        // Render, then check the real count of the whole text; token boundaries between
        // pieces can differ from the sum of the pieces, so drop from the end until it fits.
        loop {
            let entries: Vec<String> = chosen.iter().map(|c| c.1.clone()).collect();
            let text = render(&entries, of, max, footer);
            let real = rendered_tokens(&entries, of, max, footer, chosen.iter().map(|c| c.2))?;
            debug_assert_eq!(real, tokens::count(&text)?, "{text}");
            if real <= max || chosen.is_empty() {
                if real > max {
                    return Err(Error::invalid(format!(
                        "max_tokens={max} cannot hold even the recall header; give a larger budget"
                    )));
                }
                let items: Vec<RecallItem> = chosen
                    .iter()
                    .map(|(i, line, cost, h)| {
                        let s = &ranked[*i];
                        RecallItem {
                            path: s.path.clone(),
                            shortcut: format!("@{}", avm_core::storage::shortcut(s.node.id)),
                            score: s.score,
                            relevance: s.relevance,
                            summary: line
                                .strip_prefix(h.as_str())
                                .unwrap_or("")
                                .trim_start()
                                .to_string(),
                            tokens: *cost,
                            sources: s.sources.clone(),
                        }
                    })
                    .collect();
                let available: usize = ranked
                    .iter()
                    .map(|s| s.node.text().chars().count() / 4)
                    .sum();
                self.store().record(Telemetry {
                    at: now_micros(),
                    op: "recall".into(),
                    agent: caller.agent().map(str::to_string),
                    query: Some(req.query.clone()),
                    tokens_returned: real as i64,
                    tokens_available: available as i64,
                    results: items.len() as i64,
                    latency_us: started.elapsed().as_micros() as i64,
                });
                return Ok(Recall {
                    text,
                    items,
                    tokens: real,
                    max_tokens: max,
                    candidates: ranked.len(),
                    tokens_available: available,
                    strategy: req.strategy,
                    query: req.query.clone(),
                });
            }
            chosen.pop();
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The sum of chunk counts equals the count of the whole rendered text, for entries ending
    /// in letters, digits, punctuation, spaces, ellipses, CJK and emoji.
    #[test]
    fn rendered_token_count_is_the_sum_of_its_chunks() {
        let pieces = crate::tokens::testgen::PIECES;
        let mut next = crate::tokens::testgen::rng(7);
        for case in 0..1500 {
            let n = 1 + next(5);
            let entries: Vec<String> = (0..n)
                .map(|_| {
                    let mut e = if next(2) == 0 {
                        format!("[/memory/private/a/{case}.md]")
                    } else {
                        format!("@{}", next(5000))
                    };
                    for _ in 0..next(12) {
                        e.push_str(pieces[next(pieces.len())]);
                    }
                    e
                })
                .collect();
            let costs: Vec<usize> = entries.iter().map(|e| chunk_tokens(e).unwrap()).collect();
            let max = [250, 500, 2000][next(3)];
            let footer = footer(next(2) == 0, max);
            let text = render(&entries, 17, max, footer);
            assert_eq!(
                rendered_tokens(&entries, 17, max, footer, costs.into_iter()).unwrap(),
                tokens::count(&text).unwrap(),
                "{text:?}"
            );
        }
    }
}
