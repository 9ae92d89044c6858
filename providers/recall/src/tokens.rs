//! Token counting with tiktoken's cl100k_base, loaded once per process on first use.

use std::sync::OnceLock;

use tiktoken_rs::CoreBPE;

use avm_core::{Error, Result};

fn bpe() -> Result<&'static CoreBPE> {
    static BPE: OnceLock<std::result::Result<CoreBPE, String>> = OnceLock::new();
    BPE.get_or_init(|| tiktoken_rs::cl100k_base().map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| Error::internal(format!("cannot load the cl100k_base tokenizer: {e}")))
}

/// Tokens of `text` in cl100k_base (what GPT-4-class models count).
pub fn count(text: &str) -> Result<usize> {
    Ok(bpe()?.encode_ordinary(text).len())
}

/// The longest prefix of `text` with at most `max` tokens (cut at a character boundary).
pub fn truncate(text: &str, max: usize) -> Result<String> {
    let bpe = bpe()?;
    let tokens = bpe.encode_ordinary(text);
    if tokens.len() <= max {
        return Ok(text.to_string());
    }
    let bytes = bpe
        .decode_bytes(&tokens[..max])
        .map_err(|e| Error::internal(format!("cannot decode tokens: {e}")))?;
    Ok(match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => {
            let valid = e.utf8_error().valid_up_to();
            String::from_utf8_lossy(&e.into_bytes()[..valid]).into_owned()
        }
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_truncates_in_real_tokens() {
        assert_eq!(count("hello world").unwrap(), 2);
        let long = "the quick brown fox jumps over the lazy dog ".repeat(20);
        let cut = truncate(&long, 10).unwrap();
        assert!(count(&cut).unwrap() <= 10);
        assert!(long.starts_with(&cut));
        let cjk = "中东局势紧张伊朗军事冲突".repeat(5);
        let cut = truncate(&cjk, 7).unwrap();
        assert!(count(&cut).unwrap() <= 7);
        assert!(cjk.starts_with(&cut));
    }
}
