//! Argument and environment templates: fixed text with `{placeholder}` slots.
//!
//! A template is parsed once, at construction, against the captures the mount pattern
//! declares; an unknown placeholder is a config error then, never a surprise at request time.
//! Rendering only ever produces one string per template, so a capture value fills exactly one
//! slot of one argv element or one environment value, whatever characters it contains.

use std::collections::BTreeMap;

use avm_core::{Error, Result};

/// The capture names a mount pattern declares: every `{name}` segment, and `**` when the
/// pattern ends in it.
pub fn pattern_captures(pattern: &str) -> Result<Vec<String>> {
    // Parsing with the router validates the pattern the same way the host does.
    Ok(avm_core::router::Pattern::parse(pattern)?.capture_names())
}

/// Placeholders that do not name a capture.
const BUILTINS: [&str; 4] = ["path", "rest", "suffix", "caller"];

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Lit(String),
    /// A capture, by its key in `Request::captures` (`**` for `{rest}`).
    Capture(String),
    Path,
    Suffix,
    Caller,
    Query(String),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pieces: Vec<Piece>,
}

/// What a template is rendered from, for one request.
pub struct Context<'a> {
    /// Captures by key (`**` for the rest of the path).
    pub captures: &'a BTreeMap<String, String>,
    /// The full request path.
    pub path: &'a str,
    /// The suffix, empty if none.
    pub suffix: &'a str,
    /// `operator` or the agent id.
    pub caller: &'a str,
    /// The request's query.
    pub query: &'a avm_core::Query,
}

impl Template {
    /// Parses `raw` (the value of config option `option`) against the pattern's `captures`.
    pub fn parse(raw: &str, option: &str, captures: &[String]) -> Result<Self> {
        let mut pieces = Vec::new();
        let mut lit = String::new();
        let mut chars = raw.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    lit.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    lit.push('}');
                }
                '}' => {
                    return Err(Error::invalid(format!(
                        "option {option}: {raw:?} has a '}}' without a '{{'; write '}}}}' for a literal brace"
                    )));
                }
                '{' => {
                    let mut name = String::new();
                    let mut closed = false;
                    for n in chars.by_ref() {
                        if n == '}' {
                            closed = true;
                            break;
                        }
                        name.push(n);
                    }
                    if !closed {
                        return Err(Error::invalid(format!(
                            "option {option}: {raw:?} has an unclosed '{{'; write '{{{{' for a literal brace"
                        )));
                    }
                    if !lit.is_empty() {
                        pieces.push(Piece::Lit(std::mem::take(&mut lit)));
                    }
                    pieces.push(resolve(&name, raw, option, captures)?);
                }
                c => lit.push(c),
            }
        }
        if !lit.is_empty() {
            pieces.push(Piece::Lit(lit));
        }
        Ok(Template { pieces })
    }

    /// Does the template itself begin with a literal `-` (so a leading dash is the operator's)?
    pub fn starts_with_literal_dash(&self) -> bool {
        matches!(self.pieces.first(), Some(Piece::Lit(l)) if l.starts_with('-'))
    }

    /// The query keys this template reads.
    pub fn query_keys(&self) -> impl Iterator<Item = &str> {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Query(k) => Some(k.as_str()),
            _ => None,
        })
    }

    /// The one string this template stands for in `ctx`.
    pub fn render(&self, ctx: &Context<'_>) -> String {
        let mut out = String::new();
        for p in &self.pieces {
            match p {
                Piece::Lit(s) => out.push_str(s),
                Piece::Capture(k) => out.push_str(ctx.captures.get(k).map_or("", String::as_str)),
                Piece::Path => out.push_str(ctx.path),
                Piece::Suffix => out.push_str(ctx.suffix),
                Piece::Caller => out.push_str(ctx.caller),
                Piece::Query(k) => out.push_str(ctx.query.get(k).unwrap_or("")),
            }
        }
        out
    }
}

fn resolve(name: &str, raw: &str, option: &str, captures: &[String]) -> Result<Piece> {
    if let Some(key) = name.strip_prefix("query.") {
        if key.is_empty() {
            return Err(Error::invalid(format!(
                "option {option}: {raw:?} has {{query.}} without a key; write {{query.KEY}}"
            )));
        }
        return Ok(Piece::Query(key.to_string()));
    }
    let has_rest = captures.iter().any(|c| c == "**");
    let is_capture = captures.iter().any(|c| c == name);
    if is_capture && BUILTINS.contains(&name) {
        // A capture named like a built-in would silently mean one or the other.
        return Err(Error::invalid(format!(
            "option {option}: {{{name}}} in {raw:?} is ambiguous: the pattern captures {{{name}}} and it is also a built-in placeholder; rename the capture"
        )));
    }
    match name {
        _ if is_capture => Ok(Piece::Capture(name.to_string())),
        "path" => Ok(Piece::Path),
        "suffix" => Ok(Piece::Suffix),
        "caller" => Ok(Piece::Caller),
        "rest" if has_rest => Ok(Piece::Capture("**".to_string())),
        _ => {
            let mut known: Vec<String> = captures
                .iter()
                .filter(|c| *c != "**")
                .map(|c| format!("{{{c}}}"))
                .collect();
            if has_rest {
                known.push("{rest}".into());
            }
            known.extend(
                ["{path}", "{suffix}", "{caller}", "{query.KEY}"]
                    .iter()
                    .map(|s| s.to_string()),
            );
            Err(Error::invalid(format!(
                "option {option}: unknown placeholder {{{name}}} in {raw:?}; known placeholders: {}",
                known.join(", ")
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn caps(pattern: &str) -> Vec<String> {
        pattern_captures(pattern).unwrap()
    }

    #[test]
    fn pattern_captures_lists_named_segments_and_the_globstar() {
        assert_eq!(caps("/tools/weather/{city}"), vec!["city"]);
        assert_eq!(caps("/t/{a}/x/{b}/**"), vec!["a", "b", "**"]);
        assert!(pattern_captures("no-slash").is_err());
    }

    #[test]
    fn placeholders_render_into_one_string() {
        let t = Template::parse(
            "{{lit}} {city}-{rest}-{path}-{suffix}-{caller}-{query.unit}",
            "args[0]",
            &caps("/w/{city}/**"),
        )
        .unwrap();
        let mut c = BTreeMap::new();
        c.insert("city".to_string(), "a b".to_string());
        c.insert("**".to_string(), "x/y".to_string());
        let mut q = avm_core::Query::new();
        q.push("unit", "c");
        let ctx = Context {
            captures: &c,
            path: "/w/a b/x/y",
            suffix: "",
            caller: "operator",
            query: &q,
        };
        assert_eq!(t.render(&ctx), "{lit} a b-x/y-/w/a b/x/y--operator-c");
        assert_eq!(t.query_keys().collect::<Vec<_>>(), vec!["unit"]);
    }

    #[test]
    fn unknown_and_malformed_placeholders_are_refused_naming_the_option() {
        let c = caps("/w/{city}");
        let e = Template::parse("{town}", "args[1]", &c).unwrap_err();
        assert_eq!(e.kind(), avm_core::ErrorKind::InvalidInput);
        assert!(e.message().contains("args[1]") && e.message().contains("{town}"));
        assert!(e.message().contains("{city}"));
        // {rest} only exists when the pattern ends in **.
        assert!(Template::parse("{rest}", "args[0]", &c).is_err());
        assert!(Template::parse("{city", "args[0]", &c).is_err());
        assert!(Template::parse("city}", "args[0]", &c).is_err());
        assert!(Template::parse("{query.}", "args[0]", &c).is_err());
        assert!(Template::parse("{path}", "x", &caps("/w/{path}")).is_err());
    }
}
