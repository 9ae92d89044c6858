//! Deterministic, Unicode-aware topic extraction: which topics a memory is about, and which
//! topic keys a search query names.
//!
//! A topic is a normalised key (see [`normalize`]) with a weight in (0, 1]. Sources, strongest
//! first; a key found by several sources keeps its largest weight plus 0.05 per extra source
//! (tag, hashtag, ticker, title, text), capped at 1.0:
//!
//! | source | weight |
//! |---|---|
//! | tags given with the memory (and the words of a compound tag such as `ai-safety`: 0.8) | 1.0 |
//! | hashtags in the content: `#rates`, `#伊朗`, `#ai-safety` (not `# Heading`, not `#ff0000`) | 1.0 |
//! | tickers: `$NVDA` cash tags and ALL-CAPS words of 2–6 ASCII letters (`RSI`, `MACD`) | 0.9 |
//! | title words (≥ 3 chars; CJK runs of 2–4 chars) | 0.8 |
//! | proper nouns: `Powell`, `Tokyo` seen mid-sentence at least once | 0.7 |
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
//! and words over 64 chars (hashes, base64, unsplit scripts).
//!
//! Everything is ordered by `BTreeMap` and explicit tie-breaks, never by hash order, so the same
//! memory yields the same topics on every run. One pass over the chars, no regex; the only
//! allocations are one `String` per distinct key.

use std::collections::BTreeMap;

/// Most topics kept per memory: enough to describe a long note, few enough that the topic index
/// stays small and a memory's weak topics don't dilute ranking.
pub const MAX_TOPICS: usize = 24;

/// Longer "words" are hashes, base64 or unsegmented scripts: never useful topics.
const MAX_WORD_CHARS: usize = 64;
/// How many salient words, and how many CJK terms, a memory may contribute.
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
    "一个", "不是", "之后", "也是", "什么", "他们", "以及", "但是", "你们", "可以", "因为", "如果", "就是", "已经", "我们", "所以",
    "没有", "然后", "自己", "还是", "这个", "这些", "那个", "那么",
];

/// ALL-CAPS words that are boilerplate, time zones or generic tech acronyms rather than tickers
/// or subjects (lower-case keys, sorted). English stop words in caps (`AND`, `THE`) are dropped
/// by [`STOP_WORDS`] already.
const NOISE_ACRONYMS: &[&str] = &[
    "api", "asap", "cest", "cet", "edt", "eod", "est", "eta", "faq", "fyi", "gmt", "html", "http",
    "https", "id", "ii", "iii", "imo", "json", "na", "nb", "pdf", "pdt", "pm", "ps", "pst", "tbd",
    "tldr", "todo", "ui", "uri", "url", "utc", "ux", "wip", "xml", "yaml",
];

/// avm's metadata line keys (`*Created: …*`, `# Updated: …`): such lines are never content.
const META_KEYS: [&str; 5] = ["created", "modified", "tags", "updated", "version"];

/// One topic of a document and how strongly the document is about it (0 < weight <= 1).
#[derive(Debug, Clone, PartialEq)]
pub struct Topic {
    /// The normalised key, as [`normalize`] and [`query_topics`] produce it.
    pub name: String,
    /// How strongly the document is about the topic, in (0, 1].
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
/// A hyphenated word (`ai-safety`) names both itself, to match hashtags and tags, and its parts.
pub fn query_topics(query: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut key = String::new();
    let mut start = true;
    fn push(out: &mut Vec<String>, k: &str) {
        if !k.is_empty() && !out.iter().any(|o| o == k) {
            out.push(k.to_owned());
        }
    }
    for chunk in query.split_whitespace() {
        if chunk.contains(['-', '_']) && !chunk.contains("://") {
            let whole = normalize(chunk);
            if whole.contains(['-', '_']) && hashtag_ok(&whole) {
                push(&mut out, &whole);
            }
        }
        scan_chunk(chunk, &mut start, &mut |tok, _| match tok {
            Tok::Word(w) => {
                if !matches!(classify(w, &mut key).0, Class::Drop) {
                    push(&mut out, &key);
                }
            }
            Tok::Hashtag(h) => {
                if push_key(h, &mut key) && hashtag_ok(&key) {
                    push(&mut out, &key);
                }
            }
            Tok::Cashtag(t) => {
                if push_key(t, &mut key) {
                    push(&mut out, &key);
                }
            }
            Tok::Cjk(run, script) => cjk_units(run, script, |u, _| push(&mut out, u)),
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
    if push_key(&joined, &mut key) {
        key
    } else {
        String::new()
    }
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
    let u = c as u32;
    if u < 0x1100 {
        return None; // fast path: ASCII, Latin, Greek, Cyrillic, Hebrew, Arabic, Indic...
    }
    match u {
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

fn is_apostrophe(c: char) -> bool {
    c == '\'' || c == '\u{2019}'
}

fn is_stop(key: &str) -> bool {
    STOP_WORDS.binary_search(&key).is_ok()
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

/// Writes the key of a clean word into `out` (reused, so hot loops don't allocate); false when
/// the word yields no key.
fn push_key(word: &str, out: &mut String) -> bool {
    out.clear();
    for c in word.chars() {
        match c {
            'A'..='Z' => out.push(c.to_ascii_lowercase()),
            c if c.is_ascii() => out.push(c),
            '\u{2019}' => out.push('\''),
            '\u{FF01}'..='\u{FF5E}' => {
                let folded = char::from_u32(c as u32 - 0xFEE0).unwrap_or(c);
                out.push(folded.to_ascii_lowercase());
            }
            c if c.is_uppercase() => out.extend(c.to_lowercase()),
            c => out.push(c),
        }
    }
    if let Some(p) = out.rfind('\'') {
        match &out[p + 1..] {
            "s" => out.truncate(p),
            // Contractions are function words (don't, we're, I'll, I've, I'd, I'm).
            "t" | "re" | "ll" | "ve" | "d" | "m" => out.clear(),
            _ => {}
        }
    }
    !out.is_empty() && out.chars().count() <= MAX_WORD_CHARS
}

enum Class {
    Drop,
    Ticker,
    Capitalised,
    Plain,
}

/// Writes the word's key into `key` and says what kind of word it is, with the key's length in
/// chars. Stop words, numbers, hashes, noise acronyms and 1-char words are `Drop`.
fn classify(word: &str, key: &mut String) -> (Class, usize) {
    if !push_key(word, key) {
        return (Class::Drop, 0);
    }
    let (mut letters, mut digits) = (0usize, 0usize);
    let mut ascii_caps = true;
    let mut capitalised = true;
    for (i, c) in word.chars().enumerate() {
        if c.is_alphabetic() {
            letters += 1;
        } else if c.is_numeric() {
            digits += 1;
        }
        ascii_caps &= c.is_ascii_uppercase();
        capitalised &= if i == 0 {
            c.is_uppercase()
        } else {
            !c.is_uppercase() && !c.is_numeric()
        };
    }
    if letters == 0 {
        return (Class::Drop, 0);
    }
    if ascii_caps && (2..=6).contains(&word.len()) {
        let noise = is_noise_acronym(key) || is_stop(key);
        return (if noise { Class::Drop } else { Class::Ticker }, word.len());
    }
    let chars = key.chars().count();
    if is_stop(key) || chars < 2 {
        return (Class::Drop, 0);
    }
    // Digits-mixed words count when mostly letters (`gpt4`, `covid19`), not `10th` or hashes.
    if digits > 0 && (letters < 2 || digits >= letters || (chars >= 6 && hex_with_digit(key))) {
        return (Class::Drop, 0);
    }
    (
        if capitalised {
            Class::Capitalised
        } else {
            Class::Plain
        },
        chars,
    )
}

/// Calls `f` with each CJK term of one same-script run, and whether it is the whole run.
fn cjk_units(run: &str, script: Script, mut f: impl FnMut(&str, bool)) {
    let n = run.chars().count();
    match script {
        Script::Hiragana => {}
        // Katakana runs are loanwords and names: the run is the word, bigrams are junk.
        Script::Katakana => {
            if (2..=MAX_WORD_CHARS).contains(&n) {
                f(run, true);
            }
        }
        Script::Han | Script::Hangul => {
            if (2..=4).contains(&n) {
                f(run, true);
            }
            if n >= 3 {
                let mut prev: Option<usize> = None;
                for (i, c) in run.char_indices() {
                    if let Some(p) = prev {
                        f(&run[p..i + c.len_utf8()], false);
                    }
                    prev = Some(i);
                }
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
        let heading = (1..=6).contains(&hashes)
            && line
                .as_bytes()
                .get(hashes)
                .is_none_or(|b| b.is_ascii_whitespace());
        // List items, quotes and headings begin anew; a plain line may continue a sentence.
        if !line.starts_with(char::is_alphanumeric) {
            start = true;
        }
        for chunk in line.split_whitespace() {
            // Headings are usually Title Case: no word in them is mid-sentence evidence.
            start |= heading;
            scan_chunk(chunk, &mut start, f);
        }
        start |= heading;
    }
}

fn is_boilerplate(line: &str) -> bool {
    let body = line.trim_start_matches(|c: char| matches!(c, '*' | '_' | '#' | '>' | ' ' | '\t'));
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
    // A URL: keep only what precedes its scheme, e.g. the link text of `[Fed](https://…)`.
    let chunk = match chunk.find("://") {
        Some(p) => {
            let scheme = chunk[..p]
                .bytes()
                .rev()
                .take_while(u8::is_ascii_alphanumeric)
                .count();
            &chunk[..p - scheme]
        }
        None => chunk,
    };
    let bare = chunk.trim_start_matches(|c: char| !c.is_alphanumeric());
    if bare
        .get(..4)
        .is_some_and(|s| s.eq_ignore_ascii_case("www."))
    {
        return;
    }
    let mut it = chunk.char_indices().peekable();
    let mut prev: Option<char> = None;
    let mut pending = false;
    while let Some((i, c)) = it.next() {
        let mut end = i + c.len_utf8();
        let mut last = c;
        let tok = if is_word_char(c) {
            while let Some(&(j, d)) = it.peek() {
                // An apostrophe joins only when a letter follows: `Powell's`, `O'Brien`.
                let joins = is_word_char(d)
                    || is_mark(d)
                    || (is_apostrophe(d) && {
                        let mut look = it.clone();
                        look.next();
                        look.peek()
                            .is_some_and(|&(_, e)| e.is_alphabetic() && cjk_script(e).is_none())
                    });
                if !joins {
                    break;
                }
                (end, last) = (j + d.len_utf8(), d);
                it.next();
            }
            Some(Tok::Word(&chunk[i..end]))
        } else if let Some(script) = cjk_script(c) {
            while let Some(&(j, d)) = it.peek() {
                if cjk_script(d) != Some(script) {
                    break;
                }
                (end, last) = (j + d.len_utf8(), d);
                it.next();
            }
            Some(Tok::Cjk(&chunk[i..end], script))
        } else if c == '#'
            && !prev.is_some_and(|p| is_word_char(p) || matches!(p, '&' | '/' | '_'))
            && it
                .peek()
                .is_some_and(|&(_, d)| is_word_char(d) || cjk_script(d).is_some())
        {
            while let Some(&(j, d)) = it.peek() {
                if !(is_key_char(d) || d == '-' || d == '_') {
                    break;
                }
                (end, last) = (j + d.len_utf8(), d);
                it.next();
            }
            Some(Tok::Hashtag(chunk[i + 1..end].trim_end_matches(['-', '_'])))
        } else if c == '$'
            && !prev.is_some_and(is_word_char)
            && let Some(n) = cashtag_len(it.clone())
        {
            for _ in 0..n {
                if let Some((j, d)) = it.next() {
                    (end, last) = (j + d.len_utf8(), d);
                }
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

/// Letters of a cash tag after `$`: 1–6 ASCII letters not followed by a letter, digit or `_`.
fn cashtag_len(look: impl Iterator<Item = (usize, char)>) -> Option<usize> {
    let mut n = 0;
    for (_, d) in look {
        if d.is_ascii_alphabetic() {
            n += 1;
        } else if d.is_alphanumeric() || d == '_' {
            return None;
        } else {
            break;
        }
    }
    (1..=6).contains(&n).then_some(n)
}

/// What is known about one key of a document.
struct Acc {
    /// Largest weight from tags, hashtags, tickers and the title.
    fixed: f32,
    sources: u8,
    /// Occurrences as a content word or CJK term, for the salient pools.
    freq: u32,
    chars: usize,
    pool: u8,
    cap_mid: bool,
    cap_initial: bool,
    lower: bool,
    /// Order of the first content occurrence: breaks score ties, earlier text first.
    first: u32,
}

#[derive(Default)]
struct Doc {
    map: BTreeMap<String, Acc>,
    /// The current key, reused for every token.
    key: String,
    seen: u32,
}

#[derive(Clone, Copy)]
enum Case {
    CapMid,
    CapInitial,
    Other,
}

impl Doc {
    /// Updates the entry of `self.key`, allocating the key only the first time it is seen.
    fn with(&mut self, f: impl FnOnce(&mut Acc)) {
        if let Some(acc) = self.map.get_mut(self.key.as_str()) {
            f(acc);
            return;
        }
        let mut acc = Acc {
            fixed: 0.0,
            sources: 0,
            freq: 0,
            chars: 0,
            pool: POOL_NONE,
            cap_mid: false,
            cap_initial: false,
            lower: false,
            first: u32::MAX,
        };
        f(&mut acc);
        self.map.insert(self.key.clone(), acc);
    }

    fn fixed(&mut self, weight: f32, bit: u8) {
        self.with(|a| {
            a.fixed = a.fixed.max(weight);
            a.sources |= bit;
        });
    }

    fn text(&mut self, pool: u8, chars: usize, case: Case) {
        self.seen += 1;
        let seen = self.seen;
        self.with(|a| {
            a.freq += 1;
            a.first = a.first.min(seen);
            a.sources |= TEXT;
            a.pool = a.pool.max(pool);
            a.chars = chars;
            match case {
                Case::CapMid => a.cap_mid = true,
                Case::CapInitial => a.cap_initial = true,
                Case::Other => a.lower = true,
            }
        });
    }

    /// The words of a compound tag or hashtag (`ai-safety` → `safety`) are topics too.
    fn parts(&mut self, weight: f32, bit: u8) {
        if !self.key.contains(['-', '_']) {
            return;
        }
        let whole = std::mem::take(&mut self.key);
        for part in whole.split(['-', '_']) {
            let cjk = part.chars().next().and_then(cjk_script).is_some();
            let min = if cjk { 2 } else { 3 };
            if part.chars().count() >= min && hashtag_ok(part) && !is_stop(part) {
                self.key.clear();
                self.key.push_str(part);
                self.fixed(weight, bit);
            }
        }
    }

    fn hashtag(&mut self, h: &str) {
        if push_key(h, &mut self.key) && hashtag_ok(&self.key) {
            self.fixed(W_HASHTAG, HASHTAG);
            self.parts(W_TITLE, HASHTAG);
        }
    }

    fn cashtag(&mut self, t: &str) {
        if push_key(t, &mut self.key) && !is_noise_acronym(&self.key) {
            self.fixed(W_TICKER, TICKER);
        }
    }

    fn title(&mut self, tok: Tok<'_>) {
        match tok {
            Tok::Word(w) => match classify(w, &mut self.key) {
                (Class::Drop, _) => {}
                (Class::Ticker, _) => self.fixed(W_TICKER, TITLE),
                (_, n) if n >= 3 => self.fixed(W_TITLE, TITLE),
                _ => {}
            },
            Tok::Hashtag(h) => self.hashtag(h),
            Tok::Cashtag(t) => self.cashtag(t),
            Tok::Cjk(run, script) => cjk_units(run, script, |u, whole| {
                self.key.clear();
                self.key.push_str(u);
                if whole {
                    self.fixed(W_TITLE, TITLE);
                } else if !is_stop(u) {
                    self.text(POOL_CJK, 2, Case::Other);
                }
            }),
        }
    }

    fn content(&mut self, tok: Tok<'_>, start: bool) {
        match tok {
            Tok::Word(w) => {
                let (class, n) = classify(w, &mut self.key);
                let pool = if n >= 4 { POOL_WORD } else { POOL_NONE };
                match class {
                    Class::Drop => {}
                    Class::Ticker => self.fixed(W_TICKER, TICKER),
                    Class::Capitalised if n >= 3 => {
                        self.text(
                            pool,
                            n,
                            if start {
                                Case::CapInitial
                            } else {
                                Case::CapMid
                            },
                        );
                    }
                    _ => self.text(pool, n, Case::Other),
                }
            }
            Tok::Hashtag(h) => self.hashtag(h),
            Tok::Cashtag(t) => self.cashtag(t),
            Tok::Cjk(run, script) => cjk_units(run, script, |u, _| {
                if !is_stop(u) {
                    self.key.clear();
                    self.key.push_str(u);
                    self.text(POOL_CJK, u.chars().count(), Case::Other);
                }
            }),
        }
    }

    fn finish(self) -> Vec<Topic> {
        let entries: Vec<(String, Acc)> = self.map.into_iter().collect();
        let proper = |a: &Acc| {
            if a.cap_mid {
                W_PROPER
            } else if a.cap_initial && !a.lower {
                W_PROPER_INITIAL
            } else {
                0.0
            }
        };
        let score = |a: &Acc| {
            let base = if a.pool == POOL_CJK { 2 } else { 4 };
            a.freq as f32 * (1.0 + 0.1 * a.chars.saturating_sub(base).min(5) as f32)
        };
        let in_pool = |a: &Acc| a.pool != POOL_NONE && a.freq > 0;
        let max_score = entries
            .iter()
            .filter(|(_, a)| in_pool(a))
            .map(|(_, a)| score(a));
        let max_score = max_score.fold(0.0f32, f32::max).max(1.0);
        let mut salient = vec![0.0f32; entries.len()];
        for (pool, top) in [(POOL_WORD, SALIENT_TOP), (POOL_CJK, CJK_TOP)] {
            // Keys already weighted above the salient range would only waste a slot.
            let mut picks: Vec<usize> = (0..entries.len())
                .filter(|&i| {
                    let a = &entries[i].1;
                    in_pool(a) && a.pool == pool && a.fixed.max(proper(a)) < W_SALIENT_MAX
                })
                .collect();
            picks.sort_by(|&x, &y| {
                let (a, b) = (&entries[x].1, &entries[y].1);
                score(b).total_cmp(&score(a)).then(a.first.cmp(&b.first))
            });
            for &i in picks.iter().take(top) {
                let rel = score(&entries[i].1) / max_score;
                salient[i] = W_SALIENT_MIN + (W_SALIENT_MAX - W_SALIENT_MIN) * rel;
            }
        }
        let mut out: Vec<Topic> = entries
            .into_iter()
            .zip(salient)
            .filter_map(|((name, a), s)| {
                let w = a.fixed.max(proper(&a)).max(s);
                let extra = a.sources.count_ones().saturating_sub(1) as f32 * SOURCE_BONUS;
                // Rounded so stored weights are stable and readable.
                let weight = ((w + extra).min(1.0) * 1000.0).round() / 1000.0;
                (w > 0.0).then_some(Topic { name, weight })
            })
            .collect();
        out.sort_by(|a, b| {
            b.weight
                .total_cmp(&a.weight)
                .then_with(|| a.name.cmp(&b.name))
        });
        out.truncate(MAX_TOPICS);
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const MEMORY: &str = "# NVDA note\n\n*Created: 2026-11-21 07:44:22 UTC*\n*Tags: market, nvda*\n\n---\n\nNVDA RSI at 72 overbought. Powell said the Fed may hold rates. #rates\n";

    fn weight(topics: &[Topic], name: &str) -> Option<f32> {
        topics.iter().find(|t| t.name == name).map(|t| t.weight)
    }

    fn names(topics: &[Topic]) -> Vec<&str> {
        topics.iter().map(|t| t.name.as_str()).collect()
    }

    #[test]
    fn word_lists_are_sorted_for_binary_search() {
        assert!(STOP_WORDS.windows(2).all(|w| w[0] < w[1]));
        assert!(NOISE_ACRONYMS.windows(2).all(|w| w[0] < w[1]));
        assert!(STOP_WORDS.len() >= 82);
    }

    #[test]
    fn the_stored_memory_format_yields_its_topics() {
        let tags = ["market".to_string(), "nvda".to_string()];
        let topics = extract("NVDA note", &tags, MEMORY);
        for want in [
            "market",
            "nvda",
            "rates",
            "rsi",
            "powell",
            "fed",
            "overbought",
            "note",
        ] {
            assert!(
                weight(&topics, want).is_some(),
                "{want} missing from {topics:?}"
            );
        }
        assert_eq!(weight(&topics, "market"), Some(1.0));
        assert_eq!(weight(&topics, "rates"), Some(1.0));
        assert!(topics.iter().all(|t| t.weight > 0.0 && t.weight <= 1.0));
    }

    #[test]
    fn boilerplate_lines_never_become_topics() {
        let text = format!("{MEMORY}\n*Updated: 2026-11-22 08:00:00 UTC*\n**Modified:** today\n");
        for topics in [
            extract("", &[], &text),
            extract("NVDA note", &["x".into()], &text),
        ] {
            for noise in [
                "created", "tags", "updated", "modified", "utc", "2026", "07", "44", "72",
            ] {
                assert!(weight(&topics, noise).is_none(), "{noise} in {topics:?}");
            }
        }
    }

    #[test]
    fn hashtags_are_topics_including_cjk_and_compound_ones() {
        let topics = extract("", &[], "Watching #rates and #伊朗 plus #AI-Safety today.");
        assert_eq!(weight(&topics, "rates"), Some(1.0));
        assert_eq!(weight(&topics, "伊朗"), Some(1.0));
        assert_eq!(weight(&topics, "ai-safety"), Some(1.0));
        assert_eq!(weight(&topics, "safety"), Some(0.8));
        assert!(query_topics("#ai-safety news").contains(&"ai-safety".to_string()));
        assert_eq!(normalize("AI Safety"), "ai-safety");
    }

    #[test]
    fn headings_colours_and_issue_numbers_are_not_hashtags() {
        let topics = extract(
            "",
            &[],
            "# Summary\n## Outlook\n#rates up, see #123 and #ff0000",
        );
        assert_eq!(weight(&topics, "rates"), Some(1.0));
        assert!(weight(&topics, "summary").is_some_and(|w| w < 1.0));
        assert!(weight(&topics, "outlook").is_some_and(|w| w < 1.0));
        assert!(weight(&topics, "123").is_none() && weight(&topics, "ff0000").is_none());
    }

    #[test]
    fn tickers_in_both_forms_have_lower_case_keys() {
        let topics = extract(
            "",
            &[],
            "Bought $tsla and $AMD, watching NVDA; MACD looks hot, OK? AND THE UTC",
        );
        for t in ["tsla", "amd", "nvda", "macd"] {
            assert_eq!(weight(&topics, t), Some(0.9), "{t} in {topics:?}");
        }
        for noise in ["ok", "and", "the", "utc"] {
            assert!(weight(&topics, noise).is_none());
        }
        let topics = extract("", &[], "$100 or $TOOLONGX");
        assert!(weight(&topics, "100").is_none());
        assert!(weight(&topics, "toolongx").is_some_and(|w| w < W_TICKER));
    }

    #[test]
    fn mid_sentence_proper_nouns_outweigh_sentence_initial_ones() {
        let topics = extract("", &[], "Abe spoke. Then we met Ito there.\n- Kim came by");
        assert_eq!(weight(&topics, "abe"), Some(W_PROPER_INITIAL));
        assert_eq!(weight(&topics, "kim"), Some(W_PROPER_INITIAL));
        assert_eq!(weight(&topics, "ito"), Some(W_PROPER));
        // A capitalised word also seen in lower case is an ordinary word.
        let topics = extract("", &[], "Rates rose. Rates fell as rates do.");
        assert!(weight(&topics, "rates").is_some_and(|w| w <= W_SALIENT_MAX));
    }

    #[test]
    fn stop_words_never_become_topics() {
        let text = "The This And THE AND. What they said about it is that there would be more. \
                    However, Today we don't know. It's Here.";
        let topics = extract("The And Of", &[], text);
        assert!(topics.iter().all(|t| !is_stop(&t.name)), "{topics:?}");
        assert!(weight(&topics, "don").is_none() && weight(&topics, "don't").is_none());
        assert!(query_topics("what is the").is_empty());
    }

    #[test]
    fn urls_numbers_and_dates_are_ignored() {
        let text = "See https://example.com/nvidia-earnings for 2026-11-21 07:44:22 1.5 10th a3f9c2e1b7 \
                    and www.example.org; [Fed minutes](https://x.com/fomc)";
        let got = names(&extract("", &[], text)).join(" ");
        for noise in [
            "example",
            "nvidia",
            "earnings",
            "https",
            "fomc",
            "10th",
            "a3f9c2e1b7",
            "2026",
        ] {
            assert!(!got.split(' ').any(|n| n == noise), "{noise} in {got}");
        }
        assert!(got.contains("fed") && got.contains("minutes"), "{got}");
    }

    #[test]
    fn salient_words_rank_by_frequency() {
        let text = "inflation inflation inflation is sticky; gpt4 helps; housing is sticky";
        let topics = extract("", &[], text);
        assert_eq!(weight(&topics, "inflation"), Some(0.6));
        assert!(weight(&topics, "sticky").unwrap() < 0.6);
        assert!(weight(&topics, "gpt4").is_some());
    }

    #[test]
    fn output_is_deterministic_and_independent_of_hash_order() {
        let tags = ["market".to_string(), "nvda".to_string()];
        let a = extract("NVDA note", &tags, MEMORY);
        for _ in 0..5 {
            assert_eq!(a, extract("NVDA note", &tags, MEMORY));
        }
        // A fixed expectation catches any order that varied between processes.
        let fixed = extract("", &[], "Powell met Lagarde. #rates rates");
        assert_eq!(names(&fixed), ["rates", "lagarde", "powell"]);
        assert!(
            a.windows(2).all(|w| w[0].weight > w[1].weight
                || (w[0].weight == w[1].weight && w[0].name < w[1].name))
        );
    }

    #[test]
    fn cjk_query_overlaps_cjk_document_topics() {
        let doc = extract("", &[], "伊朗军事冲突 中东局势紧张");
        let query = query_topics("中东局势");
        assert!(query.contains(&"中东局势".to_string()) && query.contains(&"中东".to_string()));
        assert!(
            query.iter().any(|q| weight(&doc, q).is_some()),
            "{query:?} vs {doc:?}"
        );
        assert!(doc.len() <= CJK_TOP);
    }

    #[test]
    fn japanese_splits_at_script_changes() {
        let topics = extract("", &[], "ビットコインの価格が上昇した");
        let got = names(&topics);
        for want in ["ビットコイン", "価格", "上昇"] {
            assert!(got.contains(&want), "{want} missing from {got:?}");
        }
        assert!(got.iter().all(|n| !n.contains('の') && !n.contains('が')));
    }

    #[test]
    fn query_topics_normalise_like_extract() {
        let q = query_topics("NVDA overbought? Powell's $TSLA #Rates NVDA 2026 a");
        assert_eq!(q, ["nvda", "overbought", "powell", "tsla", "rates"]);
        let doc = extract("", &[], MEMORY);
        assert!(q.iter().filter(|k| weight(&doc, k).is_some()).count() >= 4);
        assert_eq!(normalize("#Rates,"), "rates");
        assert_eq!(normalize("$NVDA"), "nvda");
        assert_eq!(normalize("(Powell’s)"), "powell");
        assert_eq!(normalize("ＮＶＤＡ"), "nvda");
        assert_eq!(normalize("don't"), "");
    }

    #[test]
    fn at_most_max_topics_sorted_by_weight() {
        let tags: Vec<String> = (0..40).map(|i| format!("tag{i:02}x")).collect();
        assert_eq!(extract("", &tags, "").len(), MAX_TOPICS);
        let text: String = (0..200)
            .map(|i| format!("we met Name{} ", char::from(b'a' + (i % 26) as u8)))
            .collect::<String>()
            + &(0..100)
                .map(|i| {
                    format!(
                        "word{}{} ",
                        char::from(b'a' + (i % 26) as u8),
                        "x".repeat(i / 26)
                    )
                })
                .collect::<String>();
        let topics = extract("", &[], &text);
        assert!(topics.len() <= MAX_TOPICS && !topics.is_empty());
        assert!(topics.windows(2).all(|w| w[0].weight >= w[1].weight));
    }

    #[test]
    fn empty_input_gives_no_topics() {
        assert!(extract("", &[], "").is_empty());
        assert!(extract("  ", &["".into(), "  ".into(), "#".into()], " \n\t\n---\n").is_empty());
        assert!(query_topics("").is_empty() && query_topics("  ?! ").is_empty());
        assert_eq!(normalize(""), "");
    }

    #[test]
    fn weird_unicode_never_panics() {
        let long = "a".repeat(65);
        let tricky = [
            "emoji 👩‍👩‍👧 rocket🚀launch #🚀 $🚀 #\u{200D}x",
            "cafe\u{0301} naïve \u{0301}start İstanbul ǅemal ß STRASSE Σίσυφος",
            "مرحبا بالعالم שלום עולם \u{200F}RTL\u{200E} ١٢٣ Ελλάδα",
            "# \n## \n#\n$\n$$$\n'\n’s\n'tis\nO'Brien's \u{FEFF}BOM",
            "http:// ://x https:// a://b [x](y://z) www. WWW.X.COM",
            "中文#标签#结尾 한국어 서울에서 ｶﾀｶﾅ ｰ 々〇 𠀀𠀁𠀂",
            "*Created:*\n*Tags:\n\r\n\r\0\u{7F}\u{FFFD}\u{10FFFF}",
            "ＡＢＣ１２３ ＮＶＤＡ ﾃｽﾄ",
        ];
        let joined = tricky.concat();
        assert!(weight(&extract("", &[], &format!("{long} {long}")), &long).is_none());
        assert_eq!(normalize(&long), "");
        assert_eq!(normalize(&"b".repeat(64)).len(), 64);
        for s in tricky.iter().copied().chain([joined.as_str()]) {
            for (i, _) in s.char_indices() {
                for part in [&s[i..], &s[..i]] {
                    let topics = extract(part, &[part.to_string()], part);
                    assert!(topics.len() <= MAX_TOPICS);
                    assert!(topics.iter().all(|t| t.weight > 0.0 && t.weight <= 1.0));
                    let _ = query_topics(part);
                    let _ = normalize(part);
                }
            }
        }
    }
}
