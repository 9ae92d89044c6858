//! Top-k full-text search whose cost follows the query's rarest words, not the store's size.
//!
//! FTS5 ranks `a OR b OR c` by scoring every row that holds any of the words: a question with
//! a word that one memory in ten contains scores a tenth of the store. Here the score is the
//! same BM25 (FTS5's formula and constants, its document lengths and average), computed by
//! avm for the few rows that can reach the top k (MaxScore):
//!
//! 1. Words are ordered rarest first; the rarest are *essential*. FTS5 ranks only the rows
//!    holding an essential word, and they are scored in that order. A row further down scores
//!    at most its essential share plus every other word's upper bound (`idf × (k1 + 1)`), so
//!    the walk stops once the k-th best score found beats that.
//! 2. A row holding no essential word scores at most the sum of the upper bounds of the words
//!    it holds. For every smallest set of the other words whose bounds reach the k-th best
//!    score, FTS5 ranks the rows holding all of them (`a AND b`) and they are walked the same
//!    way; when one word alone could reach it, that word becomes essential and the search
//!    starts again.
//!
//! The result is the exact top k under this score. A word's document frequency comes from the
//! FTS5 vocabulary (summed over the words a prefix matches, so for a prefix that matches
//! several words in one memory it counts that memory more than once, where FTS5's own rank
//! counts it once: idf is then slightly lower than FTS5's).

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension, params};

use crate::fts;

/// BM25's term-frequency saturation (FTS5's value).
const K1: f64 = 1.2;
/// BM25's length normalisation (FTS5's value).
const B: f64 = 0.75;
/// Memories holding the words (summed over the words) up to which FTS5 ranks all of them
/// (about a microsecond each) rather than this search, when no word is much rarer than the
/// others (then few rows could be skipped). Unit tests use this search always.
const DIRECT_ROWS: f64 = if cfg!(test) { 0.0 } else { 4_000.0 };
/// Most rows of an expression looked at all, unranked.
const LOOK_ALL: usize = 600;
/// Rows FTS5 ranks at first for the essential words (more only when the walk needs them).
const WINDOW: usize = 256;
/// Most memories a combination of non-essential words may be looked for in (FTS5 ranks every
/// memory holding all of them, some microseconds each).
const SET_ROWS: f64 = 1_000.0;
/// Most non-essential words whose combinations are enumerated.
const MAX_OTHER: usize = 12;

/// The words of a compiled query this search handles: two or more bare ASCII words (prefix
/// terms); `None` for anything else (phrases, CJK, a single word), which FTS5 ranks itself.
pub(crate) fn words(q: &fts::Compiled) -> Option<Vec<String>> {
    if q.cjk.is_some() || q.parts.len() < 2 {
        return None;
    }
    q.parts
        .iter()
        .map(|p| {
            let w = p.strip_prefix('"')?.strip_suffix("\"*")?;
            (!w.is_empty() && w.bytes().all(|b| b.is_ascii_alphanumeric()))
                .then(|| w.to_ascii_lowercase())
        })
        .collect()
}

/// A SQLite varint (FTS5's record format): the value and the bytes it took.
fn varint(b: &[u8]) -> Option<(u64, usize)> {
    let mut v: u64 = 0;
    for i in 0..9 {
        let byte = *b.get(i)?;
        if i == 8 {
            return Some(((v << 8) | u64::from(byte), 9));
        }
        v = (v << 7) | u64::from(byte & 0x7f);
        if byte & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

/// Rows in the index and tokens in all of them (FTS5's averages record).
pub(crate) fn index_size(c: &Connection) -> rusqlite::Result<Option<(f64, f64)>> {
    let block: Option<Vec<u8>> = c
        .prepare_cached("SELECT block FROM nodes_fts_data WHERE id = 1")?
        .query_row([], |r| r.get(0))
        .optional()?;
    let Some(block) = block else { return Ok(None) };
    let Some((rows, n)) = varint(&block) else {
        return Ok(None);
    };
    let Some((tokens, _)) = varint(&block[n..]) else {
        return Ok(None);
    };
    if rows == 0 {
        return Ok(None);
    }
    Ok(Some((rows as f64, tokens as f64)))
}

/// Document frequencies of common words, remembered between searches: the vocabulary counts
/// a word's documents by reading all of them (milliseconds for a word in most memories).
/// Counts made here are also saved in the database (`term_df`) for the next process.
#[derive(Debug, Default)]
pub(crate) struct DfCache {
    /// word -> (what the vocabulary said, rows and tokens of the index when it was counted).
    words: HashMap<String, (Freq, f64, f64)>,
    /// Counts made since the last [`DfCache::take_new`], to save.
    new: Vec<Counted>,
    /// word -> (its count, as used, and the index version it was made or checked at): while
    /// the index is that version the count is still right (and a whole word still whole), so
    /// neither the vocabulary nor `term_df` is asked again. Rare words too.
    exact: HashMap<String, (Freq, u64)>,
}

/// The index's version: a hash of FTS5's structure record, which every change to the index
/// rewrites (a new segment, a merge). `None` when there is none (an empty index).
pub(crate) fn index_version(c: &Connection) -> rusqlite::Result<Option<u64>> {
    use std::hash::{Hash, Hasher};
    let block: Option<Vec<u8>> = c
        .prepare_cached("SELECT block FROM nodes_fts_data WHERE id = 10")?
        .query_row([], |r| r.get(0))
        .optional()?;
    Ok(block.map(|b| {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        b.hash(&mut h);
        h.finish()
    }))
}

/// A word's count as the vocabulary gave it, with the index's size at the time.
#[derive(Debug, Clone, PartialEq)]
pub struct Counted {
    word: String,
    freq: Freq,
    rows: f64,
    tokens: f64,
}

/// Words in fewer documents than this are counted at every search (it costs little).
const CACHE_FROM: f64 = 1_000.0;
/// Most words remembered.
const CACHE_WORDS: usize = 4_096;
/// Most new counts held for saving.
const NEW_WORDS: usize = 256;

/// Whether a count of `df` documents made when the index had `then_rows` rows and
/// `then_tokens` tokens is still within 2% of the true one: the index changed by fewer
/// memories (added, removed, or rewritten, counted in average lengths) than 2% of it.
fn still_fresh(df: f64, then_rows: f64, then_tokens: f64, rows: f64, tokens: f64) -> bool {
    let avg = (tokens / rows).max(1.0);
    let changed = (rows - then_rows).abs() + (tokens - then_tokens).abs() / avg;
    changed <= df / 50.0
}

impl DfCache {
    /// A remembered count that is still fresh ([`still_fresh`]).
    fn get(&self, word: &str, rows: f64, tokens: f64) -> Option<Freq> {
        let (f, r, t) = self.words.get(word)?;
        still_fresh(f.df, *r, *t, rows, tokens).then_some(*f)
    }

    /// Remembers a count; `made` when the vocabulary was read for it (so it is saved too).
    fn put(&mut self, word: &str, f: Freq, rows: f64, tokens: f64, made: bool) {
        if f.df < CACHE_FROM {
            return;
        }
        if self.words.len() >= CACHE_WORDS {
            self.words.clear();
        }
        self.words.insert(word.to_string(), (f, rows, tokens));
        if made && self.new.len() < NEW_WORDS {
            self.new.push(Counted {
                word: word.to_string(),
                freq: f,
                rows,
                tokens,
            });
        }
    }

    /// A count made or checked at index version `version`, if it is still that version.
    fn exact(&self, word: &str, version: u64) -> Option<Freq> {
        self.exact
            .get(word)
            .and_then(|(f, v)| (*v == version).then_some(*f))
    }

    /// Remembers a count as right at index version `version`.
    fn put_exact(&mut self, word: &str, f: Freq, version: u64) {
        if self.exact.len() >= CACHE_WORDS {
            self.exact.clear();
        }
        self.exact.insert(word.to_string(), (f, version));
    }

    /// The counts made since the last call, to save ([`save_counts`]).
    pub(crate) fn take_new(&mut self) -> Vec<Counted> {
        std::mem::take(&mut self.new)
    }
}

/// Saves counts in `term_df` (inside the writer's transaction); the number saved.
pub(crate) fn save_counts(c: &Connection, counted: &[Counted]) -> rusqlite::Result<usize> {
    let mut st = c.prepare_cached(
        "INSERT OR REPLACE INTO term_df(term, doc, whole, rows, tokens) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    for k in counted {
        st.execute(params![
            k.word,
            k.freq.df as i64,
            k.freq.whole,
            k.rows as i64,
            k.tokens as i64
        ])?;
    }
    Ok(counted.len())
}

/// FTS5's idf: `ln((N - n + 0.5) / (n + 0.5))`, at least 1e-6.
fn idf(rows: f64, df: f64) -> f64 {
    let v = ((rows - df + 0.5) / (df + 0.5)).ln();
    if v <= 0.0 { 1e-6 } else { v }
}

/// Calls `f` with each token of `text` as FTS5's `unicode61 remove_diacritics 2` makes it:
/// runs of letters and digits, lower-cased, combining marks dropped.
fn tokens(text: &str, mut f: impl FnMut(&str)) {
    use unicode_normalization::UnicodeNormalization;
    use unicode_normalization::char::is_combining_mark;
    let mut buf = String::new();
    let mut plain = true;
    let mut emit = |buf: &mut String, plain: &mut bool| {
        if buf.is_empty() {
            return;
        }
        if *plain {
            f(buf);
        } else {
            let folded: String = buf.nfd().filter(|c| !is_combining_mark(*c)).collect();
            f(&folded);
        }
        buf.clear();
        *plain = true;
    };
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            buf.push(c.to_ascii_lowercase());
        } else if c.is_ascii() {
            emit(&mut buf, &mut plain);
        } else if c.is_alphanumeric() {
            buf.extend(c.to_lowercase());
            plain = false;
        } else if is_combining_mark(c) && !buf.is_empty() {
            plain = false;
            buf.push(c);
        } else {
            emit(&mut buf, &mut plain);
        }
    }
    emit(&mut buf, &mut plain);
}

/// Whether an ASCII byte is a letter or digit (written so that loops over bytes vectorise).
#[inline]
fn alnum(c: u8) -> bool {
    ((c | 0x20).wrapping_sub(b'a') < 26) | (c.wrapping_sub(b'0') < 10)
}

/// Tokens in an ASCII text: runs of letters and digits, counted where one starts. Counted
/// in 8-bit sums over blocks of 255 bytes, which the compiler turns into 16 bytes a step.
fn ascii_tokens(b: &[u8]) -> u32 {
    let Some(&first) = b.first() else { return 0 };
    let mut n = u32::from(alnum(first));
    for (cur, prev) in b[1..].chunks(255).zip(b.chunks(255)) {
        let s = cur.iter().zip(prev).fold(0u8, |a, (&c, &p)| {
            a.wrapping_add(u8::from(alnum(c) & !alnum(p)))
        });
        n += u32::from(s);
    }
    n
}

/// One memory's text made ready for counting the query's words in it.
enum Prepared<'b> {
    /// ASCII text (most memories), lower-cased: a word's matches are found by substring
    /// search, kept where a token starts.
    Ascii(&'b [u8]),
    /// Other text, as FTS5's tokens.
    Tokens(Vec<String>),
}

impl<'b> Prepared<'b> {
    /// The text ready for counting, and how many tokens it has (`buf` is scratch).
    fn new(text: &str, buf: &'b mut Vec<u8>) -> (Prepared<'b>, u32) {
        if text.is_ascii() {
            let b = text.as_bytes();
            buf.clear();
            buf.extend(b.iter().map(u8::to_ascii_lowercase));
            return (Prepared::Ascii(buf), ascii_tokens(b));
        }
        let mut all = Vec::new();
        tokens(text, |t| all.push(t.to_string()));
        let len = all.len() as u32;
        (Prepared::Tokens(all), len)
    }

    /// How many tokens the (lower-case ASCII) `word` is a prefix of; `finder` searches for it.
    fn count(&self, word: &str, finder: &memchr::memmem::Finder<'_>) -> u32 {
        match self {
            Prepared::Ascii(b) => finder
                .find_iter(b)
                .filter(|&at| at == 0 || !alnum(b[at - 1]))
                .count() as u32,
            Prepared::Tokens(all) => all
                .iter()
                .filter(|t| {
                    t.len() >= word.len()
                        && t.as_bytes()[..word.len()].eq_ignore_ascii_case(word.as_bytes())
                })
                .count() as u32,
        }
    }
}

/// What the vocabulary says of a word as a prefix.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Freq {
    /// Documents holding a word it is a prefix of (summed over those words, at most the
    /// index's rows).
    pub(crate) df: f64,
    /// The only such word is the word itself, so FTS5 can look it up as a term: a prefix
    /// query first merges the lists of every word it matches, reading all of them.
    pub(crate) whole: bool,
}

/// [`Freq`] of each lower-case word, remembered in `cache` for common words (a remembered
/// whole word is checked to be one still).
pub(crate) fn doc_freqs(
    c: &Connection,
    words: &[String],
    cache: &std::sync::Mutex<DfCache>,
    rows: f64,
    tokens: f64,
) -> rusqlite::Result<Vec<Freq>> {
    // Each statement is prepared only when it is needed: while the index does not change,
    // every word's count is remembered ([`DfCache::exact`]) and none is.
    const COUNT: &str = "SELECT coalesce(sum(doc), 0), count(*), min(term) FROM nodes_fts_vocab WHERE term >= ?1 AND term < ?2";
    // Whether a longer word starting with this one is in the vocabulary now (the scan stops
    // at the first, a rare word as a rule).
    // (`term > w` would be read as `term >= w`, counting the word itself first.)
    const LONGER: &str = "SELECT 1 FROM nodes_fts_vocab WHERE term >= ?1 AND term < ?2 LIMIT 1";
    // A count an earlier process saved.
    const SAVED: &str = "SELECT doc, whole, rows, tokens FROM term_df WHERE term = ?1";
    let version = index_version(c)?;
    let mut out = Vec::with_capacity(words.len());
    for w in words {
        if let Some(v) = version
            && let Some(f) = cache.lock().ok().and_then(|d| d.exact(w, v))
        {
            out.push(f);
            continue;
        }
        let mut known = cache.lock().ok().and_then(|d| d.get(w, rows, tokens));
        if known.is_none() {
            let row: Option<(i64, bool, i64, i64)> = c
                .prepare_cached(SAVED)?
                .query_row([w], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                .optional()?;
            if let Some((df, whole, r, t)) = row {
                let (df, r, t) = (df as f64, r as f64, t as f64);
                if still_fresh(df, r, t, rows, tokens) {
                    let f = Freq { df, whole };
                    if let Ok(mut d) = cache.lock() {
                        d.put(w, f, r, t, false);
                    }
                    known = Some(f);
                }
            }
        }
        if known.is_some_and(|f| f.whole) {
            let (lo, hi) = (format!("{w}\u{1}"), format!("{w}\u{10FFFF}"));
            if c.prepare_cached(LONGER)?.exists(params![lo, hi])? {
                known = None;
            }
        }
        let f = match known {
            Some(f) => f,
            None => {
                let hi = format!("{w}\u{10FFFF}");
                let (n, terms, first): (i64, i64, Option<String>) = c
                    .prepare_cached(COUNT)?
                    .query_row(params![w, hi], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
                let f = Freq {
                    df: (n as f64).min(rows),
                    whole: terms == 1 && first.as_deref() == Some(w.as_str()),
                };
                if let Ok(mut d) = cache.lock() {
                    d.put(w, f, rows, tokens, true);
                }
                f
            }
        };
        if let (Some(v), Ok(mut d)) = (version, cache.lock()) {
            d.put_exact(w, f, v);
        }
        out.push(f);
    }
    Ok(out)
}

/// What the search needs to know of the query's words.
struct Terms {
    /// The words, rarest first.
    words: Vec<String>,
    /// Their FTS5 terms, in the same order: `"word"*`, or `"word"` for a word that is the
    /// only vocabulary word it is a prefix of ([`Freq::whole`]).
    parts: Vec<String>,
    /// The most words `i..` add to any row's score, for each `i` (the sum of their bounds).
    rest: Vec<f64>,
    /// Substring searchers for the words, in the same order.
    finders: Vec<memchr::memmem::Finder<'static>>,
    /// Their idf.
    idf: Vec<f64>,
    /// Their document frequencies.
    df: Vec<f64>,
    avgdl: f64,
}

impl Terms {
    /// Upper bound of word `i`'s share of any row's score.
    fn bound(&self, i: usize) -> f64 {
        self.idf[i] * (K1 + 1.0)
    }

    /// BM25's length normalisation of a row `dl` tokens long.
    fn norm(&self, dl: f64) -> f64 {
        K1 * (1.0 - B + B * dl / self.avgdl)
    }

    /// Word `i`'s share of the score of a row where it matches `tf` tokens.
    fn share(&self, i: usize, tf: u32, norm: f64) -> f64 {
        if tf == 0 {
            return 0.0;
        }
        let t = f64::from(tf);
        self.idf[i] * t * (K1 + 1.0) / (t + norm)
    }
}

/// A row the caller may see, scored.
pub(crate) struct Seen {
    /// Its path.
    pub(crate) path: String,
    /// Its BM25 score.
    pub(crate) score: f64,
    /// Its content, when snippets are wanted.
    pub(crate) content: Option<String>,
}

/// The search over one read snapshot.
pub(crate) struct TopK<'a> {
    /// Whether a visible, in-scope, unexpired row may be returned (its path).
    pub keep: &'a dyn Fn(&str) -> bool,
    /// `avm_visible`'s viewer argument.
    pub viewer: Option<String>,
    /// Now, for expiry.
    pub now: i64,
    /// Keep content for snippets.
    pub snippets: bool,
    /// Remembered document frequencies.
    pub df: &'a std::sync::Mutex<DfCache>,
}

impl TopK<'_> {
    /// The rows scored for `words`, among them the best `limit` (any order; the caller sorts
    /// and cuts), or `None` when FTS5 should rank them itself: the index is empty, or the
    /// words are in so few memories ([`DIRECT_ROWS`]), none much rarer than the others, that
    /// ranking all of them costs less.
    pub(crate) fn run(
        &self,
        c: &Connection,
        words: &[String],
        limit: usize,
    ) -> rusqlite::Result<Option<Vec<Seen>>> {
        let Some(terms) = self.terms(c, words)? else {
            return Ok(None);
        };
        let total: f64 = terms.df.iter().sum();
        if total <= DIRECT_ROWS && terms.df[0] * 8.0 >= total {
            return Ok(None);
        }
        if limit == 0 {
            return Ok(Some(Vec::new()));
        }
        let mut found = Found::new(limit);
        let mut essential = 1;
        'again: loop {
            let others: f64 = (essential..terms.words.len()).map(|i| terms.bound(i)).sum();
            // 1. Rows holding an essential word, best essential share first.
            let ranked = terms.parts[..essential].join(" OR ");
            self.walk(c, &terms, &ranked, others, &mut found)?;
            if essential == terms.words.len() {
                break;
            }
            // 2. Rows holding no essential word: each smallest set of the other words whose
            // bounds reach the k-th best score.
            let th = found.theta();
            let rest: Vec<usize> = (essential..terms.words.len()).collect();
            if th == f64::NEG_INFINITY || rest.len() > MAX_OTHER {
                // Fewer than k rows found (any row holding any word is in the result), or
                // too many words to combine.
                essential += 1;
                continue 'again;
            }
            let mut sets: Vec<Vec<usize>> = Vec::new();
            for mask in 1u32..(1 << rest.len()) {
                let set: Vec<usize> = (0..rest.len())
                    .filter(|b| mask & (1 << b) != 0)
                    .map(|b| rest[b])
                    .collect();
                let sum: f64 = set.iter().map(|&i| terms.bound(i)).sum();
                let smallest = set.iter().all(|&i| sum - terms.bound(i) < th);
                if sum >= th && smallest {
                    if set.len() == 1 {
                        // One word alone could reach the top k: rank its rows instead.
                        essential = set[0] + 1;
                        continue 'again;
                    }
                    sets.push(set);
                }
            }
            // Rows holding every word of a set, best share of the set first; a row also
            // holds at most the words outside it.
            for set in sets {
                let fewest = set
                    .iter()
                    .map(|&i| terms.df[i])
                    .fold(f64::INFINITY, f64::min);
                if fewest > SET_ROWS {
                    // Ranking every memory holding all of these common words would cost more
                    // than the search may: memories holding a rarer word keep their place.
                    continue;
                }
                let all = set
                    .iter()
                    .map(|&i| terms.parts[i].as_str())
                    .collect::<Vec<_>>()
                    .join(" AND ");
                let outside: f64 = rest
                    .iter()
                    .filter(|i| !set.contains(i))
                    .map(|&i| terms.bound(i))
                    .sum();
                self.walk(c, &terms, &all, outside, &mut found)?;
            }
            break;
        }
        Ok(Some(found.seen.into_values().flatten().collect()))
    }

    /// Scores the rows matching `expr`: all of them when they are few, else in FTS5's order
    /// of their share of the score (the words in `expr`), until a row's share plus `others`
    /// (the most the words outside `expr` add to any row) cannot reach the k-th best score
    /// found. FTS5's idf of a
    /// word is at least the one used here (its document count at most the vocabulary's), so
    /// its share is an upper bound of the same words' share in [`Terms::score`].
    fn walk(
        &self,
        c: &Connection,
        terms: &Terms,
        expr: &str,
        others: f64,
        found: &mut Found,
    ) -> rusqlite::Result<()> {
        // A few rows are looked at without FTS5's ranking: ranking a row (its length read for
        // bm25) costs about what scoring it here does.
        let ids: Vec<i64> = c
            .prepare_cached("SELECT rowid FROM nodes_fts WHERE nodes_fts MATCH ?1 LIMIT ?2")?
            .query_map(params![expr, (LOOK_ALL + 1) as i64], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        if ids.len() <= LOOK_ALL {
            return self.look_many(c, terms, &ids, found);
        }
        let mut window = WINDOW;
        let mut walked = 0;
        loop {
            let list: Vec<(i64, f64)> = c
                .prepare_cached(
                    "SELECT rowid, -rank FROM nodes_fts WHERE nodes_fts MATCH ?1 ORDER BY rank LIMIT ?2",
                )?
                .query_map(params![expr, window as i64], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?;
            for (id, share) in list.iter().skip(walked) {
                if found.theta() > share + others {
                    return Ok(());
                }
                self.look_many(c, terms, &[*id], found)?;
                walked += 1;
            }
            if list.len() < window {
                return Ok(());
            }
            window = window.saturating_mul(8);
        }
    }

    /// The query's words with their statistics, rarest first; `None` when the index is empty.
    fn terms(&self, c: &Connection, words: &[String]) -> rusqlite::Result<Option<Terms>> {
        let Some((rows, tokens)) = index_size(c)? else {
            return Ok(None);
        };
        let mut df: Vec<(Freq, String)> = doc_freqs(c, words, self.df, rows, tokens)?
            .into_iter()
            .zip(words.iter().cloned())
            .collect();
        df.sort_by(|a, b| a.0.df.total_cmp(&b.0.df).then_with(|| a.1.cmp(&b.1)));
        let idfs: Vec<f64> = df.iter().map(|(f, _)| idf(rows, f.df)).collect();
        Ok(Some(Terms {
            parts: df
                .iter()
                .map(|(f, w)| {
                    if f.whole {
                        format!("\"{w}\"")
                    } else {
                        format!("\"{w}\"*")
                    }
                })
                .collect(),
            rest: {
                // Each word's bound ([`Terms::bound`]), summed from the end.
                let mut rest: Vec<f64> = idfs.iter().map(|i| i * (K1 + 1.0)).collect();
                for i in (0..rest.len().saturating_sub(1)).rev() {
                    rest[i] += rest[i + 1];
                }
                rest
            },
            idf: idfs,
            finders: df
                .iter()
                .map(|(_, w)| memchr::memmem::Finder::new(w.as_bytes()).into_owned())
                .collect(),
            df: df.iter().map(|(f, _)| f.df).collect(),
            words: df.into_iter().map(|(_, w)| w).collect(),
            avgdl: (tokens / rows).max(1.0),
        }))
    }

    /// The rows holding every one of `words`, scored as [`TopK::run`] scores them, when they
    /// are at most `cap` (`None` when more, or the index is empty). FTS5 finds them without
    /// ranking: its bm25 would first count every memory holding each word.
    pub(crate) fn all_words(
        &self,
        c: &Connection,
        words: &[String],
        cap: usize,
    ) -> rusqlite::Result<Option<Vec<Seen>>> {
        let Some(terms) = self.terms(c, words)? else {
            return Ok(None);
        };
        let ids: Vec<i64> = c
            .prepare_cached("SELECT rowid FROM nodes_fts WHERE nodes_fts MATCH ?1 LIMIT ?2")?
            .query_map(params![terms.parts.join(" AND "), (cap + 1) as i64], |r| {
                r.get(0)
            })?
            .collect::<rusqlite::Result<_>>()?;
        if ids.len() > cap {
            return Ok(None);
        }
        let mut found = Found::new(0);
        self.look_many(c, &terms, &ids, &mut found)?;
        Ok(Some(found.seen.into_values().flatten().collect()))
    }

    /// Scores the rows `ids` not scored yet that the caller may see, in one statement (rows
    /// in rowid order, each read where it lies; the content is borrowed, not copied).
    fn look_many(
        &self,
        c: &Connection,
        terms: &Terms,
        ids: &[i64],
        found: &mut Found,
    ) -> rusqlite::Result<()> {
        let fresh: Vec<i64> = ids
            .iter()
            .copied()
            .filter(|id| !found.seen.contains_key(id))
            .collect();
        if fresh.is_empty() {
            return Ok(());
        }
        let list: Vec<String> = fresh.iter().map(i64::to_string).collect();
        static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
            format!(
                "SELECT id, path, content, expires_at FROM nodes \
                 WHERE id IN (SELECT value FROM json_each(?1)) AND {}",
                crate::sqlite::store::visible_sql("", 2)
            )
        });
        let mut stmt = c.prepare_cached(&SQL)?;
        let mut rows = stmt.query(params![format!("[{}]", list.join(",")), self.viewer])?;
        let mut buf = Vec::new();
        while let Some(r) = rows.next()? {
            let id: i64 = r.get(0)?;
            let path: String = r.get(1)?;
            let expires: Option<i64> = r.get(3)?;
            let entry = match r.get_ref(2)? {
                rusqlite::types::ValueRef::Text(t)
                    if expires.is_none_or(|t| t > self.now) && (self.keep)(&path) =>
                {
                    match std::str::from_utf8(t) {
                        Ok(content) => Some(self.scored(
                            c,
                            terms,
                            id,
                            path,
                            content,
                            found.theta(),
                            &mut buf,
                        )?),
                        Err(_) => None,
                    }
                }
                _ => None,
            };
            found.add(id, entry);
        }
        // The rows the caller may not see.
        for id in fresh {
            if !found.seen.contains_key(&id) {
                found.add(id, None);
            }
        }
        Ok(())
    }

    /// Row `id`'s score for the query, from its content; `theta` is the k-th best score so
    /// far. Words are counted rarest first, and counting stops once the row's score so far
    /// plus the most the remaining words could add is below `theta`: the row cannot be among
    /// the best k, and its (partial, lower) score keeps it out. Its content is kept for a
    /// snippet only while it could be.
    #[allow(clippy::too_many_arguments)]
    fn scored(
        &self,
        c: &Connection,
        terms: &Terms,
        id: i64,
        path: String,
        content: &str,
        theta: f64,
        buf: &mut Vec<u8>,
    ) -> rusqlite::Result<Seen> {
        let text = fts::indexed_text(content);
        let (prepared, len) = Prepared::new(&text, buf);
        // FTS5's length of an ASCII text is its token count here; of another text, what
        // FTS5 stored.
        let dl = if text.is_ascii() {
            f64::from(len)
        } else {
            let size: Option<Vec<u8>> = c
                .prepare_cached("SELECT sz FROM nodes_fts_docsize WHERE id = ?1")?
                .query_row([id], |r| r.get(0))
                .optional()?;
            size.as_deref()
                .and_then(varint)
                .map_or(f64::from(len), |(v, _)| v as f64)
        };
        let norm = terms.norm(dl);
        let mut score = 0.0;
        for (i, (word, finder)) in terms.words.iter().zip(&terms.finders).enumerate() {
            if score + terms.rest[i] < theta {
                break;
            }
            score += terms.share(i, prepared.count(word, finder), norm);
        }
        Ok(Seen {
            path,
            score,
            content: (self.snippets && score >= theta).then(|| content.to_string()),
        })
    }
}

/// The rows scored so far, and the best k scores among those the caller may see.
struct Found {
    seen: HashMap<i64, Option<Seen>>,
    /// The best scores, best first, at most `k`.
    top: Vec<f64>,
    k: usize,
}

impl Found {
    fn new(k: usize) -> Found {
        Found {
            seen: HashMap::new(),
            top: Vec::with_capacity(k.min(1024) + 1),
            k,
        }
    }

    fn add(&mut self, id: i64, row: Option<Seen>) {
        if let Some(s) = &row
            && self.k > 0
        {
            let at = self.top.partition_point(|t| *t >= s.score);
            if at < self.k {
                self.top.insert(at, s.score);
                self.top.truncate(self.k);
            }
        }
        self.seen.insert(id, row);
    }

    /// The k-th best score (minus infinity while fewer than k rows are found).
    fn theta(&self) -> f64 {
        if self.k == 0 || self.top.len() < self.k {
            f64::NEG_INFINITY
        } else {
            self.top[self.k - 1]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_read_as_sqlite_writes_them() {
        assert_eq!(varint(&[0x05]), Some((5, 1)));
        assert_eq!(varint(&[0x81, 0x00]), Some((128, 2)));
        assert_eq!(varint(&[0x82, 0x80, 0x01]), Some((32769, 3)));
        assert_eq!(varint(&[0x81]), None);
    }

    #[test]
    fn tokens_are_folded_as_unicode61_folds_them() {
        let mut out = Vec::new();
        tokens("Café-au_lait ÉCOLE x2 naïve", |t| {
            out.push(t.to_string())
        });
        assert_eq!(out, ["cafe", "au", "lait", "ecole", "x2", "naive"]);
        let words = ["risk".to_string(), "lim".to_string()];
        let finders: Vec<_> = words
            .iter()
            .map(|w| memchr::memmem::Finder::new(w.as_bytes()).into_owned())
            .collect();
        let mut buf = Vec::new();
        for text in ["risk risky Risks limit", "Rísk risky Risks limit"] {
            let (p, len) = Prepared::new(text, &mut buf);
            let tf: Vec<u32> = words
                .iter()
                .zip(&finders)
                .map(|(w, f)| p.count(w, f))
                .collect();
            assert_eq!((tf, len), (vec![3, 1], 4), "{text}");
        }
        assert_eq!(ascii_tokens(b""), 0);
        assert_eq!(ascii_tokens(b"a"), 1);
        assert_eq!(ascii_tokens(b"--a1 b_c-"), 3);
        let long = "word, ".repeat(300);
        assert_eq!(ascii_tokens(long.as_bytes()), 300);
    }

    #[test]
    fn idf_is_floored_as_fts5_floors_it() {
        assert_eq!(idf(100.0, 80.0), 1e-6);
        assert!((idf(100.0, 1.0) - (99.5f64 / 1.5).ln()).abs() < 1e-12);
    }
}
