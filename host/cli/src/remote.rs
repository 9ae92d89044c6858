//! The CLI's way to a running `avm serve`: a Unix socket beside the database (`<db>.sock`,
//! owner-only), speaking the HTTP API. Reads that benefit from a warm server (recall, browse,
//! topics, timeline, explore, ask, who-knows) go there when it answers, so they do not load the
//! tokenizer, the vector index or the embedding model again; when no server answers, or with
//! `AVM_NO_SERVER=1`, the CLI reads the database itself, as it always can.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use avm_core::{Caller, Error, ErrorKind, Output, Result};

/// Where `avm serve` listens for the CLI: `<db>.sock`.
pub fn socket_path(db: &Path) -> PathBuf {
    let mut s = db.as_os_str().to_os_string();
    s.push(".sock");
    PathBuf::from(s)
}

/// Characters left as they are in the path of a request line.
const PATH_SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'/')
    .remove(b':')
    .remove(b'@')
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Reads one HTTP/1.1 response: its status code and body (by Content-Length, else to the end
/// of the stream).
pub fn read_response(r: &mut impl BufRead) -> std::io::Result<(u16, Vec<u8>)> {
    let mut status = String::new();
    r.read_line(&mut status)?;
    let code: u16 = status
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP status line: {status:?}")))?;
    let mut length: Option<usize> = None;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            length = v.trim().parse().ok();
        }
    }
    let mut body = Vec::new();
    match length {
        Some(n) => {
            body.resize(n, 0);
            r.read_exact(&mut body)?;
        }
        None => {
            r.read_to_end(&mut body)?;
        }
    }
    Ok((code, body))
}

/// Reads `address` as `caller` through the server on `db`'s socket: `None` when no server
/// answers there (the caller then reads directly), else what the server said.
pub fn read(db: &Path, caller: &Caller, address: &str) -> Option<Result<Output>> {
    if std::env::var_os("AVM_NO_SERVER").is_some_and(|v| !v.is_empty() && v != "0") {
        return None;
    }
    let sock = socket_path(db);
    let mut stream = UnixStream::connect(&sock).ok()?;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(300)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(10)));
    let (path, query) = match address.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (address, None),
    };
    let mut target = format!(
        "/v1/nodes/{}",
        percent_encoding::utf8_percent_encode(path.trim_start_matches('/'), PATH_SET)
    );
    if let Some(q) = query {
        target.push('?');
        target.push_str(q);
    }
    let agent = match caller.agent() {
        Some(a) => format!("X-Avm-Agent: {a}\r\n"),
        None => String::new(),
    };
    let request = format!(
        "GET {target} HTTP/1.1\r\nHost: avm\r\n{agent}Accept: application/json\r\nConnection: close\r\n\r\n"
    );
    // A socket that accepts but cannot take the request is a server going away: read directly.
    stream.write_all(request.as_bytes()).ok()?;
    let (code, body) = read_response(&mut BufReader::new(stream)).ok()?;
    let v: Value = serde_json::from_slice(&body).ok()?;
    if code == 200 {
        let text = v["text"].as_str().unwrap_or("").to_string();
        return Some(Ok(Output::new(text, v["data"].clone())));
    }
    let kind = v["error"]["kind"].as_str().unwrap_or("internal");
    let message = v["error"]["message"]
        .as_str()
        .unwrap_or("the server gave no reason")
        .to_string();
    let kind = ErrorKind::ALL
        .into_iter()
        .find(|k| k.as_str() == kind)
        .unwrap_or(ErrorKind::Internal);
    Some(Err(Error::new(kind, message)))
}
