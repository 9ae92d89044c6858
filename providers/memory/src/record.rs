//! The export/import record: one JSON object per node, lossless (content, metadata, every
//! timestamp, full version history and outgoing links).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use avm_core::address::normalize_path;
use avm_core::time::{Micros, parse_time, to_iso};
use avm_core::{Error, Result};

use crate::node::{Node, clean_tags};
use crate::store::{Link, VersionInfo};

/// One exported node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    /// Path.
    pub path: String,
    /// Content.
    pub content: String,
    /// Free-form metadata.
    #[serde(default)]
    pub meta: Map<String, Value>,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Importance.
    #[serde(default = "default_importance")]
    pub importance: f64,
    /// Author.
    #[serde(default)]
    pub author: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
    /// RFC 3339.
    #[serde(default)]
    pub accessed_at: Option<String>,
    /// RFC 3339.
    #[serde(default)]
    pub expires_at: Option<String>,
    /// Current version.
    pub version: i64,
    /// Content hash (recomputed on import; kept for readers of the file).
    #[serde(default)]
    pub hash: Option<String>,
    /// Every version, oldest first.
    #[serde(default)]
    pub versions: Vec<VersionRecord>,
    /// Outgoing links.
    #[serde(default)]
    pub links: Vec<LinkRecord>,
}

fn default_importance() -> f64 {
    crate::node::DEFAULT_IMPORTANCE
}

/// One version in a record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VersionRecord {
    /// Number.
    pub version: i64,
    /// Kind of change.
    pub kind: String,
    /// Content at this version.
    pub content: String,
    /// Who.
    #[serde(default)]
    pub author: Option<String>,
    /// RFC 3339.
    pub at: String,
    /// Note.
    #[serde(default)]
    pub note: Option<String>,
}

/// One outgoing link in a record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkRecord {
    /// Target path.
    pub target: String,
    /// Link type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Weight.
    #[serde(default = "one")]
    pub weight: f64,
    /// RFC 3339.
    pub created_at: String,
}

fn one() -> f64 {
    1.0
}

impl Record {
    /// Builds the record of a node.
    pub fn build(node: &Node, versions: Vec<(VersionInfo, String)>, links: Vec<Link>) -> Record {
        Record {
            path: node.path.clone(),
            content: node.content.clone(),
            meta: node.meta.clone(),
            tags: node.tags.clone(),
            importance: node.importance,
            author: node.author.clone(),
            created_at: to_iso(node.created_at),
            updated_at: to_iso(node.updated_at),
            accessed_at: node.accessed_at.map(to_iso),
            expires_at: node.expires_at.map(to_iso),
            version: node.version,
            hash: Some(node.hash.clone()),
            versions: versions
                .into_iter()
                .map(|(v, content)| VersionRecord {
                    version: v.version,
                    kind: v.kind,
                    content,
                    author: v.author,
                    at: to_iso(v.at),
                    note: v.note,
                })
                .collect(),
            links: links
                .into_iter()
                .map(|l| LinkRecord {
                    target: l.target,
                    kind: l.kind,
                    weight: l.weight,
                    created_at: to_iso(l.created_at),
                })
                .collect(),
        }
    }

    /// Parses and validates a record from JSON.
    pub fn from_value(v: Value) -> Result<Record> {
        let mut r: Record = serde_json::from_value(v)
            .map_err(|e| Error::invalid(format!("not an avm export record: {e}")))?;
        r.path = normalize_path(&r.path)?;
        r.tags = clean_tags(&r.tags)?;
        if !(0.0..=1.0).contains(&r.importance) {
            return Err(Error::invalid(format!(
                "record {}: importance {} is outside 0..1",
                r.path, r.importance
            )));
        }
        for l in &mut r.links {
            l.target = normalize_path(&l.target)?;
        }
        let Some(last) = r.versions.last() else {
            return Err(Error::invalid(format!(
                "record {}: versions is empty; a record carries its whole history",
                r.path
            )));
        };
        if last.version != r.version
            || last.content != r.content
            || ["delete", "move-out", "expire"].contains(&last.kind.as_str())
        {
            return Err(Error::invalid(format!(
                "record {}: the last version ({}, {}) must be the current one (version {}, same content)",
                r.path, last.version, last.kind, r.version
            )));
        }
        for (expected, v) in (1..).zip(r.versions.iter()) {
            if v.version != expected {
                return Err(Error::invalid(format!(
                    "record {}: versions must run 1..n without gaps; found {} where {expected} was due",
                    r.path, v.version
                )));
            }
        }
        Ok(r)
    }

    /// Parses an RFC 3339 field, naming it in the error.
    pub fn time(&self, field: &str, value: &str) -> Result<Micros> {
        parse_time(value).map_err(|e| e.context(format!("record {} field {field}", self.path)))
    }
}
