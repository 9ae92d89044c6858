//! Languages: which files are tracked, and signature extraction for the ones we parse.
//!
//! Extraction is line based: the source is first masked ([`lex::mask`]) so comments and strings
//! cannot match, then each language module walks the masked lines with a few anchored regular
//! expressions and a brace (or indentation) stack that tells methods from functions and skips
//! items nested in function bodies. A declaration whose parameter list spans lines is joined into
//! one line; the text shown is cut where the body starts.

pub mod go;
pub mod lex;
pub mod python;
pub mod rust;
pub mod script;

use regex::Regex;
use serde::{Deserialize, Serialize};

/// Longest signature text kept, in characters.
pub const MAX_SIG_CHARS: usize = 160;

/// Bumped whenever extraction changes, so a rescan re-extracts files whose content did not
/// change but whose stored signatures came from an older extractor.
pub const EXTRACTOR_VERSION: i64 = 1;

/// Most lines one declaration is joined from.
const MAX_JOIN_LINES: usize = 40;

/// One extracted declaration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    /// 1-based line of the declaration's first line.
    pub line: u32,
    /// `fn`, `method`, `struct`, `class`, `function`, `interface`, … (per language).
    pub kind: String,
    /// The declared name (for `impl` blocks, what is implemented).
    pub name: String,
    /// Nesting level: 0 at top level, 1 for a method in a class or impl, and so on.
    pub depth: u32,
    /// The declaration, on one line, trimmed, without its body, at most [`MAX_SIG_CHARS`].
    pub text: String,
}

/// Extensions tracked, with the language recorded for each.
const LANGUAGES: &[(&str, &str)] = &[
    ("rs", "rust"),
    ("py", "python"),
    ("pyi", "python"),
    ("ts", "typescript"),
    ("tsx", "typescript"),
    ("mts", "typescript"),
    ("cts", "typescript"),
    ("js", "javascript"),
    ("jsx", "javascript"),
    ("mjs", "javascript"),
    ("cjs", "javascript"),
    ("go", "go"),
    ("java", "java"),
    ("c", "c"),
    ("h", "c"),
    ("cpp", "cpp"),
    ("hpp", "cpp"),
    ("md", "markdown"),
    ("txt", "text"),
    ("yaml", "yaml"),
    ("yml", "yaml"),
    ("json", "json"),
    ("toml", "toml"),
    ("sh", "shell"),
    ("bash", "shell"),
    ("zsh", "shell"),
];

/// The language of a tracked file, by extension (case-insensitive); `None` = not tracked.
pub fn language_for(file_name: &str) -> Option<&'static str> {
    let (_, ext) = file_name.rsplit_once('.')?;
    LANGUAGES
        .iter()
        .find(|(e, _)| e.eq_ignore_ascii_case(ext))
        .map(|(_, l)| *l)
}

/// Does `language` have an extractor?
pub fn is_parsed(language: &str) -> bool {
    matches!(
        language,
        "rust" | "python" | "typescript" | "javascript" | "go"
    )
}

/// Maps a `lang=` query value to a recorded language.
pub fn language_from_query(value: &str) -> Option<&'static str> {
    Some(match value.to_ascii_lowercase().as_str() {
        "rs" | "rust" => "rust",
        "py" | "python" => "python",
        "ts" | "tsx" | "typescript" => "typescript",
        "js" | "jsx" | "javascript" => "javascript",
        "go" | "golang" => "go",
        _ => return None,
    })
}

/// Signatures of `src`, written in `language` (empty for languages without an extractor).
pub fn extract(language: &str, src: &str) -> Vec<Signature> {
    match language {
        "rust" => rust::extract(src),
        "python" => python::extract(src),
        "typescript" | "javascript" => script::extract(src),
        "go" => go::extract(src),
        _ => Vec::new(),
    }
}

/// Compiles a built-in pattern. The patterns are constants and every one is exercised by the
/// unit tests, so a failure here is a programming error caught before release.
pub(crate) fn compile(pattern: &str) -> Regex {
    match Regex::new(pattern) {
        Ok(r) => r,
        Err(e) => panic!("built-in pattern {pattern:?} does not compile: {e}"),
    }
}

/// A source file split into original and masked lines with equal byte offsets.
pub(crate) struct Source<'a> {
    /// Original lines (without `\n`).
    pub orig: Vec<&'a str>,
    /// Masked lines, byte-for-byte aligned with `orig`.
    pub masked: Vec<String>,
}

impl<'a> Source<'a> {
    /// Splits and masks `src`.
    pub fn new(src: &'a str, syntax: lex::Syntax) -> Self {
        let masked_all = lex::mask(src, syntax);
        let orig: Vec<&str> = src.split('\n').collect();
        let masked: Vec<String> = masked_all.split('\n').map(str::to_string).collect();
        Source { orig, masked }
    }

    /// Number of lines.
    pub fn len(&self) -> usize {
        self.orig.len().min(self.masked.len())
    }
}

/// Bracket depth options for [`Source::join`].
#[derive(Clone, Copy)]
pub(crate) struct Brackets {
    /// Count `<`/`>` as brackets (generic parameters), ignoring `->` and `=>`.
    pub angles: bool,
}

/// Change of bracket depth over `s` (masked text).
pub(crate) fn depth_delta(s: &str, br: Brackets) -> i64 {
    let b = s.as_bytes();
    let mut d = 0i64;
    for (k, &c) in b.iter().enumerate() {
        match c {
            b'(' | b'[' => d += 1,
            b')' | b']' => d -= 1,
            b'<' if br.angles => d += 1,
            b'>' if br.angles && !(k > 0 && matches!(b[k - 1], b'-' | b'=')) => d -= 1,
            _ => {}
        }
    }
    d
}

/// A declaration joined onto one line: the original text and its masked twin (same length).
pub(crate) struct Joined {
    /// Original text, comments dropped at line ends, lines joined by single spaces.
    pub orig: String,
    /// Masked twin of `orig`.
    pub masked: String,
    /// Index of the last line used.
    pub end: usize,
}

impl Source<'_> {
    /// Joins lines from `start` until the brackets opened there are closed at a line end.
    pub fn join(&self, start: usize, br: Brackets) -> Joined {
        let mut j = Joined {
            orig: String::new(),
            masked: String::new(),
            end: start,
        };
        let mut depth = 0i64;
        for k in start..self.len().min(start + MAX_JOIN_LINES) {
            let m = &self.masked[k];
            let o = self.orig[k];
            // The piece is where the masked line has code: this drops trailing comments and
            // indentation in one go, and keeps the two strings aligned.
            let (a, z) = match (m.find(|c: char| !c.is_whitespace()), m.trim_end().len()) {
                (Some(a), z) if z > a => (a, z),
                _ => {
                    j.end = k;
                    if depth > 0 {
                        continue;
                    }
                    break;
                }
            };
            let (pm, po) = (&m[a..z], o.get(a..z).unwrap_or(&m[a..z]));
            if !j.masked.is_empty() {
                let prev_open = j.masked.ends_with(['(', '[', '<']);
                let next_close = pm.starts_with([')', ']', '>']);
                // A trailing comma before a closing bracket or brace only served the layout.
                if (next_close || pm.starts_with('}')) && j.masked.ends_with(',') {
                    j.masked.pop();
                    j.orig.pop();
                }
                if !prev_open && !next_close {
                    j.masked.push(' ');
                    j.orig.push(' ');
                }
            }
            j.masked.push_str(pm);
            j.orig.push_str(po);
            j.end = k;
            depth += depth_delta(pm, br);
            if depth <= 0 {
                break;
            }
        }
        j
    }
}

/// Position of the first byte of masked `s` at bracket depth 0 for which `stop` says yes.
pub(crate) fn find_top(
    s: &str,
    br: Brackets,
    stop: impl Fn(&[u8], usize) -> bool,
) -> Option<usize> {
    let b = s.as_bytes();
    let mut d = 0i64;
    for k in 0..b.len() {
        if d <= 0 && stop(b, k) {
            return Some(k);
        }
        match b[k] {
            b'(' | b'[' => d += 1,
            b')' | b']' => d -= 1,
            b'<' if br.angles => d += 1,
            b'>' if br.angles && !(k > 0 && matches!(b[k - 1], b'-' | b'=')) => d -= 1,
            _ => {}
        }
    }
    None
}

/// Is the word `w` at `b[k..]`, with word boundaries on both sides?
pub(crate) fn word_at(b: &[u8], k: usize, w: &[u8]) -> bool {
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b'$';
    b.get(k..k + w.len()) == Some(w)
        && (k == 0 || !ident(b[k - 1]))
        && b.get(k + w.len()).is_none_or(|&c| !ident(c))
}

/// Cuts `orig` at byte `at` (found on the masked twin), trims and shortens it for display.
pub(crate) fn finish(orig: &str, at: Option<usize>) -> String {
    let cut = match at {
        Some(k) => orig.get(..k).unwrap_or(orig),
        None => orig,
    };
    shorten(cut.trim())
}

/// At most [`MAX_SIG_CHARS`] characters, ending in `…` when shortened.
pub(crate) fn shorten(s: &str) -> String {
    if s.chars().count() <= MAX_SIG_CHARS {
        return s.to_string();
    }
    let mut out: String = s.chars().take(MAX_SIG_CHARS - 1).collect();
    out.push('…');
    out
}

/// Leading whitespace width (a tab counts 8 columns, as Python's tokenizer does).
pub(crate) fn indent_of(line: &str) -> usize {
    let mut n = 0;
    for c in line.chars() {
        match c {
            ' ' => n += 1,
            '\t' => n = (n / 8 + 1) * 8,
            _ => break,
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn languages_come_from_extensions() {
        assert_eq!(language_for("a/b/lib.rs"), Some("rust"));
        assert_eq!(language_for("x.TSX"), Some("typescript"));
        assert_eq!(language_for("notes.md"), Some("markdown"));
        assert_eq!(language_for("image.png"), None);
        assert_eq!(language_for("Makefile"), None);
        assert!(is_parsed("go") && !is_parsed("markdown"));
        assert_eq!(language_from_query("RS"), Some("rust"));
        assert_eq!(language_from_query("cobol"), None);
    }

    #[test]
    fn long_text_is_shortened_to_the_limit() {
        let long = "x".repeat(400);
        let s = shorten(&long);
        assert_eq!(s.chars().count(), MAX_SIG_CHARS);
        assert!(s.ends_with('…'));
        assert_eq!(shorten("short"), "short");
    }

    #[test]
    fn joining_drops_comments_and_trailing_commas() {
        let src = "fn f( // why\n    a: i32,\n    b: &str, // more\n) -> i32 {\n";
        let s = Source::new(src, lex::Syntax::Rust);
        let j = s.join(0, Brackets { angles: true });
        assert_eq!(j.orig, "fn f(a: i32, b: &str) -> i32 {");
        assert_eq!(j.orig.len(), j.masked.len());
        assert_eq!(j.end, 3);
    }

    #[test]
    fn indentation_counts_tabs_as_eight_columns() {
        assert_eq!(indent_of("    x"), 4);
        assert_eq!(indent_of("\tx"), 8);
        assert_eq!(indent_of("  \tx"), 8);
    }
}
