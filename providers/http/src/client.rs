//! A blocking HTTP GET that is safe to call from any thread.
//!
//! `reqwest::blocking` panics when called from inside a tokio runtime (it runs its own
//! runtime and calls `block_on`), and providers are called from FUSE threads, MCP tasks and
//! `spawn_blocking` alike. So this module keeps one process-wide async client on one small
//! runtime of its own, spawns each request there and waits for the answer on a std channel:
//! the calling thread never enters a runtime. The runtime lives in a static and is never
//! dropped (dropping a runtime from async context panics, and nothing needs to shut it down).
//!
//! The WASM host reuses [`get`] for its `http-get` import, so everything a guest can do over
//! HTTP goes through the same limits: http/https only, a timeout, a body size cap.

pub use reqwest::Url;
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::Duration;

use avm_core::{Error, ErrorKind, Result};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

/// Redirects followed per request, and only while they stay on the same host, so headers
/// carrying credentials are never sent to a host the configuration did not name.
const MAX_REDIRECTS: usize = 5;

/// Extra time the caller waits past the request's own timeout before giving up on the
/// runtime; the request future enforces the timeout itself, this only guards against a stuck
/// runtime.
const GRACE: Duration = Duration::from_secs(5);

/// One GET request.
#[derive(Clone)]
pub struct Fetch {
    /// An `http://` or `https://` URL.
    pub url: String,
    /// Request headers (name, value); values are never logged or put in error messages.
    pub headers: Vec<(String, String)>,
    /// Time allowed for the whole exchange: connect, headers and body.
    pub timeout: Duration,
    /// The largest body accepted; a longer one fails with `TooLarge`.
    pub max_bytes: u64,
}

impl std::fmt::Debug for Fetch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Header values and query strings often carry tokens: show neither.
        let url = parse_url(&self.url).map_or_else(|_| "(invalid url)".to_string(), |u| redact(&u));
        f.debug_struct("Fetch")
            .field("url", &url)
            .field(
                "headers",
                &self.headers.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .field("timeout", &self.timeout)
            .field("max_bytes", &self.max_bytes)
            .finish()
    }
}

/// What the server answered (any status; the caller decides what an error status means).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The HTTP status code.
    pub status: u16,
    /// The body, decoded as UTF-8 (invalid sequences replaced with U+FFFD).
    pub body: String,
    /// The `Content-Type` header, when present and readable.
    pub content_type: Option<String>,
    /// The `Location` header of a redirect that was not followed (see [`get_granted`]).
    pub location: Option<String>,
}

struct Shared {
    runtime: tokio::runtime::Runtime,
    client: reqwest::Client,
    /// A client that follows no redirect (its caller checks every hop).
    manual: reqwest::Client,
}

/// The process-wide runtime and client, built on first use. A failure to build them is kept
/// (as a message) so every later call reports it instead of retrying forever.
fn shared() -> Result<&'static Shared> {
    static SHARED: OnceLock<std::result::Result<Shared, String>> = OnceLock::new();
    SHARED
        .get_or_init(|| {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("avm-http")
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start the http runtime: {e}"))?;
            let policy = reqwest::redirect::Policy::custom(|attempt| {
                let next = attempt.url();
                // Same host and port (headers may carry keys meant for that service only), and
                // never from https down to plain http.
                let safe = attempt.previous().first().is_some_and(|first| {
                    first.host_str() == next.host_str()
                        && first.port_or_known_default() == next.port_or_known_default()
                        && !(first.scheme() == "https" && next.scheme() != "https")
                });
                if attempt.previous().len() > MAX_REDIRECTS || !safe {
                    attempt.stop()
                } else {
                    attempt.follow()
                }
            });
            let client = reqwest::Client::builder()
                .user_agent(concat!("avm/", env!("CARGO_PKG_VERSION")))
                .redirect(policy)
                .build()
                .map_err(|e| format!("cannot build the http client: {}", chain(&e)))?;
            let manual = reqwest::Client::builder()
                .user_agent(concat!("avm/", env!("CARGO_PKG_VERSION")))
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .map_err(|e| format!("cannot build the http client: {}", chain(&e)))?;
            Ok(Shared {
                runtime,
                client,
                manual,
            })
        })
        .as_ref()
        .map_err(|m| Error::new(ErrorKind::Unavailable, m.clone()))
}

/// The URL as it may appear in messages: no user info, no query string (both may carry
/// secrets), no fragment.
pub fn redact(url: &reqwest::Url) -> String {
    let mut u = url.clone();
    let had_query = u.query().is_some();
    u.set_query(None);
    u.set_fragment(None);
    // Setting an empty user name and no password cannot fail on http(s) URLs; if it somehow
    // did, the host-and-path form below still leaves them out.
    let _ = u.set_username("");
    let _ = u.set_password(None);
    let base = format!(
        "{}://{}{}",
        u.scheme(),
        u.host_str().unwrap_or(""),
        u.port().map(|p| format!(":{p}")).unwrap_or_default()
    );
    format!("{base}{}{}", u.path(), if had_query { "?…" } else { "" })
}

/// Parses and checks a URL: only http and https are fetched.
pub fn parse_url(raw: &str) -> Result<reqwest::Url> {
    let url = reqwest::Url::parse(raw).map_err(|e| {
        Error::invalid(format!(
            "{raw:?} is not a valid url ({e}); write http://host/path or https://host/path"
        ))
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Error::invalid(format!(
            "url scheme {:?} is not allowed; only http and https urls are fetched",
            url.scheme()
        )));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(Error::invalid(format!("url {raw:?} has no host")));
    }
    Ok(url)
}

/// Checks header names and values and builds the map. Messages name the header, never its
/// value (values often carry tokens).
pub fn header_map(headers: &[(String, String)]) -> Result<HeaderMap> {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        let n = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            Error::invalid(format!(
                "{name:?} is not a valid http header name; use letters, digits and '-'"
            ))
        })?;
        let mut v = HeaderValue::from_str(value).map_err(|_| {
            Error::invalid(format!(
                "the value of header {name:?} is not a valid http header value (control characters or non-ASCII text)"
            ))
        })?;
        // Keeps the value out of reqwest's Debug output.
        v.set_sensitive(true);
        map.append(n, v);
    }
    Ok(map)
}

/// Blocking GET. Safe to call from any thread, including a tokio worker thread or
/// `spawn_blocking`: the request runs on this module's own runtime and the caller waits on a
/// std channel.
///
/// Errors: a non-http(s) URL or a bad header is `InvalidInput`; running past `timeout` is
/// `TimedOut` naming the URL; a refused connection or failed DNS lookup is `Unavailable`; a
/// body longer than `max_bytes` is `TooLarge` (reading stops as soon as the cap is passed).
/// Error statuses are not errors here: the caller gets the status and decides.
pub fn get(f: &Fetch) -> Result<Response> {
    send(f, None, false)
}

/// [`get`] for a caller whose grants cover some URLs only (a WASM plugin's `http-get`): every
/// redirect hop must be on the first URL's host and port, never go from https to http, and be
/// `granted` itself; otherwise the fetch fails with `PermissionDenied` naming the hop. The
/// timeout covers all hops together.
pub fn get_granted(f: &Fetch, granted: &dyn Fn(&reqwest::Url) -> bool) -> Result<Response> {
    let first = parse_url(&f.url)?;
    let deadline = std::time::Instant::now() + f.timeout;
    let mut url = first.clone();
    for _ in 0..=MAX_REDIRECTS {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(timed_out(&redact(&first), f.timeout));
        }
        let hop = Fetch {
            url: url.to_string(),
            headers: f.headers.clone(),
            timeout: left,
            max_bytes: f.max_bytes,
        };
        let r = send(&hop, None, true)?;
        let Some(location) = r
            .location
            .as_deref()
            .filter(|_| (300..400).contains(&r.status))
        else {
            return Ok(r);
        };
        let next = url.join(location).map_err(|e| {
            Error::new(
                ErrorKind::Unavailable,
                format!("{} redirected to an invalid location ({e})", redact(&url)),
            )
        })?;
        let same_place = first.host_str() == next.host_str()
            && first.port_or_known_default() == next.port_or_known_default()
            && !(first.scheme() == "https" && next.scheme() != "https");
        if !same_place || !granted(&next) {
            return Err(Error::new(
                ErrorKind::PermissionDenied,
                format!(
                    "{} redirected to {}, which is not granted",
                    redact(&url),
                    redact(&next)
                ),
            ));
        }
        url = next;
    }
    Err(Error::new(
        ErrorKind::Unavailable,
        format!(
            "{} redirected more than {MAX_REDIRECTS} times",
            redact(&first)
        ),
    ))
}

/// Blocking POST of `body` (sent as `application/json` unless `f.headers` say otherwise), with
/// the same guarantees and errors as [`get`]. Used for webhook deliveries.
pub fn post(f: &Fetch, body: Vec<u8>) -> Result<Response> {
    send(f, Some(body), false)
}

fn send(f: &Fetch, body: Option<Vec<u8>>, manual: bool) -> Result<Response> {
    let url = parse_url(&f.url)?;
    let headers = header_map(&f.headers)?;
    let shared = shared()?;
    let shown = redact(&url);
    let (tx, rx) = mpsc::sync_channel(1);
    let client = if manual {
        &shared.manual
    } else {
        &shared.client
    };
    let request = match body {
        None => client.get(url).headers(headers),
        Some(b) => {
            let mut r = client.post(url);
            if !headers.contains_key(reqwest::header::CONTENT_TYPE) {
                r = r.header(reqwest::header::CONTENT_TYPE, "application/json");
            }
            r.headers(headers).body(b)
        }
    };
    let (timeout, max_bytes, label) = (f.timeout, f.max_bytes, shown.clone());
    shared.runtime.spawn(async move {
        let result = match tokio::time::timeout(timeout, exchange(request, max_bytes, &label)).await
        {
            Ok(r) => r,
            Err(_) => Err(timed_out(&label, timeout)),
        };
        // The caller may have stopped waiting; then nobody needs the answer.
        let _ = tx.send(result);
    });
    match rx.recv_timeout(f.timeout.saturating_add(GRACE)) {
        Ok(result) => result,
        Err(mpsc::RecvTimeoutError::Timeout) => Err(timed_out(&shown, f.timeout)),
        Err(mpsc::RecvTimeoutError::Disconnected) => Err(Error::internal(format!(
            "the http request to {shown} ended without an answer"
        ))),
    }
}

fn timed_out(url: &str, timeout: Duration) -> Error {
    Error::new(
        ErrorKind::TimedOut,
        format!(
            "get {url} timed out after {} ms; raise timeout_ms or check the server",
            timeout.as_millis()
        ),
    )
}

/// Sends the request and reads the body, stopping as soon as it passes `max_bytes`.
async fn exchange(request: reqwest::RequestBuilder, max_bytes: u64, url: &str) -> Result<Response> {
    let mut resp = request.send().await.map_err(|e| transport(e, url))?;
    let too_large = || {
        Error::new(
            ErrorKind::TooLarge,
            format!(
                "the response from {url} is larger than the limit of {max_bytes} bytes; raise max_bytes"
            ),
        )
    };
    if resp.content_length().is_some_and(|n| n > max_bytes) {
        return Err(too_large());
    }
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let location = resp
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| transport(e, url))? {
        if (body.len() as u64).saturating_add(chunk.len() as u64) > max_bytes {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Response {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
        content_type,
        location,
    })
}

/// Maps a transport error; the URL in the message is the redacted one, never reqwest's.
fn transport(e: reqwest::Error, url: &str) -> Error {
    let e = e.without_url();
    let why = chain(&e);
    if e.is_timeout() {
        Error::new(ErrorKind::TimedOut, format!("get {url} timed out: {why}"))
    } else if e.is_connect() {
        Error::new(
            ErrorKind::Unavailable,
            format!("cannot connect to {url}: {why}"),
        )
    } else if e.is_builder() {
        Error::invalid(format!("cannot build a request for {url}: {why}"))
    } else {
        Error::new(ErrorKind::Unavailable, format!("get {url} failed: {why}"))
    }
}

/// An error and its sources, joined, skipping repeats (hyper and reqwest often wrap the same
/// text twice).
fn chain(e: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = vec![e.to_string()];
    let mut src = e.source();
    while let Some(s) = src {
        let t = s.to_string();
        if !parts.iter().any(|p| p.contains(&t)) {
            parts.push(t);
        }
        src = s.source();
    }
    parts.join(": ")
}
