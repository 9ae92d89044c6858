//! The memory store behind the [`Provider`] trait: plain nodes plus their suffixes.

use std::path::Path;
use std::sync::Arc;

use serde_json::{Value, json};
use similar::TextDiff;

use avm_core::content::to_base64;
use avm_core::provider::Entry;
use avm_core::time::{Micros, parse_time, to_iso, to_minute};
use avm_core::{
    Content, Error, ErrorKind, ListOptions, Listing, NodeKind, Ops, Output, Provider, ProviderInfo,
    Put, RemoveOptions, Request, Result, SearchHit, SearchOptions, Stat, WriteInput,
};

use crate::engine::Engine;
use crate::node::Node;
use crate::ops::{Outcome, WriteOp};
use crate::record::Record;
use crate::sqlite::{Store, StoreOptions};

/// The `memory` provider.
#[derive(Clone)]
pub struct MemoryProvider {
    /// Where the memory is stored.
    pub(crate) store: Arc<dyn Engine>,
    /// Vector search for `:search?mode=semantic|hybrid`, once an embedder is configured.
    pub(crate) vectors: Arc<std::sync::RwLock<Option<Arc<dyn avm_core::storage::VectorSearch>>>>,
}

/// Options of a `memory` mount in the configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryOptions {
    /// The database: a SQLite file (`~` and `${VAR}` are expanded) or a PostgreSQL address
    /// (`postgres://…`); the configured store when absent. Mounts naming the same database
    /// share one open store.
    pub db: Option<String>,
}

/// Version kinds after which the path holds nothing.
const GONE: &[&str] = &["delete", "move-out", "expire"];

impl std::fmt::Debug for MemoryProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryProvider")
            .field("store", &self.store)
            .finish()
    }
}

impl MemoryProvider {
    /// Opens the SQLite database at `path` (the embedded engine).
    pub fn open(path: &Path, opts: StoreOptions) -> Result<Self> {
        Ok(MemoryProvider::new(Arc::new(Store::open(path, opts)?)))
    }

    /// Opens the store at `location`: a PostgreSQL address (`postgres://…`, tables created or
    /// upgraded as needed) or else a SQLite file.
    pub fn open_location(
        location: &str,
        sqlite: StoreOptions,
        postgres: crate::postgres::PgStoreOptions,
    ) -> Result<Self> {
        if avm_core::config::is_store_url(location) {
            let store = crate::postgres::PgStore::open(location, postgres)?;
            Ok(Self::new(Arc::new(store)))
        } else {
            Self::open(Path::new(location), sqlite)
        }
    }

    /// Serves memory stored by `store`, any engine.
    pub fn new(store: Arc<dyn Engine>) -> Self {
        MemoryProvider {
            store,
            vectors: Arc::new(std::sync::RwLock::new(None)),
        }
    }

    /// Enables semantic and hybrid `:search` (and in every clone of this provider).
    pub fn set_vectors(&self, v: Arc<dyn avm_core::storage::VectorSearch>) {
        if let Ok(mut g) = self.vectors.write() {
            *g = Some(v);
        }
    }

    /// The engine underneath.
    pub fn store(&self) -> &Arc<dyn Engine> {
        &self.store
    }

    /// The same engine as the agent-memory services see it.
    pub fn memory_store(&self) -> Arc<dyn avm_core::storage::MemoryStore> {
        self.store.clone()
    }

    pub(crate) fn node(&self, req: &Request) -> Result<Arc<Node>> {
        match self.store.get(&req.path)? {
            Some(n) => {
                check_sees(&req.caller, &n)?;
                Ok(n)
            }
            None => Err(self.missing(&req.path)?),
        }
    }

    /// The right error for a path that is not a file.
    fn missing(&self, path: &str) -> Result<Error> {
        Ok(if self.store.kind(path)? == Some(NodeKind::Dir) {
            Error::new(
                ErrorKind::IsADirectory,
                format!("{path} is a directory; list it with `avm ls {path}`"),
            )
        } else {
            Error::not_found(path)
        })
    }

    pub(crate) fn apply(&self, op: WriteOp) -> Result<Outcome> {
        self.store.apply(op)
    }

    pub(crate) fn saved(out: Outcome, path: &str) -> Result<Output> {
        match out.node {
            Some(n) => Ok(Output::new(
                format!("Saved: {} (v{})", n.path, n.version),
                n.to_json(),
            )),
            None => Ok(Output::new(
                format!("Saved: {path}"),
                json!({"path": path, "count": out.count}),
            )),
        }
    }

    /// Refuses a path's history, versions and suffixes when the node at that path (or, for a
    /// node moved away, at the place it moved to) is one the caller may not see.
    pub(crate) fn check_live(&self, req: &Request) -> Result<()> {
        if req.caller.agent().is_none() {
            return Ok(());
        }
        if let Some(n) = self.store.get(&req.path)? {
            return check_sees(&req.caller, &n);
        }
        let last = self.store.history(&req.path, 1)?;
        let moved_to = last
            .first()
            .filter(|h| h.kind == "move-out")
            .and_then(|h| h.note.as_deref());
        if let Some(to) = moved_to
            && let Some(n) = self.store.get(to)?
            && !n.visible_to(&req.caller)
        {
            return Err(Error::denied(format!(
                "{} was shared with named agents only (rule: :shared)",
                req.path
            )));
        }
        Ok(())
    }

    fn read_versioned(&self, req: &Request) -> Result<Output> {
        self.check_live(req)?;
        if self.store.expired_pending(&req.path)? {
            return Err(Error::not_found(&req.path));
        }
        let found = if let Some(v) = req.query.parsed::<i64>("version")? {
            let r = self.store.version(&req.path, v)?;
            if r.is_none() {
                let latest = self.store.history(&req.path, 1)?.first().map(|h| h.version);
                return Err(Error::new(
                    ErrorKind::NotFound,
                    match latest {
                        Some(l) => format!("{} has no version {v}; versions run 1..{l}", req.path),
                        None => format!("{} has no history", req.path),
                    },
                ));
            }
            r
        } else if let Some(t) = req.query.get("as_of") {
            let at = parse_time(t)?;
            self.store.version_at(&req.path, at)?
        } else {
            None
        };
        let Some((info, content)) = found else {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!(
                    "{} did not exist at {}",
                    req.path,
                    req.query.get("as_of").unwrap_or("that time")
                ),
            ));
        };
        if GONE.contains(&info.kind.as_str()) {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!(
                    "{} did not exist at version {} ({} at {})",
                    req.path,
                    info.version,
                    info.kind,
                    to_iso(info.at)
                ),
            ));
        }
        if content.is_empty() && crate::node::content_hash(b"") != info.hash {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!(
                    "the content of version {} of {} was erased (it expired under an older avm, which blanked expired history)",
                    info.version, req.path
                ),
            ));
        }
        let path = req.path.clone();
        let c = content.clone();
        Ok(Output::content(content, move || {
            let mut v = json!({
                "path": path,
                "content": c.text(),
                "version": info.version,
                "kind": info.kind,
                "at": to_iso(info.at),
                "author": info.author,
                "hash": info.hash,
            });
            if let (Content::Bytes(b), Value::Object(o)) = (&c, &mut v) {
                o.insert("binary".into(), json!(true));
                o.insert("content_base64".into(), json!(to_base64(b)));
            }
            v
        }))
    }

    /// The caller's read marker on `path` (0 when never marked).
    fn read_suffix(&self, req: &Request, suffix: &str) -> Result<Output> {
        self.check_live(req)?;
        match crate::suffix::find(suffix).and_then(|row| row.read) {
            Some(read) => read(self, req),
            None => Err(Error::unsupported(&format!(":{suffix}"), &req.path)),
        }
    }

    fn write_suffix(&self, req: &Request, suffix: &str, input: WriteInput) -> Result<Output> {
        let text = match input {
            WriteInput::Text(t) => t,
            WriteInput::Put(p) if suffix == "meta" && p.content.is_some() => {
                return Err(Error::invalid(format!(
                    "{}:meta takes metadata only; write content to {} itself",
                    req.path, req.path
                )));
            }
            WriteInput::Put(p) if suffix == "meta" => {
                let out = self.apply(WriteOp::Put {
                    path: req.path.clone(),
                    put: Put { content: None, ..p },
                    agent: req.caller.agent().map(str::to_string),
                    admin: is_admin(req),
                })?;
                return Self::saved(out, &req.path);
            }
            // Plain text content and nothing else (`avm write a.md:tags -c x`) is the body.
            WriteInput::Put(Put {
                content: Some(Content::Text(t)),
                meta: None,
                tags: None,
                importance: None,
                expires_at: None,
                append: false,
                create_only: false,
                ..
            }) => t,
            _ => {
                return Err(Error::invalid(format!(
                    "{}:{suffix} takes a text body (and no other flags)",
                    req.path
                )));
            }
        };
        match crate::suffix::find(suffix).and_then(|row| row.write) {
            Some(write) => write(self, req, &text),
            None => Err(Error::new(
                ErrorKind::ReadOnly,
                format!("{}:{suffix} cannot be written", req.path),
            )),
        }
    }

    /// Applies a suffix write that is a [`Put`] of metadata, tags or TTL.
    pub(crate) fn put_suffix(&self, req: &Request, put: Put) -> Result<Output> {
        let out = self.apply(WriteOp::Put {
            path: req.path.clone(),
            put,
            agent: req.caller.agent().map(str::to_string),
            admin: is_admin(req),
        })?;
        Self::saved(out, &req.path)
    }

    fn to_op(&self, req: &Request, input: WriteInput) -> Result<WriteOp> {
        let agent = req.caller.agent().map(str::to_string);
        Ok(match input {
            WriteInput::Put(put) => WriteOp::Put {
                path: req.path.clone(),
                put,
                agent,
                admin: is_admin(req),
            },
            WriteInput::Text(t) => WriteOp::Put {
                path: req.path.clone(),
                put: Put {
                    content: Some(t.into()),
                    ..Put::default()
                },
                agent,
                admin: false,
            },
            WriteInput::Record(v) => {
                let mut record = Record::from_value(v)?;
                if let Some(agent) = req.caller.agent() {
                    // Agents import as themselves and only link where they can see.
                    match record.author.as_deref() {
                        None => record.author = Some(agent.to_string()),
                        Some(a) if a == agent => {}
                        Some(a) => {
                            return Err(Error::denied(format!(
                                "agent {agent} cannot import {} authored by {a}; import as the operator",
                                record.path
                            )));
                        }
                    }
                    if let Some(l) = record.links.iter().find(|l| !req.caller.may_see(&l.target)) {
                        return Err(Error::denied(format!(
                            "cannot import a link to {}: another agent's private namespace",
                            l.target
                        )));
                    }
                }
                if record.path != req.path {
                    return Err(Error::invalid(format!(
                        "record path {} does not match {}",
                        record.path, req.path
                    )));
                }
                WriteOp::Import {
                    record: Box::new(record),
                    force: req.query.flag("force")?,
                }
            }
        })
    }
}

pub(crate) fn pretty(v: &Value) -> String {
    format!(
        "{}\n",
        serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
    )
}

pub(crate) fn indent(s: &str) -> String {
    s.lines().map(|l| format!("    {l}\n")).collect()
}

/// A unified diff with `---`/`+++` headers.
pub fn unified(a: &str, b: &str, from: &str, to: &str) -> String {
    TextDiff::from_lines(a, b)
        .unified_diff()
        .context_radius(3)
        .header(from, to)
        .to_string()
}

/// `path\tv<version>\t<bytes>B\t<YYYY-MM-DD HH:MM>` (directories end in `/`, links show
/// `link`).
pub fn list_line(e: &Entry) -> String {
    match e.kind {
        NodeKind::Dir => format!("{}/\tdir\n", e.path),
        NodeKind::Symlink => format!(
            "{}\tlink\tv{}\t{}\n",
            e.path,
            e.version.unwrap_or(0),
            e.updated_at.map(to_minute).unwrap_or_default()
        ),
        NodeKind::File => format!(
            "{}\tv{}\t{}B\t{}\n",
            e.path,
            e.version.unwrap_or(0),
            e.size,
            e.updated_at.map(to_minute).unwrap_or_default()
        ),
    }
}

/// `never`, `expired`, `<m>m`, `<h>h <m>m` or `<d>d <h>h`.
pub fn ttl_text(expires: Option<Micros>, now: Micros) -> String {
    let Some(t) = expires else {
        return "never".into();
    };
    if t <= now {
        return "expired".into();
    }
    let mins = (t - now) / 60_000_000;
    if mins < 60 {
        format!("{mins}m")
    } else if mins < 24 * 60 {
        format!("{}h {}m", mins / 60, mins % 60)
    } else {
        format!("{}d {}h", mins / 1440, (mins % 1440) / 60)
    }
}

/// The namespace directories that exist before anything is written in them: `/memory`, its
/// `private` and `shared` roots, and the caller's own private namespace (so an agent can write
/// `/memory/private/<self>/note.md` through a fresh mount without making directories first).
pub fn always_dir(path: &str, caller: &avm_core::Caller) -> bool {
    matches!(path, "/memory" | "/memory/private" | "/memory/shared")
        || caller.private_root().as_deref() == Some(path)
}

pub use avm_core::storage::{shortcut, shortcut_id};

impl Provider for MemoryProvider {
    fn info(&self) -> ProviderInfo {
        ProviderInfo {
            kind: "memory".into(),
            description: "the embedded SQLite memory store".into(),
            ops: Ops {
                read: true,
                list: true,
                write: true,
                remove: true,
                rename: true,
                search: true,
            },
            suffixes: crate::suffix::specs(),
        }
    }

    fn read(&self, req: &Request) -> Result<Output> {
        if let Some(s) = &req.suffix {
            return self.read_suffix(req, s);
        }
        req.query
            .check_keys(&["version", "as_of"], &req.describe("read"))?;
        if !req.query.is_empty() {
            return self.read_versioned(req);
        }
        let n = self.node(req)?;
        let content = n.content.clone();
        Ok(Output::content(content, move || n.to_json()))
    }

    fn stat(&self, req: &Request) -> Result<Stat> {
        if let Some(n) = self.store.peek(&req.path)? {
            check_sees(&req.caller, &n)?;
            return Ok(node_stat(&n));
        }
        self.dir_stat(req)
    }

    fn list(&self, req: &Request, opts: &ListOptions) -> Result<Listing> {
        if self.store.peek(&req.path)?.is_some() {
            if opts.recursive {
                let n = self.store.peek(&req.path)?;
                let entries = n.iter().map(|n| entry(n)).collect();
                return Ok(Listing {
                    entries,
                    more: false,
                });
            }
            return Err(Error::new(
                ErrorKind::NotADirectory,
                format!("{} is a file, not a directory", req.path),
            ));
        }
        let mut entries: Vec<Entry> = if opts.recursive {
            self.store
                .descendants(&req.path, &req.caller, opts.offset, opts.limit)?
                .iter()
                .map(|n| entry(n))
                .collect()
        } else {
            self.store
                .children(&req.path, &req.caller, opts.offset, opts.limit)?
                .into_iter()
                .skip(opts.offset)
                .map(|c| Entry {
                    path: c.path,
                    kind: c.kind,
                    size: c.size,
                    version: c.version,
                    updated_at: c.updated_at,
                })
                .collect()
        };
        if !opts.recursive && opts.offset == 0 {
            let own = req.caller.private_root();
            let extra: Vec<&str> = match req.path.as_str() {
                "/" => vec!["/memory"],
                "/memory" => vec!["/memory/private", "/memory/shared"],
                "/memory/private" => own.as_deref().into_iter().collect(),
                _ => vec![],
            };
            for p in extra {
                if !entries.iter().any(|e| e.path == p) {
                    entries.push(Entry {
                        path: p.to_string(),
                        kind: NodeKind::Dir,
                        size: 0,
                        version: None,
                        updated_at: None,
                    });
                }
            }
            entries.sort_by(|a, b| a.path.cmp(&b.path));
        }
        if entries.is_empty()
            && opts.offset == 0
            && req.path != "/"
            && !always_dir(&req.path, &req.caller)
            && !self.store.has_children(&req.path)?
        {
            return Err(Error::not_found(&req.path));
        }
        let more = opts.limit.is_some_and(|l| entries.len() > l);
        if let Some(l) = opts.limit {
            entries.truncate(l);
        }
        Ok(Listing { entries, more })
    }

    fn write(&self, req: &Request, input: WriteInput) -> Result<Output> {
        if let Some(s) = &req.suffix {
            return self.write_suffix(req, s, input);
        }
        req.query.check_keys(&["force"], &req.describe("write"))?;
        let op = self.to_op(req, input)?;
        let out = self.apply(op)?;
        Self::saved(out, &req.path)
    }

    fn write_many(&self, reqs: Vec<(Request, WriteInput)>) -> Vec<Result<Output>> {
        let mut results: Vec<Option<Result<Output>>> = Vec::new();
        let mut ops = Vec::new();
        let mut idx = Vec::new();
        for (i, (req, input)) in reqs.iter().cloned().enumerate() {
            results.push(None);
            if req.suffix.is_some() {
                results[i] = Some(self.write(&req, input));
                continue;
            }
            match self.to_op(&req, input) {
                Ok(op) => {
                    ops.push(op);
                    idx.push(i);
                }
                Err(e) => results[i] = Some(Err(e)),
            }
        }
        for (i, r) in idx.into_iter().zip(self.store.apply_many(ops)) {
            let path = reqs[i].0.path.clone();
            results[i] = Some(r.and_then(|o| Self::saved(o, &path)));
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(Error::internal("lost a write result"))))
            .collect()
    }

    fn remove(&self, req: &Request, opts: RemoveOptions) -> Result<Output> {
        let out = self.apply(WriteOp::Remove {
            path: req.path.clone(),
            recursive: opts.recursive,
            hard: opts.hard,
            caller: req.caller.clone(),
            policy: req.policy.clone(),
        })?;
        // The reference's exact line for one node; a count when a subtree went.
        let text = if out.count > 1 {
            format!("Deleted: {} ({} nodes)", req.path, out.count)
        } else {
            format!("Deleted: {}", req.path)
        };
        Ok(Output::new(
            text,
            json!({"path": req.path, "count": out.count, "trashed": out.moves.iter().map(|(a, b)| json!({"from": a, "to": b})).collect::<Vec<_>>()}),
        ))
    }

    fn rename_posix(&self, src: &Request, dst: &str, how: avm_core::Rename) -> Result<Output> {
        let out = self.apply(WriteOp::PosixRename {
            src: src.path.clone(),
            dst: dst.to_string(),
            how,
            caller: src.caller.clone(),
            policy: src.policy.clone(),
        })?;
        Ok(Output::new(
            format!("Renamed: {} → {dst}", src.path),
            json!({"from": src.path, "to": dst, "count": out.count, "moves": out.moves.iter().map(|(a, b)| json!({"from": a, "to": b})).collect::<Vec<_>>()}),
        ))
    }

    fn set_attrs(&self, req: &Request, set: &avm_core::SetAttrs) -> Result<Stat> {
        let out = self.apply(WriteOp::SetAttrs {
            path: req.path.clone(),
            set: *set,
            caller: req.caller.clone(),
        })?;
        match out.node {
            Some(n) => Ok(node_stat(&n)),
            None => self.dir_stat(req),
        }
    }

    fn symlink(&self, req: &Request, target: &str, attrs: &avm_core::SetAttrs) -> Result<Stat> {
        self.apply(WriteOp::Symlink {
            path: req.path.clone(),
            target: target.to_string(),
            attrs: *attrs,
            agent: req.caller.agent().map(str::to_string),
        })?;
        self.stat(req)
    }

    fn capacity(&self) -> Result<Option<avm_core::Capacity>> {
        self.store.capacity().map(Some)
    }

    fn rename(&self, src: &Request, dst: &str, force: bool) -> Result<Output> {
        let out = self.apply(WriteOp::Rename {
            src: src.path.clone(),
            dst: dst.to_string(),
            force,
            caller: src.caller.clone(),
            policy: src.policy.clone(),
        })?;
        // A single file shows where it landed (mv into a directory keeps its name).
        let to = match out.moves.first() {
            Some((from, to)) if out.moves.len() == 1 && *from == src.path => to.clone(),
            _ => dst.to_string(),
        };
        Ok(Output::new(
            format!("Moved {} node(s): {} → {to}", out.count, src.path),
            json!({"from": src.path, "to": dst, "count": out.count, "moves": out.moves.iter().map(|(a, b)| json!({"from": a, "to": b})).collect::<Vec<_>>()}),
        ))
    }

    fn mkdir(&self, req: &Request) -> Result<Output> {
        self.apply(WriteOp::Mkdir {
            path: req.path.clone(),
        })?;
        Ok(Output::new(
            format!("Created: {}/\n", req.path),
            json!({"path": req.path}),
        ))
    }

    fn rmdir(&self, req: &Request) -> Result<Output> {
        self.apply(WriteOp::Rmdir {
            path: req.path.clone(),
        })?;
        Ok(Output::new(
            format!("Removed: {}/\n", req.path),
            json!({"path": req.path}),
        ))
    }

    fn usage(&self, req: &Request) -> Result<Option<avm_core::provider::Usage>> {
        let (nodes, bytes) = self.store.usage(&req.path)?;
        Ok(Some(avm_core::provider::Usage { nodes, bytes }))
    }

    /// Full-text hits scored 0..1: bm25 relative to the best hit (which scores 1), so that
    /// every mode and front end shows one scale (semantic: cosine; hybrid: fused rank).
    fn search(&self, req: &Request, opts: &SearchOptions) -> Result<Vec<SearchHit>> {
        let keep = |p: &str| req.policy.may_read(&req.caller, p);
        let mut hits: Vec<SearchHit> = self
            .store
            .search_within(
                std::slice::from_ref(&req.path),
                &req.caller,
                &keep,
                &opts.query,
                opts.limit,
                true,
            )?
            .into_iter()
            .map(|h| SearchHit {
                path: h.path,
                score: h.score,
                snippet: h.snippet,
            })
            .collect();
        let best = hits.iter().map(|h| h.score).fold(0.0_f64, f64::max);
        for h in &mut hits {
            h.score = if best > 0.0 { h.score / best } else { 0.0 };
        }
        Ok(hits)
    }
}

/// Is the caller an agent with the `admin` role?
pub(crate) fn is_admin(req: &Request) -> bool {
    req.caller
        .agent()
        .is_some_and(|a| req.policy.role(a) == avm_core::policy::Role::Admin)
}

/// Refuses a node the caller may not see (a node shared with named agents only), by the one
/// visibility rule ([`avm_core::provider::visible_to`]).
pub(crate) fn check_sees(caller: &avm_core::Caller, n: &Node) -> Result<()> {
    if n.visible_to(caller) {
        return Ok(());
    }
    Err(Error::denied(format!(
        "{} is shared with named agents only, and {} is not one of them nor its author (rule: :shared)",
        n.path,
        caller.agent().unwrap_or("operator")
    )))
}

/// The attributes of a node.
fn node_stat(n: &Node) -> Stat {
    Stat {
        kind: n.kind,
        size: n.content.len() as u64,
        version: Some(n.version),
        created_at: Some(n.created_at),
        updated_at: Some(n.updated_at),
        accessed_at: n.accessed_at,
        attrs: avm_core::Attrs {
            mtime: Some(n.mtime()),
            ctime: Some(n.attrs.ctime.unwrap_or_else(|| n.mtime())),
            ..n.attrs
        },
    }
}

impl MemoryProvider {
    /// The attributes of the directory `req.path`, with its link count: 2 plus the
    /// subdirectories the caller sees; `NotFound` when there is no such directory.
    fn dir_stat(&self, req: &Request) -> Result<Stat> {
        let path = req.path.as_str();
        let (mut attrs, mut subdirs) = match self.store.dir_info(path, &req.caller)? {
            Some(info) => info,
            None if always_dir(path, &req.caller) => (avm_core::Attrs::default(), 0),
            None => return Err(Error::not_found(path)),
        };
        // The namespace roots are listed before anything is written in them.
        let always: &[&str] = match path {
            "/" => &["/memory"],
            "/memory" => &["/memory/private", "/memory/shared"],
            _ => &[],
        };
        for p in always {
            if !self.store.has_children(p)? {
                subdirs += 1;
            }
        }
        if path == "/memory/private"
            && let Some(own) = req.caller.private_root()
            && !self.store.has_children(&own)?
        {
            subdirs += 1;
        }
        attrs.nlink = Some(u32::try_from(2 + subdirs).unwrap_or(u32::MAX));
        Ok(Stat {
            kind: NodeKind::Dir,
            size: 0,
            version: None,
            created_at: None,
            updated_at: attrs.mtime.map(|t| t / 1000),
            accessed_at: None,
            attrs,
        })
    }
}

fn entry(n: &Node) -> Entry {
    Entry {
        path: n.path.clone(),
        kind: n.kind,
        size: n.content.len() as u64,
        version: Some(n.version),
        updated_at: Some(n.updated_at),
    }
}
