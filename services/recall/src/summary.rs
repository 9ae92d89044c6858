//! Extractive summaries: the lines of a memory that matter most for a query.

/// Query terms for matching inside text: lower-cased words of two or more characters (any
/// CJK character counts as a word of its own run), deduplicated, in query order.
pub fn terms(query: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut push = |w: String| {
        if !out.contains(&w) {
            out.push(w);
        }
    };
    let lower = query.to_lowercase();
    let mut word = String::new();
    let flush = |word: &mut String, push: &mut dyn FnMut(String)| {
        if word.chars().count() >= 2
            && !avm_core::text::is_function_word(word)
            && !avm_topics::extract::is_stop_word(word)
        {
            push(std::mem::take(word));
        } else {
            word.clear();
        }
    };
    for c in lower.chars() {
        if c.is_alphanumeric() || c == '_' {
            word.push(c);
        } else {
            flush(&mut word, &mut push);
        }
    }
    flush(&mut word, &mut push);
    out
}

/// Is this a line `remember` adds around the content (`*Created: …*`, `*Tags: …*`, `---`)?
pub fn is_boilerplate(line: &str) -> bool {
    line.trim().is_empty() || avm_core::storage::is_header_line(line)
}

/// The content lines worth showing: boilerplate dropped, a heading repeating the title
/// dropped, heading markers stripped.
pub fn lines<'a>(content: &'a str, title: &str) -> Vec<&'a str> {
    let title = title.trim().to_lowercase();
    content
        .lines()
        .filter(|l| !is_boilerplate(l))
        .map(|l| {
            let t = l.trim();
            let stripped = t.trim_start_matches('#');
            if stripped.len() < t.len() && stripped.starts_with(' ') {
                stripped.trim()
            } else {
                t
            }
        })
        .filter(|l| title.is_empty() || l.to_lowercase() != title)
        .collect()
}

/// Fraction of `terms` found in `text` (lower-cased), 0..=1.
pub fn coverage(terms: &[String], lower_text: &str) -> f64 {
    if terms.is_empty() {
        return 0.0;
    }
    let found = terms
        .iter()
        .filter(|t| lower_text.contains(t.as_str()))
        .count();
    found as f64 / terms.len() as f64
}

/// At most `max_chars` characters from `content`: the lines matching the most query terms
/// (earlier lines first among equals), shown in their original order, joined by spaces.
pub fn summarize(content: &str, title: &str, terms: &[String], max_chars: usize) -> String {
    let lines = lines(content, title);
    if lines.is_empty() {
        return String::new();
    }
    let mut ranked: Vec<(usize, usize)> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let lower = l.to_lowercase();
            (
                i,
                terms.iter().filter(|t| lower.contains(t.as_str())).count(),
            )
        })
        .collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut chosen: Vec<usize> = Vec::new();
    let mut used = 0usize;
    for (i, _) in &ranked {
        let n = lines[*i].chars().count();
        if used + n + 1 > max_chars && !chosen.is_empty() {
            continue;
        }
        chosen.push(*i);
        used += n + 1;
        if used >= max_chars {
            break;
        }
    }
    chosen.sort_unstable();
    let joined = chosen
        .iter()
        .map(|i| lines[*i])
        .collect::<Vec<_>>()
        .join(" ");
    clip(&joined, terms, max_chars)
}

/// Cuts `text` to `max_chars` characters, keeping the first query match in view.
pub fn clip(text: &str, terms: &[String], max_chars: usize) -> String {
    let n = text.chars().count();
    if n <= max_chars {
        return text.to_string();
    }
    let lower = text.to_lowercase();
    // Where the first match starts, in characters (lower-casing may change byte lengths).
    let first = terms
        .iter()
        .filter_map(|t| lower.find(t.as_str()))
        .min()
        .map(|b| lower[..b].chars().count())
        .unwrap_or(0);
    let budget = max_chars.saturating_sub(2);
    let start = if first + budget / 2 > n {
        n.saturating_sub(budget)
    } else {
        first.saturating_sub(budget / 4)
    };
    let body: String = text.chars().skip(start).take(budget).collect();
    let mut out = String::new();
    if start > 0 {
        out.push('…');
    }
    out.push_str(body.trim());
    if start + budget < n {
        out.push('…');
    }
    out
}

/// One line: the first line that matches a term, else the first line, clipped.
pub fn one_line(content: &str, title: &str, terms: &[String], max_chars: usize) -> String {
    let lines = lines(content, title);
    let best = lines
        .iter()
        .find(|l| {
            let lower = l.to_lowercase();
            terms.iter().any(|t| lower.contains(t.as_str()))
        })
        .or(lines.first())
        .copied()
        .unwrap_or("");
    clip(best, terms, max_chars)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const MEMO: &str = "# NVDA note\n\n*Created: 2026-11-21 07:44:22 UTC*\n*Tags: market*\n\n---\n\nNVDA RSI at 72 overbought\nLunch was fine.\nWatch the Fed on Wednesday.";

    #[test]
    fn summaries_skip_boilerplate_and_prefer_matching_lines() {
        let t = terms("Fed decision?");
        let s = summarize(MEMO, "NVDA note", &t, 40);
        assert_eq!(s, "Watch the Fed on Wednesday.");
        let s = summarize(MEMO, "NVDA note", &terms("overbought"), 300);
        assert!(s.starts_with("NVDA RSI at 72 overbought"), "{s}");
        assert!(!s.contains("Created"), "{s}");
        assert!(!s.contains("---"), "{s}");
    }

    #[test]
    fn clipping_keeps_the_match_in_view_and_respects_char_boundaries() {
        let text = format!("{}needle{}", "é".repeat(200), "ü".repeat(200));
        let c = clip(&text, &terms("needle"), 50);
        assert!(c.contains("needle"), "{c}");
        assert!(c.chars().count() <= 50);
    }

    #[test]
    fn terms_drop_stop_words_and_single_letters() {
        assert_eq!(terms("What is the Fed's rate?"), vec!["fed", "rate"]);
        assert_eq!(terms("中东局势"), vec!["中东局势"]);
    }
}
