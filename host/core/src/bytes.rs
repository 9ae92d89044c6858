//! Bytes as text: lowercase hex, and random tokens (API keys, webhook secrets).

use std::fmt::Write;
use std::io::Read;

use crate::error::{Error, ErrorKind, Result};

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// `n` random bytes from the kernel, as lowercase hex.
pub fn random_hex(n: usize) -> Result<String> {
    let mut buf = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(|e| Error::new(ErrorKind::Unavailable, format!("no randomness: {e}")))?;
    Ok(hex(&buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_lowercase_and_random_tokens_differ() {
        assert_eq!(hex(&[0, 15, 255]), "000fff");
        let (a, b) = (random_hex(16), random_hex(16));
        assert!(matches!((&a, &b), (Ok(x), Ok(y)) if x.len() == 32 && x != y));
    }
}
