//! Mount options of a `wasm` provider, with human-friendly sizes and durations.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// Options of a `type = "wasm"` mount (`[mounts.options]`).
///
/// ```toml
/// [[mounts]]
/// pattern = "/live/indicators/{symbol}"
/// type = "wasm"
/// options = { component = "~/plugins/indicators.wasm", timeout = "500ms", memory = "32MiB",
///             output = "256KiB", http = ["https://prices.example/*"] }
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WasmOptions {
    /// The component file (`.wasm`, built for wasm32-wasip2); `~` and `${VAR}` are expanded.
    pub component: String,
    /// Wall-clock limit of one call: `"1s"`, `"250ms"` or milliseconds. Default 1 s.
    #[serde(default = "default_timeout", deserialize_with = "de_duration")]
    pub timeout: Duration,
    /// Linear-memory limit: `"64MiB"`, `"512KiB"` or bytes. Default 64 MiB, at most 1 GiB.
    #[serde(default = "default_memory", deserialize_with = "de_size")]
    pub memory: u64,
    /// Largest result (and http-get body) a call may return, and the cap on captured
    /// stdout/stderr/log text. Default 1 MiB.
    #[serde(default = "default_output", deserialize_with = "de_size")]
    pub output: u64,
    /// URL patterns the plugin may GET through the `http-get` import (`*` matches any run of
    /// characters). Empty (the default) grants nothing.
    #[serde(default)]
    pub http: Vec<String>,
    /// Environment variables visible to the guest through WASI (default: none).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Host directories the guest may read through WASI, guest path → host path (default: none).
    #[serde(default)]
    pub dirs: BTreeMap<String, String>,
    /// The key-value store: a SQLite file or a PostgreSQL address (default: the CLI passes the
    /// PostgreSQL store when it has one, else `<data dir>/plugins-kv.db`).
    #[serde(default)]
    pub kv: Option<String>,
    /// Most bytes this mount may keep in the key-value store. Default 16 MiB.
    #[serde(default = "default_kv_max", deserialize_with = "de_size")]
    pub kv_max: u64,
}

/// The largest memory limit a plugin may ask for (the instance pool is sized for it).
pub const MAX_MEMORY: u64 = 1 << 30;

fn default_timeout() -> Duration {
    Duration::from_secs(1)
}
fn default_memory() -> u64 {
    64 << 20
}
fn default_output() -> u64 {
    1 << 20
}
fn default_kv_max() -> u64 {
    16 << 20
}

impl WasmOptions {
    /// Options for `component` with every default.
    pub fn new(component: impl Into<String>) -> Self {
        WasmOptions {
            component: component.into(),
            timeout: default_timeout(),
            memory: default_memory(),
            output: default_output(),
            http: Vec::new(),
            env: BTreeMap::new(),
            dirs: BTreeMap::new(),
            kv: None,
            kv_max: default_kv_max(),
        }
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum NumOrText {
    Num(u64),
    Text(String),
}

fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    match NumOrText::deserialize(d)? {
        // A TOML number is milliseconds (`timeout = 250`); text is avm's one duration grammar
        // (`"250ms"`, `"2s"`; a bare number in text is seconds, as everywhere).
        NumOrText::Num(ms) => Ok(Duration::from_millis(ms)),
        NumOrText::Text(t) => {
            avm_core::time::parse_duration(&t).map_err(|e| serde::de::Error::custom(e.message()))
        }
    }
}

fn de_size<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    match NumOrText::deserialize(d)? {
        NumOrText::Num(n) => Ok(n),
        NumOrText::Text(t) => parse_size(&t).map_err(serde::de::Error::custom),
    }
}

/// Parses `"64MiB"`, `"512KiB"`, `"1GiB"`, `"100KB"` or a bare number of bytes.
pub fn parse_size(raw: &str) -> Result<u64, String> {
    let t = raw.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{raw:?} is not a size; use e.g. \"64MiB\", \"512KiB\" or bytes"))?;
    let mul: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        u => {
            return Err(format!(
                "{raw:?}: unknown size unit {u:?}; use B, KiB, MiB or GiB"
            ));
        }
    };
    n.checked_mul(mul)
        .ok_or_else(|| format!("{raw:?} is too large"))
}

/// An `http` grant: an exact scheme, host (or `*.suffix` for subdomains) and port, and a glob
/// (`*` = any run of characters) over the normalised path and query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    scheme: String,
    host: String,
    subdomains: bool,
    port: u16,
    path: String,
}

/// Parses a grant such as `https://api.example.com/v1/*` or `http://127.0.0.1:8080/prices/*`.
pub fn parse_grant(p: &str) -> Result<Grant, String> {
    let (scheme, rest) = p
        .split_once("://")
        .ok_or_else(|| format!("http grant {p:?} must start with http:// or https://"))?;
    let default_port = match scheme {
        "http" => 80,
        "https" => 443,
        _ => {
            return Err(format!(
                "http grant {p:?} must start with http:// or https://"
            ));
        }
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.contains('@') || authority.is_empty() {
        return Err(format!("http grant {p:?}: give a host, without user info"));
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, port)) if !h.ends_with(']') || authority.starts_with('[') => (
            h,
            port.parse::<u16>()
                .map_err(|_| format!("http grant {p:?}: {port:?} is not a port"))?,
        ),
        _ => (authority, default_port),
    };
    let (host, subdomains) = match host.strip_prefix("*.") {
        Some(h) => (h, true),
        None => (host, false),
    };
    if host.is_empty() || host.contains('*') {
        return Err(format!(
            "http grant {p:?}: the host must be literal (or *.domain for its subdomains)"
        ));
    }
    Ok(Grant {
        scheme: scheme.to_string(),
        host: host.to_ascii_lowercase(),
        subdomains,
        port,
        path: path.to_string(),
    })
}

impl Grant {
    /// Does the (already parsed and normalised) URL fall under this grant?
    pub fn allows(
        &self,
        scheme: &str,
        host: &str,
        port: Option<u16>,
        path_and_query: &str,
    ) -> bool {
        let host = host.to_ascii_lowercase();
        let host_ok =
            host == self.host || (self.subdomains && host.ends_with(&format!(".{}", self.host)));
        scheme == self.scheme
            && host_ok
            && port == Some(self.port)
            && glob(&self.path, path_and_query)
    }
}

/// `*` matches any run of characters (including `/`); everything else is literal.
pub fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let mut rest = text;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            match rest.strip_prefix(part) {
                Some(r) => rest = r,
                None => return false,
            }
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            match rest.find(part) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations_accept_units_and_bare_numbers() {
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("512 KiB"), Ok(512 << 10));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert!(parse_size("12 parsecs").is_err());
        #[derive(Deserialize)]
        struct T {
            #[serde(deserialize_with = "de_duration")]
            d: Duration,
        }
        let d = |v: serde_json::Value| {
            serde_json::from_value::<T>(serde_json::json!({ "d": v })).map(|t| t.d)
        };
        assert_eq!(d("250ms".into()).ok(), Some(Duration::from_millis(250)));
        assert_eq!(d("2s".into()).ok(), Some(Duration::from_secs(2)));
        assert_eq!(d(40.into()).ok(), Some(Duration::from_millis(40)));
        assert_eq!(d("40".into()).ok(), Some(Duration::from_secs(40)));
        assert!(d("soon".into()).is_err());
    }

    #[test]
    fn grants_match_scheme_host_port_exactly_and_glob_the_path() {
        let g = parse_grant("http://127.0.0.1:8080/prices/*").expect("grant");
        assert!(g.allows("http", "127.0.0.1", Some(8080), "/prices/NVDA"));
        assert!(!g.allows("http", "127.0.0.1", Some(8080), "/admin"));
        assert!(!g.allows("http", "127.0.0.1", Some(9090), "/prices/NVDA"));
        assert!(!g.allows("https", "127.0.0.1", Some(8080), "/prices/NVDA"));
        let w = parse_grant("https://*.example.com/*").expect("grant");
        assert!(w.allows("https", "api.example.com", Some(443), "/x"));
        assert!(!w.allows("https", "evil.com", Some(443), "/.example.com/x"));
        assert!(!w.allows("https", "example.com.evil.org", Some(443), "/"));
        assert!(parse_grant("ftp://x/*").is_err());
        assert!(parse_grant("https://user@x/*").is_err());
        assert!(parse_grant("https://ex*ample.com/*").is_err());
        assert!(glob("/a/*/x", "/a/v1/x") && !glob("/a/*/x", "/a/v1/y"));
    }

    #[test]
    fn options_deserialize_from_config_values() {
        let v = serde_json::json!({"component": "x.wasm", "timeout": "200ms", "memory": "16MiB", "output": 4096});
        let o: WasmOptions = serde_json::from_value(v).expect("parses");
        assert_eq!(o.timeout, Duration::from_millis(200));
        assert_eq!(o.memory, 16 << 20);
        assert_eq!(o.output, 4096);
        let bad = serde_json::json!({"component": "x.wasm", "fuel": 3});
        assert!(serde_json::from_value::<WasmOptions>(bad).is_err());
    }
}
