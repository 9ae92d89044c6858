//! `avm config check`: walks the merged configuration and reports every problem it finds,
//! each with the source that set it.

use std::collections::BTreeMap;

use figment::Figment;
use figment::value::{Dict, Value as FValue};
use serde::Serialize;

use super::load::{ENV_NOT_CONFIG, Sources, figment, load};
use super::{EmbeddingConfig, LibrarianConfig, LifecycleConfig, RecallConfig, TOP_KEYS};
use crate::error::{Error, Result};
use crate::policy::{Access, AgentConfig, PermissionRule, Policy};
use crate::router::Router;

/// One problem found by [`check`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// Dotted key (`mounts[1].type`), or empty for the whole config.
    pub key: String,
    /// What is wrong and what would be accepted.
    pub message: String,
    /// Where the value came from, when known.
    pub source: Option<String>,
}

const STORE_KEYS: &[&str] = &[
    "url",
    "max_connections",
    "busy_timeout_ms",
    "cache_entries",
    "readers",
    "group_commit_max",
    "synchronous",
];
const MOUNT_KEYS: &[&str] = &["pattern", "type", "ttl", "read_only", "options"];

/// Checks the configuration from `sources` and reports every problem found. `known_types`
/// lists the provider types this build can mount.
pub fn check(sources: &Sources, known_types: &[&str]) -> Vec<Problem> {
    let fig = match figment(sources) {
        Ok(f) => f,
        Err(e) => {
            return vec![Problem {
                key: String::new(),
                message: e.message().to_string(),
                source: None,
            }];
        }
    };
    let mut problems = Vec::new();
    let dict: Dict = match fig.extract::<Dict>() {
        Ok(d) => d,
        Err(e) => {
            for e in e {
                problems.push(Problem {
                    key: e.path.join("."),
                    message: e.kind.to_string(),
                    source: e.metadata.as_ref().map(source_name),
                });
            }
            return problems;
        }
    };
    let source_of = |key: &str| fig.find_metadata(key).map(source_name);
    let mut unknown = |key: String, known: &[&str], lookup: &str| {
        let hint = suggest(key.rsplit('.').next().unwrap_or(&key), known)
            .map(|s| format!("; did you mean {s:?}?"))
            .unwrap_or_default();
        problems.push(Problem {
            message: format!("unknown key {key:?}{hint} (known: {})", known.join(", ")),
            source: source_of(lookup),
            key,
        });
    };
    for key in dict.keys() {
        if !TOP_KEYS.contains(&key.as_str()) {
            unknown(key.clone(), TOP_KEYS, key);
        }
    }
    if let Some(FValue::Dict(_, store)) = dict.get("store") {
        for key in store.keys() {
            if !STORE_KEYS.contains(&key.as_str()) {
                let full = format!("store.{key}");
                unknown(full.clone(), STORE_KEYS, &full);
            }
        }
    }
    // Type errors, one key at a time so that one bad value does not hide the next.
    let mut typed = |key: &str, res: std::result::Result<(), figment::Error>| {
        if let Err(e) = res {
            problems.push(Problem {
                key: key.to_string(),
                message: e.kind.to_string(),
                source: fig.find_metadata(key).map(source_name),
            });
        }
    };
    typed("db", fig.extract_inner::<Option<String>>("db").map(drop));
    typed(
        "agent",
        fig.extract_inner::<Option<String>>("agent").map(drop),
    );
    typed(
        "max_node_bytes",
        fig.extract_inner::<u64>("max_node_bytes").map(drop),
    );
    typed(
        "store.busy_timeout_ms",
        fig.extract_inner::<u64>("store.busy_timeout_ms").map(drop),
    );
    typed(
        "store.cache_entries",
        fig.extract_inner::<usize>("store.cache_entries").map(drop),
    );
    typed(
        "store.readers",
        fig.extract_inner::<usize>("store.readers").map(drop),
    );
    typed(
        "store.group_commit_max",
        fig.extract_inner::<usize>("store.group_commit_max")
            .map(drop),
    );
    typed(
        "store.max_connections",
        fig.extract_inner::<u32>("store.max_connections").map(drop),
    );
    match fig.extract_inner::<String>("store.synchronous") {
        Ok(s) if !["normal", "full", "off"].contains(&s.to_lowercase().as_str()) => {
            problems.push(Problem {
                key: "store.synchronous".into(),
                message: format!("{s:?} is not accepted; use normal, full or off"),
                source: source_of("store.synchronous"),
            })
        }
        Ok(_) => {}
        Err(e) => problems.push(Problem {
            key: "store.synchronous".into(),
            message: e.kind.to_string(),
            source: source_of("store.synchronous"),
        }),
    }
    match fig.extract_inner::<Option<String>>("store.url") {
        Ok(Some(u)) if !u.trim().is_empty() && !super::is_store_url(&u) => problems.push(Problem {
            key: "store.url".into(),
            message: "must be a PostgreSQL address such as postgres://avm@db.internal/avm".into(),
            source: source_of("store.url"),
        }),
        Ok(_) => {}
        Err(e) => problems.push(Problem {
            key: "store.url".into(),
            message: e.kind.to_string(),
            source: source_of("store.url"),
        }),
    }
    if let Ok(0) = fig.extract_inner::<usize>("store.readers") {
        problems.push(Problem {
            key: "store.readers".into(),
            message: "must be at least 1".into(),
            source: source_of("store.readers"),
        });
    }
    if let Ok(Some(agent)) = fig.extract_inner::<Option<String>>("agent")
        && let Err(e) = validate_agent_id(&agent)
    {
        problems.push(Problem {
            key: "agent".into(),
            message: e.message().to_string(),
            source: source_of("agent"),
        });
    }
    if sources.env {
        for (name, _) in std::env::vars_os() {
            let Some(name) = name.to_str() else { continue };
            let Some(rest) = name.strip_prefix("AVM_") else {
                continue;
            };
            let k = rest.to_lowercase();
            let top = k.split("__").next().unwrap_or("");
            if !ENV_NOT_CONFIG.contains(&k.as_str()) && !TOP_KEYS.contains(&top) {
                let hint = suggest(top, TOP_KEYS)
                    .map(|s| format!("; did you mean AVM_{}?", s.to_uppercase()))
                    .unwrap_or_default();
                problems.push(Problem {
                    key: name.to_string(),
                    message: format!(
                        "environment variable {name} is ignored: {top:?} is not a configuration key{hint}"
                    ),
                    source: Some("environment".into()),
                });
            }
        }
    }
    check_mounts(&fig, &dict, known_types, &mut problems);
    check_access(&fig, &mut problems);
    if problems.is_empty()
        && let Ok(cfg) = load(sources)
        && let Some(why) = cfg.memory_unserved()
    {
        problems.push(Problem {
            key: "mounts".into(),
            message: why,
            source: source_of("mounts"),
        });
    }
    problems
}

fn check_access(fig: &Figment, problems: &mut Vec<Problem>) {
    let mut push = |key: &str, message: String| {
        problems.push(Problem {
            key: key.to_string(),
            message,
            source: fig.find_metadata(key).map(source_name),
        })
    };
    let access = fig.extract_inner::<Access>("default_access");
    if let Err(e) = &access {
        push("default_access", format!("{}; use rw, ro or none", e.kind));
    }
    let rules = fig.extract_inner::<Vec<PermissionRule>>("permissions");
    if let Err(e) = &rules {
        push("permissions", e.kind.to_string());
    }
    let agents = fig.extract_inner::<BTreeMap<String, AgentConfig>>("agents");
    if let Err(e) = &agents {
        let key = if e.path.is_empty() {
            "agents".to_string()
        } else {
            e.path.join(".")
        };
        push(&key, e.kind.to_string());
    }
    if let Ok(agents) = &agents {
        for id in agents.keys() {
            if let Err(e) = validate_agent_id(id) {
                push(&format!("agents.{id}"), e.message().to_string());
            }
        }
    }
    if let (Ok(access), Ok(rules), Ok(agents)) = (access, rules, agents)
        && let Err(e) = Policy::new(access, &rules, &agents)
    {
        push("permissions", e.message().to_string());
    }
    match fig.extract_inner::<RecallConfig>("recall") {
        Err(e) => push("recall", e.kind.to_string()),
        Ok(r) => {
            if !["balanced", "relevance", "importance", "recency"].contains(&r.strategy.as_str()) {
                push(
                    "recall.strategy",
                    format!(
                        "{:?} is not accepted; use balanced, relevance, importance or recency",
                        r.strategy
                    ),
                );
            }
            if !(0.0..=1.0).contains(&r.min_relevance) {
                push("recall.min_relevance", "must be between 0 and 1".into());
            }
        }
    }
    if let Err(e) = fig.extract_inner::<EmbeddingConfig>("embedding") {
        push("embedding", e.kind.to_string());
    }
    match fig.extract_inner::<LifecycleConfig>("lifecycle") {
        Err(e) => push("lifecycle", e.kind.to_string()),
        Ok(l) => {
            for (key, v) in [
                ("lifecycle.cold_threshold", l.cold_threshold),
                ("lifecycle.merge_similarity", l.merge_similarity),
            ] {
                if !(0.0..=1.0).contains(&v) {
                    push(key, "must be between 0 and 1".into());
                }
            }
            if l.half_life_days < 0.0 || !l.half_life_days.is_finite() {
                push(
                    "lifecycle.half_life_days",
                    "must be a number of days, 0 or more (0 turns decay off)".into(),
                );
            }
            if let Err(e) = l.trash_retention() {
                push("lifecycle.trash_retention", e.message().to_string());
            }
        }
    }
    match fig.extract_inner::<LibrarianConfig>("librarian") {
        Err(e) => push("librarian", e.kind.to_string()),
        Ok(l) if !["full", "owner", "existence", "none"].contains(&l.privacy.as_str()) => push(
            "librarian.privacy",
            format!(
                "{:?} is not accepted; use full, owner, existence or none",
                l.privacy
            ),
        ),
        Ok(_) => {}
    }
}

fn check_mounts(fig: &Figment, dict: &Dict, known_types: &[&str], problems: &mut Vec<Problem>) {
    let mounts = match dict.get("mounts") {
        None => return,
        Some(FValue::Array(_, items)) => items,
        Some(_) => {
            problems.push(Problem {
                key: "mounts".into(),
                message: "must be a list of tables with pattern and type".into(),
                source: fig.find_metadata("mounts").map(source_name),
            });
            return;
        }
    };
    let src = fig.find_metadata("mounts").map(source_name);
    let mut patterns = Vec::new();
    for (i, m) in mounts.iter().enumerate() {
        let key = format!("mounts[{i}]");
        let FValue::Dict(_, d) = m else {
            problems.push(Problem {
                key,
                message: "must be a table with pattern and type".into(),
                source: src.clone(),
            });
            continue;
        };
        for k in d.keys() {
            if !MOUNT_KEYS.contains(&k.as_str()) {
                let hint = suggest(k, MOUNT_KEYS)
                    .map(|s| format!("; did you mean {s:?}?"))
                    .unwrap_or_default();
                problems.push(Problem {
                    key: format!("{key}.{k}"),
                    message: format!("unknown key {k:?}{hint} (known: {})", MOUNT_KEYS.join(", ")),
                    source: src.clone(),
                });
            }
        }
        match d.get("type").and_then(|v| v.as_str()) {
            None => problems.push(Problem {
                key: format!("{key}.type"),
                message: format!("missing; one of: {}", known_types.join(", ")),
                source: src.clone(),
            }),
            Some(t) if !known_types.contains(&t) => problems.push(Problem {
                key: format!("{key}.type"),
                message: format!(
                    "unknown provider type {t:?}; one of: {}",
                    known_types.join(", ")
                ),
                source: src.clone(),
            }),
            Some(_) => {}
        }
        match d.get("pattern").and_then(|v| v.as_str()) {
            None => problems.push(Problem {
                key: format!("{key}.pattern"),
                message: "missing; e.g. pattern = \"/memory/**\"".into(),
                source: src.clone(),
            }),
            Some(p) => patterns.push((p.to_string(), i)),
        }
        if let Some(v) = d.get("ttl")
            && v.to_u128().is_none()
        {
            problems.push(Problem {
                key: format!("{key}.ttl"),
                message: "must be a whole number of seconds".into(),
                source: src.clone(),
            });
        }
        if let Some(v) = d.get("read_only")
            && v.to_bool().is_none()
        {
            problems.push(Problem {
                key: format!("{key}.read_only"),
                message: "must be true or false".into(),
                source: src.clone(),
            });
        }
    }
    if let Err(errs) = Router::new(patterns) {
        for e in errs {
            problems.push(Problem {
                key: "mounts".into(),
                message: e.message().to_string(),
                source: src.clone(),
            });
        }
    }
}

fn source_name(md: &figment::Metadata) -> String {
    match &md.source {
        Some(src) => format!("{} ({src})", md.name),
        None => md.name.to_string(),
    }
}

/// The closest known key within edit distance 2, for "did you mean".
fn suggest<'a>(key: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (edit_distance(key, k), *k))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    strsim::levenshtein(a, b)
}

/// Agent ids are path segments: 1–64 of `[A-Za-z0-9_.-]`, not starting with `.` or `-`.
pub fn validate_agent_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && !id.starts_with(['.', '-'])
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "agent id {id:?} is not valid; use 1-64 letters, digits, '_', '.' or '-' (not starting with '.' or '-')"
        )))
    }
}
