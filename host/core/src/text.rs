//! Words of a query that say nothing about what it looks for.

/// English function words: articles, prepositions, conjunctions, auxiliaries and question
/// words. Nearly every memory holds several of them, so a query's `the`, `of` or `what`
/// ranks nothing and, searched for, would score most of the store. Sorted.
pub const FUNCTION_WORDS: &[&str] = &[
    "a", "about", "an", "and", "are", "as", "at", "be", "by", "did", "do", "does", "for", "from",
    "has", "have", "how", "in", "is", "it", "its", "of", "on", "or", "that", "the", "this", "to",
    "was", "we", "were", "what", "when", "where", "which", "who", "why", "with",
];

/// Whether a lower-cased word is one of [`FUNCTION_WORDS`].
pub fn is_function_word(word: &str) -> bool {
    FUNCTION_WORDS.binary_search(&word).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_is_sorted_so_lookups_find_every_word() {
        assert!(FUNCTION_WORDS.windows(2).all(|w| w[0] < w[1]));
        assert!(FUNCTION_WORDS.iter().all(|w| is_function_word(w)));
        assert!(!is_function_word("tamarind") && !is_function_word("The"));
    }
}
