//! The recall service: `:recall`, `:browse`, `:timeline` and `:explore` on any path, with the
//! path as the scope (`/memory/shared/market:recall?q=fed&max_tokens=500`); `:remember`
//! written on the namespace a memory goes to (`/private:remember?title=…`), and `:fetch`
//! (`?path=A&path=@12`) for the content of memories by path or handle.

use avm_core::{
    Error, Host, Ops, Output, Provider, ProviderInfo, Request, Result, SuffixOn, SuffixSpec,
    WriteInput,
};

use crate::engine::{Engine, Strategy, narrow, scopes};
use crate::navigate;
use crate::recall::RecallRequest;

/// Recall and navigation as a service provider.
pub struct RecallProvider {
    engine: Engine,
}

impl RecallProvider {
    /// Serves `engine`.
    pub fn new(engine: Engine) -> Self {
        RecallProvider { engine }
    }
}

fn list(v: Option<&str>) -> Vec<String> {
    v.map(|s| {
        s.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    })
    .unwrap_or_default()
}

fn flag(req: &Request, key: &str, default: bool) -> Result<bool> {
    match req.query.get(key) {
        None => Ok(default),
        Some("1" | "true" | "yes" | "") => Ok(true),
        Some("0" | "false" | "no") => Ok(false),
        Some(v) => Err(Error::invalid(format!(
            "query key {key}={v:?} is not accepted; use true or false"
        ))),
    }
}

/// The scopes a service request covers: the caller's recall scopes narrowed to the path.
pub fn request_scopes(req: &Request) -> Result<Vec<String>> {
    let shared = flag(req, "shared", true)?;
    let ns = list(req.query.get("ns"));
    Ok(narrow(scopes(&req.caller, shared, &ns), &req.path))
}

impl Provider for RecallProvider {
    fn info(&self) -> ProviderInfo {
        ProviderInfo {
            kind: "recall".into(),
            description: "token-budgeted recall and navigation over agent memory".into(),
            ops: Ops {
                read: true,
                write: true,
                ..Ops::default()
            },
            suffixes: vec![
                SuffixSpec::new(
                    "remember",
                    SuffixOn::Any,
                    false,
                    true,
                    &["title", "importance", "tags", "source", "ttl", "at"],
                    "written on /private or /memory/shared/NS: remembers the text written as a new memory there (the same content twice: the first one)",
                ),
                SuffixSpec::new(
                    "handle",
                    SuffixOn::Any,
                    true,
                    false,
                    &["id"],
                    "the path of the memory with the @id handle ?id= (as recall names them), when you may read it",
                ),
                SuffixSpec::new(
                    "fetch",
                    SuffixOn::Any,
                    true,
                    false,
                    &["path"],
                    "the content of each ?path= (a path or an @id handle), the missing ones named",
                ),
                SuffixSpec::new(
                    "recall",
                    SuffixOn::Any,
                    true,
                    false,
                    &[
                        "q",
                        "max_tokens",
                        "strategy",
                        "min_relevance",
                        "shared",
                        "ns",
                        "paths",
                    ],
                    "memories relevant to q, summarised within max_tokens (cl100k tokens); entries named @id, or by path with paths=true",
                ),
                SuffixSpec::new(
                    "browse",
                    SuffixOn::Dir,
                    true,
                    false,
                    &["q", "limit", "width", "depth", "shared", "ns"],
                    "with q: paths and one-line summaries to fetch from; without: the tree",
                ),
                SuffixSpec::new(
                    "timeline",
                    SuffixOn::Dir,
                    true,
                    false,
                    &["days", "limit", "shared", "ns"],
                    "memories of the last days (when they are about, else when they changed), newest first",
                ),
                SuffixSpec::new(
                    "explore",
                    SuffixOn::File,
                    true,
                    false,
                    &["depth"],
                    "the link graph around this memory",
                ),
            ],
        }
    }

    fn read_via(&self, host: &Host, req: &Request) -> Result<Output> {
        if req.suffix.as_deref() == Some("handle") {
            let id = req
                .query
                .get("id")
                .ok_or_else(|| Error::invalid(format!("{}:handle needs ?id=HANDLE", req.path)))?;
            let path =
                navigate::path_of_handle(host, self.engine.store().as_ref(), &req.caller, id)?;
            return Ok(Output::new(
                format!("{path}\n"),
                serde_json::json!({"path": path}),
            ));
        }
        if req.suffix.as_deref() != Some("fetch") {
            return self.read(req);
        }
        let paths: Vec<String> = req
            .query
            .pairs()
            .iter()
            .filter(|(k, _)| k == "path")
            .map(|(_, v)| v.clone())
            .collect();
        navigate::fetch(host, self.engine.store().as_ref(), &req.caller, &paths)
    }

    fn write_via(&self, host: &Host, req: &Request, input: WriteInput) -> Result<Output> {
        if req.suffix.as_deref() != Some("remember") {
            return Err(Error::unsupported("write", &req.path));
        }
        let content = input.into_text("a memory to remember")?;
        let namespace = if req.caller.private_root().as_deref() == Some(req.path.as_str()) {
            None
        } else if let Some(ns) = req.path.strip_prefix("/memory/shared/") {
            Some(ns.to_string())
        } else {
            return Err(Error::invalid(format!(
                "{}:remember: a memory goes to /private (your own) or /memory/shared/NS",
                req.path
            )));
        };
        let q = &req.query;
        let m = crate::Memory {
            content,
            title: q.get("title").map(str::to_string),
            importance: q.parsed("importance")?,
            tags: list(q.get("tags")),
            source: q.get("source").map(str::to_string),
            namespace,
            path: None,
            ttl: q
                .get("ttl")
                .map(avm_core::time::parse_duration)
                .transpose()?,
            at: q.get("at").map(avm_core::time::parse_time).transpose()?,
        };
        let r = crate::remember(host, self.engine.store().as_ref(), &req.caller, &m)?;
        let text = if r.created {
            format!("Remembered: {} (importance={})\n", r.path, r.importance)
        } else {
            format!("Already remembered: {}\n", r.path)
        };
        Ok(Output::new(text, crate::remember::to_json(&r)))
    }

    fn read(&self, req: &Request) -> Result<Output> {
        let keep = |p: &str| req.may_read(p);
        let e = &self.engine;
        match req.suffix.as_deref() {
            Some("recall") => {
                let query = req
                    .query
                    .get("q")
                    .filter(|q| !q.trim().is_empty())
                    .ok_or_else(|| {
                        Error::invalid(format!("{}:recall needs ?q=WHAT+TO+RECALL", req.path))
                    })?
                    .to_string();
                let strategy = match req.query.get("strategy") {
                    Some(s) => Strategy::parse(s)?,
                    None => e.tuning.strategy,
                };
                let r = RecallRequest {
                    query,
                    max_tokens: req
                        .query
                        .parsed("max_tokens")?
                        .unwrap_or(e.tuning.max_tokens),
                    strategy,
                    min_relevance: req
                        .query
                        .parsed("min_relevance")?
                        .unwrap_or(e.tuning.min_relevance),
                    scopes: request_scopes(req)?,
                    paths: req.query.flag("paths")?,
                };
                let out = e.recall(&req.caller, &keep, &r)?;
                Ok(Output::new(out.text.clone(), out.to_json()))
            }
            Some("browse") => match req.query.get("q").filter(|q| !q.trim().is_empty()) {
                Some(q) => navigate::browse_query(
                    e,
                    &req.caller,
                    &keep,
                    q,
                    &request_scopes(req)?,
                    req.query.parsed("limit")?.unwrap_or(10),
                    req.query.parsed("width")?.unwrap_or(100),
                ),
                None => navigate::tree(
                    e.store().as_ref(),
                    &req.caller,
                    &keep,
                    &req.path,
                    req.query.parsed("depth")?.unwrap_or(2),
                ),
            },
            Some("timeline") => navigate::timeline(
                e.store().as_ref(),
                &req.caller,
                &keep,
                &request_scopes(req)?,
                req.query.parsed("days")?.unwrap_or(7),
                req.query.parsed("limit")?.unwrap_or(20),
            ),
            Some("explore") => navigate::explore(
                e.store().as_ref(),
                &req.caller,
                &keep,
                &req.path,
                req.query.parsed("depth")?.unwrap_or(2),
            ),
            _ => Err(Error::unsupported("read", &req.path)),
        }
    }
}
