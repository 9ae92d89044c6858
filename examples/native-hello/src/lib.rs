//! native-hello: an example avm native plugin (ABI version 1, see
//! `providers/native/avm_native.h`).
//!
//! * a read of `…/hello/{name}` answers `Hello, {name}!\n`;
//! * anything else is a small in-memory store: write a path, read it back, list directories;
//! * three hooks exist for avm's own tests: a read of `…/fail/{code}` fails with that error
//!   code, a read of `…/big/{n}` answers `n` bytes, and a read of `…/echo/{anything}` answers
//!   the request JSON as the host sent it.
//!
//! Build: `cargo build --release` here, then mount it:
//!
//! ```toml
//! [[mounts]]
//! pattern = "/native/**"
//! type = "native"
//! options = { library = "examples/native-hello/target/release/libnative_hello.so" }
//! ```
//!
//! The host may call every function from several threads at once, so the store sits behind a
//! mutex; and no panic may unwind into the host, so every entry point catches them.

#![cfg_attr(feature = "read-only", allow(dead_code))]

use std::collections::BTreeMap;
use std::ffi::{CStr, CString, c_char};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Mutex;

/// The ABI this plugin implements.
const ABI_VERSION: u32 = if cfg!(feature = "abi-v2") { 2 } else { 1 };

/// Error codes: avm's error kinds in declaration order, from 1.
const NOT_FOUND: i32 = 1;
const READ_ONLY: i32 = 7;
const INVALID_INPUT: i32 = 8;
const UNSUPPORTED: i32 = 9;
const INTERNAL: i32 = 14;

/// Written content by full path.
static STORE: Mutex<BTreeMap<String, String>> = Mutex::new(BTreeMap::new());

/// The ABI version implemented; the host refuses any other.
#[unsafe(no_mangle)]
pub extern "C" fn avm_native_abi_version() -> u32 {
    ABI_VERSION
}

/// One line describing the plugin (a static string, never freed).
#[unsafe(no_mangle)]
pub extern "C" fn avm_native_describe() -> *const c_char {
    c"native-hello: greets …/hello/{name} and stores what is written elsewhere".as_ptr()
}

/// Reads `request.path`.
///
/// # Safety
/// `request` must be a NUL-terminated string and `out` a valid pointer to write to.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn avm_native_read(request: *const c_char, out: *mut *mut c_char) -> i32 {
    // SAFETY: the caller guarantees `request` and `out` per the ABI.
    unsafe { entry(request, out, |req| read(&req)) }
}

/// Stores `content` at `request.path`.
///
/// # Safety
/// `request` and `content` must be NUL-terminated strings and `out` a valid pointer.
#[cfg(not(feature = "read-only"))]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn avm_native_write(
    request: *const c_char,
    content: *const c_char,
    out: *mut *mut c_char,
) -> i32 {
    if content.is_null() {
        // SAFETY: the caller guarantees `out` is valid.
        return unsafe { answer(out, Err((INVALID_INPUT, "no content".into()))) };
    }
    // SAFETY: the caller guarantees `content` is NUL-terminated and lives through the call.
    let content = unsafe { CStr::from_ptr(content) }
        .to_string_lossy()
        .into_owned();
    // SAFETY: the caller guarantees `request` and `out` per the ABI.
    unsafe { entry(request, out, move |req| write(&req, content)) }
}

/// Lists the names below `request.path` as a JSON array; directories end in `/`.
///
/// # Safety
/// `request` must be a NUL-terminated string and `out` a valid pointer to write to.
#[cfg(not(feature = "read-only"))]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn avm_native_list(request: *const c_char, out: *mut *mut c_char) -> i32 {
    // SAFETY: the caller guarantees `request` and `out` per the ABI.
    unsafe { entry(request, out, |req| list(&req)) }
}

/// Frees a string this plugin returned through `out`.
///
/// # Safety
/// `s` must be null or a pointer this plugin returned and that was not freed yet.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn avm_native_free(s: *mut c_char) {
    if !s.is_null() {
        // SAFETY: every string handed out comes from `CString::into_raw` (in `answer`).
        drop(unsafe { CString::from_raw(s) });
    }
}

type Answer = Result<String, (i32, String)>;

/// The parts of a request this plugin uses.
struct Req {
    path: String,
    suffix: Option<String>,
    /// The request JSON as received.
    raw: String,
}

/// Parses the request, runs `f` without letting a panic escape, and hands the answer out.
///
/// # Safety
/// As for the exported functions.
unsafe fn entry(
    request: *const c_char,
    out: *mut *mut c_char,
    f: impl FnOnce(Req) -> Answer,
) -> i32 {
    if out.is_null() {
        return INVALID_INPUT;
    }
    let result = if request.is_null() {
        Err((INVALID_INPUT, "no request".to_string()))
    } else {
        // SAFETY: the caller guarantees a NUL-terminated request that outlives the call.
        let text = unsafe { CStr::from_ptr(request) }.to_string_lossy();
        match parse_request(&text) {
            Some(req) => catch_unwind(AssertUnwindSafe(|| f(req)))
                .unwrap_or_else(|_| Err((INTERNAL, "native-hello panicked".to_string()))),
            None => Err((INVALID_INPUT, format!("cannot parse request {text}"))),
        }
    };
    // SAFETY: `out` is non-null and valid per the caller.
    unsafe { answer(out, result) }
}

/// Writes the text (content or error message) to `*out` and returns the code.
///
/// # Safety
/// `out` must be a valid pointer to write to.
unsafe fn answer(out: *mut *mut c_char, result: Answer) -> i32 {
    let (code, text) = match result {
        Ok(t) => (0, t),
        Err((c, m)) => (c, m),
    };
    // Interior NULs cannot cross a C string; replace them rather than fail.
    let text = CString::new(text.replace('\0', "\u{fffd}")).unwrap_or_default();
    // SAFETY: the caller guarantees `out` is valid for writes.
    unsafe { *out = text.into_raw() };
    code
}

fn read(req: &Req) -> Answer {
    if basename(split(&req.path).0) == "echo" {
        return Ok(req.raw.clone());
    }
    if let Some(s) = &req.suffix {
        return Err((
            UNSUPPORTED,
            format!("native-hello serves no suffixes (:{s})"),
        ));
    }
    let (parent, name) = split(&req.path);
    match basename(parent) {
        "hello" if !name.is_empty() => return Ok(format!("Hello, {name}!\n")),
        "fail" => {
            let code = name.parse().unwrap_or(INTERNAL);
            return Err((code, format!("failing with code {code} on purpose")));
        }
        "big" => return Ok("x".repeat(name.parse().unwrap_or(0))),
        _ => {}
    }
    let store = STORE.lock().unwrap_or_else(|p| p.into_inner());
    store
        .get(&req.path)
        .cloned()
        .ok_or_else(|| (NOT_FOUND, format!("no such node: {}", req.path)))
}

#[cfg(not(feature = "read-only"))]
fn write(req: &Req, content: String) -> Answer {
    if let Some(s) = &req.suffix {
        return Err((
            UNSUPPORTED,
            format!("native-hello serves no suffixes (:{s})"),
        ));
    }
    if basename(split(&req.path).0) == "hello" {
        return Err((
            READ_ONLY,
            format!("{} is a greeting; write elsewhere", req.path),
        ));
    }
    let mut store = STORE.lock().unwrap_or_else(|p| p.into_inner());
    store.insert(req.path.clone(), content.clone());
    Ok(content)
}

#[cfg(not(feature = "read-only"))]
fn list(req: &Req) -> Answer {
    let prefix = if req.path.ends_with('/') {
        req.path.clone()
    } else {
        format!("{}/", req.path)
    };
    let store = STORE.lock().unwrap_or_else(|p| p.into_inner());
    let mut names: Vec<String> = Vec::new();
    for key in store.keys() {
        if let Some(rest) = key.strip_prefix(&prefix) {
            let name = match rest.split_once('/') {
                Some((dir, _)) => format!("{dir}/"),
                None => rest.to_string(),
            };
            if names.last() != Some(&name) {
                names.push(name);
            }
        }
    }
    if names.is_empty() && basename(&req.path) != "hello" {
        return Err((NOT_FOUND, format!("no such directory: {}", req.path)));
    }
    let quoted: Vec<String> = names.iter().map(|n| quote(n)).collect();
    Ok(format!("[{}]", quoted.join(",")))
}

/// `(parent, last segment)` of a path.
fn split(path: &str) -> (&str, &str) {
    path.rsplit_once('/').unwrap_or(("", path))
}

fn basename(path: &str) -> &str {
    split(path).1
}

/// A JSON string literal.
fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Reads `path` and `suffix` from the request object. This is a small JSON reader so the
/// plugin needs no dependencies; a real plugin would use serde_json.
fn parse_request(text: &str) -> Option<Req> {
    let mut p = Json {
        s: text.as_bytes(),
        i: 0,
    };
    let mut path = None;
    let mut suffix = None;
    p.ws();
    p.eat(b'{')?;
    p.ws();
    if p.peek() == Some(b'}') {
        return None;
    }
    loop {
        p.ws();
        let key = p.string()?;
        p.ws();
        p.eat(b':')?;
        p.ws();
        match key.as_str() {
            "path" => path = Some(p.string()?),
            "suffix" if p.peek() == Some(b'"') => suffix = Some(p.string()?),
            _ => p.skip_value()?,
        }
        p.ws();
        match p.next()? {
            b',' => continue,
            b'}' => break,
            _ => return None,
        }
    }
    Some(Req {
        path: path?,
        suffix,
        raw: text.to_string(),
    })
}

struct Json<'a> {
    s: &'a [u8],
    i: usize,
}

impl Json<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.i += 1;
        Some(c)
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        (self.next()? == c).then_some(())
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn string(&mut self) -> Option<String> {
        self.eat(b'"')?;
        let mut out: Vec<u8> = Vec::new();
        loop {
            match self.next()? {
                b'"' => return String::from_utf8(out).ok(),
                b'\\' => {
                    let c = match self.next()? {
                        b'n' => '\n',
                        b't' => '\t',
                        b'r' => '\r',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'u' => {
                            let hi = self.hex4()?;
                            if (0xd800..0xdc00).contains(&hi) {
                                self.eat(b'\\')?;
                                self.eat(b'u')?;
                                let lo = self.hex4()?;
                                char::from_u32(
                                    0x10000 + ((hi - 0xd800) << 10) + (lo.checked_sub(0xdc00)?),
                                )?
                            } else {
                                char::from_u32(hi)?
                            }
                        }
                        c => c as char,
                    };
                    out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                }
                c => out.push(c),
            }
        }
    }

    fn hex4(&mut self) -> Option<u32> {
        let h = std::str::from_utf8(self.s.get(self.i..self.i + 4)?).ok()?;
        self.i += 4;
        u32::from_str_radix(h, 16).ok()
    }

    fn skip_value(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(|_| ()),
            open @ (b'{' | b'[') => {
                let close = if open == b'{' { b'}' } else { b']' };
                self.i += 1;
                loop {
                    self.ws();
                    if self.peek()? == close {
                        self.i += 1;
                        return Some(());
                    }
                    self.skip_value()?;
                    self.ws();
                    match self.next()? {
                        b',' | b':' => {}
                        c if c == close => return Some(()),
                        _ => return None,
                    }
                }
            }
            _ => {
                while !matches!(
                    self.peek()?,
                    b',' | b'}' | b']' | b' ' | b'\n' | b'\r' | b'\t'
                ) {
                    self.i += 1;
                }
                Some(())
            }
        }
    }
}
