//! The rules of a write that hold whatever stores it: metadata patches, TTL stamps and who
//! may set them, size limits, reserved directories, what a move does to metadata, and the
//! visibility and policy checks. Engines call these inside their transactions, so every engine
//! refuses the same writes with the same words.

use serde_json::{Map, Value, json};

use avm_core::address::{is_within, parent};
use avm_core::time::{Micros, parse_time, to_iso};
use avm_core::{Action, Caller, Content, Error, ErrorKind, Policy, Put, Result};

use crate::node::{DEFAULT_IMPORTANCE, Node, clean_tags};

/// Metadata after applying a patch: typed keys are pulled out, `null` removes a key.
pub(crate) struct Patched {
    pub(crate) meta: Map<String, Value>,
    pub(crate) tags: Vec<String>,
    pub(crate) importance: f64,
    pub(crate) expires_at: Option<Micros>,
}

pub(crate) fn patch(old: Option<&Node>, put: &Put) -> Result<Patched> {
    let mut p = Patched {
        meta: old.map(|n| n.meta.clone()).unwrap_or_default(),
        tags: old.map(|n| n.tags.clone()).unwrap_or_default(),
        importance: old.map_or(DEFAULT_IMPORTANCE, |n| n.importance),
        expires_at: old.and_then(|n| n.expires_at),
    };
    if let Some(m) = &put.meta {
        for (k, v) in m {
            match k.as_str() {
                "tags" => {
                    p.tags = match v {
                        Value::Null => vec![],
                        Value::Array(a) => {
                            let strs: Option<Vec<String>> =
                                a.iter().map(|x| x.as_str().map(str::to_string)).collect();
                            clean_tags(&strs.ok_or_else(|| {
                                Error::invalid("meta key \"tags\" must be a list of strings")
                            })?)?
                        }
                        _ => {
                            return Err(Error::invalid(
                                "meta key \"tags\" must be a list of strings",
                            ));
                        }
                    }
                }
                "importance" => {
                    p.importance = v.as_f64().ok_or_else(|| {
                        Error::invalid(format!(
                            "meta key \"importance\" must be a number in 0..1, got {v}"
                        ))
                    })?
                }
                "expires_at" => {
                    p.expires_at = match v {
                        Value::Null => None,
                        Value::String(s) => Some(parse_time(s)?),
                        _ => {
                            return Err(Error::invalid(
                                "meta key \"expires_at\" must be an RFC 3339 time or null",
                            ));
                        }
                    }
                }
                "author" | EXPIRES_BY => {
                    return Err(Error::invalid(format!(
                        "meta key {k:?} is stamped by avm from the calling agent and cannot be written"
                    )));
                }
                _ if v.is_null() => {
                    p.meta.remove(k);
                }
                _ => {
                    p.meta.insert(k.clone(), v.clone());
                }
            }
        }
    }
    if let Some(t) = &put.tags {
        p.tags = clean_tags(t)?;
    }
    if let Some(i) = put.importance {
        p.importance = i;
    }
    if !(0.0..=1.0).contains(&p.importance) || p.importance.is_nan() {
        return Err(Error::invalid(format!(
            "importance {} is outside 0..1; give a number such as 0.8",
            p.importance
        )));
    }
    if let Some(e) = put.expires_at {
        p.expires_at = e;
    }
    Ok(p)
}

/// Refuses a TTL that has already run out, and stamps who set it (`expires_by`) or clears that
/// stamp with the TTL.
pub(crate) fn check_expiry(
    p: &mut Patched,
    old: Option<&Node>,
    agent: Option<&str>,
    now: Micros,
) -> Result<()> {
    if old.map(|o| o.expires_at) == Some(p.expires_at) {
        return Ok(());
    }
    match p.expires_at {
        Some(t) if t <= now => Err(Error::invalid(format!(
            "the expiry {} is not in the future; give a TTL longer than 0 (e.g. 15m, 2h, 7d), or `never` to keep it",
            to_iso(t)
        ))),
        Some(_) => {
            p.meta
                .insert(EXPIRES_BY.into(), json!(agent.unwrap_or("operator")));
            Ok(())
        }
        None => {
            p.meta.remove(EXPIRES_BY);
            Ok(())
        }
    }
}

/// Who set a node's TTL (stamped by avm, like its author).
pub(crate) const EXPIRES_BY: &str = "expires_by";

/// Only the node's author, an agent in whose private namespace it is, an admin or the operator
/// may set or clear a TTL on an existing node: a TTL removes the node for everyone.
pub(crate) fn may_expire(writer: &Caller, old: &Node, admin: bool) -> Result<()> {
    let Some(a) = writer.agent() else {
        return Ok(());
    };
    if admin
        || old.author.as_deref() == Some(a)
        || avm_core::provider::private_owner(avm_core::provider::live_path(&old.path)) == Some(a)
    {
        return Ok(());
    }
    Err(Error::denied(format!(
        "only {}, who created {}, an admin or the operator may set its TTL",
        old.author.as_deref().unwrap_or("its author"),
        old.path
    )))
}

pub(crate) fn check_size(max_bytes: u64, path: &str, content: &Content) -> Result<()> {
    if content.len() as u64 > max_bytes {
        return Err(Error::new(
            ErrorKind::TooLarge,
            format!(
                "content for {path} is {} bytes; the limit is {} bytes (max_node_bytes in config)",
                content.len(),
                max_bytes
            ),
        ));
    }
    Ok(())
}

/// Paths that must stay directories: the roots of the namespaces and of each agent's
/// private space. A file there would break every agent's writes below it.
pub(crate) fn is_reserved_dir(path: &str) -> bool {
    matches!(
        path,
        "/" | "/memory" | "/memory/private" | "/memory/shared" | "/trash"
    ) || parent(path) == avm_core::provider::PRIVATE_ROOT
}

/// Refuses an operation on many paths when the rules refuse writing any one of them, naming
/// the first (a subtree moves or goes whole, or not at all).
pub(crate) fn check_writes<'a>(
    caller: &Caller,
    policy: &Policy,
    paths: impl IntoIterator<Item = &'a str>,
    what: &str,
) -> Result<()> {
    for p in paths {
        policy
            .check(caller, p, Action::Write)
            .map_err(|e| e.context(format!("cannot {what}")))?;
    }
    Ok(())
}

/// Refuses a node the caller may not see (other agents' private namespaces, nodes shared with
/// named agents only).
pub(crate) fn check_sees(caller: &Caller, n: &Node) -> Result<()> {
    crate::provider::check_sees(caller, n)
}

/// Metadata after a move: leaving the trash drops the trash keys.
pub(crate) fn moved_meta(n: &Node, dst: &str) -> (Map<String, Value>, &'static str) {
    let mut meta = n.meta.clone();
    if is_within(&n.path, "/trash") && !is_within(dst, "/trash") {
        for k in ["deleted_at", "deleted_by", "original_path"] {
            meta.remove(k);
        }
        (meta, "restore")
    } else {
        (meta, "move-in")
    }
}
