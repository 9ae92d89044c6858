//! Deterministic, Unicode-aware topic extraction: which topics a memory is about, and which
//! topic keys a search query names.
//!
//! A topic is a normalised key (see [`normalize`]) with a weight in (0, 1]. Sources, strongest
//! first; a key found by several sources keeps its largest weight plus 0.05 per extra source
//! (tag, hashtag, ticker, title, text), capped at 1.0:
//!
//! | source | weight |
//! |---|---|
//! | tags given with the memory (the words of a compound tag such as `ai-safety`: 0.8) | 1.0 |
//! | hashtags in the content: `#rates`, `#伊朗`, `#ai-safety` (not `# Heading`, not `#ff0000`) | 1.0 |
//! | tickers: `$NVDA` cash tags and ALL-CAPS words of 2–6 ASCII letters (`RSI`, `MACD`) | 0.9 |
//! | title words (≥ 3 chars; CJK runs of 2–4 chars, and title bigrams the content repeats) | 0.8 |
//! | proper nouns: capitalised words (`Powell`, `Tokyo`) seen mid-sentence at least once | 0.7 |
//! | capitalised words only ever seen starting a sentence, line or heading | 0.4 |
//! | salient words (≥ 4 chars), top 10 by frequency with a mild length bonus | 0.3–0.6 |
//! | CJK terms: Han/Hangul runs of 2–4 chars and bigrams of runs, Katakana runs; top 8 | 0.3–0.6 |
//!
//! CJK text has no spaces, so runs are split where the script changes (Han, Hiragana, Katakana,
//! Hangul). Hiragana runs are dropped: in mixed Japanese they are particles and endings, and
//! their bigrams would crowd out the Han and Katakana words around them.
//!
//! Noise that never yields topics: avm's boilerplate lines (`*Created: …*`, `*Tags: …*`,
//! `*Updated: …*`, `# Version: …`), Markdown markers, URLs, numbers, dates and times, hex hashes,
//! English (and a few Chinese) stop words, noise acronyms (`UTC`, `OK`, `API`, …), contractions,
//! and words over 64 chars (hashes, base64, unsegmented scripts).
//!
//! Everything is ordered by `BTreeMap` and explicit tie-breaks, never by hash order, so the same
//! memory yields the same topics on every run. One pass over the chars, no regex; tokens are
//! slices of the input, and each distinct key is allocated once.

use std::collections::BTreeMap;
use std::iter::Peekable;
use std::str::CharIndices;

/// Most topics kept per memory: enough to describe a long note, few enough that the topic index
/// stays small and a memory's weak topics don't dilute ranking.
pub const MAX_TOPICS: usize = 24;

/// Longer "words" are hashes, base64 or unsegmented scripts: never useful topics.
const MAX_WORD_CHARS: usize = 64;
/// How many salient words, and how many CJK terms, one memory may contribute.
const SALIENT_TOP: usize = 10;
const CJK_TOP: usize = 8;

const W_TAG: f32 = 1.0;
const W_HASHTAG: f32 = 1.0;
const W_TICKER: f32 = 0.9;
const W_TITLE: f32 = 0.8;
const W_PROPER: f32 = 0.7;
const W_PROPER_INITIAL: f32 = 0.4;
const W_SALIENT_MIN: f32 = 0.3;
const W_SALIENT_MAX: f32 = 0.6;
const SOURCE_BONUS: f32 = 0.05;

// Source bits: agreement between independent sources earns the bonus.
const TAG: u8 = 1;
const HASHTAG: u8 = 2;
const TICKER: u8 = 4;
const TITLE: u8 = 8;
const TEXT: u8 = 16;

// How a key was seen as a content word: capitalisation is evidence of a proper noun.
const CAP_MID: u8 = 1;
const CAP_INITIAL: u8 = 2;
const LOWER: u8 = 4;
const IN_TITLE: u8 = 8;

// Which frequency pool a key competes in.
const POOL_NONE: u8 = 0;
const POOL_WORD: u8 = 1;
const POOL_CJK: u8 = 2;

/// Lower-case English stop words (plus a few Chinese function words); sorted for binary search.
#[rustfmt::skip]
const STOP_WORDS: &[&str] = &[
    "a", "able", "about", "above", "across", "actually", "after", "again", "against", "ago", "all",
    "almost", "along", "already", "also", "although", "always", "am", "among", "an", "and",
    "another", "any", "anyone", "anything", "are", "around", "as", "at", "away", "back", "based",
    "be", "became", "because", "become", "becomes", "been", "before", "being", "below", "between",
    "beyond", "both", "but", "by", "came", "can", "cannot", "come", "comes", "could", "currently",
    "did", "do", "does", "doing", "done", "down", "during", "each", "eight", "either", "else",
    "enough", "especially", "etc", "even", "ever", "every", "everything", "far", "few", "finally",
    "first", "five", "following", "for", "four", "from", "get", "gets", "getting", "give", "given",
    "go", "goes", "going", "gone", "got", "had", "has", "have", "he", "her", "here", "hers",
    "herself", "him", "himself", "his", "how", "however", "i", "if", "in", "include", "includes",
    "including", "instead", "into", "is", "it", "its", "itself", "just", "know", "last", "later",
    "least", "less", "let", "like", "likely", "lot", "lots", "made", "make", "makes", "making",
    "many", "may", "maybe", "me", "meanwhile", "might", "mine", "more", "most", "mr", "mrs", "ms",
    "much", "must", "my", "myself", "near", "need", "neither", "never", "new", "next", "nine", "no",
    "nor", "not", "nothing", "now", "of", "often", "ok", "okay", "on", "once", "one", "ones",
    "only", "onto", "or", "other", "our", "ours", "ourselves", "out", "over", "overall", "own",
    "per", "perhaps", "please", "put", "quite", "rather", "really", "recently", "said", "same",
    "say", "says", "see", "seem", "seems", "seen", "seven", "several", "shall", "she", "should",
    "since", "six", "so", "some", "something", "sometimes", "soon", "still", "such", "take",
    "taken", "ten", "than", "thank", "thanks", "that", "the", "their", "theirs", "them",
    "themselves", "then", "there", "these", "they", "thing", "things", "this", "those", "though",
    "three", "through", "thus", "to", "today", "together", "tomorrow", "too", "toward", "towards",
    "two", "under", "until", "up", "upon", "us", "use", "used", "uses", "using", "very", "via",
    "vs", "want", "was", "way", "we", "well", "went", "were", "what", "whatever", "when", "where",
    "whether", "which", "while", "who", "whom", "whose", "why", "will", "with", "within", "without",
    "would", "yeah", "yes", "yesterday", "yet", "you", "your", "yours", "yourself", "yourselves",
    "一个", "不是", "之后", "也是", "什么", "他们", "以及", "但是", "你们", "可以", "因为", "如果",
    "就是", "已经", "我们", "所以", "没有", "然后", "自己", "还是", "这个", "这些", "那个", "那么",
];

/// ALL-CAPS words that are boilerplate, time zones or generic tech acronyms rather than tickers
/// or subjects (lower-case keys, sorted). Stop words in caps (`AND`, `THE`) are dropped anyway.
const NOISE_ACRONYMS: &[&str] = &[
    "api", "asap", "cest", "cet", "edt", "eod", "est", "eta", "faq", "fyi", "gmt", "html", "http",
    "https", "id", "ii", "iii", "imo", "json", "na", "nb", "pdf", "pdt", "pm", "ps", "pst", "tbd",
    "tldr", "todo", "ui", "uri", "url", "utc", "ux", "wip", "xml", "yaml",
];

const APOSTROPHES: [char; 2] = ['\'', '\u{2019}'];

/// avm's metadata line keys (`*Created: …*`, `# Updated: …`): such lines are never content.
const META_KEYS: [&str; 5] = ["created", "modified", "tags", "updated", "version"];

/// One topic of a document and how strongly the document is about it (0 < weight <= 1).
#[derive(Debug, Clone, PartialEq)]
pub struct Topic {
    /// The normalised key, as [`normalize`] and [`query_topics`] produce it.
    pub name: String,
    /// How strongly the document is about the topic, in (0, 1], rounded to 3 decimals.
    pub weight: f32,
}

/// Topics of a memory: `title` (may be empty), its tags, and its content. Deterministic
/// (same input → same output, in the same order, on every run and process), sorted by
/// weight descending then name ascending, at most [`MAX_TOPICS`].
pub fn extract(title: &str, tags: &[String], content: &str) -> Vec<Topic> {
    let mut doc = Doc::default();
    for tag in tags {
        doc.key = normalize(tag);
        if !doc.key.is_empty() {
            doc.fixed(W_TAG, TAG);
            doc.parts(W_TITLE, TAG);
        }
    }
    let mut start = true;
    for chunk in title.split_whitespace() {
        scan_chunk(chunk, &mut start, &mut |tok, _| doc.title(tok));
    }
    scan_text(content, &mut |tok, start| doc.content(tok, start));
    doc.finish()
}

/// The topic keys a search query names, normalised exactly like `extract` normalises
/// (so a query word matches a document topic), deduplicated, in query order. No frequency cutoff:
/// every salient word of the query counts (stop words, pure numbers and 1-char Latin words dropped).
/// A hyphenated word (`ai-safety`) names itself, to match hashtags and tags, and its parts.
pub fn query_topics(query: &str) -> Vec<String> {
    fn push(out: &mut Vec<String>, key: &str) {
        if !key.is_empty() && !is_stop(key) && !out.iter().any(|k| k == key) {
            out.push(key.to_owned());
        }
    }
    let (mut out, mut key, mut start) = (Vec::new(), String::new(), true);
    for chunk in query.split_whitespace() {
        if chunk.contains(['-', '_']) && !chunk.contains("://") {
            let whole = normalize(chunk);
            if whole.contains(['-', '_']) && hashtag_ok(&whole) {
                push(&mut out, &whole);
            }
        }
        scan_chunk(chunk, &mut start, &mut |tok, _| {
            let found = match tok {
                Tok::Word(w) => classify(w, &mut key).is_some(),
                Tok::Hashtag(h) => push_key(h, &mut key) > 0 && hashtag_ok(&key),
                Tok::Cashtag(t) => push_key(t, &mut key) > 0,
                Tok::Cjk(run, script) => {
                    cjk_units(run, script, |u, _| push(&mut out, u));
                    false
                }
            };
            if found {
                push(&mut out, &key);
            }
        });
    }
    out
}

/// The normalised key of one word (lower-case; leading '#', '$' and surrounding punctuation
/// removed; full-width ASCII folded; curly apostrophes straightened; a possessive `'s` dropped;
/// inner whitespace runs joined with '-', so the tag `AI Safety` matches `#ai-safety`). Empty when
/// nothing usable remains: no word chars, a contraction (`don't`), or over 64 chars.
pub fn normalize(word: &str) -> String {
    let trimmed = word.trim_matches(|c: char| !is_key_char(c));
    let mut joined = String::with_capacity(trimmed.len());
    for (i, part) in trimmed.split_whitespace().enumerate() {
        if i > 0 {
            joined.push('-');
        }
        joined.push_str(part);
    }
    let mut key = String::with_capacity(joined.len());
    push_key(&joined, &mut key);
    key
}

/// What a scan finds; slices borrow the scanned text, so scanning allocates nothing.
enum Tok<'a> {
    Word(&'a str),
    Hashtag(&'a str),
    Cashtag(&'a str),
    Cjk(&'a str, Script),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Script {
    Han,
    Hiragana,
    Katakana,
    Hangul,
}

fn cjk_script(c: char) -> Option<Script> {
    match c as u32 {
        // Fast path: ASCII, Latin, Greek, Cyrillic, Hebrew, Arabic, Indic...
        0..=0x10FF => None,
        0x3041..=0x309F => Some(Script::Hiragana),
        0x30A1..=0x30FA | 0x30FC..=0x30FF | 0x31F0..=0x31FF | 0xFF66..=0xFF9F => {
            Some(Script::Katakana)
        }
        0x3005 | 0x3007 | 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xF900..=0xFAFF => Some(Script::Han),
        0x20000..=0x3FFFF => Some(Script::Han),
        0x1100..=0x11FF | 0x3131..=0x318F | 0xA960..=0xA97F | 0xAC00..=0xD7FF => {
            Some(Script::Hangul)
        }
        _ => None,
    }
}

/// A letter or digit of a spaced script (anything alphanumeric but CJK).
fn is_word_char(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_alphanumeric();
    }
    c.is_alphanumeric() && cjk_script(c).is_none()
}

/// Combining marks and joiners continue a word (`e` + U+0301, Persian ZWNJ) but never start one.
fn is_mark(c: char) -> bool {
    matches!(c as u32, 0x0300..=0x036F | 0x1AB0..=0x1AFF | 0x1DC0..=0x1DFF | 0x200C | 0x200D
        | 0x20D0..=0x20FF | 0xFE20..=0xFE2F)
}

fn is_key_char(c: char) -> bool {
    is_word_char(c) || is_mark(c) || cjk_script(c).is_some()
}

/// `STOP_WORDS[STOP_FROM[b]..STOP_FROM[b + 1]]` are the stop words whose first byte is `b`, so a
/// lookup (once per word) binary-searches a dozen words instead of all 300.
const STOP_FROM: [u16; 257] = {
    let mut from = [0u16; 257];
    let mut i = 0;
    while i < STOP_WORDS.len() {
        from[STOP_WORDS[i].as_bytes()[0] as usize + 1] = i as u16 + 1;
        i += 1;
    }
    // A byte that starts no stop word gets an empty range where the previous byte's ends.
    let mut b = 1;
    while b < from.len() {
        if from[b] < from[b - 1] {
            from[b] = from[b - 1];
        }
        b += 1;
    }
    from
};

/// Whether a lower-cased word is a stop word (too common to be a topic or to search for).
pub fn is_stop_word(key: &str) -> bool {
    is_stop(key)
}

fn is_stop(key: &str) -> bool {
    let (Some(&b), true) = (key.as_bytes().first(), key.len() <= 10) else {
        return false; // no stop word is longer than 10 bytes
    };
    let (from, to) = (STOP_FROM[usize::from(b)], STOP_FROM[usize::from(b) + 1]);
    let words = STOP_WORDS
        .get(usize::from(from)..usize::from(to))
        .unwrap_or_default();
    words.binary_search_by(|w| cmp_bytes(w, key)).is_ok()
}

/// Byte order, inlined: most comparisons end at the first byte, where a `memcmp` call costs more
/// than the comparison.
fn cmp_bytes(a: &str, b: &str) -> std::cmp::Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    match a.iter().zip(b).find(|(x, y)| x != y) {
        Some((x, y)) => x.cmp(y),
        None => a.len().cmp(&b.len()),
    }
}

fn is_noise_acronym(key: &str) -> bool {
    NOISE_ACRONYMS.binary_search(&key).is_ok()
}

/// Hex with a digit: colours (`#ff0000`), commit ids, UUID pieces.
fn hex_with_digit(key: &str) -> bool {
    key.bytes().all(|b| b.is_ascii_hexdigit()) && key.bytes().any(|b| b.is_ascii_digit())
}

fn hashtag_ok(key: &str) -> bool {
    key.chars().any(char::is_alphabetic) && !hex_with_digit(key)
}

/// Writes the key of a clean word into `out` (reused, so hot loops don't allocate) and returns
/// its length in chars; 0, with `out` empty, when the word yields no key.
fn push_key(word: &str, out: &mut String) -> usize {
    out.clear();
    let (mut n, mut apostrophe) = (0, false);
    for c in word.chars() {
        n += 1;
        match c {
            'A'..='Z' => out.push(c.to_ascii_lowercase()),
            '\'' | '\u{2019}' => {
                apostrophe = true;
                out.push('\'');
            }
            c if c.is_ascii() => out.push(c),
            '\u{FF01}'..='\u{FF5E}' => {
                let folded = char::from_u32(c as u32 - 0xFEE0).unwrap_or(c);
                out.push(folded.to_ascii_lowercase());
            }
            c if c.is_uppercase() => out.extend(c.to_lowercase()),
            c => out.push(c),
        }
    }
    if apostrophe && let Some(p) = out.rfind('\'') {
        match &out[p + 1..] {
            "s" => {
                out.truncate(p);
                n -= 2;
            }
            // Contractions are function words (don't, we're, I'll, I've, I'd, I'm).
            "t" | "re" | "ll" | "ve" | "d" | "m" => out.clear(),
            _ => {}
        }
    }
    if n > MAX_WORD_CHARS {
        out.clear();
    }
    if out.is_empty() { 0 } else { n }
}

#[derive(Clone, Copy)]
enum Kind {
    Ticker,
    /// Capitalised: `Powell`, `Tokyo`, or just a sentence's first word.
    Name,
    Word,
}

/// Writes the word's key into `key` and says what kind of word it is, with the key's length in
/// chars; `None` for stop words, numbers, hashes, noise acronyms and 1-char words.
fn classify(word: &str, key: &mut String) -> Option<(Kind, usize)> {
    let n = push_key(word, key);
    let (mut letters, mut digits, mut uppers, mut caps) = (0, 0, 0, true);
    for c in word.chars() {
        letters += usize::from(c.is_alphabetic());
        digits += usize::from(c.is_numeric());
        uppers += usize::from(c.is_uppercase());
        caps &= c.is_ascii_uppercase();
    }
    if n < 2 || letters == 0 || is_stop(key) {
        return None;
    }
    if caps && n <= 6 {
        return (!is_noise_acronym(key)).then_some((Kind::Ticker, n));
    }
    // Digits-mixed words count when mostly letters (`gpt4`, `covid19`), not `10th` or hashes.
    if digits > 0 && (letters < 2 || digits >= letters || (n >= 6 && hex_with_digit(key))) {
        return None;
    }
    let capitalised = uppers == 1 && digits == 0 && word.starts_with(char::is_uppercase);
    Some((if capitalised { Kind::Name } else { Kind::Word }, n))
}

/// Calls `f` with each CJK term of one same-script run, and whether it is the whole run.
fn cjk_units(run: &str, script: Script, mut f: impl FnMut(&str, bool)) {
    let n = run.chars().count();
    match script {
        Script::Hiragana => {}
        // Katakana runs are loanwords and names: the run is the word, its bigrams are junk.
        Script::Katakana if (2..=MAX_WORD_CHARS).contains(&n) => f(run, true),
        Script::Katakana => {}
        Script::Han | Script::Hangul => {
            if (2..=4).contains(&n) {
                f(run, true);
            }
            // Bigrams of longer runs (a 2-char run is its own only bigram).
            let mut prev: Option<usize> = None;
            for (i, c) in run.char_indices().filter(|_| n >= 3) {
                if let Some(p) = prev {
                    f(&run[p..i + c.len_utf8()], false);
                }
                prev = Some(i);
            }
        }
    }
}

/// Scans text line by line, skipping avm's boilerplate, and tells `f` whether each token starts
/// a sentence (capitalisation there is weak evidence of a proper noun).
fn scan_text(text: &str, f: &mut impl FnMut(Tok<'_>, bool)) {
    let mut start = true;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || is_boilerplate(line) {
            start = true;
            continue;
        }
        let hashes = line.bytes().take_while(|&b| b == b'#').count();
        let rest = &line[hashes..];
        let heading = (1..=6).contains(&hashes) && (rest.is_empty() || rest.starts_with(' '));
        // List items, quotes and headings begin anew; a plain line may continue a sentence.
        start |= !line.starts_with(char::is_alphanumeric);
        for chunk in line.split_whitespace() {
            // Headings are usually Title Case: no word in them is mid-sentence evidence.
            start |= heading;
            scan_chunk(chunk, &mut start, f);
        }
        start |= heading;
    }
}

fn is_boilerplate(line: &str) -> bool {
    let body = line.trim_start_matches(['*', '_', '#', '>', ' ', '\t']);
    let head = body.get(..20).unwrap_or(body);
    let Some(colon) = head.find(':') else {
        return false;
    };
    let key = head[..colon].trim_end_matches(['*', '_']);
    META_KEYS.iter().any(|k| key.eq_ignore_ascii_case(k))
}

/// Scans one whitespace-free chunk. `start` carries sentence state across chunks: a chunk ending
/// in `.`, `!`, `?`, `:` or `…` makes the next token sentence-initial.
fn scan_chunk(chunk: &str, start: &mut bool, f: &mut impl FnMut(Tok<'_>, bool)) {
    let mut chunk = chunk;
    // A URL: keep only what precedes its scheme, e.g. the link text of `[Fed](https://…)`.
    if chunk.contains(':')
        && let Some(p) = chunk.find("://")
    {
        chunk = chunk[..p].trim_end_matches(|c: char| c.is_ascii_alphanumeric());
    }
    let bare = chunk.trim_start_matches(|c: char| !c.is_alphanumeric());
    if bare.len() >= 4 && bare.as_bytes()[..4].eq_ignore_ascii_case(b"www.") {
        return;
    }
    let mut it = chunk.char_indices().peekable();
    let (mut prev, mut pending) = (None, false);
    while let Some((i, c)) = it.next() {
        let (mut end, mut last) = (i + c.len_utf8(), c);
        let tok = if is_word_char(c) {
            let joins =
                |&(_, d): &(usize, char)| is_word_char(d) || is_mark(d) || APOSTROPHES.contains(&d);
            while let Some((j, d)) = it.next_if(joins) {
                (end, last) = (j + d.len_utf8(), d);
            }
            // Apostrophes join letters (`Powell's`, `O'Brien`), never end a word (`dogs'`).
            Some(Tok::Word(chunk[i..end].trim_end_matches(APOSTROPHES)))
        } else if let Some(script) = cjk_script(c) {
            while let Some((j, d)) = it.next_if(|&(_, d)| cjk_script(d) == Some(script)) {
                (end, last) = (j + d.len_utf8(), d);
            }
            Some(Tok::Cjk(&chunk[i..end], script))
        } else if c == '#'
            && !prev.is_some_and(|p| is_word_char(p) || matches!(p, '&' | '/' | '_'))
            && it
                .peek()
                .is_some_and(|&(_, d)| is_key_char(d) && !is_mark(d))
        {
            let tag_char = |&(_, d): &(usize, char)| is_key_char(d) || d == '-' || d == '_';
            while let Some((j, d)) = it.next_if(tag_char) {
                (end, last) = (j + d.len_utf8(), d);
            }
            Some(Tok::Hashtag(chunk[i + 1..end].trim_end_matches(['-', '_'])))
        } else if c == '$' && !prev.is_some_and(is_word_char) && is_cashtag(it.clone()) {
            while let Some((j, d)) = it.next_if(|&(_, d)| d.is_ascii_alphabetic()) {
                (end, last) = (j + d.len_utf8(), d);
            }
            Some(Tok::Cashtag(&chunk[i + 1..end]))
        } else {
            match c {
                '.' | '!' | '?' | ':' | '…' => pending = true,
                '。' | '！' | '？' | '｡' | '．' => *start = true,
                _ => {}
            }
            None
        };
        if let Some(tok) = tok {
            f(tok, *start);
            *start = false;
            pending = false;
        }
        prev = Some(last);
    }
    *start |= pending;
}

/// Whether `$` starts a cash tag: 1–6 ASCII letters not followed by a letter, digit or `_`.
fn is_cashtag(mut look: Peekable<CharIndices<'_>>) -> bool {
    let letter = |&(_, d): &(usize, char)| d.is_ascii_alphabetic();
    let n = look.clone().take_while(letter).count();
    let after = look.nth(n).map_or(' ', |(_, d)| d);
    (1..=6).contains(&n) && !after.is_alphanumeric() && after != '_'
}

/// What is known about one key of a document.
#[derive(Default)]
struct Acc {
    /// Largest weight from tags, hashtags, tickers and the title.
    fixed: f32,
    sources: u8,
    /// Occurrences as a content word of pool length or a CJK term, for the frequency pools.
    freq: u32,
    chars: usize,
    pool: u8,
    case: u8,
    /// Order of the first content occurrence (from 1): breaks score ties, earlier text first.
    first: u32,
}

#[derive(Default)]
struct Doc {
    map: BTreeMap<String, Acc>,
    /// The current key, reused for every token.
    key: String,
    seen: u32,
}

impl Doc {
    /// Updates the entry of `self.key`, allocating the key only the first time it is seen.
    fn with(&mut self, f: impl FnOnce(&mut Acc)) {
        match self.map.get_mut(self.key.as_str()) {
            Some(acc) => f(acc),
            None => {
                let mut acc = Acc::default();
                f(&mut acc);
                self.map.insert(self.key.clone(), acc);
            }
        }
    }

    fn fixed(&mut self, weight: f32, bit: u8) {
        self.with(|a| {
            a.fixed = a.fixed.max(weight);
            a.sources |= bit;
        });
    }

    fn text(&mut self, pool: u8, chars: usize, case: u8) {
        self.seen += 1;
        let seen = self.seen;
        self.with(|a| {
            a.freq += u32::from(pool != POOL_NONE);
            a.first = if a.first == 0 { seen } else { a.first };
            a.sources |= TEXT;
            a.pool = a.pool.max(pool);
            a.chars = chars;
            a.case |= case;
        });
    }

    /// The words of a compound tag or hashtag (`ai-safety` → `safety`) are topics too.
    fn parts(&mut self, weight: f32, bit: u8) {
        if !self.key.contains(['-', '_']) {
            return;
        }
        let whole = std::mem::take(&mut self.key);
        for part in whole.split(['-', '_']) {
            let min = 3 - usize::from(part.starts_with(|c| cjk_script(c).is_some()));
            if part.chars().count() >= min && hashtag_ok(part) && !is_stop(part) {
                self.key.clear();
                self.key.push_str(part);
                self.fixed(weight, bit);
            }
        }
    }

    fn hashtag(&mut self, h: &str) {
        if push_key(h, &mut self.key) > 0 && hashtag_ok(&self.key) {
            self.fixed(W_HASHTAG, HASHTAG);
            self.parts(W_TITLE, HASHTAG);
        }
    }

    fn cashtag(&mut self, t: &str) {
        if push_key(t, &mut self.key) > 0 && !is_noise_acronym(&self.key) {
            self.fixed(W_TICKER, TICKER);
        }
    }

    fn title(&mut self, tok: Tok<'_>) {
        match tok {
            Tok::Word(w) => match classify(w, &mut self.key) {
                Some((Kind::Ticker, _)) => self.fixed(W_TICKER, TITLE),
                Some((_, n)) if n >= 3 => self.fixed(W_TITLE, TITLE),
                _ => {}
            },
            Tok::Hashtag(h) => self.hashtag(h),
            Tok::Cashtag(t) => self.cashtag(t),
            // Whole short runs are words; bigrams of longer runs may straddle two words, so they
            // get title weight only once the content repeats them (see `finish`).
            Tok::Cjk(run, script) => cjk_units(run, script, |u, whole| {
                if !is_stop(u) {
                    self.key.clear();
                    self.key.push_str(u);
                    if whole {
                        self.fixed(W_TITLE, TITLE);
                    } else {
                        self.text(POOL_CJK, 2, IN_TITLE);
                    }
                }
            }),
        }
    }

    fn content(&mut self, tok: Tok<'_>, start: bool) {
        match tok {
            Tok::Word(w) => match classify(w, &mut self.key) {
                Some((Kind::Ticker, _)) => self.fixed(W_TICKER, TICKER),
                Some((kind, n)) => {
                    let case = match kind {
                        Kind::Name if n >= 3 && start => CAP_INITIAL,
                        Kind::Name if n >= 3 => CAP_MID,
                        _ => LOWER,
                    };
                    self.text(if n >= 4 { POOL_WORD } else { POOL_NONE }, n, case);
                }
                None => {}
            },
            Tok::Hashtag(h) => self.hashtag(h),
            Tok::Cashtag(t) => self.cashtag(t),
            Tok::Cjk(run, script) => cjk_units(run, script, |u, _| {
                if !is_stop(u) {
                    self.key.clear();
                    self.key.push_str(u);
                    self.text(POOL_CJK, u.chars().count(), LOWER);
                }
            }),
        }
    }

    fn finish(self) -> Vec<Topic> {
        let entries: Vec<(String, Acc)> = self.map.into_iter().collect();
        let score = |a: &Acc| {
            let base = if a.pool == POOL_CJK { 2 } else { 4 };
            a.freq as f32 * (1.0 + 0.1 * a.chars.saturating_sub(base).min(5) as f32)
        };
        // Everything but frequency: given weights, proper nouns, confirmed title bigrams.
        let firm = |a: &Acc| {
            let seen = match a.case {
                c if c & CAP_MID != 0 => W_PROPER,
                CAP_INITIAL => W_PROPER_INITIAL,
                c if c & IN_TITLE != 0 && a.freq > 1 => W_TITLE,
                _ => 0.0,
            };
            a.fixed.max(seen)
        };
        let max_score = entries.iter().map(|e| score(&e.1)).fold(1.0, f32::max);
        let mut salient = vec![0.0f32; entries.len()];
        for (pool, top) in [(POOL_WORD, SALIENT_TOP), (POOL_CJK, CJK_TOP)] {
            // Keys already weighted above the salient range would only waste a slot.
            let mut picks: Vec<(f32, u32, usize)> = (entries.iter().enumerate())
                .filter(|(_, (_, a))| a.pool == pool && firm(a) < W_SALIENT_MAX)
                .map(|(i, (_, a))| (score(a), a.first, i))
                .collect();
            picks.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)));
            for &(s, _, i) in picks.iter().take(top) {
                salient[i] = W_SALIENT_MIN + (W_SALIENT_MAX - W_SALIENT_MIN) * s / max_score;
            }
        }
        let mut out: Vec<Topic> = (entries.into_iter().zip(salient))
            .filter_map(|((name, a), s)| {
                let w = firm(&a).max(s);
                let extra = a.sources.count_ones().saturating_sub(1) as f32 * SOURCE_BONUS;
                // Rounded so stored weights are stable and readable.
                let weight = ((w + extra).min(1.0) * 1000.0).round() / 1000.0;
                (w > 0.0).then_some(Topic { name, weight })
            })
            .collect();
        out.sort_by(|a, b| b.weight.total_cmp(&a.weight).then(a.name.cmp(&b.name)));
        out.truncate(MAX_TOPICS);
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const MEMORY: &str = "# NVDA note\n\n*Created: 2026-11-21 07:44:22 UTC*\n*Tags: market, nvda*\n\n---\n\nNVDA RSI at 72 overbought. Powell said the Fed may hold rates. #rates\n";

    fn topics(content: &str) -> Vec<Topic> {
        extract("", &[], content)
    }

    fn weight(topics: &[Topic], name: &str) -> Option<f32> {
        topics.iter().find(|t| t.name == name).map(|t| t.weight)
    }

    fn names(topics: &[Topic]) -> Vec<&str> {
        topics.iter().map(|t| t.name.as_str()).collect()
    }

    /// `noise`: space-separated names that must not be topics.
    fn assert_none(topics: &[Topic], noise: &str) {
        for n in noise.split(' ') {
            assert!(weight(topics, n).is_none(), "{n} in {topics:?}");
        }
    }

    #[test]
    fn word_lists_are_sorted_for_binary_search() {
        assert!(STOP_WORDS.windows(2).all(|w| w[0] < w[1]));
        assert!(NOISE_ACRONYMS.windows(2).all(|w| w[0] < w[1]));
        assert!(STOP_WORDS.iter().all(|w| w.len() <= 10 && is_stop(w)));
        assert!(!is_stop("") && !is_stop("zebra") && !is_stop("thee") && !is_stop("中东"));
    }

    #[test]
    fn the_stored_memory_format_yields_its_topics() {
        let found = extract("NVDA note", &["market".into(), "nvda".into()], MEMORY);
        for want in "market nvda rates rsi powell fed overbought note".split(' ') {
            assert!(weight(&found, want).is_some(), "{want}: {found:?}");
        }
        assert_eq!(weight(&found, "market"), Some(W_TAG));
        assert_eq!(weight(&found, "rsi"), Some(W_TICKER));
    }

    #[test]
    fn boilerplate_lines_never_become_topics() {
        let text = format!("{MEMORY}*Updated: 2026-11-22 08:00:00 UTC*\n**Modified:** now\n");
        let noise = "created tags updated modified utc 2026 07 72";
        assert_none(&topics(&text), noise);
        assert_none(&extract("NVDA note", &["x".into()], &text), noise);
    }

    #[test]
    fn hashtags_are_topics_including_cjk_and_compound_ones() {
        let found = topics("Watching #rates and #伊朗 plus (#AI-Safety) today.");
        for tag in ["rates", "伊朗", "ai-safety"] {
            assert_eq!(weight(&found, tag), Some(W_HASHTAG), "{tag}");
        }
        assert_eq!(weight(&found, "safety"), Some(W_TITLE));
        assert_eq!(query_topics("#ai-safety news"), ["ai-safety", "news"]);
        assert_eq!(query_topics("ai-safety"), ["ai-safety", "ai", "safety"]);
        assert_eq!(normalize(" AI  Safety "), "ai-safety");
    }

    #[test]
    fn headings_colours_and_issue_numbers_are_not_hashtags() {
        let found = topics("# Summary\n## Outlook\n#rates up, see #123 and #ff0000");
        assert_eq!(weight(&found, "rates"), Some(W_HASHTAG));
        assert!(weight(&found, "summary").is_some_and(|w| w < W_HASHTAG));
        assert!(weight(&found, "outlook").is_some_and(|w| w < W_HASHTAG));
        assert_none(&found, "123 ff0000");
    }

    #[test]
    fn tickers_in_both_forms_have_lower_case_keys() {
        let found = topics("Bought $tsla, $AMD, NVDA; MACD hot, OK? AND THE UTC $100 $TOOLONGX");
        for t in ["tsla", "amd", "nvda", "macd"] {
            assert_eq!(weight(&found, t), Some(W_TICKER), "{t} in {found:?}");
        }
        assert_none(&found, "ok and the utc 100");
        assert!(weight(&found, "toolongx").is_some_and(|w| w < W_TICKER));
    }

    #[test]
    fn mid_sentence_proper_nouns_outweigh_sentence_initial_ones() {
        let found = topics("Abe spoke. Then we met Ito there.\n- Kim came by");
        assert_eq!(weight(&found, "abe"), Some(W_PROPER_INITIAL));
        assert_eq!(weight(&found, "kim"), Some(W_PROPER_INITIAL));
        assert_eq!(weight(&found, "ito"), Some(W_PROPER));
        // A capitalised word also seen in lower case is an ordinary word.
        let found = topics("Rates rose. Rates fell as rates do.");
        assert!(weight(&found, "rates").is_some_and(|w| w <= W_SALIENT_MAX));
    }

    #[test]
    fn stop_words_never_become_topics() {
        let text = "The This And THE AND. What they said about it is that there would be more. \
                    However, Today we don't know. It's Here. 我们没有";
        let found = extract("The And Of", &[], text);
        assert!(found.iter().all(|t| !is_stop(&t.name)), "{found:?}");
        assert_none(&found, "don don't it's");
        assert!(query_topics("what is the 我们").is_empty());
    }

    #[test]
    fn urls_numbers_dates_and_hashes_are_ignored() {
        let found = topics(
            "See https://example.com/nvidia-earnings at 2026-11-21 07:44:22 1.5 10th \
             a3f9c2e1b7 www.example.org [Fed minutes](https://x.com/fomc)",
        );
        assert_none(&found, "example nvidia https fomc 10th a3f9c2e1b7 1");
        assert!(weight(&found, "fed").is_some() && weight(&found, "minutes").is_some());
    }

    #[test]
    fn salient_words_rank_by_frequency() {
        let text = "inflation inflation inflation is sticky; gpt4 helps; housing is sticky";
        let found = topics(text);
        let w = |name| weight(&found, name).unwrap();
        assert_eq!(w("inflation"), W_SALIENT_MAX);
        assert!(w("inflation") > w("sticky") && w("sticky") > w("housing") && w("gpt4") > 0.0);
    }

    #[test]
    fn output_is_deterministic_and_independent_of_hash_order() {
        let tags = ["market".to_string(), "nvda".to_string()];
        let first = extract("NVDA note", &tags, MEMORY);
        for _ in 0..5 {
            assert_eq!(first, extract("NVDA note", &tags, MEMORY));
        }
        // A fixed expectation catches any order that could vary between processes.
        let fixed = topics("Powell met Lagarde. #rates rates");
        assert_eq!(names(&fixed), ["rates", "lagarde", "powell"]);
        let (a, b) = (&first[0], &first[1]);
        assert!(a.weight > b.weight || (a.weight == b.weight && a.name < b.name));
    }

    #[test]
    fn cjk_query_overlaps_cjk_document_topics() {
        let doc = topics("伊朗军事冲突 中东局势紧张");
        let query = query_topics("中东局势");
        assert_eq!(query, ["中东局势", "中东", "东局", "局势"]);
        assert!(query.iter().any(|q| weight(&doc, q).is_some()), "{doc:?}");
        assert!(doc.len() <= CJK_TOP);
        // A title bigram the content repeats is a title word.
        let titled = extract("中东局势分析", &[], "伊朗军事冲突，中东局势紧张。");
        assert_eq!(weight(&titled, "中东"), Some(W_TITLE));
    }

    #[test]
    fn japanese_splits_at_script_changes() {
        let found = topics("ビットコインの価格が上昇した");
        assert_eq!(names(&found), ["ビットコイン", "上昇", "価格"]);
    }

    #[test]
    fn query_topics_normalise_like_extract() {
        let query = query_topics("NVDA overbought? Powell's $TSLA #Rates NVDA 2026 a the");
        assert_eq!(query, ["nvda", "overbought", "powell", "tsla", "rates"]);
        let doc = topics(MEMORY);
        assert!(query.iter().filter(|k| weight(&doc, k).is_some()).count() >= 4);
        let words = ["#Rates,", "$NVDA", "(Powell’s)", "ＮＶＤＡ", "don't"];
        let keys = ["rates", "nvda", "powell", "nvda", ""];
        assert_eq!(words.map(normalize), keys);
    }

    #[test]
    fn at_most_max_topics_sorted_by_weight() {
        let tags: Vec<String> = (0..40).map(|i| format!("tag{i:02}x")).collect();
        assert_eq!(extract("", &tags, "").len(), MAX_TOPICS);
        let letter = |i: usize| char::from(b'a' + (i % 26) as u8);
        let line = |i| format!("we met Name{0} wor{0}{1} ", letter(i), "d".repeat(i / 26));
        let text: String = (0..99).map(line).collect();
        let found = topics(&text);
        assert_eq!(found.len(), MAX_TOPICS);
        assert!(found.windows(2).all(|w| w[0].weight >= w[1].weight));
    }

    #[test]
    fn empty_input_gives_no_topics() {
        assert!(topics("").is_empty() && query_topics("").is_empty() && normalize("").is_empty());
        assert!(extract("  ", &["".into(), "  ".into(), "#".into()], " \n\t\n---\n").is_empty());
        assert!(query_topics("  ?! ").is_empty());
    }

    #[test]
    fn weird_unicode_never_panics() {
        let long = "a".repeat(65);
        assert!(topics(&format!("{long} {long}")).is_empty() && normalize(&long).is_empty());
        assert_eq!(normalize(&"b".repeat(64)).len(), 64);
        let tricky = [
            "emoji 👩‍👩‍👧 rocket🚀launch #🚀 $🚀 #\u{200D}x ‍",
            "cafe\u{0301} naïve \u{0301}start İstanbul ǅemal ß STRASSE Σίσυφος ΣΊΣΥΦΟΣ",
            "مرحبا بالعالم שלום עולם \u{200F}RTL\u{200E} ١٢٣ Ελλάδα",
            "# \n## \n#\n$\n$$$\n'\n’s\n'tis\nO'Brien's \u{FEFF}BOM dogs' ''x''",
            "http:// ://x https:// a://b [x](y://z) www. WWW.X.COM",
            "中文#标签#结尾 한국어 서울에서 ｶﾀｶﾅ ｰ 々〇 𠀀𠀁𠀂 。！？",
            "*Created:*\n*Tags:\n\r\n\r\0\u{7F}\u{FFFD}\u{10FFFF}",
            "ＡＢＣ１２３ ＮＶＤＡ ﾃｽﾄ",
        ];
        let joined = tricky.concat();
        for s in tricky.into_iter().chain([joined.as_str()]) {
            // Every char-boundary prefix and suffix: scanning must never split a char.
            for (i, _) in s.char_indices() {
                for part in [&s[i..], &s[..i]] {
                    let found = extract(part, &[part.to_string()], part);
                    assert!(found.len() <= MAX_TOPICS);
                    assert!(found.iter().all(|t| t.weight > 0.0 && t.weight <= 1.0));
                    let _ = (query_topics(part), normalize(part));
                }
            }
        }
    }
}
