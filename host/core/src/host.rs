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
    Usage, WriteInput,
};
use crate::router::Router;

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

    fn declares(&self, base: &str, word: &str) -> bool {
        if HOST_SUFFIXES.contains(&word) || self.service_for(word).is_some() {
            return true;
        }
        self.router
            .route(base)
            .is_some_and(|r| r.target.info.suffixes.iter().any(|s| s.name == word))
    }

    fn service_for(&self, word: &str) -> Option<&Mount> {
        self.services
            .iter()
            .find(|m| m.info.suffixes.iter().any(|s| s.name == word))
    }

    /// Parses `raw`, expands `/private`, checks the caller and routes.
    fn resolve(&self, caller: &Caller, raw: &str, op: Op) -> Result<(&Mount, Request)> {
        let addr = Address::parse_with(raw, |base, word| {
            expand_private(caller, base).is_ok_and(|b| self.declares(&b, word))
        })?;
        let path = expand_private(caller, &addr.path)?;
        let action = match op {
            Op::Read => Action::Read,
            Op::Write => Action::Write,
        };
        self.check_caller(caller, &path, action)?;
        if let Some(word) = &addr.suffix
            && let Some(service) = self.service_for(word)
            && !self
                .router
                .route(&path)
                .is_some_and(|r| r.target.info.suffixes.iter().any(|s| &s.name == word))
        {
            if let Some(spec) = service.info.suffixes.iter().find(|s| &s.name == word) {
                check_suffix(spec, &path, op)?;
                let keys: Vec<&str> = spec.query.iter().map(String::as_str).collect();
                addr.query.check_keys(&keys, &format!("{path}:{word}"))?;
            }
            return Ok((
                service,
                Request {
                    mount: service.pattern.clone(),
                    path,
                    captures: Default::default(),
                    suffix: addr.suffix,
                    query: addr.query,
                    caller: caller.clone(),
                    deadline: self.deadline(),
                    policy: self.policy.clone(),
                },
            ));
        }
        // The literal root of a pattern such as `/db/users/{id}` matches no pattern itself (or
        // only a catch-all from above, like `/**`), yet it is where that mount's entries live:
        // reads (stat, list) and writes of it go to that mount, which decides.
        let prefix_len = |pattern: &str| self.prefixes.get(pattern).map_or(0, String::len);
        let routed = self.router.route(&path);
        let root = if addr.suffix.is_none() {
            self.router.routes().map(|(_, m)| m).find(|m| {
                m.pattern.len() > path.len()
                    && self.prefixes.get(&m.pattern).is_some_and(|lp| *lp == path)
                    && routed.as_ref().is_none_or(|r| {
                        r.target.pattern != m.pattern && prefix_len(&r.target.pattern) < path.len()
                    })
            })
        } else {
            None
        };
        let route = match (routed, root) {
            (_, Some(mount)) => {
                return Ok((
                    mount,
                    Request {
                        mount: mount.pattern.clone(),
                        path,
                        captures: Default::default(),
                        suffix: None,
                        query: addr.query,
                        caller: caller.clone(),
                        deadline: self.deadline(),
                        policy: self.policy.clone(),
                    },
                ));
            }
            (r, _) => r,
        }
        .ok_or_else(|| {
            Error::new(
                ErrorKind::NotFound,
                format!(
                    "no mount serves {path}; mounted patterns: {}",
                    self.router
                        .routes()
                        .map(|(p, _)| p.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        })?;
        let mount = route.target;
        if let Some(word) = &addr.suffix
            && let Some(spec) = mount.info.suffixes.iter().find(|s| &s.name == word)
        {
            check_suffix(spec, &path, op)?;
            let keys: Vec<&str> = spec.query.iter().map(String::as_str).collect();
            addr.query.check_keys(&keys, &format!("{path}:{word}"))?;
        }
        if op == Op::Write && mount.read_only {
            return Err(Error::new(
                ErrorKind::ReadOnly,
                format!("{path} is on the read-only mount {}", mount.pattern),
            ));
        }
        Ok((
            mount,
            Request {
                mount: mount.pattern.clone(),
                path,
                captures: route.captures,
                suffix: addr.suffix,
                query: addr.query,
                caller: caller.clone(),
                deadline: self.deadline(),
                policy: self.policy.clone(),
            },
        ))
    }

    /// A new request's deadline.
    fn deadline(&self) -> Option<Instant> {
        self.timeout.map(|t| Instant::now() + t)
    }

    /// Refuses what the policy refuses (other agents' private namespaces, configured rules),
    /// naming the rule.
    fn check_caller(&self, caller: &Caller, path: &str, action: Action) -> Result<()> {
        self.policy.check(caller, path, action)
    }

    /// Whether `caller` may see `path` in a result set.
    pub fn may_read(&self, caller: &Caller, path: &str) -> bool {
        caller.may_see(path) && self.policy.may_read(caller, path)
    }

    /// Refuses a write that would take an agent past its quota.
    fn check_quota(
        &self,
        caller: &Caller,
        mount: &Mount,
        req: &Request,
        input: &WriteInput,
        usage: &mut Option<Usage>,
    ) -> Result<()> {
        let Some(agent) = caller.agent() else {
            return Ok(());
        };
        let quota = self.policy.quota(agent);
        let Some(root) = caller.private_root() else {
            return Ok(());
        };
        if !quota.is_limited() || !is_within(&req.path, &root) || req.suffix.is_some() {
            return Ok(());
        }
        let current = match usage {
            Some(u) => *u,
            None => {
                let mut r = req.clone();
                r.path = root.clone();
                match mount.provider.usage(&r)? {
                    Some(u) => *usage.insert(u),
                    None => return Ok(()),
                }
            }
        };
        let old = mount
            .provider
            .stat(req)
            .ok()
            .filter(|s| s.kind == NodeKind::File)
            .map(|s| s.size);
        let (content_len, append) = match input {
            WriteInput::Put(p) => (p.content.as_ref().map(|c| c.len() as u64), p.append),
            WriteInput::Text(t) => (Some(t.len() as u64), false),
            WriteInput::Record(v) => (
                v.get("content")
                    .and_then(|c| c.as_str())
                    .map(|c| c.len() as u64),
                false,
            ),
        };
        let nodes = current.nodes + u64::from(old.is_none());
        if old.is_none()
            && let Some(max) = quota.max_nodes
            && nodes > max
        {
            return Err(Error::new(
                ErrorKind::TooLarge,
                format!(
                    "quota exceeded: agent {agent} already has {}/{max} nodes in {root} (rule: agents.{agent}.quota.max_nodes); delete or archive some first",
                    current.nodes
                ),
            ));
        }
        let bytes = match (content_len, append) {
            (Some(n), true) => current.bytes + n,
            (Some(n), false) => (current.bytes + n).saturating_sub(old.unwrap_or(0)),
            (None, _) => current.bytes,
        };
        if let Some(max) = quota.max_bytes
            && bytes > max
            && bytes > current.bytes
        {
            return Err(Error::new(
                ErrorKind::TooLarge,
                format!(
                    "quota exceeded: this write would bring agent {agent} to {bytes} bytes in {root}, over its {max} (rule: agents.{agent}.quota.max_bytes)"
                ),
            ));
        }
        if let Some(u) = usage {
            u.nodes = nodes;
            u.bytes = bytes;
        }
        Ok(())
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

    /// The mount and request of a move's source and the destination path, after every check a
    /// move needs: both ends writable by the caller, on the same mount, and not a move into
    /// itself.
    fn resolve_move(
        &self,
        caller: &Caller,
        src: &str,
        dst: &str,
    ) -> Result<(&Mount, Request, String)> {
        let (mount, req) = self.resolve(caller, src, Op::Write)?;
        plain(&req, "move")?;
        let dst_addr = Address::parse_with(dst, |base, word| {
            expand_private(caller, base).is_ok_and(|b| self.declares(&b, word))
        })?;
        if dst_addr.suffix.is_some() || !dst_addr.query.is_empty() {
            return Err(Error::invalid(format!(
                "cannot move to {dst}: give a node path without a :suffix or ?query"
            )));
        }
        let dst_path = expand_private(caller, &dst_addr.path)?;
        self.check_caller(caller, &dst_path, Action::Write)?;
        let dst_route = self.router.route(&dst_path).ok_or_else(|| {
            Error::new(ErrorKind::NotFound, format!("no mount serves {dst_path}"))
        })?;
        if !std::ptr::eq(dst_route.target, mount) {
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!(
                    "cannot move {} to {dst_path}: they are on different mounts ({} and {}); copy and delete instead",
                    req.path, mount.pattern, dst_route.target.pattern
                ),
            ));
        }
        if dst_route.target.read_only {
            return Err(Error::new(
                ErrorKind::ReadOnly,
                format!("{dst_path} is on the read-only mount {}", mount.pattern),
            ));
        }
        if is_within(&dst_path, &req.path) && dst_path != req.path {
            return Err(Error::invalid(format!(
                "cannot move {} into itself ({dst_path})",
                req.path
            )));
        }
        self.invalidate(&req.path);
        self.invalidate(&dst_path);
        Ok((mount, req, dst_path))
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

fn check_suffix(spec: &SuffixSpec, path: &str, op: Op) -> Result<()> {
    let ok = match op {
        Op::Read => spec.read,
        Op::Write => spec.write,
    };
    if ok {
        return Ok(());
    }
    let what = if op == Op::Write { "written" } else { "read" };
    Err(Error::new(
        if op == Op::Write {
            ErrorKind::ReadOnly
        } else {
            ErrorKind::Unsupported
        },
        format!("{path}:{} cannot be {what}", spec.name),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::{Ops, Put};

    /// A tiny in-memory provider: enough to exercise routing and caller checks.
    struct Echo(&'static str);
    impl Provider for Echo {
        fn info(&self) -> ProviderInfo {
            ProviderInfo {
                kind: self.0.into(),
                description: "echo".into(),
                ops: Ops {
                    read: true,
                    write: true,
                    ..Ops::default()
                },
                suffixes: vec![SuffixSpec::new(
                    "meta",
                    SuffixOn::File,
                    true,
                    false,
                    &["pretty"],
                    "metadata",
                )],
            }
        }
        fn read(&self, req: &Request) -> Result<Output> {
            Ok(Output::text(format!(
                "{}:{}:{}:{}",
                self.0,
                req.path,
                req.suffix.clone().unwrap_or_default(),
                req.captures.get("sym").cloned().unwrap_or_default()
            )))
        }
        fn write(&self, req: &Request, _: WriteInput) -> Result<Output> {
            Ok(Output::text(req.path.clone()))
        }
        fn stat(&self, _: &Request) -> Result<Stat> {
            Ok(Stat {
                kind: NodeKind::File,
                size: 0,
                version: None,
                created_at: None,
                updated_at: None,
                accessed_at: None,
                attrs: Default::default(),
            })
        }
    }

    fn host() -> Host {
        Host::new(vec![
            Mount::new("/**", Arc::new(Echo("mem"))),
            Mount::new("/live/{sym}", Arc::new(Echo("live"))).read_only(true),
        ])
        .unwrap()
    }

    /// Says how long its request had left.
    struct Clock;
    impl Provider for Clock {
        fn info(&self) -> ProviderInfo {
            ProviderInfo {
                kind: "clock".into(),
                description: "deadline".into(),
                ops: Ops {
                    read: true,
                    ..Ops::default()
                },
                suffixes: Vec::new(),
            }
        }
        fn read(&self, req: &Request) -> Result<Output> {
            Ok(Output::text(match req.deadline {
                Some(d) => d
                    .saturating_duration_since(Instant::now())
                    .as_millis()
                    .to_string(),
                None => "none".into(),
            }))
        }
    }

    #[test]
    fn a_front_ends_time_limit_becomes_each_requests_deadline() {
        let plain = Host::new(vec![Mount::new("/**", Arc::new(Clock))]).unwrap();
        assert_eq!(plain.read(&Caller::Operator, "/a").unwrap().text, "none");
        let limited = Host::new(vec![Mount::new("/**", Arc::new(Clock))])
            .unwrap()
            .with_timeout(Duration::from_secs(30));
        let left: u128 = limited
            .read(&Caller::Operator, "/a")
            .unwrap()
            .text
            .parse()
            .unwrap();
        assert!((29_000..=30_000).contains(&left), "{left} ms left");
    }

    #[test]
    fn routes_by_specificity_and_passes_captures() {
        let h = host();
        assert_eq!(
            h.read(&Caller::Operator, "/a/b.md").unwrap().text,
            "mem:/a/b.md::"
        );
        assert_eq!(
            h.read(&Caller::Operator, "/live/nvda").unwrap().text,
            "live:/live/nvda::nvda"
        );
    }

    #[test]
    fn declared_suffixes_split_and_undeclared_stay_in_the_name() {
        let h = host();
        assert_eq!(
            h.read(&Caller::Operator, "/a.md:meta").unwrap().text,
            "mem:/a.md:meta:"
        );
        assert_eq!(
            h.read(&Caller::Operator, "/a:b.md").unwrap().text,
            "mem:/a:b.md::"
        );
        let e = h.read(&Caller::Operator, "/a.md:meta?bogus=1").unwrap_err();
        assert!(e.message().contains("accepted keys: pretty"), "{e}");
        let e = h
            .write(
                &Caller::Operator,
                "/a.md:meta",
                WriteInput::Text("x".into()),
            )
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ReadOnly);
        let info = h.read(&Caller::Operator, "/a.md:info").unwrap();
        assert!(info.text.contains(":meta"), "{}", info.text);
    }

    #[test]
    fn private_shorthand_expands_for_agents_and_isolates_them() {
        let h = host();
        let alice = Caller::Agent("alice".into());
        assert_eq!(
            h.read(&alice, "/private/x.md").unwrap().text,
            "mem:/memory/private/alice/x.md::"
        );
        let e = h.read(&alice, "/memory/private/bob/x.md").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PermissionDenied);
        assert!(e.message().contains("rule"), "{e}");
        let e = h.read(&Caller::Operator, "/private/x.md").unwrap_err();
        assert!(e.message().contains("--agent"), "{e}");
        let e = h
            .rename(&alice, "/private/x.md", "/memory/private/bob/y.md", false)
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PermissionDenied);
    }

    #[test]
    fn read_only_mounts_refuse_writes() {
        let h = host();
        let e = h
            .write(
                &Caller::Operator,
                "/live/x",
                WriteInput::Put(Put::default()),
            )
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ReadOnly);
    }

    /// Counts reads, to see the host cache at work.
    struct Counter(std::sync::atomic::AtomicUsize);
    impl Provider for Counter {
        fn info(&self) -> ProviderInfo {
            ProviderInfo {
                kind: "counter".into(),
                description: "counts reads".into(),
                ops: Ops {
                    read: true,
                    write: true,
                    ..Ops::default()
                },
                suffixes: vec![],
            }
        }
        fn read(&self, _: &Request) -> Result<Output> {
            let n = self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(Output::text(n.to_string()))
        }
        fn write(&self, req: &Request, _: WriteInput) -> Result<Output> {
            Ok(Output::text(req.path.clone()))
        }
    }

    #[test]
    fn mounts_with_a_ttl_are_cached_per_caller_and_writes_invalidate() {
        let c = Arc::new(Counter(std::sync::atomic::AtomicUsize::new(0)));
        let h = Host::new(vec![
            Mount::new("/live/**", c.clone()).with_ttl(Duration::from_secs(60)),
        ])
        .unwrap();
        assert_eq!(h.read(&Caller::Operator, "/live/x").unwrap().text, "0");
        assert_eq!(
            h.read(&Caller::Operator, "/live/x").unwrap().text,
            "0",
            "served from cache"
        );
        assert_eq!(
            h.read(&Caller::Agent("a".into()), "/live/x").unwrap().text,
            "1",
            "cache is per caller"
        );
        h.write(&Caller::Operator, "/live/x", WriteInput::Text("y".into()))
            .unwrap();
        assert_eq!(
            h.read(&Caller::Operator, "/live/x").unwrap().text,
            "2",
            "a write invalidates"
        );
    }

    #[test]
    fn unrouted_paths_name_the_mounts() {
        let h = Host::new(vec![Mount::new("/memory/**", Arc::new(Echo("mem")))]).unwrap();
        let e = h.read(&Caller::Operator, "/elsewhere").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert!(e.message().contains("/memory/**"));
    }
}
