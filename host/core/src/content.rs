//! A node's content: UTF-8 text, or bytes kept exactly as written.
//!
//! Text keeps every text feature (full-text search, topics, embeddings, recall, diffs); bytes
//! that are not text (a NUL anywhere, or invalid UTF-8) are stored byte for byte and left out of
//! every index. Which one a write carries is decided by the bytes themselves
//! ([`Content::from_bytes`]), so the same file read back and written again never changes kind.

use std::fmt;

/// Content of a node.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Content {
    /// UTF-8 text without NUL bytes.
    Text(String),
    /// Anything else, kept exactly.
    Bytes(Vec<u8>),
}

impl Default for Content {
    fn default() -> Self {
        Content::Text(String::new())
    }
}

/// Is `s` text as avm means it: no NUL byte (UTF-8 validity is the type's guarantee)?
fn textual(s: &str) -> bool {
    !s.as_bytes().contains(&0)
}

impl Content {
    /// Text when `bytes` are UTF-8 without a NUL byte, bytes otherwise.
    pub fn from_bytes(bytes: Vec<u8>) -> Content {
        if bytes.contains(&0) {
            return Content::Bytes(bytes);
        }
        match String::from_utf8(bytes) {
            Ok(s) => Content::Text(s),
            Err(e) => Content::Bytes(e.into_bytes()),
        }
    }

    /// Content from a string: text unless it holds a NUL byte.
    pub fn from_string(s: String) -> Content {
        if textual(&s) {
            Content::Text(s)
        } else {
            Content::Bytes(s.into_bytes())
        }
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Content::Text(s) => s.as_bytes(),
            Content::Bytes(b) => b,
        }
    }

    /// The text, when this is text.
    pub fn text(&self) -> Option<&str> {
        match self {
            Content::Text(s) => Some(s),
            Content::Bytes(_) => None,
        }
    }

    /// The text, or `""` for bytes (what indexes and services see of binary content).
    pub fn text_or_empty(&self) -> &str {
        self.text().unwrap_or("")
    }

    /// Is this text?
    pub fn is_text(&self) -> bool {
        matches!(self, Content::Text(_))
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }

    /// Is it empty?
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes, by value.
    pub fn into_bytes(self) -> Vec<u8> {
        match self {
            Content::Text(s) => s.into_bytes(),
            Content::Bytes(b) => b,
        }
    }

    /// `self` followed by `more` (text only when both are and the joint is).
    pub fn concat(&self, more: &Content) -> Content {
        match (self, more) {
            (Content::Text(a), Content::Text(b)) => Content::Text(format!("{a}{b}")),
            _ => {
                let mut v = Vec::with_capacity(self.len() + more.len());
                v.extend_from_slice(self.as_bytes());
                v.extend_from_slice(more.as_bytes());
                Content::from_bytes(v)
            }
        }
    }

    /// A one-line description of binary content for text-only front ends
    /// (`[binary content: 1234 bytes]`); text as it is.
    pub fn display_text(&self) -> String {
        match self {
            Content::Text(s) => s.clone(),
            Content::Bytes(b) => binary_note(b.len()),
        }
    }
}

/// Standard base64 (with padding) of `bytes`: how JSON carries binary content.
pub fn to_base64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Decodes standard base64; `what` names the field in the error.
pub fn from_base64(s: &str, what: &str) -> crate::Result<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .map_err(|e| crate::Error::invalid(format!("{what} is not valid base64: {e}")))
}

/// What text-only front ends show instead of binary content.
pub fn binary_note(len: usize) -> String {
    format!(
        "[binary content: {len} bytes; read it through the mount, `avm read PATH > FILE`, or HTTP with Accept: application/octet-stream]"
    )
}

impl fmt::Debug for Content {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Content::Text(s) => write!(f, "Text({s:?})"),
            Content::Bytes(b) if b.len() <= 32 => write!(f, "Bytes({b:?})"),
            Content::Bytes(b) => write!(f, "Bytes({} bytes)", b.len()),
        }
    }
}

impl From<String> for Content {
    fn from(s: String) -> Self {
        Content::from_string(s)
    }
}

impl From<&str> for Content {
    fn from(s: &str) -> Self {
        Content::from_string(s.to_string())
    }
}

impl From<Vec<u8>> for Content {
    fn from(b: Vec<u8>) -> Self {
        Content::from_bytes(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_without_nul_is_text_and_anything_else_is_bytes() {
        assert!(Content::from_bytes(b"hello\n".to_vec()).is_text());
        assert!(Content::from_bytes("Grüße 🦀".as_bytes().to_vec()).is_text());
        let raw = vec![0u8, 0x80, 0xff];
        let c = Content::from_bytes(raw.clone());
        assert!(!c.is_text());
        assert_eq!(c.as_bytes(), &raw[..]);
        assert!(!Content::from("a\0b").is_text());
        assert_eq!(Content::from("a\0b").as_bytes(), b"a\0b");
    }

    #[test]
    fn concatenation_keeps_bytes_and_finds_text_again() {
        let a = Content::from_bytes(vec![0xe2, 0x82]);
        let b = Content::from_bytes(vec![0xac]);
        assert!(!a.is_text());
        let joined = a.concat(&b);
        assert_eq!(joined, Content::Text("€".into()));
        assert_eq!(
            Content::from("x").concat(&Content::from_bytes(vec![0])),
            Content::Bytes(vec![b'x', 0])
        );
    }
}
