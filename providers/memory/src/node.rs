//! The node model and its JSON shapes.

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use avm_core::content::to_base64;
use avm_core::time::{Micros, Nanos, to_iso};
use avm_core::{Attrs, Content, NodeKind};

/// One stored memory.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// Row id (stable across renames; keys the FTS rows).
    pub id: i64,
    /// Absolute normalised path.
    pub path: String,
    /// Content: text, or bytes kept exactly (the target path for a symbolic link).
    pub content: Content,
    /// A file or a symbolic link.
    pub kind: NodeKind,
    /// Filesystem attributes (mode, owner, times); `nlink` is never set on nodes.
    pub attrs: Attrs,
    /// Free-form metadata (without the typed keys below).
    pub meta: Map<String, Value>,
    /// Tags, in the order given.
    pub tags: Vec<String>,
    /// Importance in 0..=1.
    pub importance: f64,
    /// The agent that created the node (stamped by the host).
    pub author: Option<String>,
    /// Creation time.
    pub created_at: Micros,
    /// Last change of content or metadata (reads never move it).
    pub updated_at: Micros,
    /// Last read through avm.
    pub accessed_at: Option<Micros>,
    /// Content version, 1-based; bumps only when the content changes.
    pub version: i64,
    /// First 16 hex digits of the content's SHA-256.
    pub hash: String,
    /// When the node expires (hidden and purged from then on).
    pub expires_at: Option<Micros>,
}

/// Default importance of a node nobody rated.
pub const DEFAULT_IMPORTANCE: f64 = 0.5;

/// Metadata keys that are typed columns rather than free-form meta.
pub const TYPED_KEYS: &[&str] = &["tags", "importance", "author", "expires_at"];

/// Content hash: the first 16 hex digits of SHA-256.
pub fn content_hash(content: &[u8]) -> String {
    avm_core::bytes::hex(&Sha256::digest(content)[..8])
}

impl Node {
    /// The text the indexes and services see: the content of a text file, `""` for binary
    /// content and for symbolic links.
    pub fn text(&self) -> &str {
        if self.is_indexed() {
            self.content.text_or_empty()
        } else {
            ""
        }
    }

    /// Is this a text file (full-text indexed, seen by recall, topics and embeddings)?
    pub fn is_indexed(&self) -> bool {
        self.kind == NodeKind::File && self.content.is_text()
    }

    /// May `caller` see this node (the one visibility rule: private namespaces, and
    /// `shared_with`)?
    pub fn sees(&self, caller: &avm_core::Caller) -> bool {
        avm_core::provider::visible_to(
            caller,
            &self.path,
            self.author.as_deref(),
            &avm_core::provider::shared_with(&self.meta),
        )
    }

    /// The modification time, in nanoseconds.
    pub fn mtime(&self) -> Nanos {
        self.attrs
            .mtime
            .unwrap_or_else(|| self.updated_at.saturating_mul(1000))
    }

    /// Is the node expired at `now`?
    pub fn is_expired(&self, now: Micros) -> bool {
        self.expires_at.is_some_and(|t| t <= now)
    }

    /// The metadata as users see it: free-form keys plus tags, importance, author and expiry.
    pub fn meta_view(&self) -> Value {
        let mut m = self.meta.clone();
        m.insert("tags".into(), json!(self.tags));
        m.insert("importance".into(), json!(self.importance));
        if let Some(a) = &self.author {
            m.insert("author".into(), json!(a));
        }
        if let Some(t) = self.expires_at {
            m.insert("expires_at".into(), json!(to_iso(t)));
        }
        Value::Object(m)
    }

    /// The node dict printed by `--json` (the reference's shape plus `accessed_at` and `hash`).
    /// Binary content travels as `content_base64` (with `content` null and `binary` true); a
    /// symbolic link has `node_type` `symlink` and its target as `content`.
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "path": self.path,
            "content": self.content.text(),
            "meta": self.meta_view(),
            "node_type": if self.kind == NodeKind::Symlink { "symlink" } else { "file" },
            "created_at": to_iso(self.created_at),
            "updated_at": to_iso(self.updated_at),
            "accessed_at": self.accessed_at.map(to_iso),
            "version": self.version,
            "hash": self.hash,
            "size": self.content.len(),
        });
        if let (Content::Bytes(b), Value::Object(o)) = (&self.content, &mut v) {
            o.insert("binary".into(), json!(true));
            o.insert("content_base64".into(), json!(to_base64(b)));
        }
        if let (Some(m), Value::Object(o)) = (self.attrs.mode, &mut v) {
            o.insert("mode".into(), json!(format!("{m:04o}")));
        }
        v
    }
}

/// Normalises a tag list: trimmed, empties dropped, duplicates removed, order kept.
pub fn clean_tags(tags: &[String]) -> avm_core::Result<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for t in tags {
        let t = t.trim();
        if t.is_empty() {
            continue;
        }
        if t.len() > 64 || t.contains([',', '\n']) {
            return Err(avm_core::Error::invalid(format!(
                "tag {t:?} is not valid; tags are at most 64 bytes without commas or newlines"
            )));
        }
        if !out.iter().any(|o| o == t) {
            out.push(t.to_string());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_sixteen_hex_digits_and_stable() {
        assert_eq!(content_hash(b"hello"), "2cf24dba5fb0a30e");
        assert_eq!(content_hash(b""), "e3b0c44298fc1c14");
    }

    #[test]
    fn tags_are_cleaned() {
        let t = clean_tags(&[" a ".into(), "".into(), "b".into(), "a".into()]).unwrap();
        assert_eq!(t, vec!["a", "b"]);
        assert!(clean_tags(&["x,y".into()]).is_err());
    }
}
