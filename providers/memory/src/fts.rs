//! Full-text query building: user text never becomes FTS5 syntax.
//!
//! Words become quoted prefix terms joined with OR (the reference's prefix-OR semantics);
//! text in double quotes becomes a phrase. Runs of CJK characters go to a second index of
//! character unigrams and bigrams, so a substring such as `局势` finds `中东局势紧张` (the
//! unicode61 tokenizer sees a whole CJK run as one token and could only match its prefix).

/// Is `c` a character of a script written without spaces between words?
pub fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x3040..=0x30FF     // Hiragana, Katakana
        | 0x3400..=0x4DBF   // CJK Extension A
        | 0x4E00..=0x9FFF   // CJK Unified Ideographs
        | 0xAC00..=0xD7AF   // Hangul syllables
        | 0xF900..=0xFAFF   // CJK Compatibility Ideographs
        | 0x20000..=0x2FA1F // Extensions B..F, compatibility supplement
    )
}

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Is `line` one of the time stamps `remember` writes into a memory (`*Created: … UTC*`,
/// `*Updated: …*`)? They say nothing a query looks for, and words such as `created` or
/// `12` would otherwise match every memory.
fn is_stamp_line(line: &str) -> bool {
    let t = line.trim();
    t.ends_with('*') && (t.starts_with("*Created: ") || t.starts_with("*Updated: "))
}

/// The text of a memory that the full-text indexes hold: its content without the time-stamp
/// lines `remember` writes (every index write and delete goes through this one function, so
/// what is deleted is exactly what was indexed).
pub fn indexed_text(content: &str) -> std::borrow::Cow<'_, str> {
    // Most contents have no stamp: one substring search finds that.
    if memchr::memmem::find(content.as_bytes(), b"d: ").is_none()
        || !content.lines().any(is_stamp_line)
    {
        return std::borrow::Cow::Borrowed(content);
    }
    std::borrow::Cow::Owned(
        content
            .lines()
            .filter(|l| !is_stamp_line(l))
            .collect::<Vec<_>>()
            .join("\n"),
    )
}

/// The text indexed for one document in the CJK index: `(unigrams, bigrams)`, or `None`
/// when the content has no CJK characters.
pub fn cjk_document(content: &str) -> Option<(String, String)> {
    let mut uni = String::new();
    let mut bi = String::new();
    let mut run: Vec<char> = Vec::new();
    let mut any = false;
    let flush = |run: &mut Vec<char>, uni: &mut String, bi: &mut String| {
        if run.is_empty() {
            return;
        }
        for c in run.iter() {
            uni.push(*c);
            uni.push(' ');
        }
        for w in run.windows(2) {
            bi.push(w[0]);
            bi.push(w[1]);
            bi.push(' ');
        }
        // A token no query produces, so phrases cannot match across two runs.
        bi.push_str("0 ");
        run.clear();
    };
    for c in content.chars() {
        if is_cjk(c) {
            run.push(c);
            any = true;
        } else {
            flush(&mut run, &mut uni, &mut bi);
        }
    }
    flush(&mut run, &mut uni, &mut bi);
    any.then_some((uni, bi))
}

/// A user query compiled for the two indexes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Compiled {
    /// MATCH expression for the main (unicode61) index.
    pub main: Option<String>,
    /// MATCH expression for the CJK index.
    pub cjk: Option<String>,
    /// Lower-cased terms and phrases, for snippets.
    pub terms: Vec<String>,
    /// The clauses `main` ORs together (`"word"*` or a `"quoted phrase"`).
    pub parts: Vec<String>,
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// One clause of a parsed query, whatever index it is rendered for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Clause {
    /// A word outside quotes (or a non-CJK part of a quoted CJK word): matches as a prefix.
    Prefix(String),
    /// Quoted words (not CJK), in order: match as a phrase.
    Phrase(Vec<String>),
    /// A run of CJK characters: its one character, or its bigrams in order.
    Cjk(String),
}

/// A user query parsed into [`Clause`]s (in the order they appear, without repeats) and the
/// lower-cased terms and phrases snippets look for; `None` when it holds no searchable word.
/// Function words outside quotes are left out when the query holds anything else and
/// `drop_function_words` is true.
pub fn parse(query: &str, drop_function_words: bool) -> Option<(Vec<Clause>, Vec<String>)> {
    let function = |w: &str| avm_core::text::is_function_word(&w.to_lowercase());
    let skip_function_words = drop_function_words
        && query
            .split('"')
            .enumerate()
            .any(|(i, part)| split_words(part).iter().any(|w| i % 2 == 1 || !function(w)));
    let mut clauses: Vec<Clause> = Vec::new();
    let mut terms: Vec<String> = Vec::new();
    let segment = |is_cjk_run: bool, seg: &str| {
        if is_cjk_run {
            Clause::Cjk(seg.to_string())
        } else {
            Clause::Prefix(seg.to_string())
        }
    };
    // Split into quoted phrases and bare text.
    let mut in_quote = false;
    for (i, part) in query.split('"').enumerate() {
        if i > 0 {
            in_quote = !in_quote;
        }
        let words = split_words(part);
        if words.is_empty() {
            continue;
        }
        if in_quote {
            let (latin, runs): (Vec<&str>, Vec<&str>) =
                words.iter().partition(|w| !w.chars().any(is_cjk));
            if !latin.is_empty() {
                clauses.push(Clause::Phrase(
                    latin.iter().map(|w| w.to_string()).collect(),
                ));
                terms.push(latin.join(" ").to_lowercase());
            }
            for r in runs {
                for (is_cjk_run, seg) in cjk_segments(r) {
                    clauses.push(segment(is_cjk_run, seg));
                    terms.push(seg.to_lowercase());
                }
            }
        } else {
            for w in words {
                if skip_function_words && function(w) {
                    continue;
                }
                for (is_cjk_run, seg) in cjk_segments(w) {
                    clauses.push(segment(is_cjk_run, seg));
                    terms.push(seg.to_lowercase());
                }
            }
        }
    }
    if clauses.is_empty() {
        return None;
    }
    let mut seen = std::collections::HashSet::new();
    clauses.retain(|c| seen.insert(c.clone()));
    dedup(&mut terms);
    Some((clauses, terms))
}

/// Compiles `query`; `None` when it holds no searchable word. Function words outside quotes
/// (`the`, `of`, `what`: [`avm_core::text::FUNCTION_WORDS`]) are left out when the query
/// holds anything else: they rank nothing, and each would score most of the store.
pub fn compile(query: &str) -> Option<Compiled> {
    compile_with(query, true)
}

/// [`compile`], keeping function words when `drop_function_words` is false (how queries were
/// compiled before they were left out: the reference ranking benches compare with).
pub fn compile_with(query: &str, drop_function_words: bool) -> Option<Compiled> {
    let (clauses, terms) = parse(query, drop_function_words)?;
    let mut main: Vec<String> = Vec::new();
    let mut cjk: Vec<String> = Vec::new();
    for c in clauses {
        match c {
            Clause::Prefix(w) => main.push(format!("{}*", quote(&w))),
            Clause::Phrase(ws) => main.push(quote(&ws.join(" "))),
            Clause::Cjk(run) => {
                let chars: Vec<char> = run.chars().collect();
                if chars.len() == 1 {
                    cjk.push(format!("uni:{}", quote(&run)));
                } else {
                    let grams: Vec<String> = chars.windows(2).map(|w| w.iter().collect()).collect();
                    cjk.push(format!("bi:{}", quote(&grams.join(" "))));
                }
            }
        }
    }
    // Distinct clauses can render alike (a phrase of one word and that word's prefix do not).
    dedup(&mut main);
    dedup(&mut cjk);
    Some(Compiled {
        main: (!main.is_empty()).then(|| main.join(" OR ")),
        cjk: (!cjk.is_empty()).then(|| cjk.join(" OR ")),
        terms,
        parts: main,
    })
}

fn dedup(v: &mut Vec<String>) {
    let mut seen = std::collections::HashSet::new();
    v.retain(|s| seen.insert(s.clone()));
}

pub(crate) fn split_words(s: &str) -> Vec<&str> {
    s.split(|c: char| !is_word(c))
        .filter(|w| !w.is_empty())
        .collect()
}

/// Splits a word into alternating CJK and non-CJK segments.
pub(crate) fn cjk_segments(w: &str) -> Vec<(bool, &str)> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut cur: Option<bool> = None;
    for (i, c) in w.char_indices() {
        let k = is_cjk(c);
        match cur {
            Some(prev) if prev != k => {
                out.push((prev, &w[start..i]));
                start = i;
                cur = Some(k);
            }
            None => cur = Some(k),
            _ => {}
        }
    }
    if let Some(k) = cur {
        out.push((k, &w[start..]));
    }
    out
}

/// A one-line excerpt of `content` around the first occurrence of a term (at most ~160
/// characters), or its first non-empty line. Works on characters throughout: lowercasing can
/// change byte lengths, so byte offsets of the lowercased text never index the original.
pub fn snippet(content: &str, terms: &[String]) -> String {
    const WIDTH: usize = 160;
    /// How far into a long line the match position is looked for.
    const SCAN: usize = 20_000;
    // Each character lower-cased to one character, so positions in `lower` are positions in
    // the line (a character whose lower case is longer keeps its first character).
    let one = |c: char| c.to_lowercase().next().unwrap_or(c);
    let wanted: Vec<Vec<char>> = terms
        .iter()
        .filter(|t| !t.is_empty())
        .map(|t| t.chars().map(one).collect())
        .collect();
    for line in content.lines() {
        let lower = line.to_lowercase();
        if !terms
            .iter()
            .any(|t| !t.is_empty() && lower.contains(t.as_str()))
        {
            continue;
        }
        let chars: Vec<char> = line.chars().collect();
        if chars.len() <= WIDTH {
            return line.trim().to_string();
        }
        let folded: Vec<char> = chars.iter().take(SCAN + 64).map(|c| one(*c)).collect();
        let pos = (0..chars.len().min(SCAN))
            .find(|&i| wanted.iter().any(|w| folded[i..].starts_with(w)))
            .unwrap_or(0);
        let skip = pos.saturating_sub(WIDTH / 4);
        let s: String = chars[skip..].iter().take(WIDTH).collect();
        return if skip > 0 {
            format!("…{}", s.trim())
        } else {
            s.trim().to_string()
        };
    }
    content
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("")
        .chars()
        .take(WIDTH)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_syntax_is_escaped_into_prefix_or_terms() {
        let c = compile("hello-world NEAR \"x").unwrap();
        assert_eq!(
            c.main.as_deref(),
            Some("\"hello\"* OR \"world\"* OR \"NEAR\"* OR \"x\"")
        );
        assert!(compile("  -- !! ").is_none());
    }

    #[test]
    fn function_words_are_searched_only_when_nothing_else_is() {
        let c = compile("What was decided on the risk limits for Tamarind?").unwrap();
        assert_eq!(
            c.main.as_deref(),
            Some("\"decided\"* OR \"risk\"* OR \"limits\"* OR \"Tamarind\"*")
        );
        assert_eq!(c.terms, ["decided", "risk", "limits", "tamarind"]);
        assert_eq!(compile("the AND of").unwrap().parts.len(), 3);
        // Inside quotes every word counts.
        assert_eq!(
            compile("\"the who\" of").unwrap().main.as_deref(),
            Some("\"the who\"")
        );
    }

    #[test]
    fn quoted_text_is_a_phrase() {
        let c = compile("\"rsi at\" spik").unwrap();
        assert_eq!(c.main.as_deref(), Some("\"rsi at\" OR \"spik\"*"));
    }

    #[test]
    fn cjk_runs_become_bigram_phrases_or_unigrams() {
        let c = compile("局势 NVDA 伊").unwrap();
        assert_eq!(c.cjk.as_deref(), Some("bi:\"局势\" OR uni:\"伊\""));
        assert_eq!(c.main.as_deref(), Some("\"NVDA\"*"));
        let (uni, bi) = cjk_document("中东局势 a 伊朗").unwrap();
        assert_eq!(uni, "中 东 局 势 伊 朗 ");
        assert_eq!(bi, "中东 东局 局势 0 伊朗 0 ");
        assert!(cjk_document("plain text").is_none());
    }

    #[test]
    fn snippets_never_split_characters_whose_case_changes_length() {
        // 'Ⱥ' lowercases to a 2-byte char and 'K' (Kelvin) from 3 bytes to 1.
        let text = "ȺȺ x日K and more";
        assert_eq!(snippet(text, &["x".into()]), text);
        let long = format!("{}ȺȺ x日K {}", "word ".repeat(60), "tail ".repeat(60));
        let s = snippet(&long, &["x日".into()]);
        assert!(s.contains("x日K"), "{s}");
    }

    #[test]
    fn snippets_show_the_matching_line() {
        let text = "# Title\n\nfirst line\nthe RSI is 72 here\nlast";
        assert_eq!(snippet(text, &["rsi".into()]), "the RSI is 72 here");
        assert_eq!(snippet(text, &["zzz".into()]), "# Title");
    }
}
