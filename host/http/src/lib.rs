//! avm-http: the HTTP API over the host.
//!
//! JSON in and out; every error is `{"error":{"kind","message"}}` with the status chosen in
//! one place ([`status`]). Identity: `Authorization: Bearer <key>` (per-agent keys from
//! `avm key create`) acts as the key's agent. On a loopback-only server a request without a
//! key acts as the operator, or as the agent named by `X-Avm-Agent`; a server bound to any
//! other address requires a key on every request (401 without one). A key plus an
//! `X-Avm-Agent` naming someone else is 403. Host calls run on the blocking pool.

pub mod keys;
pub mod openapi;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use avm_core::address::Query;
use avm_core::{
    Caller, Content, Error, ErrorKind, Host, ListOptions, Output, Put, RemoveOptions,
    SearchOptions, WriteInput,
};

pub use keys::KeyStore;

/// What the handlers share.
pub struct HttpState {
    /// The host (rights are checked there).
    pub host: Arc<Host>,
    /// API keys.
    pub keys: Arc<KeyStore>,
    /// Every request needs a key (the server listens beyond loopback).
    pub require_key: bool,
    /// Largest accepted request body, in bytes.
    pub max_body: usize,
    /// The names a request's `Host` (and a browser's `Origin`) may carry; `None` accepts any
    /// (a server bound to every address, where every request needs a key anyway).
    pub hosts: Option<Vec<String>>,
    /// How long a request's body may take to arrive.
    pub body_timeout: Duration,
    /// How long a request's head may take to arrive, and how long an idle kept-alive
    /// connection stays open.
    pub header_timeout: Duration,
}

/// The `Host` names a server bound to `addr` accepts: `localhost`, the loopback addresses and the
/// bound address, plus `extra` (configured names, e.g. `avm.internal`); `None` (any) for a
/// server bound to every address with no names configured.
pub fn allowed_hosts(addr: std::net::SocketAddr, extra: &[String]) -> Option<Vec<String>> {
    if addr.ip().is_unspecified() && extra.is_empty() {
        return None;
    }
    let mut hosts: Vec<String> = ["localhost", "127.0.0.1", "::1"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    hosts.push(addr.ip().to_string());
    hosts.extend(extra.iter().map(|h| h.to_ascii_lowercase()));
    Some(hosts)
}

/// The host name of a `Host` header value or of an origin's authority, without port or
/// brackets, lower-cased (`[::1]:7420` → `::1`).
fn host_name(authority: &str) -> String {
    let a = authority.trim();
    let name = if let Some(rest) = a.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        match a.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !h.contains(':') => h,
            _ => a,
        }
    };
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// An API failure: an avm error, or missing/invalid credentials.
#[derive(Debug)]
pub enum ApiError {
    /// An error from avm.
    Avm(Error),
    /// No key where one is required, or a key that is not valid (401).
    Unauthorized(String),
    /// A request refused before it reaches the API: a foreign `Host` or `Origin` (403), a body
    /// that is not JSON where JSON is required (415), a body too slow to arrive (408).
    Refused(StatusCode, String),
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError::Avm(e)
    }
}

/// The one place avm error kinds become HTTP statuses.
pub fn status(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::NotADirectory | ErrorKind::IsADirectory => StatusCode::CONFLICT,
        ErrorKind::AlreadyExists | ErrorKind::NotEmpty => StatusCode::CONFLICT,
        ErrorKind::PermissionDenied => StatusCode::FORBIDDEN,
        ErrorKind::ReadOnly => StatusCode::METHOD_NOT_ALLOWED,
        ErrorKind::InvalidInput => StatusCode::BAD_REQUEST,
        ErrorKind::Unsupported => StatusCode::NOT_IMPLEMENTED,
        ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::StorageFull => StatusCode::INSUFFICIENT_STORAGE,
        ErrorKind::Busy | ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::TimedOut => StatusCode::GATEWAY_TIMEOUT,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (code, kind, message) = match self {
            ApiError::Avm(e) => (status(e.kind()), e.kind().as_str(), e.message().to_string()),
            ApiError::Unauthorized(m) => (StatusCode::UNAUTHORIZED, "unauthorized", m),
            ApiError::Refused(code, m) => (
                code,
                match code {
                    StatusCode::FORBIDDEN => ErrorKind::PermissionDenied.as_str(),
                    StatusCode::REQUEST_TIMEOUT => ErrorKind::TimedOut.as_str(),
                    _ => ErrorKind::InvalidInput.as_str(),
                },
                m,
            ),
        };
        let mut r = (
            code,
            Json(json!({"error": {"kind": kind, "message": message}})),
        )
            .into_response();
        if code == StatusCode::UNAUTHORIZED {
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if code == StatusCode::SERVICE_UNAVAILABLE {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        r
    }
}

type ApiResult = std::result::Result<Response, ApiError>;
type Shared = State<Arc<HttpState>>;

/// Who a request acts as.
pub fn caller(state: &HttpState, headers: &HeaderMap) -> std::result::Result<Caller, ApiError> {
    let named = headers
        .get("x-avm-agent")
        .map(|v| {
            v.to_str()
                .map(str::to_string)
                .map_err(|_| ApiError::Avm(Error::invalid("X-Avm-Agent is not text")))
        })
        .transpose()?;
    let key = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").map(str::trim));
    match key {
        Some(k) => {
            let agent = state.keys.verify(k)?.ok_or_else(|| {
                ApiError::Unauthorized("the API key is not valid (revoked or never made)".into())
            })?;
            if let Some(n) = named
                && n != agent
            {
                return Err(ApiError::Avm(Error::new(
                    ErrorKind::PermissionDenied,
                    format!("this key acts as {agent}, not {n}"),
                )));
            }
            Ok(Caller::Agent(agent))
        }
        None if state.require_key => Err(ApiError::Unauthorized(
            "an API key is required (Authorization: Bearer avm_…; make one with `avm key create --agent NAME`)".into(),
        )),
        None => match named {
            Some(a) => {
                avm_core::config::validate_agent_id(&a)?;
                Ok(Caller::Agent(a))
            }
            None => Ok(Caller::Operator),
        },
    }
}

/// Runs a host call on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> avm_core::Result<T> + Send + 'static,
) -> std::result::Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::Avm(Error::internal(format!("request task failed: {e}"))))?
        .map_err(ApiError::Avm)
}

fn out(path: &str, o: &Output) -> Response {
    Json(json!({"path": path, "text": o.text, "data": o.data()})).into_response()
}

fn wants_text(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.starts_with("text/plain"))
}

/// A JSON request body of type `T` (size-capped like every body; a bad one is a 400).
async fn json_body<T: serde::de::DeserializeOwned>(
    state: &HttpState,
    headers: &HeaderMap,
    body: Body,
) -> std::result::Result<T, ApiError> {
    // A browser may send a form or text/plain anywhere without asking first (a CORS "simple
    // request"); only JSON, which it must ask about, reaches a JSON endpoint.
    if !is_json(headers) {
        return Err(ApiError::Refused(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "this endpoint takes JSON: send Content-Type: application/json".into(),
        ));
    }
    let bytes = body_bytes(state, body).await?;
    serde_json::from_slice(&bytes).map_err(|e| ApiError::Avm(Error::invalid(format!("body: {e}"))))
}

/// Does the request say its body is JSON?
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
}

fn query(raw: Option<String>) -> std::result::Result<Query, ApiError> {
    Ok(Query::parse(raw.as_deref().unwrap_or(""))?)
}

/// A request body over `state.max_body` (413).
fn too_large(state: &HttpState) -> ApiError {
    ApiError::Avm(Error::new(
        ErrorKind::TooLarge,
        format!("request body is over {} bytes", state.max_body),
    ))
}

async fn body_bytes(state: &HttpState, body: Body) -> std::result::Result<Vec<u8>, ApiError> {
    axum::body::to_bytes(body, state.max_body)
        .await
        .map(|b| b.to_vec())
        .map_err(|_| too_large(state))
}

async fn health() -> Response {
    Json(json!({"ok": true, "version": env!("CARGO_PKG_VERSION")})).into_response()
}

async fn openapi_doc() -> Response {
    Json(openapi::document()).into_response()
}

async fn read_node(
    State(s): Shared,
    headers: HeaderMap,
    Path(rest): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let c = caller(&s, &headers)?;
    let path = format!("/{rest}");
    let addr = match &q {
        Some(q) if !q.is_empty() => format!("{path}?{q}"),
        _ => path.clone(),
    };
    let h = s.host.clone();
    let o = blocking(move || h.read(&c, &addr)).await?;
    // Binary content comes as its bytes unless JSON is asked for by name (then the node
    // dict carries it as content_base64); `Accept: application/octet-stream` gets any content
    // as raw bytes.
    if wants(&headers, "application/octet-stream")
        || (o.is_binary() && !wants(&headers, "application/json"))
    {
        return Ok((
            [(header::CONTENT_TYPE, "application/octet-stream")],
            o.bytes().to_vec(),
        )
            .into_response());
    }
    if wants_text(&headers) {
        return Ok(o.text.into_response());
    }
    Ok(out(&path, &o))
}

/// Does the Accept header name `mime`?
fn wants(headers: &HeaderMap, mime: &str) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.split(',').any(|p| p.trim().starts_with(mime)))
}

/// The JSON form of a write.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PutBody {
    content: Option<String>,
    /// Binary content, base64-encoded (instead of `content`).
    content_base64: Option<String>,
    #[serde(default)]
    append: bool,
    meta: Option<serde_json::Map<String, Value>>,
    tags: Option<Vec<String>>,
    importance: Option<f64>,
}

async fn write_node(
    State(s): Shared,
    headers: HeaderMap,
    Path(rest): Path<String>,
    RawQuery(q): RawQuery,
    body: Body,
) -> ApiResult {
    let c = caller(&s, &headers)?;
    let bytes = body_bytes(&s, body).await?;
    let is_json = is_json(&headers);
    let path = format!("/{rest}");
    let addr = match &q {
        Some(q) if !q.is_empty() => format!("{path}?{q}"),
        _ => path.clone(),
    };
    let input = if is_json {
        let b: PutBody = serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::Avm(Error::invalid(format!("body: {e}"))))?;
        let content = match (b.content, b.content_base64) {
            (Some(_), Some(_)) => {
                return Err(ApiError::Avm(Error::invalid(
                    "body: give content or content_base64, not both",
                )));
            }
            (Some(t), None) => Some(Content::from(t)),
            (None, Some(b64)) => Some(Content::from_bytes(avm_core::content::from_base64(
                &b64,
                "content_base64",
            )?)),
            (None, None) => None,
        };
        WriteInput::Put(Put {
            content,
            append: b.append,
            meta: b.meta,
            tags: b.tags,
            importance: b.importance,
            ..Put::default()
        })
    } else if path.contains(':') {
        // A suffix write (`…/a.md:tags`) takes the body as typed.
        WriteInput::Text(
            String::from_utf8(bytes)
                .map_err(|_| ApiError::Avm(Error::invalid("the body is not UTF-8 text")))?,
        )
    } else {
        // Any other body is the content, byte for byte.
        WriteInput::Put(Put {
            content: Some(Content::from_bytes(bytes)),
            ..Put::default()
        })
    };
    let h = s.host.clone();
    let o = blocking(move || h.write(&c, &addr, input)).await?;
    Ok(out(&path, &o))
}

async fn delete_node(
    State(s): Shared,
    headers: HeaderMap,
    Path(rest): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let c = caller(&s, &headers)?;
    let q = query(q)?;
    q.check_keys(&["recursive", "hard"], "DELETE /v1/nodes")?;
    let opts = RemoveOptions {
        recursive: q.flag("recursive")?,
        hard: q.flag("hard")?,
    };
    let path = format!("/{rest}");
    let h = s.host.clone();
    let p = path.clone();
    let o = blocking(move || h.remove(&c, &p, opts)).await?;
    Ok(out(&path, &o))
}

async fn list_nodes(
    State(s): Shared,
    headers: HeaderMap,
    rest: Option<Path<String>>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let c = caller(&s, &headers)?;
    let q = query(q)?;
    q.check_keys(&["recursive", "limit", "offset"], "GET /v1/list")?;
    let opts = ListOptions {
        recursive: q.flag("recursive")?,
        limit: Some(q.parsed::<usize>("limit")?.unwrap_or(100).min(10_000)),
        offset: q.parsed::<usize>("offset")?.unwrap_or(0),
    };
    let path = format!("/{}", rest.map(|Path(p)| p).unwrap_or_default());
    let h = s.host.clone();
    let p = path.clone();
    let l = blocking(move || h.list(&c, &p, &opts)).await?;
    Ok(Json(json!({"path": path, "entries": l.entries, "more": l.more})).into_response())
}

async fn search(State(s): Shared, headers: HeaderMap, RawQuery(q): RawQuery) -> ApiResult {
    let c = caller(&s, &headers)?;
    let q = query(q)?;
    q.check_keys(&["q", "limit", "path"], "GET /v1/search")?;
    let text = q
        .get("q")
        .filter(|t| !t.trim().is_empty())
        .ok_or_else(|| ApiError::Avm(Error::invalid("search needs ?q=")))?
        .to_string();
    let limit = q.parsed::<usize>("limit")?.unwrap_or(10).min(1000);
    let path = q.get("path").unwrap_or("/").to_string();
    let h = s.host.clone();
    let hits = blocking(move || h.search(&c, &path, &SearchOptions { query: text, limit })).await?;
    Ok(Json(json!({"results": hits})).into_response())
}

/// Reads a service suffix (`:recall`, `:inbox`, `:stats`) with the request's query.
async fn service(
    s: Arc<HttpState>,
    headers: HeaderMap,
    path: &str,
    suffix: &str,
    q: Option<String>,
) -> ApiResult {
    let c = caller(&s, &headers)?;
    let mut addr = format!("{path}:{suffix}");
    if let Some(q) = q.filter(|q| !q.is_empty()) {
        addr.push('?');
        addr.push_str(&q);
    }
    let h = s.host.clone();
    let o = blocking(move || h.read(&c, &addr)).await?;
    if wants_text(&headers) {
        return Ok(o.text.into_response());
    }
    Ok(out(path, &o))
}

async fn recall(State(s): Shared, headers: HeaderMap, RawQuery(q): RawQuery) -> ApiResult {
    service(s, headers, "/", "recall", q).await
}

async fn stats(State(s): Shared, headers: HeaderMap, RawQuery(q): RawQuery) -> ApiResult {
    let qq = query(q)?;
    qq.check_keys(&["path"], "GET /v1/stats")?;
    let path = qq.get("path").unwrap_or("/memory").to_string();
    avm_core::Address::path(&path)?;
    service(s, headers, &path, "stats", None).await
}

/// `POST /v1/remember`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RememberBody {
    content: String,
    title: Option<String>,
    namespace: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
    importance: Option<f64>,
    /// When it happened, if not now.
    at: Option<String>,
}

async fn remember(State(s): Shared, headers: HeaderMap, body: Body) -> ApiResult {
    let c = caller(&s, &headers)?;
    let b: RememberBody = json_body(&s, &headers, body).await?;
    let mut pairs = vec![("source", "http".to_string())];
    if let Some(t) = b.title {
        pairs.push(("title", t));
    }
    if let Some(i) = b.importance {
        pairs.push(("importance", i.to_string()));
    }
    if !b.tags.is_empty() {
        pairs.push(("tags", b.tags.join(",")));
    }
    if let Some(at) = b.at {
        pairs.push(("at", at));
    }
    let dir = avm_core::host::remember_dir(&c, b.namespace.as_deref())?;
    let address = avm_core::address::suffixed(&dir, "remember", &pairs)?;
    let h = s.host.clone();
    let o = blocking(move || h.write(&c, &address, WriteInput::Text(b.content))).await?;
    let data = o.data();
    let code = if data["created"].as_bool() == Some(true) {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((code, Json(data)).into_response())
}

/// `POST /v1/tell`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TellBody {
    to: String,
    message: String,
    priority: Option<String>,
}

async fn tell(State(s): Shared, headers: HeaderMap, body: Body) -> ApiResult {
    let c = caller(&s, &headers)?;
    let b: TellBody = json_body(&s, &headers, body).await?;
    if b.to != "@all" {
        avm_core::config::validate_agent_id(&b.to)?;
    }
    let mut q = Query::new();
    q.push("priority", b.priority.unwrap_or_else(|| "normal".into()));
    let address = format!("/tell/{}?{q}", b.to);
    let h = s.host.clone();
    let o = blocking(move || h.write(&c, &address, WriteInput::Text(b.message))).await?;
    let t = o.data();
    Ok((
        StatusCode::CREATED,
        Json(json!({"to": t["to"], "priority": t["priority"]})),
    )
        .into_response())
}

async fn inbox(State(s): Shared, headers: HeaderMap, RawQuery(q): RawQuery) -> ApiResult {
    let c = caller(&s, &headers)?;
    let q = query(q)?;
    q.check_keys(&["mark_read"], "GET /v1/inbox")?;
    let pairs = if q.flag("mark_read")? {
        vec![("mark", "read".to_string())]
    } else {
        Vec::new()
    };
    // On the caller's own namespace, which it may always read (an operator's inbox is refused
    // by the service, which names why).
    let root = c.private_root().unwrap_or_else(|| "/".into());
    let address = avm_core::address::suffixed(&root, "inbox", &pairs)?;
    let h = s.host.clone();
    let o = blocking(move || h.read(&c, &address)).await?;
    Ok(out("/tell", &o))
}

async fn not_found() -> ApiResult {
    Err(ApiError::Avm(Error::new(
        ErrorKind::NotFound,
        "no such endpoint; GET /openapi.json lists them",
    )))
}

/// One `tracing` span per request (method and path), and its status and time at `debug`.
async fn traced(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    use tracing::Instrument;
    let span = tracing::debug_span!("http", method = %req.method(), path = %req.uri().path());
    let started = std::time::Instant::now();
    async move {
        let res = next.run(req).await;
        tracing::debug!(
            status = res.status().as_u16(),
            took_us = started.elapsed().as_micros() as u64,
            "answered"
        );
        res
    }
    .instrument(span)
    .await
}

/// The API's routes.
pub fn router(state: Arc<HttpState>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/openapi.json", get(openapi_doc))
        .route(
            "/v1/nodes/{*path}",
            get(read_node).put(write_node).delete(delete_node),
        )
        .route("/v1/list", get(list_nodes))
        .route("/v1/list/{*path}", get(list_nodes))
        .route("/v1/search", get(search))
        .route("/v1/recall", get(recall))
        .route("/v1/remember", post(remember))
        .route("/v1/tell", post(tell))
        .route("/v1/inbox", get(inbox))
        .route("/v1/stats", get(stats))
        .fallback(not_found)
        .layer(axum::extract::DefaultBodyLimit::disable())
        .layer(axum::middleware::from_fn(traced))
        .with_state(state)
}

impl ApiError {
    /// The avm error this stands for (a missing or bad key is `PermissionDenied`).
    pub fn into_error(self) -> Error {
        match self {
            ApiError::Avm(e) => e,
            ApiError::Unauthorized(m) => Error::new(ErrorKind::PermissionDenied, m),
            ApiError::Refused(code, m) => match code {
                StatusCode::FORBIDDEN => Error::new(ErrorKind::PermissionDenied, m),
                StatusCode::REQUEST_TIMEOUT => Error::new(ErrorKind::TimedOut, m),
                _ => Error::invalid(m),
            },
        }
    }
}

/// `service` at `path` behind the API's credentials: a request [`caller`] refuses gets the
/// API's 401/403 JSON error and never reaches the service (which may call [`caller`] again
/// to learn who it serves).
pub fn guarded<T>(state: Arc<HttpState>, path: &str, service: T) -> Router
where
    T: tower_service::Service<
            axum::extract::Request,
            Error = std::convert::Infallible,
            Response: IntoResponse,
            Future: Send + 'static,
        > + Clone
        + Send
        + Sync
        + 'static,
{
    Router::new()
        .nest_service(path, service)
        .layer(axum::middleware::from_fn_with_state(state, check_key))
}

async fn check_key(
    State(state): Shared,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    match caller(&state, req.headers()) {
        Ok(_) => {
            let delete = req.method() == axum::http::Method::DELETE;
            let mut res = next.run(req).await;
            // A session ended by DELETE answers 204 No Content, which clients expect (the
            // official Python SDK warns on anything but 200/204); rmcp says 202 Accepted.
            if delete && res.status() == axum::http::StatusCode::ACCEPTED {
                *res.status_mut() = axum::http::StatusCode::NO_CONTENT;
            }
            res
        }
        Err(e) => e.into_response(),
    }
}

/// Admits a request to the API, or refuses it before any handler runs:
/// - a `Host` this server does not answer to (a web page that rebinds its own name to the loopback
///   address reaches the server with its own name as the Host);
/// - an `Origin` other than the server's own (a web page of another origin posting to it);
/// - a `Content-Length` over the body limit, before reading anything;
/// - a body that does not arrive within the body timeout, or that grows over the limit.
async fn admit(
    state: &HttpState,
    req: axum::extract::Request,
) -> std::result::Result<axum::extract::Request, ApiError> {
    let (parts, body) = req.into_parts();
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(host_name)
        .or_else(|| parts.uri.host().map(host_name));
    if let Some(hosts) = &state.hosts {
        match &host {
            Some(h) if hosts.contains(h) => {}
            Some(h) => {
                return Err(ApiError::Refused(
                    StatusCode::FORBIDDEN,
                    format!(
                        "Host {h:?} is not a name this server answers to (a guard against DNS rebinding); add it to `[serve] hosts` in the config to allow it"
                    ),
                ));
            }
            None => {
                return Err(ApiError::Refused(
                    StatusCode::FORBIDDEN,
                    "the request has no Host header".into(),
                ));
            }
        }
    }
    if let Some(origin) = parts.headers.get(header::ORIGIN) {
        let name = origin
            .to_str()
            .ok()
            .and_then(|o| o.split_once("://"))
            .map(|(_, rest)| host_name(rest.split('/').next().unwrap_or("")));
        let same = match (&name, &state.hosts) {
            (Some(n), Some(hosts)) => hosts.contains(n),
            (Some(n), None) => host.as_ref() == Some(n),
            (None, _) => false,
        };
        if !same {
            return Err(ApiError::Refused(
                StatusCode::FORBIDDEN,
                format!(
                    "requests from a web page of another origin ({}) are refused",
                    origin.to_str().unwrap_or("?")
                ),
            ));
        }
    }
    let announced = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if announced.is_some_and(|n| n > state.max_body as u64) {
        return Err(too_large(state));
    }
    let bytes = tokio::time::timeout(
        state.body_timeout,
        axum::body::to_bytes(body, state.max_body),
    )
    .await
    .map_err(|_| {
        ApiError::Refused(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the request body did not arrive within {} s",
                state.body_timeout.as_secs()
            ),
        )
    })?
    .map_err(|_| too_large(state))?;
    Ok(axum::extract::Request::from_parts(parts, Body::from(bytes)))
}

async fn admitted(
    State(state): Shared,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    match admit(&state, req).await {
        Ok(req) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

/// Serves `app` (the API's [`router`], maybe merged with more) on `listener` (TCP or a Unix
/// socket) behind [`admit`]'s checks, until `shutdown` completes; then lets requests in flight
/// finish. A connection that sends no complete request head within `state.header_timeout` (a
/// half-sent request, or a kept-alive connection gone idle) is closed.
pub async fn serve<L: axum::serve::Listener>(
    mut listener: L,
    app: Router,
    state: Arc<HttpState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let header_timeout = state.header_timeout;
    let app = app.layer(axum::middleware::from_fn_with_state(state, admitted));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut conns = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (io, _) = tokio::select! {
            a = listener.accept() => a,
            _ = &mut shutdown => break,
        };
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let mut stop = stop_rx.clone();
        conns.spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(header_timeout);
            let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(io), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = stop.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
        while conns.try_join_next().is_some() {}
    }
    let _ = stop_tx.send(true);
    while conns.join_next().await.is_some() {}
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_kind_has_a_status_and_none_is_a_success() {
        for k in ErrorKind::ALL {
            let s = status(k);
            assert!(s.is_client_error() || s.is_server_error(), "{k}: {s}");
        }
        assert_eq!(status(ErrorKind::TooLarge), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(status(ErrorKind::PermissionDenied), StatusCode::FORBIDDEN);
    }
}
