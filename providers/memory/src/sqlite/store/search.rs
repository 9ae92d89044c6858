//! Full-text search over the store: FTS5 candidates, scope and visibility filters, the top-k
//! ranker and snippets.

use super::*;

/// `query` compiled for FTS5 ([`fts::compile_with`]), or why it cannot be searched.
fn compiled(query: &str, drop_function_words: bool) -> Result<fts::Compiled> {
    fts::compile_with(query, drop_function_words)
        .ok_or_else(|| Error::invalid(format!("search query {query:?} has no words to look for")))
}

/// Whether a path is below one of `scopes`, outside the trash unless a scope is in it, and
/// kept by `extra`.
fn in_scope<'a>(
    scopes: &'a [String],
    extra: avm_core::storage::Keep<'a>,
) -> impl Fn(&str) -> bool + 'a {
    let in_trash = scopes.iter().any(|s| is_within(s, "/trash"));
    move |path: &str| {
        scopes.iter().any(|s| is_within(path, s))
            && (in_trash || !is_within(path, "/trash"))
            && extra(path)
    }
}

/// The best `limit` of the rows [`crate::sqlite::topk`] scored, best first (ties in path order), with
/// a snippet for `terms` where their content was kept.
fn best_hits(
    mut found: Vec<crate::sqlite::topk::Seen>,
    limit: usize,
    terms: &[String],
) -> Vec<Hit> {
    found.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| a.path.cmp(&b.path))
    });
    found.truncate(limit);
    found
        .into_iter()
        .map(|s| Hit {
            snippet: s
                .content
                .map_or_else(String::new, |c| fts::snippet(&c, terms)),
            path: s.path,
            score: s.score,
        })
        .collect()
}

/// Most memories holding every word of a recall query that are scored without FTS5's ranking.
const ALL_WORDS_SCORED: usize = 2_000;

impl Store {
    /// Full-text search below `scope`, visible to `caller`, best first.
    ///
    /// FTS5 ranks its own top candidates (bm25, no join), then the candidates are checked
    /// against scope, visibility, trash and expiry. If filtering leaves fewer than `limit`
    /// and more candidates exist, the candidate window grows (×8) until it is exhausted, so
    /// results never come back short because of what the caller may not see.
    pub fn search(
        &self,
        scope: &str,
        caller: &Caller,
        query: &str,
        limit: usize,
    ) -> Result<Vec<Hit>> {
        self.search_within(&[scope.to_string()], caller, &|_| true, query, limit, true)
    }

    /// Like [`Store::search`] over several scopes, with an extra filter applied while the
    /// result fills (so it never comes back short), and snippets only when asked for.
    pub fn search_within(
        &self,
        scopes: &[String],
        caller: &Caller,
        extra: avm_core::storage::Keep<'_>,
        query: &str,
        limit: usize,
        snippets: bool,
    ) -> Result<Vec<Hit>> {
        let q = compiled(query, true)?;
        if let Some(words) = crate::sqlite::topk::words(&q) {
            return self.search_topk(scopes, caller, extra, &q, &words, limit, snippets);
        }
        self.search_compiled(scopes, caller, extra, &q, limit, snippets)
    }

    /// FTS5's own ranking of every row holding any word of `query`, function words included:
    /// how search ranked before [`crate::sqlite::topk`] (and what it costs), for benches to compare
    /// with. Not for serving: its cost grows with the store.
    pub fn search_reference(
        &self,
        scope: &str,
        caller: &Caller,
        query: &str,
        limit: usize,
    ) -> Result<Vec<Hit>> {
        let q = compiled(query, false)?;
        self.search_compiled(&[scope.to_string()], caller, &|_| true, &q, limit, false)
    }

    /// [`Store::search_within`] for queries of two or more plain words: the BM25 top `limit`,
    /// scoring only the rows that can reach it ([`crate::sqlite::topk`]), or FTS5's own ranking
    /// when the words are in few memories.
    #[allow(clippy::too_many_arguments)]
    fn search_topk(
        &self,
        scopes: &[String],
        caller: &Caller,
        extra: avm_core::storage::Keep<'_>,
        q: &fts::Compiled,
        words: &[String],
        limit: usize,
        snippets: bool,
    ) -> Result<Vec<Hit>> {
        let keep = in_scope(scopes, extra);
        let search = crate::sqlite::topk::TopK {
            keep: &keep,
            viewer: viewer(caller),
            now: now_micros(),
            snippets,
            df: &self.shared.df,
        };
        let limit = limit.min(100_000);
        let found = self.read_conn(|c| search.run(c, words, limit))?;
        self.save_counts();
        let Some(found) = found else {
            return self.search_compiled(scopes, caller, extra, q, limit, snippets);
        };
        Ok(best_hits(found, limit, &q.terms))
    }

    /// Queues the common words' document counts this process made since the last call, to be
    /// saved with the next group of writes (or at close) for the processes that come after.
    fn save_counts(&self) {
        let new = match self.shared.df.lock() {
            Ok(mut d) => d.take_new(),
            Err(_) => return,
        };
        if !new.is_empty() {
            self.apply_nowait(WriteOp::TermDf(new));
        }
    }

    /// Candidates for ranking elsewhere (recall): memories holding every query word first,
    /// then those holding the query's rarer words. bm25 over a word most memories contain is
    /// slow (it scores every one of them) and says little, so a word whose document count is
    /// more than 8 times the rarest word's (and over 500) only counts among memories that
    /// match the others. Plain search keeps exact bm25 top-k ([`Store::search`]).
    pub fn search_candidates(
        &self,
        scopes: &[String],
        caller: &Caller,
        extra: avm_core::storage::Keep<'_>,
        query: &str,
        limit: usize,
    ) -> Result<Vec<Hit>> {
        let q = compiled(query, true)?;
        if q.parts.len() < 2 || q.cjk.is_some() {
            return self.search_compiled(scopes, caller, extra, &q, limit, false);
        }
        // Document counts of the words (a quoted phrase counts as 0: always kept), common
        // words' counts remembered between searches ([`crate::sqlite::topk::DfCache`]).
        let dfs: Vec<i64> = self.read_conn(|c| {
            let Some((rows, tokens)) = crate::sqlite::topk::index_size(c)? else {
                return Ok(vec![0; q.parts.len()]);
            };
            let words: Vec<Option<String>> = q
                .parts
                .iter()
                .map(|p| {
                    p.strip_suffix('*')
                        .and_then(|w| w.strip_prefix('"'))
                        .and_then(|w| w.strip_suffix('"'))
                        .filter(|w| !w.contains(' '))
                        .map(str::to_lowercase)
                })
                .collect();
            let plain: Vec<String> = words.iter().flatten().cloned().collect();
            let mut counts =
                crate::sqlite::topk::doc_freqs(c, &plain, &self.shared.df, rows, tokens)?
                    .into_iter();
            Ok(words
                .iter()
                .map(|w| match w {
                    Some(_) => counts.next().map_or(0, |f| f.df as i64),
                    None => 0,
                })
                .collect())
        })?;
        let rarest = dfs.iter().copied().min().unwrap_or(0).max(1);
        let kept: Vec<String> = q
            .parts
            .iter()
            .zip(&dfs)
            .filter(|(_, df)| **df <= 500 || **df <= rarest * 8)
            .map(|(p, _)| p.clone())
            .collect();
        let all = fts::Compiled {
            main: Some(q.parts.join(" AND ")),
            ..q.clone()
        };
        // Memories holding every word: scored here when they are few (FTS5's bm25 would
        // first count every memory holding each common word), else ranked by FTS5.
        let scored = match crate::sqlite::topk::words(&q) {
            Some(words) => {
                let now = now_micros();
                let keep = in_scope(scopes, extra);
                let search = crate::sqlite::topk::TopK {
                    keep: &keep,
                    viewer: viewer(caller),
                    now,
                    snippets: false,
                    df: &self.shared.df,
                };
                self.read_conn(|c| search.all_words(c, &words, ALL_WORDS_SCORED))?
            }
            None => None,
        };
        self.save_counts();
        let mut hits = match scored {
            Some(found) => best_hits(found, limit, &q.terms),
            None => self.search_compiled(scopes, caller, extra, &all, limit, false)?,
        };
        if hits.len() < limit && kept.len() < q.parts.len() && !kept.is_empty() {
            let rare = fts::Compiled {
                main: Some(kept.join(" OR ")),
                ..q.clone()
            };
            let seen: std::collections::HashSet<String> =
                hits.iter().map(|h| h.path.clone()).collect();
            let more = self.search_compiled(scopes, caller, extra, &rare, limit, false)?;
            hits.extend(more.into_iter().filter(|h| !seen.contains(&h.path)));
        } else if hits.len() < limit {
            let seen: std::collections::HashSet<String> =
                hits.iter().map(|h| h.path.clone()).collect();
            let more = self.search_compiled(scopes, caller, extra, &q, limit, false)?;
            hits.extend(more.into_iter().filter(|h| !seen.contains(&h.path)));
        }
        hits.truncate(limit);
        Ok(hits)
    }

    fn search_compiled(
        &self,
        scopes: &[String],
        caller: &Caller,
        extra: avm_core::storage::Keep<'_>,
        q: &fts::Compiled,
        limit: usize,
        snippets: bool,
    ) -> Result<Vec<Hit>> {
        let now = now_micros();
        let keep = in_scope(scopes, extra);
        let vis = viewer(caller);
        let limit = limit.min(100_000);
        let mut window = (limit * 4).max(32);
        loop {
            // Candidates and their rows come from one snapshot.
            let (mut hits, exhausted) = self.read_conn(|c| {
                let mut scored: HashMap<i64, f64> = HashMap::new();
                let mut exhausted = true;
                for (table, m) in [("nodes_fts", &q.main), ("nodes_cjk", &q.cjk)] {
                    let Some(m) = m else { continue };
                    let rows: Vec<(i64, f64)> = c
                        .prepare_cached(&format!(
                            "SELECT rowid, -rank FROM {table} WHERE {table} MATCH ?1 ORDER BY rank LIMIT ?2"
                        ))?
                        .query_map(params![m, window as i64], |r| Ok((r.get(0)?, r.get(1)?)))?
                        .collect::<rusqlite::Result<_>>()?;
                    if rows.len() >= window {
                        exhausted = false;
                    }
                    for (id, score) in rows {
                        *scored.entry(id).or_insert(0.0) += score;
                    }
                }
                let mut ranked: Vec<(i64, f64)> = scored.into_iter().collect();
                ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
                let mut hits = Vec::new();
                let mut stmt = c.prepare_cached(&format!(
                    "SELECT path, {}, expires_at FROM nodes WHERE id = ?1 AND {}",
                    if snippets { "content" } else { "''" },
                    visible_sql("", 2)
                ))?;
                for (id, score) in &ranked {
                    if hits.len() >= limit {
                        break;
                    }
                    let row: Option<(String, String, Option<i64>)> = stmt
                        .query_row(params![id, vis], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                        .optional()?;
                    if let Some((path, content, expires)) = row
                        && expires.is_none_or(|t| t > now)
                        && keep(&path)
                    {
                        hits.push(Hit {
                            snippet: if snippets {
                                fts::snippet(&content, &q.terms)
                            } else {
                                String::new()
                            },
                            path,
                            score: *score,
                        });
                    }
                }
                Ok((hits, exhausted))
            })?;
            if hits.len() >= limit || exhausted {
                hits.sort_by(|a, b| {
                    b.score
                        .total_cmp(&a.score)
                        .then_with(|| a.path.cmp(&b.path))
                });
                return Ok(hits);
            }
            window = window.saturating_mul(8);
        }
    }
}
