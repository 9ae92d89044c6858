//! The config-pattern router: maps normalised paths to mounts.
//!
//! A pattern is a `/`-separated list of segments: a literal (`memory`), a capture (`{symbol}`,
//! one whole segment, handed to the provider by name), `*` (any one segment) or `**` (zero or
//! more segments, last only). The most specific pattern wins, compared segment by segment:
//! literal > capture > `*` > end of pattern > `**`. Two patterns that are equally specific and
//! can match the same path are rejected when the router is built.

use std::collections::BTreeMap;

use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Lit(String),
    Cap(String),
    Star,
    Globstar,
}

impl Seg {
    /// Specificity of one segment; `END` sits between `*` and `**`.
    fn rank(&self) -> u8 {
        match self {
            Seg::Lit(_) => 4,
            Seg::Cap(_) => 3,
            Seg::Star => 2,
            Seg::Globstar => 0,
        }
    }
}

const END: u8 = 1;

/// A parsed mount pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    raw: String,
    segs: Vec<Seg>,
}

impl Pattern {
    /// Parses a pattern such as `/live/prices/{symbol}` or `/memory/**`.
    pub fn parse(raw: &str) -> Result<Self> {
        if !raw.starts_with('/') {
            return Err(Error::invalid(format!(
                "mount pattern {raw:?} must start with '/', e.g. /memory/**"
            )));
        }
        let mut segs = Vec::new();
        let mut names = Vec::new();
        let parts: Vec<&str> = raw.split('/').filter(|s| !s.is_empty()).collect();
        for (i, part) in parts.iter().enumerate() {
            let seg = match *part {
                "**" if i + 1 == parts.len() => Seg::Globstar,
                "**" => {
                    return Err(Error::invalid(format!(
                        "mount pattern {raw:?}: '**' may only be the last segment"
                    )));
                }
                "*" => Seg::Star,
                "." | ".." => {
                    return Err(Error::invalid(format!(
                        "mount pattern {raw:?} may not contain '.' or '..' segments"
                    )));
                }
                p if p.starts_with('{') && p.ends_with('}') => {
                    let name = &p[1..p.len() - 1];
                    let ok = name
                        .chars()
                        .next()
                        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
                        && name
                            .chars()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
                    if !ok {
                        return Err(Error::invalid(format!(
                            "mount pattern {raw:?}: capture {{{name}}} must be a lowercase identifier like {{symbol}}"
                        )));
                    }
                    if names.contains(&name) {
                        return Err(Error::invalid(format!(
                            "mount pattern {raw:?} captures {{{name}}} twice"
                        )));
                    }
                    names.push(name);
                    Seg::Cap(name.to_string())
                }
                p if p.contains(['{', '}', '*', '?']) => {
                    return Err(Error::invalid(format!(
                        "mount pattern {raw:?}: segment {p:?} mixes text with a wildcard; use a whole segment: literal, {{name}}, * or **"
                    )));
                }
                p => Seg::Lit(p.to_string()),
            };
            segs.push(seg);
        }
        Ok(Pattern {
            raw: raw.to_string(),
            segs,
        })
    }

    /// The pattern as written in the config.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// The names of the pattern's captures in order; `**` is named `**`.
    pub fn capture_names(&self) -> Vec<String> {
        self.segs
            .iter()
            .filter_map(|s| match s {
                Seg::Cap(c) => Some(c.clone()),
                Seg::Globstar => Some("**".to_string()),
                _ => None,
            })
            .collect()
    }

    /// The literal path before the first wildcard (`/live/prices` for `/live/prices/{s}`).
    pub fn literal_prefix(&self) -> String {
        let mut out = String::new();
        for s in &self.segs {
            match s {
                Seg::Lit(l) => {
                    out.push('/');
                    out.push_str(l);
                }
                _ => break,
            }
        }
        if out.is_empty() { "/".into() } else { out }
    }

    fn rank(&self) -> Vec<u8> {
        let mut r: Vec<u8> = self.segs.iter().map(Seg::rank).collect();
        if !matches!(self.segs.last(), Some(Seg::Globstar)) {
            r.push(END);
        }
        r
    }

    /// Matches a normalised path, returning the captures (and `**` under the key `"**"`).
    pub fn matches(&self, path: &str) -> Option<BTreeMap<String, String>> {
        let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let mut caps = BTreeMap::new();
        for (i, seg) in self.segs.iter().enumerate() {
            match seg {
                Seg::Globstar => {
                    caps.insert("**".to_string(), parts.get(i..).unwrap_or(&[]).join("/"));
                    return Some(caps);
                }
                _ => {
                    let part = parts.get(i)?;
                    match seg {
                        Seg::Lit(l) if l != part => return None,
                        Seg::Cap(name) => {
                            caps.insert(name.clone(), (*part).to_string());
                        }
                        _ => {}
                    }
                }
            }
        }
        (parts.len() == self.segs.len()).then_some(caps)
    }

    /// Could some path match both patterns? Only asked of equally ranked patterns, which have
    /// the same shape, so it comes down to the literals agreeing.
    fn overlaps(&self, other: &Pattern) -> bool {
        self.segs.len() == other.segs.len()
            && self
                .segs
                .iter()
                .zip(&other.segs)
                .all(|(a, b)| match (a, b) {
                    (Seg::Lit(x), Seg::Lit(y)) => x == y,
                    _ => true,
                })
    }

    /// Could this pattern match some path inside `prefix` (or `prefix` itself)?
    pub fn may_match_within(&self, prefix: &str) -> bool {
        let parts: Vec<&str> = prefix.split('/').filter(|s| !s.is_empty()).collect();
        for (i, part) in parts.iter().enumerate() {
            match self.segs.get(i) {
                None => return false,
                Some(Seg::Globstar) => return true,
                Some(Seg::Lit(l)) if l != part => return false,
                Some(_) => {}
            }
        }
        true
    }
}

/// A route found for a path.
#[derive(Debug)]
pub struct Route<'a, T> {
    /// The winning pattern.
    pub pattern: &'a Pattern,
    /// The value mounted there.
    pub target: &'a T,
    /// Named captures (and `**`).
    pub captures: BTreeMap<String, String>,
}

/// Maps paths to mounted values by the most specific pattern.
#[derive(Debug)]
pub struct Router<T> {
    routes: Vec<(Pattern, T)>,
}

impl<T> Router<T> {
    /// Builds a router, reporting every bad pattern and every tie, not just the first.
    pub fn new(entries: Vec<(String, T)>) -> std::result::Result<Self, Vec<Error>> {
        let mut errors = Vec::new();
        let mut routes: Vec<(Pattern, T)> = Vec::new();
        for (raw, target) in entries {
            match Pattern::parse(&raw) {
                Ok(p) => {
                    let rank = p.rank();
                    if let Some((other, _)) = routes
                        .iter()
                        .find(|(o, _)| o.rank() == rank && o.overlaps(&p))
                    {
                        errors.push(Error::invalid(format!(
                            "mount patterns {:?} and {:?} are equally specific and match the same paths; remove one or make one more specific",
                            other.as_str(),
                            p.as_str()
                        )));
                    } else {
                        routes.push((p, target));
                    }
                }
                Err(e) => errors.push(e),
            }
        }
        if errors.is_empty() {
            // Most specific first, so `route` can stop at the first match.
            routes.sort_by_key(|r| std::cmp::Reverse(r.0.rank()));
            Ok(Router { routes })
        } else {
            Err(errors)
        }
    }

    /// The most specific route for `path`, if any pattern matches.
    pub fn route(&self, path: &str) -> Option<Route<'_, T>> {
        self.routes.iter().find_map(|(p, t)| {
            p.matches(path).map(|captures| Route {
                pattern: p,
                target: t,
                captures,
            })
        })
    }

    /// Every mount, most specific first.
    pub fn routes(&self) -> impl Iterator<Item = (&Pattern, &T)> {
        self.routes.iter().map(|(p, t)| (p, t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(pats: &[&str]) -> Router<String> {
        Router::new(
            pats.iter()
                .map(|p| (p.to_string(), p.to_string()))
                .collect(),
        )
        .unwrap()
    }

    #[test]
    fn most_specific_pattern_wins() {
        let r = router(&[
            "/**",
            "/memory/**",
            "/live/prices/{symbol}",
            "/live/prices/*",
            "/live/prices/spy",
        ]);
        assert_eq!(r.route("/memory/a/b.md").unwrap().target, "/memory/**");
        assert_eq!(r.route("/memory").unwrap().target, "/memory/**");
        assert_eq!(
            r.route("/live/prices/spy").unwrap().target,
            "/live/prices/spy"
        );
        let m = r.route("/live/prices/nvda").unwrap();
        assert_eq!(m.target, "/live/prices/{symbol}");
        assert_eq!(m.captures["symbol"], "nvda");
        assert_eq!(r.route("/live/prices/nvda/x").unwrap().target, "/**");
        assert_eq!(r.route("/").unwrap().target, "/**");
    }

    #[test]
    fn star_beats_globstar_and_literal_end_beats_globstar() {
        let r = router(&["/docs/**", "/docs/*", "/docs"]);
        assert_eq!(r.route("/docs/a").unwrap().target, "/docs/*");
        assert_eq!(r.route("/docs/a/b").unwrap().target, "/docs/**");
        assert_eq!(r.route("/docs").unwrap().target, "/docs");
    }

    #[test]
    fn equally_specific_overlapping_patterns_are_all_reported() {
        let errs = Router::new(vec![
            ("/a/{x}".to_string(), 1),
            ("/a/{y}".to_string(), 2),
            ("/b/*".to_string(), 3),
            ("/b/*".to_string(), 4),
            ("/c/*".to_string(), 5),
            ("no-slash".to_string(), 6),
        ])
        .unwrap_err();
        assert_eq!(errs.len(), 3, "{errs:?}");
    }

    #[test]
    fn disjoint_patterns_of_equal_rank_coexist() {
        let r = router(&["/a/*", "/b/*"]);
        assert_eq!(r.route("/b/x").unwrap().target, "/b/*");
        assert!(r.route("/c/x").is_none());
    }

    #[test]
    fn malformed_patterns_are_refused() {
        for bad in ["/a/**/b", "/a/x{y}", "/a/{Y}", "/a/{x}/{x}", "/a/../b"] {
            assert!(Pattern::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn globstar_captures_the_rest() {
        let p = Pattern::parse("/kb/**").unwrap();
        assert_eq!(p.matches("/kb/a/b").unwrap()["**"], "a/b");
        assert_eq!(p.matches("/kb").unwrap()["**"], "");
        assert!(p.may_match_within("/kb/a"));
        assert!(p.may_match_within("/"));
        assert!(!p.may_match_within("/other"));
        assert_eq!(p.literal_prefix(), "/kb");
    }
}
