//! The host: parses addresses, checks the caller, routes to a mount and caches.
//!
//! Every front end calls these methods with a raw address string and a [`Caller`]; nothing
//! reaches a provider without passing through [`Host::resolve`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::address::{Address, is_within, normalize_path};
use crate::error::{Error, ErrorKind, Result};
use crate::policy::{Action, Policy};
use crate::provider::{
    Caller, Capacity, Entry, ListOptions, Listing, NodeKind, Output, Provider, ProviderInfo,
    RemoveOptions, Rename, Request, SearchHit, SearchOptions, SetAttrs, Stat, SuffixOn, SuffixSpec,
    WriteInput,
};
use crate::router::Router;

mod resolve;
#[cfg(test)]
mod tests;

/// A provider mounted at a pattern.
pub struct Mount {
    /// The pattern from config.
    pub pattern: String,
    /// The provider serving it.
    pub provider: Arc<dyn Provider>,
    /// How long the host caches reads from this mount (zero = never).
    pub ttl: Duration,
    /// Refuse writes through this mount.
    pub read_only: bool,
    info: ProviderInfo,
}

impl Mount {
    /// Mounts `provider` at `pattern`.
    pub fn new(pattern: impl Into<String>, provider: Arc<dyn Provider>) -> Self {
        let info = provider.info();
        Mount {
            pattern: pattern.into(),
            provider,
            ttl: Duration::ZERO,
            read_only: false,
            info,
        }
    }

    /// Sets the host read-cache lifetime.
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Marks the mount read-only.
    pub fn read_only(mut self, ro: bool) -> Self {
        self.read_only = ro;
        self
    }

    /// What the provider declared.
    pub fn info(&self) -> &ProviderInfo {
        &self.info
    }
}

/// Suffixes the host itself answers on every path.
const HOST_SUFFIXES: &[&str] = &["info"];

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Op {
    Read,
    Write,
}

/// Caller, resolved path, and suffix/query of a cached read.
type CacheKey = (Caller, String, String);

/// Writes bound for one mount: the input positions and the requests.
type Group<'a> = (&'a Mount, Vec<usize>, Vec<(Request, WriteInput)>);

/// The host.
pub struct Host {
    router: Router<Mount>,
    /// Providers that serve suffixes on every path (recall, topics, librarian).
    services: Vec<Mount>,
    policy: Arc<Policy>,
    /// Read results of mounts with a TTL, keyed by caller, resolved path and suffix/query.
    cache: Mutex<HashMap<CacheKey, (Instant, Output)>>,
    /// Each mount pattern's literal prefix (`/db/users/{id}` → `/db/users`), by pattern.
    prefixes: HashMap<String, String>,
    /// How long a request may take (the front end's limit): every request's deadline is its
    /// start plus this; `None` (the CLI) sets none.
    timeout: Option<Duration>,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field(
                "mounts",
                &self
                    .router
                    .routes()
                    .map(|(p, _)| p.as_str())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// A shared namespace's name, checked: `market`, `team/research` (no empty, dot or hidden
/// segment, and none of `:?#` that addresses give a meaning).
pub fn check_namespace(ns: &str) -> Result<String> {
    let ns = ns.trim().trim_matches('/');
    if ns.is_empty()
        || ns.contains([':', '?', '#'])
        || ns
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == ".." || s.starts_with('.'))
    {
        return Err(Error::invalid(format!(
            "namespace {ns:?} is not accepted; use a name such as market or team/research"
        )));
    }
    Ok(ns.to_string())
}

/// The directory a new memory of `caller` goes to: the shared namespace `namespace`
/// (`/memory/shared/NS`), else the caller's private namespace. Front ends address
/// `:remember` at it.
pub fn remember_dir(caller: &Caller, namespace: Option<&str>) -> Result<String> {
    match (namespace, caller.private_root()) {
        (Some(ns), _) => Ok(format!("/memory/shared/{}", check_namespace(ns)?)),
        (None, Some(root)) => Ok(root),
        (None, None) => Err(Error::invalid(
            "remember needs an agent (--agent NAME) or a shared namespace (--namespace NS)",
        )),
    }
}

/// Expands the `/private` shorthand for agents; operators must name the agent.
pub fn expand_private(caller: &Caller, path: &str) -> Result<String> {
    if !is_within(path, "/private") {
        return Ok(path.to_string());
    }
    match caller.private_root() {
        Some(root) => Ok(format!("{root}{}", &path["/private".len()..])),
        None => Err(Error::invalid(format!(
            "{path} uses the /private shorthand, which needs an agent: pass --agent NAME or write /memory/private/NAME/…"
        ))),
    }
}

impl Host {
    /// Builds a host, reporting every bad or conflicting pattern.
    pub fn new(mounts: Vec<Mount>) -> std::result::Result<Self, Vec<Error>> {
        let router = Router::new(mounts.into_iter().map(|m| (m.pattern.clone(), m)).collect())?;
        let prefixes = router
            .routes()
            .map(|(p, _)| (p.as_str().to_string(), p.literal_prefix()))
            .collect();
        Ok(Host {
            router,
            prefixes,
            services: Vec::new(),
            policy: Arc::new(Policy::open()),
            cache: Mutex::new(HashMap::new()),
            timeout: None,
        })
    }

    /// Gives every request a deadline `timeout` after it starts (`Request::deadline`): the
    /// front end's time limit (an HTTP or MCP request's, a FUSE operation's). Providers that
    /// wait — on a program, a URL, a plugin, another process's lock — stop waiting then, with
    /// `TimedOut`.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Sets the permission policy applied to every agent request.
    pub fn with_policy(mut self, policy: Policy) -> Self {
        self.policy = Arc::new(policy);
        self
    }

    /// Adds a service: a provider whose declared suffixes work on every path, with the path as
    /// the scope (`/memory/shared:recall?q=…`). A mount's own suffix of the same name wins.
    pub fn with_service(mut self, provider: Arc<dyn Provider>) -> Self {
        let info = provider.info();
        self.services
            .push(Mount::new(format!("service:{}", info.kind), provider));
        self
    }

    /// The permission policy.
    pub fn policy(&self) -> &Arc<Policy> {
        &self.policy
    }

    /// The services, in the order they were added.
    pub fn services(&self) -> impl Iterator<Item = &Mount> {
        self.services.iter()
    }

    /// The mounts, most specific first.
    pub fn mounts(&self) -> impl Iterator<Item = &Mount> {
        self.router.routes().map(|(_, m)| m)
    }

    /// Refuses, before any content is sent, a write of `path` that its mount can never take
    /// (a read-only mount, or a provider that takes no writes), so a front end such as FUSE can
    /// fail the `open` instead of the `close` that shells ignore.
    pub fn check_writable(&self, path: &str) -> Result<()> {
        let Some(r) = self.router.route(path) else {
            return Ok(());
        };
        let m = r.target;
        if m.read_only {
            return Err(Error::new(
                ErrorKind::ReadOnly,
                format!("{path} is on the read-only mount {}", m.pattern),
            ));
        }
        if !m.info.ops.write {
            return Err(Error::new(
                ErrorKind::ReadOnly,
                format!(
                    "{path} is served by the {} provider of mount {}, which takes no writes",
                    m.info.kind, m.pattern
                ),
            ));
        }
        Ok(())
    }

    /// The `type` of the provider that serves `path` (`memory`, `wasm`, …), if any mount does.
    pub fn provider_kind(&self, path: &str) -> Option<&str> {
        self.router.route(path).map(|r| r.target.info.kind.as_str())
    }

    /// Whether `caller` may see `path` in a result set.
    pub fn may_read(&self, caller: &Caller, path: &str) -> bool {
        caller.may_see(path) && self.policy.may_read(caller, path)
    }

    /// Reads a file or suffix.
    pub fn read(&self, caller: &Caller, raw: &str) -> Result<Output> {
        let (mount, req) = self.resolve(caller, raw, Op::Read)?;
        if req.suffix.as_deref() == Some("info")
            && !mount.info.suffixes.iter().any(|s| s.name == "info")
        {
            return Ok(self.info_output(mount, &req));
        }
        if mount.ttl.is_zero() {
            return mount.provider.read_via(self, &req);
        }
        let key = (caller.clone(), req.path.clone(), raw_tail(&req));
        if let Ok(cache) = self.cache.lock()
            && let Some((at, out)) = cache.get(&key)
            && at.elapsed() < mount.ttl
        {
            return Ok(out.clone());
        }
        let out = mount.provider.read_via(self, &req)?;
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() > 10_000 {
                cache.clear();
            }
            cache.insert(key, (Instant::now(), out.clone()));
        }
        Ok(out)
    }

    fn info_output(&self, mount: &Mount, req: &Request) -> Output {
        let kind = mount
            .provider
            .stat(req)
            .map(|s| s.kind)
            .unwrap_or(NodeKind::File);
        let applies = |s: &&SuffixSpec| match s.on {
            SuffixOn::Any => true,
            SuffixOn::File => kind == NodeKind::File,
            SuffixOn::Dir => kind == NodeKind::Dir,
        };
        let specs: Vec<&SuffixSpec> = mount.info.suffixes.iter().filter(applies).collect();
        let mut text = String::new();
        for s in &specs {
            let rw = match (s.read, s.write) {
                (true, true) => "rw",
                (true, false) => "r ",
                _ => " w",
            };
            text.push_str(&format!(":{:<10} {rw}  {}\n", s.name, s.help));
        }
        Output::new(
            text,
            json!({
                "path": req.path,
                "mount": mount.pattern,
                "provider": mount.info.kind,
                "suffixes": specs,
            }),
        )
    }

    /// Attributes of a path.
    pub fn stat(&self, caller: &Caller, raw: &str) -> Result<Stat> {
        let (mount, req) = self.resolve(caller, raw, Op::Read)?;
        mount.provider.stat(&req)
    }

    /// Lists a directory; entries the caller may not see never appear.
    pub fn list(&self, caller: &Caller, raw: &str, opts: &ListOptions) -> Result<Listing> {
        let (mount, req) = self.resolve(caller, raw, Op::Read)?;
        let mut listing = mount.provider.list(&req, opts)?;
        listing.entries.retain(|e| self.may_read(caller, &e.path));
        if !opts.recursive {
            self.add_mount_points(&req.path, &mut listing);
        }
        Ok(listing)
    }

    /// Other mounts' literal roots that sit directly under `dir` show up as directories.
    fn add_mount_points(&self, dir: &str, listing: &mut Listing) {
        for (pattern, _) in self.router.routes() {
            let root = pattern.literal_prefix();
            if root == dir || !is_within(&root, dir) {
                continue;
            }
            let rest = root[dir.len()..].trim_start_matches('/');
            let first = rest.split('/').next().unwrap_or(rest);
            let path = crate::address::join(dir, first);
            if !listing.entries.iter().any(|e| e.path == path) {
                listing.entries.push(Entry {
                    path,
                    kind: NodeKind::Dir,
                    size: 0,
                    version: None,
                    updated_at: None,
                });
            }
        }
        listing.entries.sort_by(|a, b| a.path.cmp(&b.path));
    }

    /// Writes a file or writable suffix.
    pub fn write(&self, caller: &Caller, raw: &str, input: WriteInput) -> Result<Output> {
        let (mount, req) = self.resolve(caller, raw, Op::Write)?;
        self.check_quota(caller, mount, &req, &input, &mut None)?;
        self.invalidate(&req.path);
        mount.provider.write_via(self, &req, input)
    }

    /// Writes many nodes, grouped per provider so each group can commit together. Results come
    /// back in input order.
    pub fn write_many(
        &self,
        caller: &Caller,
        items: Vec<(String, WriteInput)>,
    ) -> Vec<Result<Output>> {
        let mut results: Vec<Option<Result<Output>>> = (0..items.len()).map(|_| None).collect();
        let mut groups: Vec<Group<'_>> = Vec::new();
        let mut usage = None;
        for (i, (raw, input)) in items.into_iter().enumerate() {
            let resolved = self.resolve(caller, &raw, Op::Write).and_then(|(m, r)| {
                self.check_quota(caller, m, &r, &input, &mut usage)?;
                Ok((m, r))
            });
            match resolved {
                Err(e) => results[i] = Some(Err(e)),
                Ok((mount, req)) => {
                    self.invalidate(&req.path);
                    match groups.iter_mut().find(|(m, _, _)| std::ptr::eq(*m, mount)) {
                        Some((_, idx, reqs)) => {
                            idx.push(i);
                            reqs.push((req, input));
                        }
                        None => groups.push((mount, vec![i], vec![(req, input)])),
                    }
                }
            }
        }
        for (mount, idx, reqs) in groups {
            let outs = mount.provider.write_many(reqs);
            for (i, out) in idx.into_iter().zip(outs) {
                results[i] = Some(out);
            }
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(Error::internal("write_many lost a result"))))
            .collect()
    }

    /// Removes a file or subtree (soft delete where the provider has a trash).
    pub fn remove(&self, caller: &Caller, raw: &str, opts: RemoveOptions) -> Result<Output> {
        let (mount, req) = self.resolve(caller, raw, Op::Write)?;
        plain(&req, "remove")?;
        self.invalidate(&req.path);
        mount.provider.remove(&req, opts)
    }

    /// Makes an empty directory (it persists until removed).
    pub fn mkdir(&self, caller: &Caller, raw: &str) -> Result<Output> {
        let (mount, req) = self.resolve(caller, raw, Op::Write)?;
        plain(&req, "make a directory at")?;
        self.invalidate(&req.path);
        mount.provider.mkdir(&req)
    }

    /// Removes an empty directory.
    pub fn rmdir(&self, caller: &Caller, raw: &str) -> Result<Output> {
        let (mount, req) = self.resolve(caller, raw, Op::Write)?;
        plain(&req, "remove the directory")?;
        self.invalidate(&req.path);
        mount.provider.rmdir(&req)
    }

    /// Parses `raw` as this caller would address it: the path with `/private` expanded, and the
    /// suffix and query if the routed provider (or a service) declares the suffix.
    pub fn parse(&self, caller: &Caller, raw: &str) -> Result<Address> {
        let mut addr = Address::parse_with(raw, |base, word| {
            expand_private(caller, base).is_ok_and(|b| self.declares(&b, word))
        })?;
        addr.path = expand_private(caller, &addr.path)?;
        Ok(addr)
    }

    /// Moves a file or subtree; both ends are checked and must be on the same provider.
    /// `avm mv` semantics: onto an existing directory means into it.
    pub fn rename(&self, caller: &Caller, src: &str, dst: &str, force: bool) -> Result<Output> {
        let (mount, req, dst_path) = self.resolve_move(caller, src, dst)?;
        mount.provider.rename(&req, &dst_path, force)
    }

    /// Moves a file or directory with `rename(2)` semantics (what the mount does); both ends
    /// are checked and must be on the same provider.
    pub fn rename_posix(
        &self,
        caller: &Caller,
        src: &str,
        dst: &str,
        how: Rename,
    ) -> Result<Output> {
        let (mount, req, dst_path) = self.resolve_move(caller, src, dst)?;
        mount.provider.rename_posix(&req, &dst_path, how)
    }

    /// Changes filesystem attributes (mode, owner, times) of a path.
    pub fn set_attrs(&self, caller: &Caller, raw: &str, set: &SetAttrs) -> Result<Stat> {
        let (mount, req) = self.resolve(caller, raw, Op::Write)?;
        plain(&req, "change attributes of")?;
        if set.mode.is_some_and(|m| m > 0o7777) {
            return Err(Error::invalid(format!(
                "mode {:o} has bits beyond 07777",
                set.mode.unwrap_or(0)
            )));
        }
        self.invalidate(&req.path);
        mount.provider.set_attrs(&req, set)
    }

    /// Makes a symbolic link at `raw` pointing at `target` (kept as given, never followed).
    pub fn symlink(
        &self,
        caller: &Caller,
        raw: &str,
        target: &str,
        attrs: &SetAttrs,
    ) -> Result<Stat> {
        let (mount, req) = self.resolve(caller, raw, Op::Write)?;
        plain(&req, "make a link at")?;
        if target.is_empty() || target.contains('\0') || target.len() > 4096 {
            return Err(Error::invalid(format!(
                "link target {target:?} is not valid: give 1 to 4096 bytes without NUL"
            )));
        }
        self.invalidate(&req.path);
        mount.provider.symlink(&req, target, attrs)
    }

    /// Size and free space of the storage serving `raw`, if its provider knows.
    pub fn capacity(&self, caller: &Caller, raw: &str) -> Result<Option<Capacity>> {
        let (mount, _req) = self.resolve(caller, raw, Op::Read)?;
        mount.provider.capacity()
    }

    /// Searches below `scope` on every mount that offers search and could hold paths there.
    pub fn search(
        &self,
        caller: &Caller,
        scope: &str,
        opts: &SearchOptions,
    ) -> Result<Vec<SearchHit>> {
        if opts.query.trim().is_empty() {
            return Err(Error::invalid("empty search query: give at least one word"));
        }
        let scope = expand_private(caller, &normalize_path(scope)?)?;
        self.check_caller(caller, &scope, Action::Read)?;
        let mut hits = Vec::new();
        let mut searched = 0;
        for (pattern, mount) in self.router.routes() {
            if !mount.info.ops.search || !pattern.may_match_within(&scope) {
                continue;
            }
            searched += 1;
            let mut req = Request::new(scope.clone(), caller.clone());
            req.mount = mount.pattern.clone();
            req.policy = self.policy.clone();
            req.deadline = self.deadline();
            hits.extend(
                mount
                    .provider
                    .search(&req, opts)?
                    .into_iter()
                    .filter(|h| self.may_read(caller, &h.path) && is_within(&h.path, &scope)),
            );
        }
        if searched == 0 {
            return Err(Error::unsupported("search", &scope));
        }
        hits.sort_by(|a, b| b.score.total_cmp(&a.score));
        hits.truncate(opts.limit);
        Ok(hits)
    }

    fn invalidate(&self, path: &str) {
        if let Ok(mut cache) = self.cache.lock()
            && !cache.is_empty()
        {
            cache.retain(|(_, p, _), _| !is_within(p, path) && !is_within(path, p));
        }
    }
}

/// The suffix and query of a request, as a cache-key part.
fn raw_tail(req: &Request) -> String {
    format!("{}?{}", req.suffix.as_deref().unwrap_or(""), req.query)
}

/// Refuses a suffix or query on operations that act on whole nodes.
fn plain(req: &Request, what: &str) -> Result<()> {
    if req.suffix.is_some() || !req.query.is_empty() {
        return Err(Error::invalid(format!(
            "cannot {what} {}{}: give a node path without a :suffix or ?query",
            req.path,
            req.suffix
                .as_deref()
                .map(|s| format!(":{s}"))
                .unwrap_or_default()
        )));
    }
    Ok(())
}
