#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The http provider against a real HTTP server on 127.0.0.1, written here with std::net.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use avm_core::contract;
use avm_core::{Caller, ErrorKind, NodeKind, Provider, Request};
use avm_provider_http::{HttpOptions, HttpProvider, client};

/// What the server answers to one request.
enum Reply {
    /// A complete response with a Content-Length.
    Full {
        status: u16,
        content_type: &'static str,
        body: Vec<u8>,
    },
    /// A body without Content-Length, ended by closing the connection.
    Unframed(Vec<u8>),
    /// A redirect to `location`.
    Redirect(String),
    /// Reads the request and never answers.
    Hang,
}

fn ok(body: &str) -> Reply {
    Reply::Full {
        status: 200,
        content_type: "text/plain",
        body: body.as_bytes().to_vec(),
    }
}

/// One request as the server saw it.
#[derive(Debug, Clone)]
struct Seen {
    line: String,
    headers: Vec<(String, String)>,
}

struct Server {
    base: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Server {
    /// Starts a server answering every request with `reply(request_line)`.
    fn start(reply: impl Fn(&str) -> Reply + Send + 'static) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            // Connections told to hang are kept open here until the test process ends.
            let mut held: Vec<TcpStream> = Vec::new();
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let Some(req) = read_head(&mut stream) else {
                    continue;
                };
                let answer = reply(&req.line);
                log.lock().unwrap().push(req);
                match answer {
                    Reply::Hang => held.push(stream),
                    Reply::Full {
                        status,
                        content_type,
                        body,
                    } => {
                        let head = format!(
                            "HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len()
                        );
                        let _ = stream.write_all(head.as_bytes());
                        let _ = stream.write_all(&body);
                    }
                    Reply::Unframed(body) => {
                        let _ = stream.write_all(
                            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n",
                        );
                        let _ = stream.write_all(&body);
                    }
                    Reply::Redirect(location) => {
                        let head = format!(
                            "HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        );
                        let _ = stream.write_all(head.as_bytes());
                    }
                }
            }
        });
        Server { base, seen }
    }

    fn hits(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    fn lines(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|s| s.line.clone())
            .collect()
    }

    fn last(&self) -> Seen {
        self.seen.lock().unwrap().last().cloned().unwrap()
    }
}

/// Reads the request line and headers (GET requests have no body).
fn read_head(stream: &mut TcpStream) -> Option<Seen> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).ok()? == 0 {
            return None;
        }
        buf.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    let mut lines = text.split("\r\n");
    let line = lines.next()?.to_string();
    let headers = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
        .collect();
    Some(Seen { line, headers })
}

fn provider(pattern: &str, opts: HttpOptions) -> HttpProvider {
    HttpProvider::new(pattern, opts).unwrap()
}

/// A request for `path` carrying `captures` as the host would fill them.
fn req_with(path: &str, captures: &[(&str, &str)]) -> Request {
    let mut r = Request::new(path, Caller::Operator);
    r.captures = captures
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect::<BTreeMap<_, _>>();
    r
}

fn req(path: &str) -> Request {
    Request::new(path, Caller::Operator)
}

#[test]
fn capture_with_dot_dot_slash_query_and_fragment_stays_in_its_path_segment() {
    let s = Server::start(|_| ok("fine"));
    let p = provider(
        "/live/{name}",
        HttpOptions::new(format!("{}/api/{{name}}/info?x=1", s.base)),
    );
    let out = p
        .read(&req_with("/live/n", &[("name", "../admin?x=2#frag")]))
        .unwrap();
    assert_eq!(out.text, "fine");
    assert_eq!(
        s.lines(),
        ["GET /api/..%2Fadmin%3Fx%3D2%23frag/info?x=1 HTTP/1.1"]
    );
}

#[test]
fn capture_in_a_query_value_cannot_add_parameters_or_lines() {
    let s = Server::start(|_| ok("fine"));
    let p = provider(
        "/q/{sym}",
        HttpOptions::new(format!("{}/quote?sym={{sym}}&fixed=1", s.base)),
    );
    p.read(&req_with("/q/x", &[("sym", "a&b=c#d e\nf\"g'h/i")]))
        .unwrap();
    assert_eq!(
        s.lines(),
        ["GET /quote?sym=a%26b%3Dc%23d%20e%0Af%22g%27h%2Fi&fixed=1 HTTP/1.1"]
    );
}

#[test]
fn percent_escapes_in_a_capture_are_encoded_again() {
    let s = Server::start(|_| ok("fine"));
    let p = provider(
        "/f/{name}",
        HttpOptions::new(format!("{}/f/{{name}}", s.base)),
    );
    p.read(&req_with("/f/x", &[("name", "a%2Fb%20c")])).unwrap();
    assert_eq!(s.lines(), ["GET /f/a%252Fb%2520c HTTP/1.1"]);
}

#[test]
fn captures_taken_from_the_path_when_the_request_has_none() {
    let s = Server::start(|_| ok("fine"));
    let p = provider(
        "/live/{market}/{symbol}",
        HttpOptions::new(format!("{}/m/{{market}}/s/{{symbol}}", s.base)),
    );
    p.read(&req("/live/us/AAPL")).unwrap();
    assert_eq!(s.lines(), ["GET /m/us/s/AAPL HTTP/1.1"]);
}

#[test]
fn rest_keeps_its_separators_in_the_path_and_encodes_each_segment() {
    let s = Server::start(|_| ok("fine"));
    let p = provider(
        "/docs/**",
        HttpOptions::new(format!("{}/files/{{rest}}?also={{rest}}", s.base)),
    );
    p.read(&req_with("/docs/x", &[("**", "a b/c#d/e?f")]))
        .unwrap();
    assert_eq!(
        s.lines(),
        ["GET /files/a%20b/c%23d/e%3Ff?also=a%20b%2Fc%23d%2Fe%3Ff HTTP/1.1"]
    );
}

#[test]
fn a_capture_that_would_make_a_dot_segment_is_refused_without_a_request() {
    let s = Server::start(|_| ok("fine"));
    let p = provider(
        "/f/{name}",
        HttpOptions::new(format!("{}/f/{{name}}/x", s.base)),
    );
    for bad in ["..", "."] {
        let e = p.read(&req_with("/f/x", &[("name", bad)])).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{bad}: {e}");
    }
    let rest = provider("/d/**", HttpOptions::new(format!("{}/d/{{rest}}", s.base)));
    let e = rest
        .read(&req_with("/d/x", &[("**", "a/../b")]))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert_eq!(s.hits(), 0);
    // An escaped dot-dot is text, not a dot segment: its '%' is escaped again.
    p.read(&req_with("/f/x", &[("name", "%2e%2E")])).unwrap();
    p.read(&req_with("/f/x", &[("name", "...")])).unwrap();
    assert_eq!(
        s.lines(),
        ["GET /f/%252e%252E/x HTTP/1.1", "GET /f/.../x HTTP/1.1"]
    );
}

#[test]
fn templates_that_let_paths_choose_the_server_are_refused() {
    for url in [
        "http://{name}.example.com/x",
        "https://example.com:{name}/x",
        "http://user:{name}@example.com/",
        "{name}://example.com/x",
        "file:///etc/{name}",
        "ftp://example.com/{name}",
        "//example.com/{name}",
    ] {
        let e = HttpProvider::new("/a/{name}", HttpOptions::new(url)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{url}: {e}");
    }
}

#[test]
fn unknown_or_malformed_placeholders_are_refused_at_construction() {
    let e = HttpProvider::new("/a/{name}", HttpOptions::new("http://h/{other}")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(e.message().contains("{other}"), "{e}");
    assert!(e.message().contains("{name}"), "{e}");
    // `{rest}` exists only when the pattern ends in `**`.
    let e = HttpProvider::new("/a/{name}", HttpOptions::new("http://h/{rest}")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    for url in [
        "http://h/{Name}",
        "http://h/{name",
        "http://h/x}",
        "http://h/{}",
    ] {
        let e = HttpProvider::new("/a/{name}", HttpOptions::new(url)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{url}");
    }
    let e = HttpProvider::new("/a/{name}", HttpOptions::new("http://h/../{name}")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(HttpProvider::new("/a/**", HttpOptions::new("http://h/{rest}")).is_ok());
}

#[test]
fn header_values_expand_environment_variables_and_are_sent() {
    let s = Server::start(|_| ok("fine"));
    let mut opts = HttpOptions::new(format!("{}/h/{{name}}", s.base));
    // Cargo sets CARGO_PKG_NAME for the test process; tests may not set variables themselves.
    opts.headers
        .insert("X-Token".into(), "t-${CARGO_PKG_NAME}-$plain".into());
    let p = provider("/h/{name}", opts);
    p.read(&req("/h/a")).unwrap();
    let seen = s.last();
    let token = seen
        .headers
        .iter()
        .find(|(k, _)| k == "x-token")
        .map(|(_, v)| v.clone());
    assert_eq!(token.as_deref(), Some("t-avm-provider-http-$plain"));
    assert!(!format!("{p:?}").contains("avm-provider-http-$plain"));
}

#[test]
fn a_header_naming_an_unset_variable_is_refused_without_showing_values() {
    let mut opts = HttpOptions::new("http://h/{name}");
    opts.headers
        .insert("Authorization".into(), "Bearer s3cret".into());
    opts.headers
        .insert("X-Key".into(), "${AVM_SURELY_UNSET_VARIABLE_4711}".into());
    let e = HttpProvider::new("/h/{name}", opts).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(
        e.message().contains("AVM_SURELY_UNSET_VARIABLE_4711"),
        "{e}"
    );
    assert!(!e.message().contains("s3cret"), "{e}");

    let mut opts = HttpOptions::new("http://h/{name}");
    opts.headers
        .insert("X-Key".into(), "line\nbreak s3cret".into());
    let e = HttpProvider::new("/h/{name}", opts).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(
        e.message().contains("X-Key") && !e.message().contains("s3cret"),
        "{e}"
    );
}

#[test]
fn a_repeat_read_within_the_ttl_does_not_reach_the_server() {
    let s = Server::start(|_| ok("cached?"));
    let mut opts = HttpOptions::new(format!("{}/c/{{name}}", s.base));
    opts.ttl_secs = 3600;
    let p = provider("/c/{name}", opts);
    assert_eq!(p.read(&req("/c/a")).unwrap().text, "cached?");
    assert_eq!(p.read(&req("/c/a")).unwrap().text, "cached?");
    assert_eq!(s.hits(), 1);
    p.read(&req("/c/b")).unwrap();
    assert_eq!(s.hits(), 2);
}

#[test]
fn without_a_ttl_every_read_reaches_the_server() {
    let s = Server::start(|_| ok("fresh"));
    let p = provider(
        "/c/{name}",
        HttpOptions::new(format!("{}/c/{{name}}", s.base)),
    );
    p.read(&req("/c/a")).unwrap();
    p.read(&req("/c/a")).unwrap();
    assert_eq!(s.hits(), 2);
}

#[test]
fn error_responses_are_not_cached() {
    let s = Server::start(|_| Reply::Full {
        status: 503,
        content_type: "text/plain",
        body: b"later".to_vec(),
    });
    let mut opts = HttpOptions::new(format!("{}/c/{{name}}", s.base));
    opts.ttl_secs = 3600;
    let p = provider("/c/{name}", opts);
    assert!(p.read(&req("/c/a")).is_err());
    assert!(p.read(&req("/c/a")).is_err());
    assert_eq!(s.hits(), 2);
}

#[test]
fn a_server_that_never_answers_times_out_naming_the_url() {
    let s = Server::start(|_| Reply::Hang);
    let mut opts = HttpOptions::new(format!("{}/slow/{{name}}?key=s3cret", s.base));
    opts.timeout_ms = 300;
    let p = provider("/slow/{name}", opts);
    let e = p.read(&req("/slow/a")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}");
    assert!(e.message().contains("/slow/a"), "{e}");
    assert!(!e.message().contains("s3cret"), "{e}");
}

#[test]
fn a_passed_deadline_times_out_without_a_request() {
    let s = Server::start(|_| ok("x"));
    let p = provider(
        "/d/{name}",
        HttpOptions::new(format!("{}/d/{{name}}", s.base)),
    );
    let mut r = req("/d/a");
    r.deadline = Some(Instant::now());
    assert_eq!(p.read(&r).unwrap_err().kind(), ErrorKind::TimedOut);
    assert_eq!(s.hits(), 0);
}

#[test]
fn a_body_over_max_bytes_is_too_large_with_or_without_a_length() {
    let s = Server::start(|line| {
        if line.contains("/framed") {
            Reply::Full {
                status: 200,
                content_type: "text/plain",
                body: vec![b'a'; 1000],
            }
        } else if line.contains("/endless") {
            Reply::Unframed(vec![b'b'; 200_000])
        } else {
            Reply::Unframed(vec![b'c'; 100])
        }
    });
    let mut opts = HttpOptions::new(format!("{}/{{name}}", s.base));
    opts.max_bytes = 100;
    let p = provider("/s/{name}", opts);
    for name in ["framed", "endless"] {
        let e = p.read(&req(&format!("/s/{name}"))).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TooLarge, "{name}: {e}");
        assert!(e.message().contains("100"), "{e}");
    }
    // Exactly at the limit is accepted.
    assert_eq!(p.read(&req("/s/exact")).unwrap().text.len(), 100);
}

#[test]
fn error_statuses_map_onto_error_kinds_and_hide_the_query() {
    let s = Server::start(|line| {
        let status = line
            .split('/')
            .nth(2)
            .and_then(|s| s.split('?').next())
            .and_then(|s| s.parse().ok())
            .unwrap_or(500);
        Reply::Full {
            status,
            content_type: "text/plain",
            body: b"nope".to_vec(),
        }
    });
    let p = provider(
        "/st/{code}",
        HttpOptions::new(format!("{}/st/{{code}}?key=s3cret", s.base)),
    );
    for (code, kind) in [
        (404, ErrorKind::NotFound),
        (401, ErrorKind::PermissionDenied),
        (403, ErrorKind::PermissionDenied),
        (408, ErrorKind::TimedOut),
        (504, ErrorKind::TimedOut),
        (429, ErrorKind::Busy),
        (503, ErrorKind::Busy),
        (500, ErrorKind::Unavailable),
        (400, ErrorKind::Unavailable),
    ] {
        let e = p.read(&req(&format!("/st/{code}"))).unwrap_err();
        assert_eq!(e.kind(), kind, "{code}: {e}");
        assert!(e.message().contains(&code.to_string()), "{e}");
        assert!(e.message().contains(&format!("/st/{code}")), "{e}");
        assert!(!e.message().contains("s3cret"), "{e}");
    }
}

#[test]
fn transform_picks_a_value_out_of_a_json_body() {
    let s = Server::start(|line| {
        if line.contains("/plain") {
            ok("not json")
        } else {
            Reply::Full {
                status: 200,
                content_type: "application/json",
                body: br#"{"data":[{"price":12.5,"name":"acme","obj":{"a":[1,2]}}]}"#.to_vec(),
            }
        }
    });
    let with = |pointer: &str| {
        let mut o = HttpOptions::new(format!("{}/{{name}}", s.base));
        o.transform = Some(pointer.into());
        provider("/j/{name}", o)
    };
    assert_eq!(
        with("/data/0/price").read(&req("/j/x")).unwrap().text,
        "12.5"
    );
    let name = with("/data/0/name").read(&req("/j/x")).unwrap();
    assert_eq!(name.text, "acme");
    assert_eq!(name.data(), serde_json::json!("acme"));
    assert_eq!(
        with("/data/0/obj").read(&req("/j/x")).unwrap().text,
        "{\n  \"a\": [\n    1,\n    2\n  ]\n}\n"
    );
    let e = with("/data/1").read(&req("/j/x")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    let e = with("/data").read(&req("/j/plain")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    let mut bad = HttpOptions::new("http://h/{name}");
    bad.transform = Some(".data.0".into());
    assert_eq!(
        HttpProvider::new("/j/{name}", bad).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
}

#[test]
fn a_json_body_without_transform_is_served_as_is_with_parsed_data() {
    let s = Server::start(|_| Reply::Full {
        status: 200,
        content_type: "application/json; charset=utf-8",
        body: br#"{"a":1}"#.to_vec(),
    });
    let p = provider(
        "/j/{name}",
        HttpOptions::new(format!("{}/{{name}}", s.base)),
    );
    let out = p.read(&req("/j/x")).unwrap();
    assert_eq!(out.text, r#"{"a":1}"#);
    assert_eq!(out.data(), serde_json::json!({"a": 1}));
}

#[test]
fn a_body_that_is_not_utf8_is_decoded_lossily() {
    let s = Server::start(|_| Reply::Full {
        status: 200,
        content_type: "text/plain",
        body: vec![b'o', b'k', 0xff, b'!'],
    });
    let p = provider(
        "/b/{name}",
        HttpOptions::new(format!("{}/{{name}}", s.base)),
    );
    assert_eq!(p.read(&req("/b/x")).unwrap().text, "ok\u{fffd}!");
}

#[test]
fn redirects_are_followed_on_the_same_host_only() {
    let other = Server::start(|_| ok("elsewhere"));
    // `localhost` and `127.0.0.1` are different hosts as far as the policy is concerned.
    let other_url = other.base.replace("127.0.0.1", "localhost");
    let s = Server::start(move |line| {
        if line.contains("/moved") {
            Reply::Redirect("/target".into())
        } else if line.contains("/away") {
            Reply::Redirect(format!("{other_url}/stolen"))
        } else {
            ok("target")
        }
    });
    let p = provider(
        "/r/{name}",
        HttpOptions::new(format!("{}/{{name}}", s.base)),
    );
    assert_eq!(p.read(&req("/r/moved")).unwrap().text, "target");
    let e = p.read(&req("/r/away")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(e.message().contains("302"), "{e}");
    assert_eq!(other.hits(), 0);
}

#[test]
fn a_refused_connection_is_unavailable() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let p = provider(
        "/u/{name}",
        HttpOptions::new(format!("http://127.0.0.1:{port}/{{name}}")),
    );
    let e = p.read(&req("/u/x")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
}

#[test]
fn stat_answers_a_file_without_fetching() {
    let s = Server::start(|_| ok("x"));
    let p = provider(
        "/s/{name}",
        HttpOptions::new(format!("{}/{{name}}", s.base)),
    );
    let st = p.stat(&req("/s/a")).unwrap();
    assert_eq!(st.kind, NodeKind::File);
    assert_eq!(st.size, 0);
    assert_eq!(st.version, None);
    assert_eq!(s.hits(), 0);
}

#[test]
fn suffixes_and_query_keys_are_refused() {
    let s = Server::start(|_| ok("x"));
    let p = provider(
        "/s/{name}",
        HttpOptions::new(format!("{}/{{name}}", s.base)),
    );
    let mut r = req("/s/a");
    r.suffix = Some("meta".into());
    assert_eq!(p.read(&r).unwrap_err().kind(), ErrorKind::Unsupported);
    let mut r = req("/s/a");
    r.query.push("x", "1");
    assert_eq!(p.read(&r).unwrap_err().kind(), ErrorKind::InvalidInput);
    assert_eq!(s.hits(), 0);
}

#[test]
fn the_provider_passes_the_contract_checks_that_apply() {
    let s = Server::start(|_| Reply::Full {
        status: 404,
        content_type: "text/plain",
        body: b"no".to_vec(),
    });
    let p = provider(
        "/live/{name}",
        HttpOptions::new(format!("{}/{{name}}", s.base)),
    );
    // A path the pattern does not match is missing without asking the server…
    contract::missing_is_not_found(&p, "/live/a/b").unwrap();
    contract::missing_is_not_found(&p, "/elsewhere").unwrap();
    contract::read_only_rejects_writes(&p, "/live/x").unwrap();
    contract::declared_suffixes_work(&p, "/live/x").unwrap();
    assert_eq!(s.hits(), 0);
    // …and one the server does not know reads as not-found.
    assert_eq!(
        p.read(&req("/live/gone")).unwrap_err().kind(),
        ErrorKind::NotFound
    );
}

#[test]
fn info_declares_a_read_only_http_provider_without_secrets() {
    let p = provider(
        "/live/{name}",
        HttpOptions::new("https://api.example.com/q/{name}?apikey=s3cret"),
    );
    let info = p.info();
    assert_eq!(info.kind, "http");
    assert!(info.ops.read);
    assert!(!info.ops.write && !info.ops.list && !info.ops.remove);
    assert!(info.suffixes.is_empty());
    assert!(info.description.contains("api.example.com"));
    assert!(!info.description.contains("s3cret"));
    let p = provider(
        "/live/{name}",
        HttpOptions::new("https://me:s3cret@api.example.com/q/{name}"),
    );
    let d = p.info().description;
    assert!(
        d.contains("https://api.example.com/q/{name}") && !d.contains("s3cret"),
        "{d}"
    );
}

#[test]
fn options_reject_unknown_fields_and_fill_defaults() {
    let o: HttpOptions = serde_json::from_value(serde_json::json!({"url": "http://h/"})).unwrap();
    assert_eq!(o.timeout_ms, 10_000);
    assert_eq!(o.max_bytes, 4 * 1024 * 1024);
    assert_eq!(o.ttl_secs, 0);
    assert!(o.transform.is_none() && o.headers.is_empty());
    let e = serde_json::from_value::<HttpOptions>(
        serde_json::json!({"url": "http://h/", "method": "POST"}),
    );
    assert!(e.is_err());
    let mut zero = HttpOptions::new("http://h/x");
    zero.timeout_ms = 0;
    assert_eq!(
        HttpProvider::new("/x", zero).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
}

#[test]
fn client_get_refuses_urls_that_are_not_http() {
    for url in [
        "file:///etc/passwd",
        "ftp://example.com/x",
        "not a url",
        "gopher://h/",
    ] {
        let e = client::get(&client::Fetch {
            url: url.into(),
            headers: vec![],
            timeout: Duration::from_secs(1),
            max_bytes: 10,
        })
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{url}: {e}");
    }
}

fn fetch(url: String) -> client::Response {
    client::get(&client::Fetch {
        url,
        headers: vec![("Accept".into(), "text/plain".into())],
        timeout: Duration::from_secs(10),
        max_bytes: 1000,
    })
    .unwrap()
}

#[tokio::test]
async fn client_get_works_inside_a_current_thread_runtime() {
    let s = Server::start(|_| Reply::Full {
        status: 418,
        content_type: "text/x-teapot",
        body: b"short and stout".to_vec(),
    });
    let r = fetch(format!("{}/pot", s.base));
    assert_eq!(r.status, 418);
    assert_eq!(r.body, "short and stout");
    assert_eq!(r.content_type.as_deref(), Some("text/x-teapot"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_get_works_on_runtime_workers_and_in_spawn_blocking() {
    let s = Server::start(|_| ok("from a worker"));
    let url = format!("{}/w", s.base);
    assert_eq!(fetch(url.clone()).body, "from a worker");
    let u = url.clone();
    let r = tokio::task::spawn_blocking(move || fetch(u)).await.unwrap();
    assert_eq!(r.body, "from a worker");
    let r = tokio::spawn(async move { fetch(url) }).await.unwrap();
    assert_eq!(r.body, "from a worker");
}

#[test]
fn fetch_debug_output_hides_header_values_and_the_query() {
    let f = client::Fetch {
        url: "https://api.example.com/q?key=s3cret".into(),
        headers: vec![("Authorization".into(), "Bearer t0ken".into())],
        timeout: Duration::from_secs(1),
        max_bytes: 10,
    };
    let shown = format!("{f:?}");
    assert!(
        shown.contains("Authorization") && shown.contains("api.example.com"),
        "{shown}"
    );
    assert!(
        !shown.contains("t0ken") && !shown.contains("s3cret"),
        "{shown}"
    );
}
