//! Where configuration comes from: the XDG directories, the file layers, the merged figment,
//! [`load`] and path expansion.

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml, Yaml};
use figment::value::Value as FValue;

use super::{Config, TOP_KEYS};
use crate::error::{Error, ErrorKind, Result};

/// Where configuration comes from, besides the fixed files.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// `--config FILE`.
    pub file: Option<PathBuf>,
    /// Read `AVM_*` variables (off in tests that want isolation).
    pub env: bool,
    /// Flag overrides as `(dotted key, value)`, applied last.
    pub flags: Vec<(String, FValue)>,
    /// Replaces `/etc/avm/config.toml` (tests).
    pub system_file: Option<PathBuf>,
    /// Replaces `$XDG_CONFIG_HOME/avm` (tests).
    pub user_dir: Option<PathBuf>,
}

/// The fixed system-wide config file.
pub const SYSTEM_CONFIG: &str = "/etc/avm/config.toml";

/// `$XDG_CONFIG_HOME/avm` (or `~/.config/avm`).
pub fn config_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| home().map(|h| h.join(".config")))
        .map(|d| d.join("avm"))
}

/// `$XDG_DATA_HOME/avm` (or `~/.local/share/avm`).
pub fn data_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_DATA_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| home().map(|h| h.join(".local/share")))
        .map(|d| d.join("avm"))
}

fn home() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// Environment variables that steer the CLI rather than the configuration.
pub(super) const ENV_NOT_CONFIG: &[&str] = &["config", "log", "json", "mount_detached"];

/// The files that exist and will be read, in order.
pub fn files(sources: &Sources) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let system = sources
        .system_file
        .clone()
        .unwrap_or_else(|| PathBuf::from(SYSTEM_CONFIG));
    if system.is_file() {
        out.push(system);
    }
    if let Some(dir) = sources.user_dir.clone().or_else(config_dir) {
        for name in ["config.toml", "config.yaml", "config.yml"] {
            let p = dir.join(name);
            if p.is_file() {
                out.push(p);
            }
        }
    }
    if let Some(f) = &sources.file {
        out.push(f.clone());
    }
    out
}

/// Every file that would be read if it existed, in order: what a long-running process watches
/// so that a configuration created or changed after it started is picked up.
pub fn watched_files(sources: &Sources) -> Vec<PathBuf> {
    let mut out = vec![
        sources
            .system_file
            .clone()
            .unwrap_or_else(|| PathBuf::from(SYSTEM_CONFIG)),
    ];
    if let Some(dir) = sources.user_dir.clone().or_else(config_dir) {
        for name in ["config.toml", "config.yaml", "config.yml"] {
            out.push(dir.join(name));
        }
    }
    if let Some(f) = &sources.file {
        out.push(f.clone());
    }
    out
}

/// The merged figment for `sources`.
pub fn figment(sources: &Sources) -> Result<Figment> {
    let mut fig = Figment::from(Serialized::defaults(Config::default()));
    for f in files(sources) {
        fig = merge_file(fig, &f);
    }
    if let Some(f) = &sources.file
        && !f.is_file()
    {
        return Err(Error::new(
            ErrorKind::NotFound,
            format!(
                "config file {} does not exist; check the --config path",
                f.display()
            ),
        ));
    }
    if sources.env {
        fig = fig.merge(Env::prefixed("AVM_").split("__").filter(|k| {
            // Only variables naming a configuration key are configuration: a script's own
            // AVM_SOMETHING must not make every avm command fail. `avm config check`
            // still lists the ones it ignores, so a typo does not go unnoticed.
            let k = k.as_str().to_lowercase();
            let top = k.split('.').next().unwrap_or("");
            !ENV_NOT_CONFIG.contains(&k.as_str()) && TOP_KEYS.contains(&top)
        }));
    }
    for (key, value) in &sources.flags {
        fig = fig.merge(Serialized::global(key, value.clone()));
    }
    Ok(fig)
}

fn merge_file(fig: Figment, path: &Path) -> Figment {
    let yaml = matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    );
    if yaml {
        fig.merge(Yaml::file_exact(path))
    } else {
        fig.merge(Toml::file_exact(path))
    }
}

/// Loads the configuration, failing on the first problem with a message naming its source.
pub fn load(sources: &Sources) -> Result<Config> {
    let fig = figment(sources)?;
    let mut cfg = fig.extract::<Config>().map_err(|e| {
        let first = e.into_iter().next();
        match first {
            Some(e) => Error::invalid(format!(
                "invalid configuration: {}; run `avm config check` to list every problem",
                describe(&e)
            )),
            None => Error::invalid("invalid configuration"),
        }
    })?;
    cfg.add_default_mount();
    Ok(cfg)
}

fn describe(e: &figment::Error) -> String {
    let mut s = String::new();
    if !e.path.is_empty() {
        s.push_str(&format!("{}: ", e.path.join(".")));
    }
    s.push_str(&e.kind.to_string());
    if let Some(md) = &e.metadata {
        match &md.source {
            Some(src) => s.push_str(&format!(" (from {src})")),
            None => s.push_str(&format!(" (from {})", md.name)),
        }
    }
    s
}

/// Expands a leading `~` and `${VAR}` / `$VAR` references (unknown variables are an error).
pub fn expand(raw: &str) -> Result<String> {
    let mut s = String::new();
    let rest = if raw == "~" || raw.starts_with("~/") {
        let h =
            home().ok_or_else(|| Error::invalid(format!("{raw:?} uses ~ but HOME is not set")))?;
        s.push_str(&h.to_string_lossy());
        &raw[1..]
    } else {
        raw
    };
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '$' {
            s.push(c);
            continue;
        }
        let braced = chars.peek() == Some(&'{');
        if braced {
            chars.next();
        }
        let mut name = String::new();
        while let Some(&n) = chars.peek() {
            if n.is_ascii_alphanumeric() || n == '_' {
                name.push(n);
                chars.next();
            } else {
                break;
            }
        }
        if braced && chars.next() != Some('}') {
            return Err(Error::invalid(format!("{raw:?}: unclosed ${{ in path")));
        }
        if name.is_empty() {
            s.push('$');
            continue;
        }
        let v = std::env::var(&name)
            .map_err(|_| Error::invalid(format!("{raw:?} refers to ${name}, which is not set")))?;
        s.push_str(&v);
    }
    Ok(s)
}
