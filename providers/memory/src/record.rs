//! The export/import record: one JSON object per node, lossless (content, metadata, every
//! timestamp, full version history and outgoing links).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use avm_core::address::normalize_path;
use avm_core::content::{from_base64, to_base64};
use avm_core::time::{Micros, parse_time, to_iso};
use avm_core::{Content, Error, NodeKind, Result};

use crate::node::{Node, clean_tags};
use crate::sqlite::store::{Link, VersionInfo};

/// One exported node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    /// Path.
    pub path: String,
    /// Content: the text, or base64 of binary content when `encoding` is `base64`.
    pub content: String,
    /// `base64` when `content` is binary content in base64; absent for text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
    /// `symlink` for a symbolic link (whose content is the target); absent for a file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_type: Option<String>,
    /// Permission bits, when set through the mount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
    /// Owner, when set through the mount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// Group, when set through the mount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
    /// Modification time in nanoseconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtime_ns: Option<i64>,
    /// Access time set through the mount, in nanoseconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub atime_ns: Option<i64>,
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
    /// Content at this version (base64 when `encoding` is `base64`).
    pub content: String,
    /// `base64` for binary content; absent for text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
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

/// Content as a record carries it: `(text or base64, encoding)`.
fn encode(c: &Content) -> (String, Option<String>) {
    match c {
        Content::Text(t) => (t.clone(), None),
        Content::Bytes(b) => (to_base64(b), Some("base64".into())),
    }
}

/// The content a record field stands for.
fn decode(content: &str, encoding: Option<&str>, what: &str) -> Result<Content> {
    match encoding {
        None => Ok(Content::from(content)),
        Some("base64") => Ok(Content::from_bytes(from_base64(content, what)?)),
        Some(other) => Err(Error::invalid(format!(
            "{what}: encoding {other:?} is not known; use base64 or leave it out for text"
        ))),
    }
}

impl Record {
    /// Builds the record of a node.
    pub fn build(node: &Node, versions: Vec<(VersionInfo, Content)>, links: Vec<Link>) -> Record {
        let (content, encoding) = encode(&node.content);
        Record {
            path: node.path.clone(),
            content,
            encoding,
            node_type: (node.kind == NodeKind::Symlink).then(|| "symlink".to_string()),
            mode: node.attrs.mode,
            uid: node.attrs.uid,
            gid: node.attrs.gid,
            mtime_ns: node.attrs.mtime,
            atime_ns: node.attrs.atime,
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
                .map(|(v, c)| {
                    let (content, encoding) = encode(&c);
                    VersionRecord {
                        version: v.version,
                        kind: v.kind,
                        content,
                        encoding,
                        author: v.author,
                        at: to_iso(v.at),
                        note: v.note,
                    }
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
        if let Some(t) = r.node_type.as_deref()
            && t != "symlink"
            && t != "file"
        {
            return Err(Error::invalid(format!(
                "record {}: node_type {t:?} is not known; use file or symlink",
                r.path
            )));
        }
        if r.mode.is_some_and(|m| m > 0o7777) {
            return Err(Error::invalid(format!(
                "record {}: mode {:o} has bits beyond 07777",
                r.path,
                r.mode.unwrap_or(0)
            )));
        }
        let current = r.decoded()?;
        for v in &r.versions {
            decode(
                &v.content,
                v.encoding.as_deref(),
                &format!("record {} version {}", r.path, v.version),
            )?;
        }
        let last_content = decode(&last.content, last.encoding.as_deref(), "the last version")?;
        if last.version != r.version
            || last_content != current
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

    /// The node's content.
    pub fn decoded(&self) -> Result<Content> {
        decode(
            &self.content,
            self.encoding.as_deref(),
            &format!("record {} content", self.path),
        )
    }

    /// The content of one version of this record.
    pub fn version_content(&self, v: &VersionRecord) -> Result<Content> {
        decode(
            &v.content,
            v.encoding.as_deref(),
            &format!("record {} version {}", self.path, v.version),
        )
    }

    /// Is this record a symbolic link?
    pub fn is_symlink(&self) -> bool {
        self.node_type.as_deref() == Some("symlink")
    }

    /// Parses an RFC 3339 field, naming it in the error.
    pub fn time(&self, field: &str, value: &str) -> Result<Micros> {
        parse_time(value).map_err(|e| e.context(format!("record {} field {field}", self.path)))
    }
}
