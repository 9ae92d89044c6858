//! Python: `def`, `async def` and `class`, nested by indentation so methods show under their
//! class. Docstrings and comments are masked first, so a docstring line reading `def x():`
//! is never taken for a definition.

use std::sync::LazyLock;

use regex::Regex;

use super::{Brackets, Signature, Source, compile, find_top, finish, indent_of, lex::Syntax};

const BR: Brackets = Brackets { angles: false };

static DEF: LazyLock<Regex> = LazyLock::new(|| {
    compile(r"^\s*(?P<kw>async\s+def|def|class)\s+(?P<name>[A-Za-z_][A-Za-z0-9_]*)")
});

/// Signatures of a Python source file.
pub fn extract(src: &str) -> Vec<Signature> {
    let s = Source::new(src, Syntax::Python);
    let mut out = Vec::new();
    // Open definitions: (indentation, is a class).
    let mut open: Vec<(usize, bool)> = Vec::new();
    let mut parens = 0i64;
    for i in 0..s.len() {
        let m = s.masked[i].as_str();
        // Only lines that start a logical line (not inside brackets) and hold code close blocks.
        if parens == 0 && !m.trim().is_empty() {
            let indent = indent_of(m);
            while open.last().is_some_and(|&(ind, _)| ind >= indent) {
                open.pop();
            }
            if let Some(c) = DEF.captures(m) {
                let kw = c.name("kw").map_or("", |x| x.as_str());
                let name = c.name("name").map_or("", |x| x.as_str()).to_string();
                let is_class = kw == "class";
                let kind = if is_class {
                    "class"
                } else if open.last().is_some_and(|&(_, class)| class) {
                    "method"
                } else {
                    "function"
                };
                let j = s.join(i, BR);
                // The header ends at the first `:` outside brackets (a one-line body follows).
                let at = find_top(&j.masked, BR, |b, k| b[k] == b':').map(|k| k + 1);
                out.push(Signature {
                    line: u32::try_from(i + 1).unwrap_or(u32::MAX),
                    kind: kind.into(),
                    name,
                    depth: u32::try_from(open.len()).unwrap_or(u32::MAX),
                    text: finish(&j.orig, at),
                });
                open.push((indent, is_class));
            }
        }
        parens = (parens + super::depth_delta(m, BR)).max(0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(src: &str) -> Vec<(u32, String, String, u32)> {
        extract(src)
            .into_iter()
            .map(|s| (s.line, s.kind, s.text, s.depth))
            .collect()
    }

    #[test]
    fn functions_classes_and_methods_nest_by_indentation() {
        let src = r#"import os

def top(a, b=1):
    return a

async def fetch(url: str) -> bytes:
    pass

class Store(Base):
    """A store.

    def not_a_method(self):
    """

    def __init__(self, path):
        self.path = path

    async def load(self) -> dict: ...

    @property
    def size(self) -> int:
        def inner():
            pass
        return 0

class Empty: pass
"#;
        let got = shown(src);
        let want: Vec<(u32, &str, &str, u32)> = vec![
            (3, "function", "def top(a, b=1):", 0),
            (6, "function", "async def fetch(url: str) -> bytes:", 0),
            (9, "class", "class Store(Base):", 0),
            (15, "method", "def __init__(self, path):", 1),
            (18, "method", "async def load(self) -> dict:", 1),
            (21, "method", "def size(self) -> int:", 1),
            (22, "function", "def inner():", 2),
            (26, "class", "class Empty:", 0),
        ];
        let got: Vec<(u32, &str, &str, u32)> = got
            .iter()
            .map(|(l, k, t, d)| (*l, k.as_str(), t.as_str(), *d))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn a_definition_after_dedented_code_is_not_a_method() {
        let src = "class A:\n    x = 1\nif True:\n    def g():\n        pass\n";
        let got = shown(src);
        assert_eq!(got[1].1, "function");
        assert_eq!(got[1].3, 0);
    }

    #[test]
    fn multi_line_parameters_are_joined() {
        let src = "def long(\n    first: int,\n    second: str = \"x\",  # note\n) -> Dict[str, int]:\n    pass\n";
        let got = shown(src);
        assert_eq!(
            got[0].2,
            "def long(first: int, second: str = \"x\") -> Dict[str, int]:"
        );
    }

    #[test]
    fn comments_and_strings_never_define_anything() {
        let src = "# def fake():\nx = \"def fake2():\"\ns = '''\ndef fake3():\n'''\n";
        assert!(extract(src).is_empty());
    }

    #[test]
    fn a_closing_bracket_at_column_zero_does_not_close_a_class() {
        let src = "class A:\n    X = dict(\na=1,\n)\n    def m(self):\n        pass\n";
        let got = shown(src);
        assert_eq!(got[1].1, "method");
    }
}
