//! Masking of comments and string literals, so the line patterns of the extractors never see
//! `fn fake()` inside a comment, a docstring or a test fixture held in a string.
//!
//! The masked text has exactly the bytes of the source at the same offsets, except that every
//! byte of a comment, and every byte between a string's delimiters, is a space (line breaks are
//! kept). Because the offsets agree, an extractor finds positions on the masked text and cuts
//! the original text at the same places. Masked regions always start and end on ASCII
//! delimiters, so they cover whole characters and the result stays valid UTF-8.

/// The lexical families the masker knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syntax {
    /// Rust: nested block comments, raw strings, char literals versus lifetimes.
    Rust,
    /// Python: `#` comments, single and triple quoted strings.
    Python,
    /// JavaScript and TypeScript: template literals and regular expression literals.
    Script,
    /// Go: raw strings in backquotes and runes.
    Go,
}

/// Returns `src` with comments and string contents blanked (see the module docs).
pub fn mask(src: &str, syntax: Syntax) -> String {
    let b = src.as_bytes();
    let mut out = b.to_vec();
    let mut m = Masker {
        b,
        out: &mut out,
        i: 0,
    };
    match syntax {
        Syntax::Rust => m.rust(),
        Syntax::Python => m.python(),
        Syntax::Script => m.script(),
        Syntax::Go => m.go(),
    }
    // Masked regions are bounded by ASCII delimiters, so this cannot fail; falling back to the
    // source keeps extraction working (unmasked) if that reasoning were ever wrong.
    String::from_utf8(out).unwrap_or_else(|_| src.to_string())
}

struct Masker<'a> {
    b: &'a [u8],
    out: &'a mut Vec<u8>,
    i: usize,
}

impl Masker<'_> {
    fn at(&self, k: usize) -> u8 {
        self.b.get(k).copied().unwrap_or(0)
    }

    fn starts(&self, s: &[u8]) -> bool {
        self.b.get(self.i..self.i + s.len()) == Some(s)
    }

    /// Blanks `from..to`, keeping line breaks.
    fn blank(&mut self, from: usize, to: usize) {
        let to = to.min(self.b.len());
        for k in from..to {
            if self.b[k] != b'\n' && self.b[k] != b'\r' {
                self.out[k] = b' ';
            }
        }
    }

    /// Blanks from the cursor to the end of the line (a line comment).
    fn line_comment(&mut self) {
        let start = self.i;
        while self.i < self.b.len() && self.b[self.i] != b'\n' {
            self.i += 1;
        }
        self.blank(start, self.i);
    }

    /// Blanks a `/* */` comment starting at the cursor; Rust nests them, the others do not.
    fn block_comment(&mut self, nested: bool) {
        let start = self.i;
        self.i += 2;
        let mut depth = 1;
        while self.i < self.b.len() {
            if nested && self.starts(b"/*") {
                depth += 1;
                self.i += 2;
            } else if self.starts(b"*/") {
                depth -= 1;
                self.i += 2;
                if depth == 0 {
                    break;
                }
            } else {
                self.i += 1;
            }
        }
        self.blank(start, self.i);
    }

    /// Blanks the inside of a string whose opening `quote` is at the cursor; backslash escapes
    /// are honoured. With `single_line`, an unescaped line break ends the string (a stray
    /// apostrophe in JSX text or a Python comment must not swallow the rest of the file).
    fn quoted(&mut self, quote: u8, single_line: bool) {
        self.i += 1;
        let start = self.i;
        while self.i < self.b.len() {
            let c = self.b[self.i];
            if c == b'\\' {
                self.i += 2;
                continue;
            }
            if c == quote {
                self.blank(start, self.i);
                self.i += 1;
                return;
            }
            if c == b'\n' && single_line {
                self.blank(start, self.i);
                return;
            }
            self.i += 1;
        }
        self.blank(start, self.b.len());
    }

    /// Blanks the inside of a string that ends at `close` (no escapes), the opening delimiter
    /// (`open_len` bytes) being at the cursor.
    fn raw(&mut self, open_len: usize, close: &[u8]) {
        self.i += open_len;
        let start = self.i;
        while self.i < self.b.len() {
            if self.starts(close) {
                self.blank(start, self.i);
                self.i += close.len();
                return;
            }
            self.i += 1;
        }
        self.blank(start, self.b.len());
    }

    fn is_ident(c: u8) -> bool {
        c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80
    }

    fn rust(&mut self) {
        while self.i < self.b.len() {
            let c = self.b[self.i];
            if self.starts(b"//") {
                self.line_comment();
            } else if self.starts(b"/*") {
                self.block_comment(true);
            } else if c == b'"' {
                self.quoted(b'"', false);
            } else if (c == b'r' || c == b'b' || c == b'c')
                && (self.i == 0 || !Self::is_ident(self.at(self.i - 1)))
                && self.rust_raw_string()
            {
            } else if c == b'\'' {
                self.rust_char();
            } else if Self::is_ident(c) {
                // Skip the whole identifier so `br"…"` is never looked at from its middle.
                while self.i < self.b.len() && Self::is_ident(self.b[self.i]) {
                    self.i += 1;
                }
            } else {
                self.i += 1;
            }
        }
    }

    /// At `r`, `br` or `cr` followed by `#…#"`: blanks a raw string and returns true.
    fn rust_raw_string(&mut self) -> bool {
        let mut k = self.i;
        if matches!(self.at(k), b'b' | b'c') {
            k += 1;
        }
        if self.at(k) != b'r' {
            return false;
        }
        k += 1;
        let mut hashes = 0;
        while self.at(k) == b'#' {
            hashes += 1;
            k += 1;
        }
        if self.at(k) != b'"' {
            return false;
        }
        let mut close = vec![b'"'];
        close.extend(std::iter::repeat_n(b'#', hashes));
        let open_len = k + 1 - self.i;
        self.raw(open_len, &close);
        true
    }

    /// At `'`: blanks a char literal (`'a'`, `'\n'`, `'\u{1F600}'`), leaves a lifetime alone.
    fn rust_char(&mut self) {
        let start = self.i + 1;
        if self.at(start) == b'\\' {
            let mut k = start + 1;
            while k < self.b.len() && k < start + 12 && self.b[k] != b'\'' && self.b[k] != b'\n' {
                k += 1;
            }
            if self.at(k) == b'\'' {
                self.blank(start, k);
                self.i = k + 1;
                return;
            }
        } else if let Some(ch) = self.b.get(start..).and_then(|rest| {
            std::str::from_utf8(&rest[..rest.len().min(4)])
                .ok()
                .or_else(|| {
                    // The 4-byte window may end mid-character; shrink until it decodes.
                    (1..4)
                        .rev()
                        .find_map(|n| std::str::from_utf8(rest.get(..n)?).ok())
                })
                .and_then(|s| s.chars().next())
        }) {
            let end = start + ch.len_utf8();
            if ch != '\'' && ch != '\n' && self.at(end) == b'\'' {
                self.blank(start, end);
                self.i = end + 1;
                return;
            }
        }
        self.i += 1;
    }

    fn python(&mut self) {
        while self.i < self.b.len() {
            let c = self.b[self.i];
            if c == b'#' {
                self.line_comment();
            } else if self.starts(b"\"\"\"") || self.starts(b"'''") {
                let close = [c, c, c];
                self.triple(&close);
            } else if c == b'"' || c == b'\'' {
                self.quoted(c, true);
            } else {
                self.i += 1;
            }
        }
    }

    /// Blanks a triple-quoted Python string (escapes honoured).
    fn triple(&mut self, close: &[u8; 3]) {
        self.i += 3;
        let start = self.i;
        while self.i < self.b.len() {
            if self.b[self.i] == b'\\' {
                self.i += 2;
                continue;
            }
            if self.starts(close) {
                self.blank(start, self.i);
                self.i += 3;
                return;
            }
            self.i += 1;
        }
        self.blank(start, self.b.len());
    }

    fn script(&mut self) {
        // The last significant code byte decides whether `/` starts a regex or divides.
        let mut last: u8 = 0;
        let mut last_word_return = false;
        while self.i < self.b.len() {
            let c = self.b[self.i];
            if self.starts(b"//") {
                self.line_comment();
                continue;
            }
            if self.starts(b"/*") {
                self.block_comment(false);
                continue;
            }
            match c {
                b'"' | b'\'' => {
                    self.quoted(c, true);
                    last = c;
                }
                b'`' => {
                    self.quoted(b'`', false);
                    last = c;
                }
                b'/' if (last_word_return || b"(,=:[!&|?{};+-*%<>~^\0".contains(&last))
                    && self.script_regex() =>
                {
                    last = b'/';
                }
                _ => {
                    if !c.is_ascii_whitespace() {
                        last = c;
                    }
                    if Self::is_ident(c) || c == b'$' {
                        let start = self.i;
                        while self.i < self.b.len()
                            && (Self::is_ident(self.b[self.i]) || self.b[self.i] == b'$')
                        {
                            self.i += 1;
                        }
                        let word = &self.b[start..self.i];
                        last_word_return = matches!(
                            word,
                            b"return" | b"typeof" | b"case" | b"yield" | b"await" | b"in" | b"of"
                        );
                        last = b'a';
                        continue;
                    }
                    if !c.is_ascii_whitespace() {
                        last_word_return = false;
                    }
                    self.i += 1;
                }
            }
        }
    }

    /// At `/` in a place where a regex literal may start: blanks it if it closes on this line.
    fn script_regex(&mut self) -> bool {
        let mut k = self.i + 1;
        let mut class = false;
        while k < self.b.len() {
            match self.b[k] {
                b'\n' => return false,
                b'\\' => k += 1,
                b'[' => class = true,
                b']' => class = false,
                b'/' if !class => {
                    if k == self.i + 1 {
                        return false;
                    }
                    self.blank(self.i + 1, k);
                    self.i = k + 1;
                    return true;
                }
                _ => {}
            }
            k += 1;
        }
        false
    }

    fn go(&mut self) {
        while self.i < self.b.len() {
            let c = self.b[self.i];
            if self.starts(b"//") {
                self.line_comment();
            } else if self.starts(b"/*") {
                self.block_comment(false);
            } else if c == b'"' || c == b'\'' {
                self.quoted(c, true);
            } else if c == b'`' {
                self.raw(1, b"`");
            } else {
                self.i += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masking_keeps_length_and_line_breaks() {
        let src = "let s = \"a\nb\"; // é comment\nfn x() {}\n";
        let m = mask(src, Syntax::Rust);
        assert_eq!(m.len(), src.len());
        assert_eq!(m.lines().count(), src.lines().count());
        assert!(m.contains("fn x() {}"));
        assert!(!m.contains("comment"));
    }

    #[test]
    fn rust_raw_strings_nested_comments_and_chars_are_blanked_but_lifetimes_are_not() {
        let src = "let a = r#\"fn inner() \"quoted\"\"#;\n/* outer /* fn nested() */ fn still() */\nfn real<'a>(x: &'a str) -> char { '{' }\n";
        let m = mask(src, Syntax::Rust);
        assert!(!m.contains("inner"));
        assert!(!m.contains("nested"));
        assert!(!m.contains("still"));
        assert!(m.contains("fn real<'a>(x: &'a str) -> char { ' ' }"));
    }

    #[test]
    fn python_docstrings_and_comments_are_blanked() {
        let src =
            "def f():\n    \"\"\"\n    def fake():\n    \"\"\"\n    x = 'def g()'  # def h()\n";
        let m = mask(src, Syntax::Python);
        assert!(m.contains("def f():"));
        assert!(!m.contains("fake"));
        assert!(!m.contains("def g"));
        assert!(!m.contains("def h"));
    }

    #[test]
    fn script_templates_and_regex_literals_are_blanked_but_division_is_not() {
        let src =
            "const t = `\nfunction fake() {\n`;\nconst r = /\\/\\/{/g;\nconst d = a / b / c;\n";
        let m = mask(src, Syntax::Script);
        assert!(!m.contains("fake"));
        assert!(!m.contains('{'));
        assert!(m.contains("a / b / c"));
    }

    #[test]
    fn go_raw_strings_are_blanked() {
        let src = "var s = `\nfunc fake() {}\n`\nfunc real() {}\n";
        let m = mask(src, Syntax::Go);
        assert!(!m.contains("fake"));
        assert!(m.contains("func real() {}"));
    }
}
