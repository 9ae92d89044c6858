//! avm http provider (config type `"http"`): serves each matching path by a GET to a URL
//! built from a template.
//!
//! ```toml
//! [[mounts]]
//! pattern = "/live/prices/{symbol}"
//! type = "http"
//! options = { url = "https://api.example.com/v1/quote/{symbol}?fields=price", ttl_secs = 30, transform = "/data/0/price", headers = { Authorization = "Bearer ${QUOTES_TOKEN}" } }
//! ```
//!
//! The URL template's `{name}` placeholders take the mount pattern's captures, `{rest}` the
//! part matched by a trailing `**`. Every value is percent-encoded for its slot (a path
//! segment, or a query or fragment value), so a capture cannot add segments, a query, or a
//! fragment, and cannot climb with `..`. The scheme and host are fixed text: a template whose
//! host contains a placeholder is refused, so paths can never choose which server is asked.
//! `{rest}` keeps its `/` separators in the path (each segment encoded on its own) and has
//! them encoded in the query.
//!
//! The provider is read-only: reads fetch (or answer from the optional TTL cache), stats
//! answer "a file of unknown size" without fetching, writes are refused. Transport goes
//! through [`client::get`], which the WASM host shares.

pub mod client;

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use avm_core::router::Pattern;
use avm_core::{
    Error, ErrorKind, NodeKind, Ops, Output, Provider, ProviderInfo, Request, Result, Stat,
};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;

/// Cached responses kept at most; past this, expired entries go first, then the ones that
/// expire soonest.
const CACHE_CAPACITY: usize = 1024;

/// Everything but RFC 3986 unreserved characters is encoded, which is right for a path
/// segment and for a query or fragment value alike: `/ ? # & = + ; %` and spaces, quotes,
/// backslashes and control characters all become `%XX`.
const ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Options of an `http` mount.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpOptions {
    /// URL template, e.g. `https://api.example.com/quote/{symbol}?range={range}`. Placeholders
    /// are the mount pattern's `{captures}` and `{rest}` (the `**` part); the scheme (http or
    /// https) and host must be fixed text.
    pub url: String,
    /// Request headers. Values may use `${VAR}`, expanded from the environment once when the
    /// mount is built (a variable that is not set is an error). Values never appear in logs
    /// or error messages.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Time allowed for each request, connect to last body byte, in milliseconds
    /// (default 10000).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// The largest response body accepted, in bytes (default 4 MiB); longer is `too-large`.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
    /// Seconds a successful response is reused for the same URL (default 0: no cache).
    #[serde(default)]
    pub ttl_secs: u64,
    /// A JSON pointer (RFC 6901, e.g. `/data/0/price`) applied to a JSON body: strings and
    /// numbers come back raw, objects and arrays pretty-printed. Unset: the body as is.
    #[serde(default)]
    pub transform: Option<String>,
}

fn default_timeout_ms() -> u64 {
    10_000
}

fn default_max_bytes() -> u64 {
    4 * 1024 * 1024
}

impl HttpOptions {
    /// Options for `url` with every other field at its default.
    pub fn new(url: impl Into<String>) -> Self {
        HttpOptions {
            url: url.into(),
            headers: BTreeMap::new(),
            timeout_ms: default_timeout_ms(),
            max_bytes: default_max_bytes(),
            ttl_secs: 0,
            transform: None,
        }
    }
}

/// Which part of the URL a placeholder sits in; decides how its value is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Path,
    Query,
    Fragment,
}

#[derive(Debug, Clone)]
enum Piece {
    Lit(String),
    Hole {
        /// The placeholder as written (`symbol`, `rest`).
        name: String,
        /// The capture key it reads (`symbol`, `**`).
        key: String,
        at: Slot,
    },
}

/// A parsed URL template.
#[derive(Debug, Clone)]
struct Template {
    pieces: Vec<Piece>,
    /// Length of `scheme://authority`, the fixed prefix.
    origin_len: usize,
    /// The template's host, checked again on every built URL.
    host: String,
    /// `scheme://host/path` of the template, for `info()` (no query: it may hold secrets).
    shown: String,
}

impl Template {
    /// Parses `raw`; `captures` maps each placeholder name the pattern offers to its key.
    fn parse(raw: &str, captures: &BTreeMap<String, String>) -> Result<Self> {
        let lower = raw.to_ascii_lowercase();
        let scheme_len = if lower.starts_with("https://") {
            8
        } else if lower.starts_with("http://") {
            7
        } else {
            return Err(Error::invalid(format!(
                "url {raw:?} must start with http:// or https:// (fixed text, not a placeholder)"
            )));
        };
        let after = &raw[scheme_len..];
        let auth_len = after.find(['/', '?', '#']).unwrap_or(after.len());
        let authority = &after[..auth_len];
        if authority.contains(['{', '}']) {
            return Err(Error::invalid(format!(
                "url {raw:?}: the host {authority:?} contains a placeholder; the scheme and host must be fixed text so paths cannot choose the server"
            )));
        }
        if authority.is_empty() {
            return Err(Error::invalid(format!("url {raw:?} has no host")));
        }
        let origin_len = scheme_len + auth_len;
        let mut pieces = vec![Piece::Lit(raw[..origin_len].to_string())];
        let mut at = Slot::Path;
        let mut lit = String::new();
        let mut chars = raw[origin_len..].chars();
        while let Some(c) = chars.next() {
            match c {
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
                    let ident = name
                        .chars()
                        .next()
                        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
                        && name
                            .chars()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
                    if !closed || !ident {
                        return Err(Error::invalid(format!(
                            "url {raw:?}: {{{name} is not a placeholder; write {{name}} with a lowercase capture name, or %7B and %7D for literal braces"
                        )));
                    }
                    let Some(key) = captures.get(&name) else {
                        let known: Vec<String> =
                            captures.keys().map(|k| format!("{{{k}}}")).collect();
                        return Err(Error::invalid(format!(
                            "url {raw:?}: placeholder {{{name}}} is not a capture of the mount pattern; available: {}",
                            if known.is_empty() {
                                "none".to_string()
                            } else {
                                known.join(", ")
                            }
                        )));
                    };
                    if !lit.is_empty() {
                        pieces.push(Piece::Lit(std::mem::take(&mut lit)));
                    }
                    pieces.push(Piece::Hole {
                        name,
                        key: key.clone(),
                        at,
                    });
                }
                '}' => {
                    return Err(Error::invalid(format!(
                        "url {raw:?}: stray '}}'; write %7D for a literal brace"
                    )));
                }
                '?' if at == Slot::Path => {
                    at = Slot::Query;
                    lit.push(c);
                }
                '#' if at != Slot::Fragment => {
                    at = Slot::Fragment;
                    lit.push(c);
                }
                _ => lit.push(c),
            }
        }
        if !lit.is_empty() {
            pieces.push(Piece::Lit(lit));
        }
        // Shown in `:info`: no user info and no query, either may hold credentials.
        let no_query = raw.find(['?', '#']).unwrap_or(raw.len());
        let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        let shown = format!(
            "{}{host_port}{}",
            &raw[..scheme_len],
            &raw[origin_len..no_query.max(origin_len)]
        );
        let mut t = Template {
            pieces,
            origin_len,
            host: String::new(),
            shown,
        };
        // Build it once with harmless values: the template itself must make a valid URL
        // without '.' or '..' path segments.
        let dummy = |_: &str| Some("x");
        let url = t
            .build(&dummy)
            .map_err(|e| Error::invalid(format!("url template {raw:?}: {}", e.message())))?;
        t.host = url.host_str().unwrap_or_default().to_string();
        Ok(t)
    }

    /// Builds the URL, encoding each value for its slot.
    fn build<'a>(&self, value: &dyn Fn(&str) -> Option<&'a str>) -> Result<reqwest::Url> {
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Lit(l) => out.push_str(l),
                Piece::Hole { name, key, at } => {
                    let v = value(key).ok_or_else(|| {
                        Error::not_found(&format!("(no value for url placeholder {{{name}}})"))
                    })?;
                    if *at == Slot::Path && key == "**" {
                        // The `**` part keeps its separators: it maps onto a remote subtree.
                        let segs: Vec<String> = v
                            .split('/')
                            .map(|s| utf8_percent_encode(s, ENCODE).to_string())
                            .collect();
                        out.push_str(&segs.join("/"));
                    } else {
                        out.extend(utf8_percent_encode(v, ENCODE));
                    }
                }
            }
        }
        // Values cannot add '?' or '#' (they are encoded), so the first one is the template's.
        let path_end = out[self.origin_len..]
            .find(['?', '#'])
            .map_or(out.len(), |i| i + self.origin_len);
        if out[self.origin_len..path_end]
            .split('/')
            .any(is_dot_segment)
        {
            return Err(Error::invalid(
                "the url path would contain a '.' or '..' segment, which url parsers resolve; such names cannot be fetched",
            ));
        }
        let url = client::parse_url(&out)?;
        if !self.host.is_empty() && url.host_str() != Some(self.host.as_str()) {
            // Unreachable by construction; checked so a parser surprise cannot redirect.
            return Err(Error::internal(format!(
                "built url for host {:?} instead of {:?}",
                url.host_str(),
                self.host
            )));
        }
        Ok(url)
    }
}

/// `.`, `..` and their percent-encoded spellings, which WHATWG URL parsing resolves.
fn is_dot_segment(s: &str) -> bool {
    let s = s.to_ascii_lowercase().replace("%2e", ".");
    s == "." || s == ".."
}

/// Expands `${VAR}` in a header value; a `$` not followed by `{` is kept as is.
fn expand_env(header: &str, raw: &str) -> Result<String> {
    let mut out = String::new();
    let mut rest = raw;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let end = after.find('}').ok_or_else(|| {
            Error::invalid(format!("header {header:?}: unclosed ${{ in its value"))
        })?;
        let name = &after[..end];
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(Error::invalid(format!(
                "header {header:?}: ${{{name}}} is not a variable reference; write ${{NAME}} with letters, digits and '_'"
            )));
        }
        let v = std::env::var(name).map_err(|_| {
            Error::invalid(format!(
                "header {header:?} refers to ${{{name}}}, which is not set in the environment"
            ))
        })?;
        out.push_str(&v);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A bounded per-URL cache of successful reads.
struct Cache {
    ttl: Duration,
    entries: Mutex<HashMap<String, (Instant, Output)>>,
}

impl Cache {
    fn get(&self, url: &str) -> Option<Output> {
        if self.ttl.is_zero() {
            return None;
        }
        let map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        map.get(url)
            .filter(|(until, _)| Instant::now() < *until)
            .map(|(_, out)| out.clone())
    }

    fn put(&self, url: String, out: &Output) {
        if self.ttl.is_zero() {
            return;
        }
        let now = Instant::now();
        let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= CACHE_CAPACITY && !map.contains_key(&url) {
            map.retain(|_, (until, _)| now < *until);
            if map.len() >= CACHE_CAPACITY
                && let Some(soonest) = map
                    .iter()
                    .min_by_key(|(_, (until, _))| *until)
                    .map(|(k, _)| k.clone())
            {
                map.remove(&soonest);
            }
        }
        map.insert(url, (now + self.ttl, out.clone()));
    }
}

/// The `http` provider: a read-only view of a remote HTTP API.
pub struct HttpProvider {
    pattern: Pattern,
    template: Template,
    /// Expanded headers; never printed.
    headers: Vec<(String, String)>,
    timeout: Duration,
    max_bytes: u64,
    transform: Option<String>,
    cache: Cache,
}

impl std::fmt::Debug for HttpProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Header values may hold tokens: only their names are shown.
        f.debug_struct("HttpProvider")
            .field("pattern", &self.pattern.as_str())
            .field("url", &self.template.shown)
            .field(
                "headers",
                &self.headers.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .field("timeout", &self.timeout)
            .field("max_bytes", &self.max_bytes)
            .field("transform", &self.transform)
            .field("ttl", &self.cache.ttl)
            .finish()
    }
}

impl HttpProvider {
    /// Builds the provider for mount `pattern`. Fails with `InvalidInput` on a template that
    /// is not http(s), has a placeholder in its host or one the pattern does not capture, a
    /// header that is not valid or names an unset `${VAR}`, a zero timeout or size limit, or
    /// a transform that is not a JSON pointer.
    pub fn new(pattern: &str, opts: HttpOptions) -> Result<Self> {
        let parsed = Pattern::parse(pattern)?;
        let mut captures = BTreeMap::new();
        let segs: Vec<&str> = pattern.split('/').filter(|s| !s.is_empty()).collect();
        if segs.last() == Some(&"**") {
            captures.insert("rest".to_string(), "**".to_string());
        }
        for s in &segs {
            if let Some(name) = s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                // A capture literally named `rest` wins over the `**` part.
                captures.insert(name.to_string(), name.to_string());
            }
        }
        let template = Template::parse(&opts.url, &captures)
            .map_err(|e| e.context(format!("http mount {pattern}")))?;
        let mut headers = Vec::new();
        for (name, raw) in &opts.headers {
            headers.push((name.clone(), expand_env(name, raw)?));
        }
        client::header_map(&headers)?;
        if opts.timeout_ms == 0 {
            return Err(Error::invalid(format!(
                "http mount {pattern}: timeout_ms must be at least 1"
            )));
        }
        if opts.max_bytes == 0 {
            return Err(Error::invalid(format!(
                "http mount {pattern}: max_bytes must be at least 1"
            )));
        }
        if let Some(t) = &opts.transform
            && !t.is_empty()
            && !t.starts_with('/')
        {
            return Err(Error::invalid(format!(
                "http mount {pattern}: transform {t:?} is not a JSON pointer; write e.g. /data/0/price"
            )));
        }
        Ok(HttpProvider {
            pattern: parsed,
            template,
            headers,
            timeout: Duration::from_millis(opts.timeout_ms),
            max_bytes: opts.max_bytes,
            transform: opts.transform,
            cache: Cache {
                ttl: Duration::from_secs(opts.ttl_secs),
                entries: Mutex::new(HashMap::new()),
            },
        })
    }

    /// The captures for `req`: the host's, over what the pattern matches in the path.
    fn captures(&self, req: &Request) -> Result<BTreeMap<String, String>> {
        let matched = self.pattern.matches(&req.path);
        if matched.is_none() && req.captures.is_empty() {
            return Err(Error::not_found(&req.path));
        }
        let mut caps = matched.unwrap_or_default();
        caps.extend(req.captures.iter().map(|(k, v)| (k.clone(), v.clone())));
        Ok(caps)
    }

    fn check_plain(&self, req: &Request, op: &str) -> Result<()> {
        if let Some(s) = &req.suffix {
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!(
                    "{}: the http provider serves no suffixes; read {} without :{s}",
                    req.describe(op),
                    req.path
                ),
            ));
        }
        req.query.check_keys(&[], &req.describe(op))
    }

    fn url_for(&self, req: &Request) -> Result<reqwest::Url> {
        let caps = self.captures(req)?;
        self.template
            .build(&|k| caps.get(k).map(String::as_str))
            .map_err(|e| match e.kind() {
                ErrorKind::NotFound => Error::not_found(&req.path),
                _ => e.context(req.describe("read")),
            })
    }

    /// Applies `transform` to a JSON body.
    fn transformed(&self, pointer: &str, body: &str, url: &str) -> Result<Output> {
        let doc: serde_json::Value = serde_json::from_str(body).map_err(|e| {
            Error::new(
                ErrorKind::Unavailable,
                format!("the response from {url} is not JSON ({e}), so transform {pointer:?} cannot apply"),
            )
        })?;
        let v = doc.pointer(pointer).ok_or_else(|| {
            Error::new(
                ErrorKind::NotFound,
                format!("transform {pointer:?} matches nothing in the response from {url}"),
            )
        })?;
        let text = match v {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Object(_) | serde_json::Value::Array(_) => {
                let mut s = serde_json::to_string_pretty(v)
                    .map_err(|e| Error::internal(format!("cannot print JSON: {e}")))?;
                s.push('\n');
                s
            }
            other => other.to_string(),
        };
        Ok(Output::new(text, v.clone()))
    }
}

/// Maps an error status to the error vocabulary.
fn status_error(status: u16, url: &str, path: &str) -> Error {
    let reason = reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .map(|r| format!(" {}", r.to_ascii_lowercase()))
        .unwrap_or_default();
    let what = format!("get {url} answered {status}{reason}");
    let kind = match status {
        404 | 410 => ErrorKind::NotFound,
        401 | 403 => ErrorKind::PermissionDenied,
        408 | 504 => ErrorKind::TimedOut,
        429 | 503 => ErrorKind::Busy,
        _ => ErrorKind::Unavailable,
    };
    let hint = match status {
        300..=399 => " (a redirect to another host or from https to http, which is not followed)",
        401 | 403 => " (check the mount's headers)",
        429 | 503 => " (try again later)",
        _ => "",
    };
    Error::new(kind, format!("read of {path}: {what}{hint}"))
}

impl Provider for HttpProvider {
    fn info(&self) -> ProviderInfo {
        ProviderInfo {
            kind: "http".into(),
            description: format!("read-only GET of {}", self.template.shown),
            ops: Ops {
                read: true,
                ..Ops::default()
            },
            suffixes: Vec::new(),
        }
    }

    fn read(&self, req: &Request) -> Result<Output> {
        self.check_plain(req, "read")?;
        let url = self.url_for(req)?;
        let key = url.to_string();
        if let Some(hit) = self.cache.get(&key) {
            return Ok(hit);
        }
        let shown = client::redact(&url);
        let timeout = match req.deadline {
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(Error::new(
                        ErrorKind::TimedOut,
                        format!(
                            "{}: the deadline passed before the request",
                            req.describe("read")
                        ),
                    ));
                }
                left.min(self.timeout)
            }
            None => self.timeout,
        };
        let resp = client::get(&client::Fetch {
            url: key.clone(),
            headers: self.headers.clone(),
            timeout,
            max_bytes: self.max_bytes,
        })
        .map_err(|e| e.context(req.describe("read")))?;
        if !(200..300).contains(&resp.status) {
            return Err(status_error(resp.status, &shown, &req.path));
        }
        let out = match self.transform.as_deref() {
            Some(p) => self.transformed(p, &resp.body, &shown)?,
            None => {
                let json = resp
                    .content_type
                    .as_deref()
                    .is_some_and(|c| c.to_ascii_lowercase().contains("json"));
                if json {
                    let body = resp.body.clone();
                    Output::lazy(resp.body, move || {
                        serde_json::from_str(&body)
                            .unwrap_or_else(|_| serde_json::Value::String(body.clone()))
                    })
                } else {
                    Output::text(resp.body)
                }
            }
        };
        self.cache.put(key, &out);
        Ok(out)
    }

    fn stat(&self, req: &Request) -> Result<Stat> {
        self.check_plain(req, "stat")?;
        // Stat does not fetch: it only checks that the path makes a URL.
        self.url_for(req)?;
        Ok(Stat::untimed(NodeKind::File, 0))
    }
}
