//! Full text in PostgreSQL over avm's own tokens.
//!
//! PostgreSQL's parser keeps a CJK run as one token and splits words at `_`, so neither the
//! document nor the query goes through it: avm writes the `tsvector` and the `tsquery` as
//! literals. Words are lower-cased with their accents removed (as the SQLite index's
//! `unicode61 remove_diacritics 2`); a CJK run gives each character and each pair of
//! neighbours a lexeme at the same position, so one character is a lexeme query and a longer
//! run the phrase of its bigrams. Queries are the same [`crate::fts::parse`] as SQLite's:
//! words are prefixes joined by OR, quoted text a phrase.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

use crate::fts::{Clause, cjk_segments, indexed_text, parse, split_words};

/// The highest position PostgreSQL keeps.
const MAX_POS: u32 = 16_383;
/// The most positions PostgreSQL keeps per lexeme.
const MAX_POSITIONS: usize = 256;
/// Longest lexeme PostgreSQL accepts, in bytes (with room to spare).
const MAX_LEXEME: usize = 2_000;
/// A tsvector literal is kept under PostgreSQL's 1 MB limit.
const MAX_DOCUMENT: usize = 900_000;

/// `w` lower-cased, accents removed.
pub fn fold(w: &str) -> String {
    w.nfd()
        .filter(|c| !is_combining_mark(*c))
        .flat_map(char::to_lowercase)
        .collect()
}

/// `s` as a quoted lexeme of a tsvector or tsquery literal.
fn lexeme(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

/// The `tsvector` literal of `content` (cast with `::tsvector`): its words and CJK grams
/// with positions. Empty for content without words.
pub fn document(content: &str) -> String {
    let text = indexed_text(content);
    let mut lexemes: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    let mut pos: u32 = 1;
    let mut add = |lex: String, at: u32| {
        if lex.is_empty() || lex.len() > MAX_LEXEME {
            return;
        }
        let at = at.min(MAX_POS);
        let ps = lexemes.entry(lex).or_default();
        if ps.len() < MAX_POSITIONS && ps.last() != Some(&at) {
            ps.push(at);
        }
    };
    for w in split_words(&text) {
        for (is_cjk_run, seg) in cjk_segments(w) {
            if is_cjk_run {
                let chars: Vec<char> = seg.chars().collect();
                for (i, c) in chars.iter().enumerate() {
                    let at = pos + i as u32;
                    add(c.to_string(), at);
                    if let Some(next) = chars.get(i + 1) {
                        add(format!("{c}{next}"), at);
                    }
                }
                // A gap, so a phrase cannot run from one CJK run into the next.
                pos = pos.saturating_add(chars.len() as u32 + 1);
            } else {
                add(fold(seg), pos);
                pos = pos.saturating_add(1);
            }
        }
    }
    let mut out = String::new();
    for (lex, ps) in &lexemes {
        if out.len() > MAX_DOCUMENT {
            break;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&lexeme(lex));
        out.push(':');
        for (i, p) in ps.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{p}");
        }
    }
    out
}

/// The `tsquery` literal of a user query (cast with `::tsquery`), and the lower-cased terms
/// for snippets; `None` when it holds no searchable word.
pub fn query(q: &str, drop_function_words: bool) -> Option<(String, Vec<String>)> {
    let (clauses, terms) = parse(q, drop_function_words)?;
    let mut parts: Vec<String> = Vec::new();
    for c in clauses {
        let part = match c {
            Clause::Prefix(w) => format!("{}:*", lexeme(&fold(&w))),
            Clause::Phrase(ws) => {
                let ws: Vec<String> = ws.iter().map(|w| lexeme(&fold(w))).collect();
                if ws.len() == 1 {
                    ws.join("")
                } else {
                    format!("({})", ws.join(" <-> "))
                }
            }
            Clause::Cjk(run) => {
                let chars: Vec<char> = run.chars().collect();
                if chars.len() == 1 {
                    lexeme(&run)
                } else {
                    let grams: Vec<String> = chars
                        .windows(2)
                        .map(|w| lexeme(&w.iter().collect::<String>()))
                        .collect();
                    if grams.len() == 1 {
                        grams.join("")
                    } else {
                        format!("({})", grams.join(" <-> "))
                    }
                }
            }
        };
        if !parts.contains(&part) {
            parts.push(part);
        }
    }
    Some((parts.join(" | "), terms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_hold_folded_words_and_cjk_grams_with_positions() {
        assert_eq!(
            document("Café café CAFE"),
            "'cafe':1,2,3",
            "accents and case fold"
        );
        assert_eq!(document("foo_bar x"), "'foo_bar':1 'x':2");
        assert_eq!(
            document("中东局 ok"),
            "'ok':5 '东':2 '东局':2 '中':1 '中东':1 '局':3"
        );
        assert_eq!(document(""), "");
        assert_eq!(document("it's"), "'it':1 's':2");
    }

    #[test]
    fn queries_are_prefixes_phrases_and_cjk_bigram_phrases() {
        let (q, terms) = query("Café \"red fox\" 局势", true).unwrap_or_default();
        assert_eq!(q, "'cafe':* | ('red' <-> 'fox') | '局势'");
        assert_eq!(terms, vec!["café", "red fox", "局势"]);
        let (q, _) = query("中东局势", true).unwrap_or_default();
        assert_eq!(q, "('中东' <-> '东局' <-> '局势')");
        assert!(query("  ...  ", true).is_none());
        // Function words go when anything else is asked.
        let (q, _) = query("what is the quokka", true).unwrap_or_default();
        assert_eq!(q, "'quokka':*");
    }
}
