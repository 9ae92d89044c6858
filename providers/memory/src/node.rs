//! The node model's helpers: content hashes, tags, defaults. The node type itself is
//! [`avm_core::storage::Node`], shared with the services.

use sha2::{Digest, Sha256};

pub use avm_core::storage::Node;

/// Default importance of a node nobody rated.
pub const DEFAULT_IMPORTANCE: f64 = 0.5;

/// Metadata keys that are typed columns rather than free-form meta.
pub const TYPED_KEYS: &[&str] = &["tags", "importance", "author", "expires_at"];

/// Content hash: the first 16 hex digits of SHA-256.
pub fn content_hash(content: &[u8]) -> String {
    avm_core::bytes::hex(&Sha256::digest(content)[..8])
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
