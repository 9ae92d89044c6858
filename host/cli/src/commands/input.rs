//! Reading what a command is given: addresses, content from `-c`, `-f` or stdin, `--meta`
//! and `--tags`.

use std::io::{IsTerminal, Read};

use serde_json::Value;

use avm_core::{Content, Error, ErrorKind, Result};

use crate::cli::ContentArgs;

/// Builds an address from a path, a suffix and query pairs, keeping the user's path exactly.
pub(crate) fn addr(path: &str, suffix: &str, pairs: &[(&str, String)]) -> Result<String> {
    avm_core::address::suffixed(path, suffix, pairs)
}

/// Reads text from `-c`, `-f` or stdin, refusing more than `max` bytes and non-UTF-8 (for
/// memories, messages and everything else that must be text).
pub(crate) fn content(input: &ContentArgs, max: u64) -> Result<String> {
    let (buf, from) = raw_content(input, max)?;
    String::from_utf8(buf).map_err(|e| {
        Error::invalid(format!(
            "{from} is not valid UTF-8 (invalid byte at offset {}); memories are text — convert it first (e.g. iconv), or store the file as it is with `avm write`",
            e.utf8_error().valid_up_to()
        ))
    })
}

/// Reads content from `-c`, `-f` or stdin as it is: text, or bytes kept exactly (`avm write`
/// and `avm append` store any file).
pub(crate) fn any_content(input: &ContentArgs, max: u64) -> Result<Content> {
    if let Some(c) = &input.content {
        return raw_content(input, max).map(|_| Content::from(c.as_str()));
    }
    Ok(Content::from_bytes(raw_content(input, max)?.0))
}

/// The bytes of `-c`, `-f` or stdin (at most `max`), and where they came from.
fn raw_content(input: &ContentArgs, max: u64) -> Result<(Vec<u8>, String)> {
    let too_large = |n: u64, from: &str| {
        Error::new(
            ErrorKind::TooLarge,
            format!(
                "content from {from} is {n} bytes or more; the limit is {max} bytes (max_node_bytes in config); nothing was written"
            ),
        )
    };
    if let Some(c) = &input.content {
        if c.len() as u64 > max {
            return Err(too_large(c.len() as u64, "-c"));
        }
        return Ok((c.clone().into_bytes(), "-c".to_string()));
    }
    let (mut reader, from): (Box<dyn Read>, String) = match &input.file {
        Some(f) => {
            let file = std::fs::File::open(f).map_err(|e| {
                Error::new(
                    ErrorKind::NotFound,
                    format!("cannot read {}: {e}", f.display()),
                )
            })?;
            if let Ok(m) = file.metadata()
                && m.len() > max
            {
                return Err(too_large(m.len(), &f.display().to_string()));
            }
            (Box::new(file), f.display().to_string())
        }
        None => {
            if std::io::stdin().is_terminal() {
                return Err(Error::invalid(
                    "no content given: pass -c TEXT, -f FILE, or pipe it on stdin",
                ));
            }
            (Box::new(std::io::stdin()), "stdin".to_string())
        }
    };
    let mut buf = Vec::new();
    reader
        .by_ref()
        .take(max.saturating_add(1))
        .read_to_end(&mut buf)
        .map_err(|e| Error::new(ErrorKind::Unavailable, format!("cannot read {from}: {e}")))?;
    if buf.len() as u64 > max {
        return Err(too_large(buf.len() as u64, &from));
    }
    Ok((buf, from))
}

pub(super) fn parse_meta(s: &str) -> Result<serde_json::Map<String, Value>> {
    match serde_json::from_str::<Value>(s) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(Error::invalid(format!(
            "--meta must be a JSON object such as '{{\"source\":\"web\"}}', got {s}"
        ))),
        Err(e) => Err(Error::invalid(format!(
            "--meta is not valid JSON ({e}); give an object such as '{{\"source\":\"web\"}}'"
        ))),
    }
}

pub(super) fn split_tags(s: &str) -> Vec<String> {
    s.split(',')
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect()
}
