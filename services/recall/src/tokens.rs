//! Token counting in cl100k_base (what GPT-4-class models count), with `bpe-openai`: its
//! tables are deserialised from the binary on first use (a few milliseconds), where building
//! them from the vocabulary as `tiktoken-rs` does costs a cold `avm recall` ~70 ms and 40 MB.
//! Its counts are tiktoken's (the test below checks them against `tiktoken-rs`).

use avm_core::Result;

fn bpe() -> &'static bpe_openai::Tokenizer {
    bpe_openai::cl100k_base()
}

/// Starts loading the tables on a thread of their own, once per process: a new process that
/// recalls then loads them while it ranks, not after (they cost about as much as the ranking).
pub fn prewarm() {
    static STARTED: std::sync::Once = std::sync::Once::new();
    STARTED.call_once(|| {
        // Without a thread the first count loads them instead.
        let _ = std::thread::Builder::new()
            .name("avm-tokenizer".into())
            .spawn(|| {
                bpe();
            });
    });
}

/// Tokens of `text` in cl100k_base.
pub fn count(text: &str) -> Result<usize> {
    Ok(bpe().count(text))
}

/// The longest prefix of `text` with at most `max` tokens (cut at a character boundary).
pub fn truncate(text: &str, max: usize) -> Result<String> {
    let bpe = bpe();
    let tokens = bpe.encode(text);
    if tokens.len() <= max {
        return Ok(text.to_string());
    }
    // A token may end inside a character: take the longest prefix of whole characters.
    let bytes = bpe.bpe.decode_tokens(&tokens[..max]);
    let text = match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => {
            let valid = e.utf8_error().valid_up_to();
            String::from_utf8_lossy(&e.into_bytes()[..valid]).into_owned()
        }
    };
    Ok(text)
}

/// Pieces of text of every kind recall meets, and a seeded generator, for tests that compare
/// token counts on random text.
#[cfg(test)]
pub(crate) mod testgen {
    /// Letters, digits, punctuation, spaces, ellipses, CJK, emoji, URLs, tags, quotes.
    pub const PIECES: &[&str] = &[
        "word",
        " ",
        ".",
        "…",
        ")",
        "  ",
        "1234",
        "中文记忆",
        "🙂",
        "'s",
        "--",
        "é",
        "\t",
        "?!",
        "https://x.io/a_b",
        "#tag",
        "\"q\"",
        ":",
        "ＡＢ",
        "\u{a0}",
    ];

    /// `next(n)`: a number below `n`, the same sequence for the same seed.
    pub fn rng(mut seed: u64) -> impl FnMut(usize) -> usize {
        move |n: usize| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) as usize % n
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::testgen::{PIECES, rng};
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

    /// The counts are tiktoken's cl100k_base counts, on text of every kind recall meets.
    #[test]
    fn counts_equal_tiktoken_on_varied_text() {
        let reference = tiktoken_rs::cl100k_base().unwrap();
        let mut next = rng(11);
        let pieces = [
            PIECES,
            &[
                "\n", "\n\n", "  \n", "@3k", "Don't", "I'LL", "\r\n", "ﬁ", "e\u{301}",
            ],
        ]
        .concat();
        for _ in 0..3000 {
            let mut t = String::new();
            for _ in 0..next(40) {
                t.push_str(pieces[next(pieces.len())]);
            }
            assert_eq!(
                count(&t).unwrap(),
                reference.encode_ordinary(&t).len(),
                "{t:?}"
            );
        }
    }
}
