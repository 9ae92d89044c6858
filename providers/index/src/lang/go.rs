//! Go: `func` (with or without a receiver, generic or not) and `type` declarations, including
//! those grouped in `type ( … )`. Go declarations are always at column 0 under gofmt, which
//! keeps function literals and local types inside bodies out.

use std::sync::LazyLock;

use regex::Regex;

use super::{Brackets, Signature, Source, compile, find_top, finish, lex::Syntax};

const BR: Brackets = Brackets { angles: false };

static FUNC: LazyLock<Regex> =
    LazyLock::new(|| compile(r"^func\s*(?P<recv>\([^)]*\))?\s*(?P<name>[A-Za-z_][A-Za-z0-9_]*)"));

static TYPE: LazyLock<Regex> =
    LazyLock::new(|| compile(r"^type\s+(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<rest>.*)$"));

static TYPE_GROUP: LazyLock<Regex> = LazyLock::new(|| compile(r"^type\s*\(\s*$"));

static GROUP_MEMBER: LazyLock<Regex> =
    LazyLock::new(|| compile(r"^\s+(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<rest>\s.*)$"));

static STRUCT_OR_INTERFACE: LazyLock<Regex> =
    LazyLock::new(|| compile(r"^\s*(?:\[[^\]]*\])?\s*(?P<kw>struct|interface)\b"));

/// Signatures of a Go source file.
pub fn extract(src: &str) -> Vec<Signature> {
    let s = Source::new(src, Syntax::Go);
    let mut out = Vec::new();
    let mut braces = 0i64;
    let mut parens = 0i64;
    // Inside `type (`: the paren depth of the group.
    let mut group = false;
    for i in 0..s.len() {
        let m = s.masked[i].as_str();
        let line = u32::try_from(i + 1).unwrap_or(u32::MAX);
        if braces == 0 && parens == 0 {
            if TYPE_GROUP.is_match(m) {
                group = true;
            } else if let Some(c) = FUNC.captures(m) {
                let kind = if c.name("recv").is_some() {
                    "method"
                } else {
                    "func"
                };
                out.push(Signature {
                    line,
                    kind: kind.into(),
                    name: c.name("name").map_or("", |x| x.as_str()).to_string(),
                    depth: 0,
                    text: text_of(&s, i),
                });
            } else if let Some(c) = TYPE.captures(m) {
                out.push(type_sig(&s, i, line, &c));
            }
        } else if group
            && braces == 0
            && parens == 1
            && let Some(c) = GROUP_MEMBER.captures(m)
        {
            out.push(type_sig(&s, i, line, &c));
        }
        for c in m.bytes() {
            match c {
                b'{' => braces += 1,
                b'}' => braces = (braces - 1).max(0),
                b'(' | b'[' => parens += 1,
                b')' | b']' => {
                    parens = (parens - 1).max(0);
                    if parens == 0 {
                        group = false;
                    }
                }
                _ => {}
            }
        }
    }
    out
}

fn type_sig(s: &Source, i: usize, line: u32, c: &regex::Captures) -> Signature {
    let rest = c.name("rest").map_or("", |x| x.as_str());
    let kind = STRUCT_OR_INTERFACE
        .captures(rest)
        .and_then(|k| k.name("kw"))
        .map_or("type", |k| k.as_str());
    Signature {
        line,
        kind: kind.into(),
        name: c.name("name").map_or("", |x| x.as_str()).to_string(),
        depth: 0,
        text: text_of(s, i),
    }
}

/// The declaration from line `i`, joined across lines and cut before its body.
fn text_of(s: &Source, i: usize) -> String {
    let j = s.join(i, BR);
    let at = find_top(&j.masked, BR, |b, k| b[k] == b'{');
    finish(&j.orig, at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(src: &str) -> Vec<(String, String)> {
        extract(src).into_iter().map(|s| (s.kind, s.text)).collect()
    }

    #[test]
    fn functions_methods_and_types_are_found() {
        let src = r#"package server

import "net/http"

// func Fake() {}
type Server struct {
	addr string
}

type Store interface {
	Get(key string) (string, error)
}

type ID int64

type List[T any] struct {
	items []T
}

func New(addr string) *Server {
	return &Server{addr: addr}
}

func (s *Server) Handle(w http.ResponseWriter, r *http.Request) {
	fn := func() {}
	_ = fn
}

func (l *List[T]) Push(v T) { l.items = append(l.items, v) }

func Map[T, U any](xs []T, f func(T) U) []U {
	return nil
}
"#;
        let got = shown(src);
        let got: Vec<(&str, &str)> = got.iter().map(|(k, t)| (k.as_str(), t.as_str())).collect();
        assert_eq!(
            got,
            vec![
                ("struct", "type Server struct"),
                ("interface", "type Store interface"),
                ("type", "type ID int64"),
                ("struct", "type List[T any] struct"),
                ("func", "func New(addr string) *Server"),
                (
                    "method",
                    "func (s *Server) Handle(w http.ResponseWriter, r *http.Request)"
                ),
                ("method", "func (l *List[T]) Push(v T)"),
                ("func", "func Map[T, U any](xs []T, f func(T) U) []U"),
            ]
        );
        let names: Vec<String> = extract(src).into_iter().map(|s| s.name).collect();
        assert_eq!(names[5], "Handle");
    }

    #[test]
    fn multi_line_parameters_are_joined() {
        let src = "func (s *Server) Serve(\n\tctx context.Context,\n\treq *Request, // the request\n) (*Response, error) {\n\treturn nil, nil\n}\n";
        assert_eq!(
            shown(src)[0].1,
            "func (s *Server) Serve(ctx context.Context, req *Request) (*Response, error)"
        );
    }

    #[test]
    fn grouped_types_are_found() {
        let src = "type (\n\tA struct {\n\t\tx int\n\t}\n\tB interface{ M() }\n\tC = string\n)\n\nfunc After() {}\n";
        let got = shown(src);
        let got: Vec<(&str, &str)> = got.iter().map(|(k, t)| (k.as_str(), t.as_str())).collect();
        assert_eq!(
            got,
            vec![
                ("struct", "A struct"),
                ("interface", "B interface"),
                ("type", "C = string"),
                ("func", "func After()"),
            ]
        );
    }

    #[test]
    fn raw_strings_and_block_comments_hide_fake_funcs() {
        let src = "var tmpl = `\nfunc Fake() {}\n`\n/*\nfunc Fake2() {}\n*/\nfunc Real() {}\n";
        assert_eq!(shown(src), vec![("func".into(), "func Real()".into())]);
    }
}
