//! Who may read and write what: private namespaces, per-agent rules, global rules, quotas.
//!
//! The decision for an agent `A` on a path, in order (the first step that decides wins):
//! 1. another agent's private namespace (`/memory/private/<B>/…`, or its `/trash` copy):
//!    refused, always, whatever the configuration says;
//! 2. writes by a `readonly` agent: refused;
//! 3. `A`'s own private namespace: allowed;
//! 4. an `admin` agent: allowed;
//! 5. the agent's own `read` / `write` pattern list, when configured: allowed if a pattern
//!    matches, refused otherwise;
//! 6. the global `permissions` rules, first match wins: `rw` allows both, `ro` reads only,
//!    `none` nothing;
//! 7. `default_access` (`rw` unless configured).
//!
//! Operators (no agent) are the owner of the machine and are never refused here. Every refusal
//! names the rule that refused, so a surprised agent (or its operator) knows what to change.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};
use crate::provider::{Caller, live_path, private_owner};
use crate::router::Pattern;

/// What a rule grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    /// Read and write.
    #[default]
    Rw,
    /// Read only.
    Ro,
    /// Neither.
    None,
}

impl Access {
    fn allows(self, action: Action) -> bool {
        match self {
            Access::Rw => true,
            Access::Ro => action == Action::Read,
            Access::None => false,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Access::Rw => "rw",
            Access::Ro => "ro",
            Access::None => "none",
        }
    }
}

/// An agent's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Not bound by permission rules or quotas (other agents' private namespaces stay closed).
    Admin,
    /// Bound by the rules (the default).
    #[default]
    Member,
    /// May read what the rules allow and write nothing, not even its private namespace.
    Readonly,
}

/// A global permission rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PermissionRule {
    /// Path pattern (`/live/**`, `/memory/shared/*/drafts/**`).
    pub pattern: String,
    /// `rw`, `ro` or `none`.
    pub access: Access,
}

/// Limits on an agent's private namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Quota {
    /// Most nodes in `/memory/private/<agent>` (none = no limit).
    pub max_nodes: Option<u64>,
    /// Most content bytes in `/memory/private/<agent>` (none = no limit).
    pub max_bytes: Option<u64>,
}

impl Quota {
    /// Whether any limit is set.
    pub fn is_limited(&self) -> bool {
        self.max_nodes.is_some() || self.max_bytes.is_some()
    }
}

/// Per-agent configuration (`[agents.<id>]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    /// Role (`admin`, `member`, `readonly`); inherited when unset.
    pub role: Option<Role>,
    /// If set, the only patterns (besides its private namespace) the agent may read.
    pub read: Option<Vec<String>>,
    /// If set, the only patterns (besides its private namespace) the agent may write.
    pub write: Option<Vec<String>>,
    /// Limits on its private namespace; inherited field by field when unset.
    pub quota: Quota,
    /// Another agent entry whose settings this one starts from.
    pub inherit: Option<String>,
    /// Free text shown by `avm agents`.
    pub description: Option<String>,
}

/// Read or write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Reading content, listing, searching.
    Read,
    /// Creating, changing, moving, removing.
    Write,
}

impl Action {
    fn verb(self) -> &'static str {
        match self {
            Action::Read => "read",
            Action::Write => "write",
        }
    }
}

#[derive(Debug, Clone)]
struct AgentRules {
    role: Role,
    read: Option<Vec<Pattern>>,
    write: Option<Vec<Pattern>>,
    quota: Quota,
}

/// The compiled permission policy.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    default_access: Access,
    rules: Vec<Pattern>,
    access: Vec<Access>,
    agents: BTreeMap<String, AgentRules>,
    descriptions: BTreeMap<String, String>,
}

impl Policy {
    /// A policy with no rules: agents may use everything but each other's private namespaces.
    pub fn open() -> Self {
        Policy::default()
    }

    /// Compiles the configuration, reporting the first bad pattern or inheritance.
    pub fn new(
        default_access: Access,
        rules: &[PermissionRule],
        agents: &BTreeMap<String, AgentConfig>,
    ) -> Result<Self> {
        let mut policy = Policy {
            default_access,
            ..Policy::default()
        };
        for (i, r) in rules.iter().enumerate() {
            let p = Pattern::parse(&r.pattern)
                .map_err(|e| Error::invalid(format!("permissions[{i}]: {}", e.message())))?;
            policy.rules.push(p);
            policy.access.push(r.access);
        }
        for id in agents.keys() {
            let merged = resolve(id, agents)?;
            let patterns = |list: &Option<Vec<String>>,
                            key: &str|
             -> Result<Option<Vec<Pattern>>> {
                list.as_ref()
                    .map(|l| {
                        l.iter()
                            .map(|s| {
                                Pattern::parse(s).map_err(|e| {
                                    Error::invalid(format!("agents.{id}.{key}: {}", e.message()))
                                })
                            })
                            .collect()
                    })
                    .transpose()
            };
            let rules = AgentRules {
                role: merged.role.unwrap_or_default(),
                read: patterns(&merged.read, "read")?,
                write: patterns(&merged.write, "write")?,
                quota: merged.quota,
            };
            policy.agents.insert(id.clone(), rules);
            if let Some(d) = merged.description {
                policy.descriptions.insert(id.clone(), d);
            }
        }
        Ok(policy)
    }

    /// The agents named in the configuration, with their descriptions.
    pub fn configured_agents(&self) -> impl Iterator<Item = (&str, Option<&str>)> {
        self.agents
            .keys()
            .map(|a| (a.as_str(), self.descriptions.get(a).map(String::as_str)))
    }

    /// The role of `agent` (`member` when not configured).
    pub fn role(&self, agent: &str) -> Role {
        self.agents.get(agent).map(|a| a.role).unwrap_or_default()
    }

    /// The quota of `agent` (none when not configured or for admins).
    pub fn quota(&self, agent: &str) -> Quota {
        match self.agents.get(agent) {
            Some(a) if a.role != Role::Admin => a.quota,
            _ => Quota::default(),
        }
    }

    /// May `caller` do `action` on `path`? The refusal names the rule.
    pub fn check(&self, caller: &Caller, path: &str, action: Action) -> Result<()> {
        let Caller::Agent(agent) = caller else {
            return Ok(());
        };
        let deny = |rule: String| {
            Err(Error::new(
                ErrorKind::PermissionDenied,
                format!(
                    "agent {agent} may not {} {path} (rule: {rule})",
                    action.verb()
                ),
            ))
        };
        if let Some(owner) = private_owner(path)
            && owner != agent
        {
            return deny(format!(
                "{path} is in the private namespace of {owner}; private namespaces belong to their agent"
            ));
        }
        // A gossip digest speaks for one agent: only that agent may write it.
        if action == Action::Write
            && (path == "/gossip"
                || path
                    .strip_prefix("/gossip/")
                    .is_some_and(|name| name.strip_suffix(".digest") != Some(agent.as_str())))
        {
            return deny(format!(
                "{path} is not {agent}'s gossip digest; an agent writes only /gossip/{agent}.digest"
            ));
        }
        let rules = self.agents.get(agent.as_str());
        let role = rules.map(|r| r.role).unwrap_or_default();
        if role == Role::Readonly && action == Action::Write {
            return deny(format!("agents.{agent}.role = readonly"));
        }
        if private_owner(path) == Some(agent.as_str()) || role == Role::Admin {
            return Ok(());
        }
        let (list, key) = match action {
            Action::Read => (rules.and_then(|r| r.read.as_ref()), "read"),
            Action::Write => (rules.and_then(|r| r.write.as_ref()), "write"),
        };
        // A trashed or archived copy is governed by the rules of the place it came from.
        let ruled = live_path(path);
        if let Some(list) = list {
            if list
                .iter()
                .any(|p| p.matches(path).is_some() || p.matches(ruled).is_some())
            {
                return Ok(());
            }
            return deny(format!(
                "agents.{agent}.{key} allows only {} besides /memory/private/{agent}",
                if list.is_empty() {
                    "nothing".to_string()
                } else {
                    list.iter()
                        .map(Pattern::as_str)
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            ));
        }
        for (i, p) in self.rules.iter().enumerate() {
            if p.matches(ruled).is_some() || p.matches(path).is_some() {
                let access = self.access[i];
                if access.allows(action) {
                    return Ok(());
                }
                return deny(format!(
                    "permissions[{i}] {} = {}",
                    p.as_str(),
                    access.as_str()
                ));
            }
        }
        if self.default_access.allows(action) {
            Ok(())
        } else {
            deny(format!(
                "default_access = {}, and no permission rule matches",
                self.default_access.as_str()
            ))
        }
    }

    /// Whether `caller` may read `path` (for filtering result sets).
    pub fn may_read(&self, caller: &Caller, path: &str) -> bool {
        match caller {
            Caller::Operator => true,
            Caller::Agent(_) => self.check(caller, path, Action::Read).is_ok(),
        }
    }

    /// Whether result filtering needs more than the private-namespace rule (which stores apply
    /// in their queries): true when rules or defaults could refuse a read.
    pub fn filters_reads(&self) -> bool {
        self.default_access == Access::None
            || self.access.contains(&Access::None)
            || self.agents.values().any(|a| a.read.is_some())
    }
}

/// An agent entry with `inherit` chains applied (child fields win), refusing cycles.
fn resolve(id: &str, agents: &BTreeMap<String, AgentConfig>) -> Result<AgentConfig> {
    let mut chain = vec![id.to_string()];
    let mut cur = agents
        .get(id)
        .cloned()
        .ok_or_else(|| Error::invalid(format!("agents.{id} is not configured")))?;
    let mut merged = cur.clone();
    while let Some(parent) = cur.inherit.clone() {
        if chain.contains(&parent) {
            return Err(Error::invalid(format!(
                "agents.{id}: inherit forms a cycle ({} -> {parent})",
                chain.join(" -> ")
            )));
        }
        let p = agents.get(&parent).cloned().ok_or_else(|| {
            Error::invalid(format!(
                "agents.{}.inherit names {parent:?}, which is not configured (configured: {})",
                chain.last().map(String::as_str).unwrap_or(id),
                agents.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        })?;
        merged.role = merged.role.or(p.role);
        merged.read = merged.read.or(p.read.clone());
        merged.write = merged.write.or(p.write.clone());
        merged.quota.max_nodes = merged.quota.max_nodes.or(p.quota.max_nodes);
        merged.quota.max_bytes = merged.quota.max_bytes.or(p.quota.max_bytes);
        merged.description = merged.description.or(p.description.clone());
        chain.push(parent);
        cur = p;
    }
    Ok(merged)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn agent(a: &str) -> Caller {
        Caller::Agent(a.into())
    }

    #[test]
    fn with_no_configuration_agents_write_shared_and_their_own_private_space() {
        let p = Policy::open();
        let a = agent("alice");
        p.check(&a, "/memory/shared/market/x.md", Action::Write)
            .unwrap();
        p.check(&a, "/memory/private/alice/x.md", Action::Write)
            .unwrap();
        let e = p
            .check(&a, "/memory/private/bob/x.md", Action::Read)
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PermissionDenied);
        assert!(e.message().contains("private namespace of bob"), "{e}");
        p.check(&Caller::Operator, "/memory/private/bob/x.md", Action::Write)
            .unwrap();
    }

    #[test]
    fn first_matching_rule_wins_and_the_refusal_names_it() {
        let rules = vec![
            PermissionRule {
                pattern: "/live/admin/**".into(),
                access: Access::None,
            },
            PermissionRule {
                pattern: "/live/**".into(),
                access: Access::Ro,
            },
        ];
        let p = Policy::new(Access::Ro, &rules, &BTreeMap::new()).unwrap();
        let a = agent("alice");
        p.check(&a, "/live/nvda", Action::Read).unwrap();
        let e = p.check(&a, "/live/nvda", Action::Write).unwrap_err();
        assert!(e.message().contains("permissions[1] /live/** = ro"), "{e}");
        let e = p.check(&a, "/live/admin/x", Action::Read).unwrap_err();
        assert!(e.message().contains("permissions[0]"), "{e}");
        let e = p
            .check(&a, "/memory/shared/x.md", Action::Write)
            .unwrap_err();
        assert!(e.message().contains("default_access = ro"), "{e}");
        p.check(&a, "/memory/private/alice/x.md", Action::Write)
            .unwrap();
        assert!(p.filters_reads());
        // Trashed and archived copies follow the rules of the place they came from.
        for copy in ["/trash/live/admin/x", "/archive/live/admin/x"] {
            let e = p.check(&a, copy, Action::Read).unwrap_err();
            assert!(e.message().contains("permissions[0]"), "{e}");
        }
        p.check(&a, "/archive/live/nvda", Action::Read).unwrap();
        assert!(p.check(&a, "/archive/live/nvda", Action::Write).is_err());
    }

    #[test]
    fn agent_patterns_roles_and_inheritance_apply() {
        let mut agents = BTreeMap::new();
        agents.insert(
            "base".to_string(),
            AgentConfig {
                write: Some(vec!["/memory/shared/team/**".into()]),
                quota: Quota {
                    max_nodes: Some(10),
                    max_bytes: None,
                },
                ..AgentConfig::default()
            },
        );
        agents.insert(
            "carol".to_string(),
            AgentConfig {
                inherit: Some("base".into()),
                ..AgentConfig::default()
            },
        );
        agents.insert(
            "reader".to_string(),
            AgentConfig {
                role: Some(Role::Readonly),
                ..AgentConfig::default()
            },
        );
        agents.insert(
            "boss".to_string(),
            AgentConfig {
                role: Some(Role::Admin),
                inherit: Some("base".into()),
                ..AgentConfig::default()
            },
        );
        let p = Policy::new(Access::Rw, &[], &agents).unwrap();
        let c = agent("carol");
        p.check(&c, "/memory/shared/team/a.md", Action::Write)
            .unwrap();
        let e = p
            .check(&c, "/memory/shared/other/a.md", Action::Write)
            .unwrap_err();
        assert!(e.message().contains("agents.carol.write"), "{e}");
        assert_eq!(p.quota("carol").max_nodes, Some(10));
        let r = agent("reader");
        let e = p
            .check(&r, "/memory/private/reader/a.md", Action::Write)
            .unwrap_err();
        assert!(e.message().contains("readonly"), "{e}");
        p.check(&r, "/memory/shared/x.md", Action::Read).unwrap();
        let b = agent("boss");
        p.check(&b, "/memory/shared/other/a.md", Action::Write)
            .unwrap();
        assert!(!p.quota("boss").is_limited());
        assert!(
            p.check(&b, "/memory/private/carol/a.md", Action::Read)
                .is_err()
        );
    }

    #[test]
    fn inheritance_cycles_and_unknown_parents_are_reported() {
        let mut agents = BTreeMap::new();
        agents.insert(
            "a".to_string(),
            AgentConfig {
                inherit: Some("b".into()),
                ..AgentConfig::default()
            },
        );
        agents.insert(
            "b".to_string(),
            AgentConfig {
                inherit: Some("a".into()),
                ..AgentConfig::default()
            },
        );
        let e = Policy::new(Access::Rw, &[], &agents).unwrap_err();
        assert!(e.message().contains("cycle"), "{e}");
        agents.remove("b");
        let e = Policy::new(Access::Rw, &[], &agents).unwrap_err();
        assert!(e.message().contains("not configured"), "{e}");
    }
}
