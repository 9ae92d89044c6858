//! The address grammar: `path [":" suffix] ["?" query]`.
//!
//! One parser serves every front end. Paths are normalised here (no `.`, `..`, `//`, NUL or
//! control characters; a bad path is [`ErrorKind::InvalidInput`](crate::ErrorKind), never a
//! traversal). Query values are percent-decoded (`+` is a space). Whether a trailing `:word` is a
//! suffix or part of a file name (`a:b.md` is a legal name) is decided by the host, which knows
//! what the routed provider declares: see [`Address::parse_with`].

use std::fmt;
use std::str::FromStr;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

use crate::error::{Error, Result};

/// Longest accepted path, in bytes. Above `PATH_MAX` (4096): that limit applies to the
/// path a program hands the kernel, which may be relative to a directory deep inside a mount,
/// while avm's paths run from the mount's root.
pub const MAX_PATH_BYTES: usize = 16384;
/// Longest accepted path segment, in bytes (the usual `NAME_MAX`).
pub const MAX_SEGMENT_BYTES: usize = 255;
/// Longest accepted suffix name.
pub const MAX_SUFFIX_LEN: usize = 32;

/// Characters escaped when a query is written back out.
const QUERY_ESCAPE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/')
    .remove(b':')
    .remove(b',')
    .remove(b'@');

/// Normalises `raw` into an absolute path: a missing leading `/` is added, empty and `.`
/// segments are dropped, a trailing `/` is removed. `..`, NUL, control characters and `?` are
/// refused with a message that names the path.
pub fn normalize_path(raw: &str) -> Result<String> {
    if raw.is_empty() {
        return Err(Error::invalid(
            "empty path: give an absolute path such as /memory/notes/a.md",
        ));
    }
    if raw.len() > MAX_PATH_BYTES {
        return Err(Error::invalid(format!(
            "path is {} bytes long; at most {MAX_PATH_BYTES} bytes are accepted",
            raw.len()
        )));
    }
    let mut out = String::with_capacity(raw.len() + 1);
    for seg in raw.split('/') {
        if seg.is_empty() || seg == "." {
            continue;
        }
        if seg == ".." {
            return Err(Error::invalid(format!(
                "path {} contains a '..' segment; give the path without '..'",
                show(raw)
            )));
        }
        if let Some(c) = seg.chars().find(|c| c.is_control()) {
            return Err(Error::invalid(format!(
                "path {} contains the control character {:?}; paths may hold printable characters only",
                show(raw),
                c
            )));
        }
        if seg.contains('?') {
            return Err(Error::invalid(format!(
                "path {} contains '?', which starts a query; rename the node without '?'",
                show(raw)
            )));
        }
        if seg.len() > MAX_SEGMENT_BYTES {
            return Err(Error::invalid(format!(
                "path segment {:?} is {} bytes long; at most {MAX_SEGMENT_BYTES} bytes are accepted",
                truncate(seg, 40),
                seg.len()
            )));
        }
        out.push('/');
        out.push_str(seg);
    }
    if out.is_empty() {
        out.push('/');
    }
    Ok(out)
}

/// Quotes `raw` for an error message, escaping what a terminal would mangle.
fn show(raw: &str) -> String {
    format!("{:?}", truncate(raw, 120))
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Is `s` a well-formed suffix name (`[a-z][a-z0-9_-]*`, at most [`MAX_SUFFIX_LEN`])?
pub fn is_suffix_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some('a'..='z'))
        && s.len() <= MAX_SUFFIX_LEN
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_' | '-'))
}

/// Splits a normalised path whose last segment ends in `:word` into `(base, word)`.
///
/// `/a/b.md:meta` gives `("/a/b.md", "meta")`; `/memory/:list` gives `("/memory", "list")`;
/// `/:search` gives `("/", "search")`. Returns `None` when the last segment has no well-formed
/// `:word` ending. The caller decides whether the word is a declared suffix.
pub fn suffix_candidate(path: &str) -> Option<(String, &str)> {
    let i = path.rfind('/')?;
    let (parent, last) = (&path[..i], &path[i + 1..]);
    let colon = last.rfind(':')?;
    let word = &last[colon + 1..];
    if !is_suffix_name(word) {
        return None;
    }
    let name = &last[..colon];
    let base = if name.is_empty() {
        if parent.is_empty() {
            "/".to_string()
        } else {
            parent.to_string()
        }
    } else {
        format!("{parent}/{name}")
    };
    Some((base, word))
}

/// An ordered, percent-decoded query string.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    /// An empty query.
    pub fn new() -> Self {
        Query::default()
    }

    /// Parses `a=1&b=x%20y`; `+` decodes to a space, a key without `=` has the value `""`.
    pub fn parse(raw: &str) -> Result<Self> {
        let mut pairs = Vec::new();
        for part in raw.split('&') {
            if part.is_empty() {
                continue;
            }
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            let k = decode(k)?;
            if k.is_empty() {
                return Err(Error::invalid(format!(
                    "query part {part:?} has an empty key; write key=value"
                )));
            }
            pairs.push((k, decode(v)?));
        }
        Ok(Query { pairs })
    }

    /// Is the query empty?
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// Appends `key=value`.
    pub fn push(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.pairs.push((key.into(), value.into()));
    }

    /// The first value for `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// All pairs in order.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.pairs
    }

    /// Fails when a key is not in `accepted`, listing what is accepted. `what` names the
    /// operation (e.g. `"read of /a.md"`).
    pub fn check_keys(&self, accepted: &[&str], what: &str) -> Result<()> {
        for (k, _) in &self.pairs {
            if !accepted.contains(&k.as_str()) {
                let list = if accepted.is_empty() {
                    "none".to_string()
                } else {
                    accepted.join(", ")
                };
                return Err(Error::invalid(format!(
                    "unknown query key {k:?} for {what}; accepted keys: {list}"
                )));
            }
        }
        Ok(())
    }

    /// Parses the value of `key` as `T`; the error names the key, the value and the type.
    pub fn parsed<T: FromStr>(&self, key: &str) -> Result<Option<T>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.parse::<T>().map(Some).map_err(|_| {
                Error::invalid(format!(
                    "query key {key}={v:?} is not a valid {}",
                    short_type_name::<T>()
                ))
            }),
        }
    }

    /// A boolean flag: present with `""`, `1`, `true`, `yes` or `on` means true.
    pub fn flag(&self, key: &str) -> Result<bool> {
        match self.get(key) {
            None => Ok(false),
            Some("" | "1" | "true" | "yes" | "on") => Ok(true),
            Some("0" | "false" | "no" | "off") => Ok(false),
            Some(v) => Err(Error::invalid(format!(
                "query key {key}={v:?} is not a boolean; use 1/0, true/false, yes/no"
            ))),
        }
    }
}

fn short_type_name<T>() -> &'static str {
    let full = std::any::type_name::<T>();
    match full.rsplit("::").next() {
        Some("i64" | "i32" | "u64" | "u32" | "usize") => "whole number",
        Some("f64" | "f32") => "number",
        Some(other) => other,
        None => full,
    }
}

fn decode(s: &str) -> Result<String> {
    let plus = s.replace('+', " ");
    percent_decode_str(&plus)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| Error::invalid(format!("query part {s:?} does not decode to UTF-8")))
}

impl fmt::Display for Query {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (k, v)) in self.pairs.iter().enumerate() {
            if i > 0 {
                f.write_str("&")?;
            }
            write!(f, "{}", utf8_percent_encode(k, QUERY_ESCAPE))?;
            if !v.is_empty() {
                write!(f, "={}", utf8_percent_encode(v, QUERY_ESCAPE))?;
            }
        }
        Ok(())
    }
}

/// The address of `suffix` on `path` (none when empty) with the query `pairs`, each value
/// percent-encoded (`/memory:browse?q=rate+cuts`): how a front end asks the host for a service.
pub fn suffixed(path: &str, suffix: &str, pairs: &[(&str, String)]) -> Result<String> {
    let mut q = Query::new();
    for (k, v) in pairs {
        q.push(*k, v.clone());
    }
    let mut s = Address::path(path)?.path;
    if !suffix.is_empty() {
        s.push(':');
        s.push_str(suffix);
    }
    if !q.is_empty() {
        s.push('?');
        s.push_str(&q.to_string());
    }
    Ok(s)
}

/// A parsed address: a normalised path, an optional suffix and a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    /// Absolute, normalised path (never ends with `/` unless it is `/`).
    pub path: String,
    /// The suffix without its colon (`meta` for `a.md:meta`).
    pub suffix: Option<String>,
    /// The decoded query.
    pub query: Query,
}

impl Address {
    /// An address for a plain path with no suffix or query.
    pub fn path(path: &str) -> Result<Self> {
        Ok(Address {
            path: normalize_path(path)?,
            suffix: None,
            query: Query::new(),
        })
    }

    /// Parses `raw`, treating a trailing `:word` as a suffix only when `is_suffix(base, word)`
    /// says so; otherwise the colon stays part of the file name.
    pub fn parse_with(raw: &str, is_suffix: impl Fn(&str, &str) -> bool) -> Result<Self> {
        let (path_part, query_part) = match raw.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (raw, None),
        };
        let path = normalize_path(path_part)?;
        let query = match query_part {
            Some(q) => Query::parse(q)?,
            None => Query::new(),
        };
        if let Some((base, word)) = suffix_candidate(&path)
            && is_suffix(&base, word)
        {
            let word = word.to_string();
            return Ok(Address {
                path: base,
                suffix: Some(word),
                query,
            });
        }
        Ok(Address {
            path,
            suffix: None,
            query,
        })
    }

    /// Parses `raw`, treating every well-formed trailing `:word` as a suffix.
    pub fn parse(raw: &str) -> Result<Self> {
        Address::parse_with(raw, |_, _| true)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.path)?;
        if let Some(s) = &self.suffix {
            write!(f, ":{s}")?;
        }
        if !self.query.is_empty() {
            write!(f, "?{}", self.query)?;
        }
        Ok(())
    }
}

/// Is `path` equal to `prefix` or inside it (`/a` contains `/a` and `/a/b`, not `/ab`)?
pub fn is_within(path: &str, prefix: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    path == prefix
        || (path.len() > prefix.len()
            && path.starts_with(prefix)
            && path.as_bytes()[prefix.len()] == b'/')
}

/// The parent of a normalised path (`/` for top-level names and for `/` itself).
pub fn parent(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

/// The last segment of a normalised path (`""` for `/`).
pub fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or("")
}

/// Joins a normalised directory and a relative path.
pub fn join(dir: &str, rel: &str) -> String {
    if dir == "/" {
        format!("/{}", rel.trim_start_matches('/'))
    } else {
        format!("{dir}/{}", rel.trim_start_matches('/'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn normalisation_collapses_slashes_and_dots() {
        assert_eq!(normalize_path("//a/./b//c/").unwrap(), "/a/b/c");
        assert_eq!(normalize_path("a/b").unwrap(), "/a/b");
        assert_eq!(normalize_path("/").unwrap(), "/");
        assert_eq!(normalize_path("/./").unwrap(), "/");
    }

    #[test]
    fn dotdot_nul_and_question_mark_are_refused_with_the_path_named() {
        for bad in ["/a/../b", "/a/b\0c", "/a\nb", ""] {
            let e = normalize_path(bad).unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::InvalidInput, "{bad:?}");
        }
        let e = normalize_path("/a?b").unwrap_err();
        assert!(e.message().contains("'?'"), "{e}");
        let e = normalize_path("/x/../../etc").unwrap_err();
        assert!(e.message().contains("/x/../../etc"), "{e}");
    }

    #[test]
    fn suffix_and_query_are_split_and_decoded() {
        let a = Address::parse("/memory/:recall?q=a%20b+c&max_tokens=10").unwrap();
        assert_eq!(a.path, "/memory");
        assert_eq!(a.suffix.as_deref(), Some("recall"));
        assert_eq!(a.query.get("q"), Some("a b c"));
        assert_eq!(a.query.parsed::<u32>("max_tokens").unwrap(), Some(10));

        let a = Address::parse("/private/x.md:meta").unwrap();
        assert_eq!(
            (a.path.as_str(), a.suffix.as_deref()),
            ("/private/x.md", Some("meta"))
        );

        let a = Address::parse("/:search?q=x").unwrap();
        assert_eq!(
            (a.path.as_str(), a.suffix.as_deref()),
            ("/", Some("search"))
        );
    }

    #[test]
    fn undeclared_suffix_stays_part_of_the_name() {
        let a = Address::parse_with("/notes/a:b.md", |_, w| w == "meta").unwrap();
        assert_eq!(a.path, "/notes/a:b.md");
        assert_eq!(a.suffix, None);
        let a = Address::parse_with("/notes/x:cold", |_, w| w == "meta").unwrap();
        assert_eq!(a.path, "/notes/x:cold");
    }

    #[test]
    fn unknown_query_keys_are_listed() {
        let q = Query::parse("limit=3&bogus=1").unwrap();
        let e = q
            .check_keys(&["limit", "offset"], "list of /a")
            .unwrap_err();
        assert!(e.message().contains("bogus") && e.message().contains("limit, offset"));
        let e = Query::parse("limit=x")
            .unwrap()
            .parsed::<u32>("limit")
            .unwrap_err();
        assert!(e.message().contains("limit=\"x\""), "{e}");
    }

    #[test]
    fn within_respects_segment_boundaries() {
        assert!(is_within("/a/b", "/a"));
        assert!(is_within("/a", "/a"));
        assert!(!is_within("/ab", "/a"));
        assert!(is_within("/anything", "/"));
        assert_eq!(parent("/a/b"), "/a");
        assert_eq!(parent("/a"), "/");
        assert_eq!(basename("/a/b.md"), "b.md");
        assert_eq!(join("/", "x"), "/x");
        assert_eq!(join("/a", "x/y"), "/a/x/y");
    }

    fn segment() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9 _.:@,=&%+-]{1,12}".prop_filter("no dot segments", |s| s != "." && s != "..")
    }

    proptest! {
        #[test]
        fn parser_never_panics_on_arbitrary_input(raw in any::<String>()) {
            let _ = Address::parse(&raw);
            let _ = Query::parse(&raw);
        }

        #[test]
        fn parsed_paths_never_escape_the_root(raw in "[a-z./]{0,40}") {
            if let Ok(p) = normalize_path(&raw) {
                prop_assert!(p.starts_with('/'));
                prop_assert!(!p.split('/').any(|s| s == ".." || s == "."));
                prop_assert!(!p.contains("//"));
                prop_assert!(p == "/" || !p.ends_with('/'));
            } else {
                prop_assert!(raw.is_empty() || raw.split('/').any(|s| s == ".."));
            }
        }

        #[test]
        fn normalisation_is_idempotent(raw in any::<String>()) {
            if let Ok(p) = normalize_path(&raw) {
                prop_assert_eq!(normalize_path(&p).unwrap(), p);
            }
        }

        #[test]
        fn display_then_parse_round_trips(
            segs in proptest::collection::vec(segment(), 0..5),
            suffix in proptest::option::of("[a-z][a-z0-9_-]{0,8}"),
            pairs in proptest::collection::vec(("[a-z_]{1,6}", any::<String>()), 0..4),
        ) {
            let path = if segs.is_empty() { "/".to_string() } else { format!("/{}", segs.join("/")) };
            let path = normalize_path(&path).unwrap();
            let mut query = Query::new();
            for (k, v) in &pairs { query.push(k.clone(), v.clone()); }
            let addr = Address { path, suffix: suffix.clone(), query };
            let shown = addr.to_string();
            let back = Address::parse_with(&shown, |_, w| Some(w) == suffix.as_deref()).unwrap();
            prop_assert_eq!(back, addr);
        }
    }
}
