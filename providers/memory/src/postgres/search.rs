//! Full-text search in PostgreSQL: `tsvector` matches ranked by `ts_rank`, filtered by scope,
//! trash, expiry and visibility inside the query, the caller's extra filter applied in Rust.
//!
//! The `tsquery` is avm's own ([`super::fts::query`]): words are prefixes joined by OR, quoted
//! text a phrase, CJK runs phrases of their bigrams. The GIN index `nodes_tsv` serves the
//! match; `ts_rank` counts every occurrence of the words, so a memory saying a word three
//! times outranks one saying it once. Scores are `ts_rank`'s, higher is better; ties come in
//! path order.
//!
//! `ts_rank` scores every memory that matches, so a question full of common words ranks most
//! of the store (about 0.1 s at 10,000 memories). Narrowing the match to the rarer words was
//! tried and measured no faster: counting how common each word is costs as much as ranking.

use std::collections::{HashMap, HashSet};

use avm_postgres::{IsolationLevel, Queries};

use avm_core::address::is_within;
use avm_core::storage::Keep;
use avm_core::time::now_micros;
use avm_core::{Caller, Error, Result};

use super::{PgStore, fts, subtree_bounds, viewer, visible_sql};
use crate::engine::Hit;
use crate::fts::{Clause, parse, snippet};

/// The most hits one search returns.
const MAX_LIMIT: usize = 100_000;

/// Document counts are first read up to this many memories (a word counts as common above
/// 500 memories, or above 8 times the rarest word's count).
const FIRST_DF_CAP: i64 = 4_001;

/// `query` as a `tsquery` literal and its terms (for snippets), or the error SQLite's engine
/// gives for a query without a searchable word.
pub(crate) fn compiled(query: &str, drop_function_words: bool) -> Result<(String, Vec<String>)> {
    fts::query(query, drop_function_words)
        .ok_or_else(|| Error::invalid(format!("search query {query:?} has no words to look for")))
}

/// Whether a path is below one of `scopes`, outside the trash unless a scope is in it, and
/// kept by `extra`.
fn in_scope<'a>(scopes: &'a [String], extra: Keep<'a>) -> impl Fn(&str) -> bool + 'a {
    let in_trash = scopes.iter().any(|s| is_within(s, "/trash"));
    move |path: &str| {
        scopes.iter().any(|s| is_within(path, s))
            && (in_trash || !is_within(path, "/trash"))
            && extra(path)
    }
}

/// The scopes as SQL parameters: each scope's own path, and its subtree's `[lo, hi)` bounds.
pub(crate) struct ScopeParams {
    /// The scope paths (a node may sit at a scope).
    pub(crate) at: Vec<String>,
    /// Lower bounds of the subtrees.
    pub(crate) lo: Vec<String>,
    /// Upper bounds of the subtrees.
    pub(crate) hi: Vec<String>,
    /// A scope is inside the trash (so trashed nodes are searched).
    pub(crate) trash: bool,
}

impl ScopeParams {
    /// The parameters for `scopes`.
    pub(crate) fn new(scopes: &[String]) -> ScopeParams {
        let (lo, hi) = scopes.iter().map(|s| subtree_bounds(s)).unzip();
        ScopeParams {
            at: scopes.to_vec(),
            lo,
            hi,
            trash: scopes.iter().any(|s| is_within(s, "/trash")),
        }
    }

    /// The SQL condition (columns prefixed with `t`, such as `n.`) that keeps paths within a
    /// scope, and outside the trash unless a scope is in it, with the scope paths, lower and
    /// upper bounds at parameters `$n`, `$n+1`, `$n+2`.
    pub(crate) fn sql(&self, t: &str, n: usize) -> String {
        let within = format!(
            "({t}path = ANY(${n}::text[]) OR EXISTS (SELECT 1 FROM unnest(${}::text[], ${}::text[]) AS s(lo, hi) \
             WHERE {t}path >= s.lo AND {t}path < s.hi))",
            n + 1,
            n + 2
        );
        if self.trash {
            within
        } else {
            format!(
                "{within} AND {t}path <> '/trash' AND NOT ({t}path >= '/trash/' AND {t}path < '/trash0')"
            )
        }
    }
}

/// One candidate of a search window.
struct Candidate {
    id: i64,
    path: String,
    score: f64,
}

/// A search to run: what to match, where, for whom.
struct Search<'a> {
    /// `tsquery` literal.
    tsquery: &'a str,
    /// Terms for snippets.
    terms: &'a [String],
    scopes: &'a [String],
    viewer: Option<String>,
    extra: Keep<'a>,
    limit: usize,
    snippets: bool,
}

impl Search<'_> {
    /// The best `limit` matches, best first (ties in path order), read in one snapshot:
    /// candidates ranked in SQL (scope, trash, expiry and visibility applied there), `extra`
    /// applied here, the candidate window growing (×8) until the result is full or the
    /// matches run out, so filtering never leaves it short.
    fn run(&self, c: &mut avm_postgres::Client) -> std::result::Result<Vec<Hit>, postgres::Error> {
        let limit = self.limit.min(MAX_LIMIT);
        if limit == 0 {
            return Ok(Vec::new());
        }
        let keep = in_scope(self.scopes, self.extra);
        let sp = ScopeParams::new(self.scopes);
        let sql = format!(
            "SELECT n.id, n.path, ts_rank(n.tsv, $1::text::tsquery)::float8 AS score FROM nodes n \
             WHERE n.tsv @@ $1::text::tsquery AND (n.expires_at IS NULL OR n.expires_at > $2) \
               AND {} AND {} \
             ORDER BY score DESC, n.path LIMIT $7",
            visible_sql("n.", 3),
            sp.sql("n.", 4)
        );
        let now = now_micros();
        let mut tx = c.transaction_with(IsolationLevel::RepeatableRead, true)?;
        let stmt = tx.prepare(&sql)?;
        let mut window = (limit * 4).max(32);
        let found = loop {
            let rows = tx.query(
                &stmt,
                &[
                    &self.tsquery,
                    &now,
                    &self.viewer,
                    &sp.at,
                    &sp.lo,
                    &sp.hi,
                    &(window as i64),
                ],
            )?;
            let exhausted = rows.len() < window;
            let mut found = Vec::new();
            for r in &rows {
                let path: String = r.try_get(1)?;
                if keep(&path) {
                    found.push(Candidate {
                        id: r.try_get(0)?,
                        path,
                        score: r.try_get(2)?,
                    });
                    if found.len() >= limit {
                        break;
                    }
                }
            }
            if found.len() >= limit || exhausted {
                break found;
            }
            window = window.saturating_mul(8);
        };
        let contents = if self.snippets && !found.is_empty() {
            contents_of(&mut tx, &found)?
        } else {
            HashMap::new()
        };
        tx.commit()?;
        let mut hits: Vec<Hit> = found
            .into_iter()
            .map(|f| Hit {
                snippet: contents
                    .get(&f.id)
                    .map_or_else(String::new, |t| snippet(t, self.terms)),
                path: f.path,
                score: f.score,
            })
            .collect();
        hits.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then_with(|| a.path.cmp(&b.path))
        });
        Ok(hits)
    }
}

/// The text content of the candidates, by id.
fn contents_of(
    c: &mut impl Queries,
    found: &[Candidate],
) -> std::result::Result<HashMap<i64, String>, postgres::Error> {
    let ids: Vec<i64> = found.iter().map(|f| f.id).collect();
    c.query(
        "SELECT id, content FROM nodes WHERE id = ANY($1::bigint[]) AND content IS NOT NULL",
        &[&ids],
    )?
    .iter()
    .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
    .collect()
}

/// How many memories match `tsquery`, counting no further than `cap`.
fn doc_count(
    c: &mut avm_postgres::Client,
    tsquery: &str,
    cap: i64,
) -> std::result::Result<i64, postgres::Error> {
    c.query_one(
        "SELECT count(*) FROM (SELECT 1 FROM nodes WHERE tsv @@ $1::text::tsquery LIMIT $2) AS m",
        &[&tsquery, &cap],
    )?
    .try_get(0)
}

/// Whether each word (`None`: a phrase, always kept) is rare enough to look for alone: in at
/// most 500 memories, or at most 8 times as many as the rarest word. Counts stop early (a
/// common word is never counted whole) yet the answer is exact.
fn rare_words(
    c: &mut avm_postgres::Client,
    words: &[Option<String>],
) -> std::result::Result<Vec<bool>, postgres::Error> {
    // (count, the cap it was counted to): `count == cap` means at least `cap`.
    let count = |c: &mut avm_postgres::Client, w: &Option<String>, cap: i64| match w {
        Some(q) => doc_count(c, q, cap).map(|n| (n, cap)),
        None => Ok((0, cap)),
    };
    let mut cap = FIRST_DF_CAP;
    let mut dfs: Vec<(i64, i64)> = words
        .iter()
        .map(|w| count(c, w, cap))
        .collect::<std::result::Result<_, _>>()?;
    // The rarest word's exact count: while every word reached the cap, count further.
    let rarest = loop {
        let min = dfs.iter().map(|d| d.0).min().unwrap_or(0);
        if min < cap || words.is_empty() {
            break min;
        }
        cap = cap.saturating_mul(8);
        dfs = words
            .iter()
            .map(|w| count(c, w, cap))
            .collect::<std::result::Result<_, _>>()?;
    };
    let bound = rarest.max(1).saturating_mul(8).max(500);
    for (w, d) in words.iter().zip(dfs.iter_mut()) {
        // A count that stopped at or under the bound may be above it: count to just past it.
        if d.0 == d.1 && d.1 <= bound {
            *d = count(c, w, bound.saturating_add(1))?;
        }
    }
    Ok(dfs.iter().map(|d| d.0 <= bound).collect())
}

/// The `tsquery` literal of one clause.
fn clause_query(c: &Clause) -> Option<String> {
    let text = match c {
        Clause::Prefix(w) => w.clone(),
        Clause::Phrase(ws) => format!("\"{}\"", ws.join(" ")),
        Clause::Cjk(run) => run.clone(),
    };
    fts::query(&text, false).map(|(q, _)| q)
}

impl PgStore {
    /// Full-text search below `scope`, visible to `caller`, best first, with snippets.
    pub fn search(
        &self,
        scope: &str,
        caller: &Caller,
        query: &str,
        limit: usize,
    ) -> Result<Vec<Hit>> {
        self.search_within(&[scope.to_string()], caller, &|_| true, query, limit, true)
    }

    /// Like [`PgStore::search`] over several scopes, with an extra filter applied while the
    /// result fills (so it never comes back short), and snippets only when asked for.
    pub fn search_within(
        &self,
        scopes: &[String],
        caller: &Caller,
        extra: Keep<'_>,
        query: &str,
        limit: usize,
        snippets: bool,
    ) -> Result<Vec<Hit>> {
        let (tsquery, terms) = compiled(query, true)?;
        self.search_tsquery(scopes, caller, extra, &tsquery, &terms, limit, snippets)
    }

    /// The query's clauses as `tsquery` literals, each with whether it is rare enough to look
    /// for alone (phrases always are), when it has two clauses or more and no CJK.
    #[allow(clippy::type_complexity)]
    fn word_parts(&self, query: &str) -> Result<Option<(Vec<String>, Vec<bool>)>> {
        let (clauses, _) = parse(query, true).unwrap_or_default();
        let mut parts: Vec<(String, bool)> = Vec::new();
        for c in &clauses {
            if matches!(c, Clause::Cjk(_)) {
                return Ok(None);
            }
            if let Some(q) = clause_query(c)
                && !parts.iter().any(|(p, _)| *p == q)
            {
                parts.push((q, matches!(c, Clause::Prefix(_))));
            }
        }
        if parts.len() < 2 {
            return Ok(None);
        }
        let words: Vec<Option<String>> = parts
            .iter()
            .map(|(q, word)| word.then(|| q.clone()))
            .collect();
        let rare = self.read(|c| rare_words(c, &words))?;
        Ok(Some((parts.into_iter().map(|(q, _)| q).collect(), rare)))
    }

    /// [`PgStore::search_within`] for a compiled `tsquery` literal.
    #[allow(clippy::too_many_arguments)]
    fn search_tsquery(
        &self,
        scopes: &[String],
        caller: &Caller,
        extra: Keep<'_>,
        tsquery: &str,
        terms: &[String],
        limit: usize,
        snippets: bool,
    ) -> Result<Vec<Hit>> {
        let search = Search {
            tsquery,
            terms,
            scopes,
            viewer: viewer(caller),
            extra,
            limit,
            snippets,
        };
        self.read(|c| search.run(c))
    }

    /// Candidates for ranking elsewhere (recall): memories holding every query word first,
    /// then those holding the query's rarer words. A word in more than 500 memories and more
    /// than 8 times as many as the rarest word only counts among memories that match the
    /// others. Queries of one clause, or with CJK, are plain searches.
    pub(crate) fn search_candidates(
        &self,
        scopes: &[String],
        caller: &Caller,
        extra: Keep<'_>,
        query: &str,
        limit: usize,
    ) -> Result<Vec<Hit>> {
        let (any, terms) = compiled(query, true)?;
        let Some((parts, rare)) = self.word_parts(query)? else {
            return self.search_tsquery(scopes, caller, extra, &any, &terms, limit, false);
        };
        let kept: Vec<&str> = parts
            .iter()
            .zip(&rare)
            .filter(|(_, r)| **r)
            .map(|(q, _)| q.as_str())
            .collect();
        let all: Vec<&str> = parts.iter().map(String::as_str).collect();
        let mut hits = self.search_tsquery(
            scopes,
            caller,
            extra,
            &all.join(" & "),
            &terms,
            limit,
            false,
        )?;
        if hits.len() < limit {
            let more_query = if kept.len() < parts.len() && !kept.is_empty() {
                kept.join(" | ")
            } else {
                any
            };
            let seen: HashSet<String> = hits.iter().map(|h| h.path.clone()).collect();
            let more =
                self.search_tsquery(scopes, caller, extra, &more_query, &terms, limit, false)?;
            hits.extend(more.into_iter().filter(|h| !seen.contains(&h.path)));
        }
        hits.truncate(limit);
        Ok(hits)
    }
}
