//! Rust: `fn` (with any of `pub(…)`, `const`, `async`, `unsafe`, `extern "…"`), `struct`,
//! `enum`, `union`, `trait`, `impl`, `type`, `mod` and `macro_rules!`.
//!
//! A brace stack records what each `{` opened, so functions inside `impl`/`trait` blocks are
//! methods, associated types of an `impl` are left out, and items declared inside function
//! bodies (or macro invocations) are skipped.

use std::sync::LazyLock;

use regex::Regex;

use super::{Brackets, Signature, Source, compile, find_top, finish, lex::Syntax, word_at};

const BR: Brackets = Brackets { angles: true };

/// Attributes, visibility and qualifiers, then the item keyword (group `kw`) and name.
static ITEM: LazyLock<Regex> = LazyLock::new(|| {
    compile(
        r#"^\s*(?:#!?\[.*?\]\s*)*(?:pub(?:\s*\([^)]*\))?\s+)?(?:(?:default|const|async|unsafe|safe|auto)\s+|extern\s+(?:"[^"]*"\s+)?)*(?P<kw>fn|struct|enum|union|trait|type|mod)\s+(?:r#)?(?P<name>[A-Za-z_][A-Za-z0-9_]*)"#,
    )
});

static IMPL: LazyLock<Regex> =
    LazyLock::new(|| compile(r"^\s*(?:#!?\[.*?\]\s*)*(?:unsafe\s+)?impl\b"));

static MACRO: LazyLock<Regex> = LazyLock::new(|| {
    compile(r"^\s*(?:#!?\[.*?\]\s*)*macro_rules!\s*(?P<name>[A-Za-z_][A-Za-z0-9_]*)")
});

/// An `extern "C" {` block: its functions are declarations worth listing.
static EXTERN_BLOCK: LazyLock<Regex> =
    LazyLock::new(|| compile(r#"^\s*(?:unsafe\s+)?extern\s+(?:"[^"]*"\s*)?\{"#));

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    Mod,
    Impl,
    Trait,
    Extern,
    Fn,
    /// Struct/enum bodies, macro bodies, expressions: nothing inside is listed.
    Other,
}

impl Block {
    /// Items listed inside this block show as nested by one level.
    fn is_container(self) -> bool {
        matches!(
            self,
            Block::Mod | Block::Impl | Block::Trait | Block::Extern
        )
    }
}

/// Signatures of a Rust source file.
pub fn extract(src: &str) -> Vec<Signature> {
    let s = Source::new(src, Syntax::Rust);
    let mut out = Vec::new();
    let mut stack: Vec<Block> = Vec::new();
    let mut pending: Option<Block> = None;
    let mut parens = 0i64;
    let mut angles = 0i64;
    for i in 0..s.len() {
        let m = s.masked[i].as_str();
        let listable = stack.iter().all(|b| b.is_container());
        if listable && parens == 0 {
            let inside = stack.last().copied();
            if let Some((sig, block)) = item(&s, i, inside, stack.len()) {
                pending = Some(block);
                angles = 0;
                if let Some(sig) = sig {
                    out.push(sig);
                }
            }
        }
        let bytes = m.as_bytes();
        for (k, &c) in bytes.iter().enumerate() {
            match c {
                b'(' | b'[' => parens += 1,
                b')' | b']' => parens = (parens - 1).max(0),
                // Generic parameters of a pending header may hold braces (`<T extends { id:
                // string }>`), which must not be taken for the body.
                b'<' if pending.is_some() => angles += 1,
                b'>' if pending.is_some() && !(k > 0 && matches!(bytes[k - 1], b'-' | b'=')) => {
                    angles = (angles - 1).max(0);
                }
                b'{' => {
                    let b = if parens == 0 && angles == 0 {
                        pending.take()
                    } else {
                        None
                    };
                    stack.push(b.unwrap_or(Block::Other));
                }
                b'}' => {
                    stack.pop();
                }
                b';' if parens == 0 => pending = None,
                _ => {}
            }
        }
    }
    out
}

/// The item starting on line `i`, if any: its signature (none for blocks that are not listed
/// themselves) and what its `{` will open.
fn item(
    s: &Source,
    i: usize,
    inside: Option<Block>,
    depth: usize,
) -> Option<(Option<Signature>, Block)> {
    let m = s.masked[i].as_str();
    let depth = u32::try_from(depth).unwrap_or(u32::MAX);
    let line = u32::try_from(i + 1).unwrap_or(u32::MAX);
    if EXTERN_BLOCK.is_match(m) {
        return Some((None, Block::Extern));
    }
    if let Some(c) = ITEM.captures(m) {
        let kw = c.name("kw").map_or("", |x| x.as_str());
        let name = c.name("name").map_or("", |x| x.as_str()).to_string();
        let in_impl = matches!(inside, Some(Block::Impl | Block::Trait));
        // Associated types of an impl only restate the trait; the trait's own are listed.
        if kw == "type" && inside == Some(Block::Impl) {
            return Some((None, Block::Other));
        }
        let (kind, block) = match kw {
            "fn" if in_impl => ("method", Block::Fn),
            "fn" => ("fn", Block::Fn),
            "trait" => ("trait", Block::Trait),
            "mod" => ("mod", Block::Mod),
            other => (other, Block::Other),
        };
        return Some((Some(sig(s, i, line, kind, name, depth)), block));
    }
    if IMPL.is_match(m) {
        let text = text_of(s, i);
        let name = impl_target(&text);
        let sig = Signature {
            line,
            kind: "impl".into(),
            name,
            depth,
            text,
        };
        return Some((Some(sig), Block::Impl));
    }
    if let Some(c) = MACRO.captures(m) {
        let name = c.name("name").map_or("", |x| x.as_str()).to_string();
        return Some((Some(sig(s, i, line, "macro", name, depth)), Block::Other));
    }
    None
}

fn sig(s: &Source, i: usize, line: u32, kind: &str, name: String, depth: u32) -> Signature {
    Signature {
        line,
        kind: kind.into(),
        name,
        depth,
        text: text_of(s, i),
    }
}

/// The declaration from line `i`, joined across lines, cut before its body, `;` or `where`.
fn text_of(s: &Source, i: usize) -> String {
    let j = s.join(i, BR);
    let at = find_top(&j.masked, BR, |b, k| {
        matches!(b[k], b'{' | b';') || word_at(b, k, b"where")
    });
    finish(&j.orig, at)
}

/// `impl<T> Display for Foo<T>` → `Display for Foo<T>`.
fn impl_target(text: &str) -> String {
    let rest = text
        .trim_start_matches("unsafe ")
        .trim_start_matches("impl")
        .trim_start();
    let rest = if rest.starts_with('<') {
        let mut depth = 0i32;
        let mut end = rest.len();
        let b = rest.as_bytes();
        for (k, &c) in b.iter().enumerate() {
            match c {
                b'<' => depth += 1,
                b'>' if !(k > 0 && b[k - 1] == b'-') => {
                    depth -= 1;
                    if depth == 0 {
                        end = k + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        rest.get(end..).unwrap_or("")
    } else {
        rest
    };
    rest.trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(src: &str) -> Vec<(u32, String, String, u32)> {
        extract(src)
            .into_iter()
            .map(|s| (s.line, s.kind, s.text, s.depth))
            .collect()
    }

    #[test]
    fn functions_with_every_qualifier_are_found() {
        let src = r#"
pub fn plain(a: i32) -> i32 { a }
fn private() {}
pub(crate) async fn fetch(url: &str) -> Result<String> {
    get(url).await
}
pub const fn answer() -> u32 { 42 }
pub unsafe extern "C" fn callback(x: *mut u8) {}
async unsafe fn both() {}
pub(in crate::a) fn scoped() {}
#[inline] pub fn attributed() {}
fn r#type() {}
"#;
        let t = texts(src);
        let shown: Vec<&str> = t.iter().map(|x| x.2.as_str()).collect();
        assert_eq!(
            shown,
            vec![
                "pub fn plain(a: i32) -> i32",
                "fn private()",
                "pub(crate) async fn fetch(url: &str) -> Result<String>",
                "pub const fn answer() -> u32",
                "pub unsafe extern \"C\" fn callback(x: *mut u8)",
                "async unsafe fn both()",
                "pub(in crate::a) fn scoped()",
                "#[inline] pub fn attributed()",
                "fn r#type()",
            ]
        );
        assert_eq!(t[0].0, 2);
        let names: Vec<String> = extract(src).into_iter().map(|s| s.name).collect();
        assert_eq!(names[8], "type");
    }

    #[test]
    fn a_signature_spanning_lines_is_joined_and_its_where_clause_dropped() {
        let src = "pub fn convert<T, U>(\n    input: T,\n    extra: Option<U>,\n) -> Result<U, Error>\nwhere\n    T: Into<U>,\n    U: Clone,\n{\n    todo!()\n}\n";
        let t = texts(src);
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].0, 1);
        assert_eq!(
            t[0].2,
            "pub fn convert<T, U>(input: T, extra: Option<U>) -> Result<U, Error>"
        );
    }

    #[test]
    fn generics_spanning_lines_are_joined() {
        let src = "pub fn build<\n    T: Clone,\n>(x: T) -> T {\n    x\n}\n";
        assert_eq!(texts(src)[0].2, "pub fn build<T: Clone>(x: T) -> T");
    }

    #[test]
    fn types_traits_impls_modules_and_macros_are_found() {
        let src = r#"
pub struct Point { x: i32, y: i32 }
struct Unit;
pub enum Shape {
    Circle { r: f64 },
}
pub trait Draw {
    type Output;
    fn draw(&self) -> Self::Output;
    fn default_impl(&self) {}
}
impl Draw for Point {
    type Output = ();
    fn draw(&self) {}
}
impl<T: Clone> From<T> for Wrapper<T> {
    fn from(t: T) -> Self { Wrapper(t) }
}
pub type Alias = Vec<u8>;
mod inner;
pub mod tests {
    fn helper() {}
}
macro_rules! my_macro {
    ($x:expr) => { fn generated() {} };
}
"#;
        let t = texts(src);
        let got: Vec<(&str, &str, u32)> = t
            .iter()
            .map(|x| (x.1.as_str(), x.2.as_str(), x.3))
            .collect();
        assert_eq!(
            got,
            vec![
                ("struct", "pub struct Point", 0),
                ("struct", "struct Unit", 0),
                ("enum", "pub enum Shape", 0),
                ("trait", "pub trait Draw", 0),
                ("type", "type Output", 1),
                ("method", "fn draw(&self) -> Self::Output", 1),
                ("method", "fn default_impl(&self)", 1),
                ("impl", "impl Draw for Point", 0),
                ("method", "fn draw(&self)", 1),
                ("impl", "impl<T: Clone> From<T> for Wrapper<T>", 0),
                ("method", "fn from(t: T) -> Self", 1),
                ("type", "pub type Alias = Vec<u8>", 0),
                ("mod", "mod inner", 0),
                ("mod", "pub mod tests", 0),
                ("fn", "fn helper()", 1),
                ("macro", "macro_rules! my_macro", 0),
            ]
        );
        let impls: Vec<String> = extract(src)
            .into_iter()
            .filter(|s| s.kind == "impl")
            .map(|s| s.name)
            .collect();
        assert_eq!(impls, vec!["Draw for Point", "From<T> for Wrapper<T>"]);
    }

    #[test]
    fn comments_strings_and_function_bodies_hide_fake_items() {
        let src = r##"
// fn fake() {}
/// pub fn documented_fake() {}
/* fn block_fake() {} */
const FIXTURE: &str = r#"
pub fn in_a_string() {}
"#;
pub fn real() {
    fn nested_helper() {}
    let s = "fn quoted() {";
    struct Local;
}
pub fn after() {}
"##;
        let t = texts(src);
        let shown: Vec<&str> = t.iter().map(|x| x.2.as_str()).collect();
        assert_eq!(shown, vec!["pub fn real()", "pub fn after()"]);
    }

    #[test]
    fn braces_in_generic_parameters_do_not_open_the_body() {
        let src = "impl<const N: usize, T: Into<[u8; { N }]>> Buf<N> {\n    fn len(&self) -> usize { N }\n}\n";
        let t = texts(src);
        assert_eq!(t[1].1, "method");
        assert_eq!(t[1].2, "fn len(&self) -> usize");
    }

    #[test]
    fn extern_blocks_list_their_declarations() {
        let src = "extern \"C\" {\n    fn abs(x: i32) -> i32;\n}\nfn after() {}\n";
        let t = texts(src);
        assert_eq!(t[0].2, "fn abs(x: i32) -> i32");
        assert_eq!(t[0].3, 1);
        assert_eq!(t[1].2, "fn after()");
        assert_eq!(t[1].3, 0);
    }

    #[test]
    fn very_long_signatures_are_shortened() {
        let params: Vec<String> = (0..40).map(|k| format!("arg{k}: u64")).collect();
        let src = format!("pub fn many({}) {{}}\n", params.join(", "));
        let t = texts(&src);
        assert_eq!(t[0].2.chars().count(), super::super::MAX_SIG_CHARS);
        assert!(t[0].2.starts_with("pub fn many(arg0: u64"));
    }
}
