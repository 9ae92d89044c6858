//! Resolution: a raw address parsed, `/private` expanded, the caller checked and the request
//! routed to a mount or service; with the quota, suffix and move checks writes need.

use std::time::Instant;

use super::{HOST_SUFFIXES, Host, Mount, Op, expand_private, plain};
use crate::address::{Address, is_within};
use crate::error::{Error, ErrorKind, Result};
use crate::policy::Action;
use crate::provider::{Caller, NodeKind, Request, SuffixSpec, Usage, WriteInput};

impl Host {
    pub(super) fn declares(&self, base: &str, word: &str) -> bool {
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
    pub(super) fn resolve(&self, caller: &Caller, raw: &str, op: Op) -> Result<(&Mount, Request)> {
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
    pub(super) fn deadline(&self) -> Option<Instant> {
        self.timeout.map(|t| Instant::now() + t)
    }

    /// Refuses what the policy refuses (other agents' private namespaces, configured rules),
    /// naming the rule.
    pub(super) fn check_caller(&self, caller: &Caller, path: &str, action: Action) -> Result<()> {
        self.policy.check(caller, path, action)
    }

    /// Refuses a write that would take an agent past its quota.
    pub(super) fn check_quota(
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

    /// The mount and request of a move's source and the destination path, after every check a
    /// move needs: both ends writable by the caller, on the same mount, and not a move into
    /// itself.
    pub(super) fn resolve_move(
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
