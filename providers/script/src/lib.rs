//! avm-provider-script: serves paths by running a configured program (config type `script`).
//!
//! ```toml
//! [[mounts]]
//! pattern = "/tools/weather/{city}"
//! type = "script"
//! options = { program = "~/bin/weather", args = ["--city", "{city}"] }
//! ```
//!
//! The program is run directly, never through a shell. Each entry of `args` becomes exactly one
//! argv element and each `env` value one variable, so a capture value (`{city}` above) fills one
//! slot whatever it contains: spaces, quotes, `;`, `$(...)`, `../` or newlines reach the program
//! as plain bytes of that one argument. Placeholders: `{name}` for each capture of the pattern,
//! `{rest}` for `**`, `{path}` (the full path), `{suffix}`, `{caller}` and `{query.KEY}`
//! (empty when absent); `{{` and `}}` are literal braces. An unknown placeholder is refused when
//! the provider is built.
//!
//! Every run also gets `AVM_PATH`, `AVM_SUFFIX` (empty if none), `AVM_CALLER` (`operator` or the
//! agent id) and `AVM_CAPTURE_<NAME>` per capture (uppercased, other characters → `_`; the `**`
//! capture is `AVM_CAPTURE_REST`).
//!
//! `program` and `write_program` are resolved when the provider is built: a value containing
//! `/` must name an executable file, a bare name is looked up in `PATH` then. A missing program
//! is therefore a construction error, not a per-request one.

mod run;
mod template;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::json;

use avm_core::config::expand;
use avm_core::router::Pattern;
use avm_core::{
    Entry, Error, ErrorKind, ListOptions, Listing, NodeKind, Ops, Output, Provider, ProviderInfo,
    Request, Result, Stat, WriteInput,
};

use template::{Context, Template, pattern_captures};

/// Options of a `script` mount.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptOptions {
    /// The program to run: a path (`~` and `${VAR}` expanded) or a name looked up in `PATH`.
    pub program: String,
    /// Argument templates; each becomes exactly one argv element. Default: none.
    #[serde(default)]
    pub args: Vec<String>,
    /// Environment variables, name → template.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Pass avm's whole environment to the child. Default false: the child gets only `PATH`,
    /// `HOME`, `LANG`, the `env` option and the `AVM_*` variables.
    #[serde(default)]
    pub inherit_env: bool,
    /// Working directory of the child (`~`/`${VAR}` expanded; must exist). Default: avm's.
    #[serde(default)]
    pub cwd: Option<String>,
    /// Milliseconds before the child (and its process group) is killed. Default 10000.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Most bytes of stdout accepted; more kills the child and fails with too-large.
    /// Default 1 MiB.
    #[serde(default = "default_max_output")]
    pub max_output: usize,
    /// Program run for writes, with the written content on its stdin; exit 0 is success and
    /// its stdout is the result. Without it the mount is read-only.
    #[serde(default)]
    pub write_program: Option<String>,
    /// Argument templates for `write_program`.
    #[serde(default)]
    pub write_args: Vec<String>,
    /// Fixed names shown when the mount's literal prefix is listed. Default: none.
    #[serde(default)]
    pub list: Vec<String>,
}

fn default_timeout_ms() -> u64 {
    10_000
}

fn default_max_output() -> usize {
    1024 * 1024
}

/// Variables set by avm itself; `env` may not set them.
const RESERVED_ENV: [&str; 3] = ["AVM_PATH", "AVM_SUFFIX", "AVM_CALLER"];

/// Variables passed through when `inherit_env` is false.
const KEPT_ENV: [&str; 3] = ["PATH", "HOME", "LANG"];

/// A program with its argument templates.
#[derive(Debug, Clone)]
struct Invocation {
    program: PathBuf,
    args: Vec<Template>,
}

/// A provider whose reads run a program and whose writes (optionally) feed one.
#[derive(Debug)]
pub struct ScriptProvider {
    pattern: Pattern,
    /// Pattern capture names (`**` for the rest).
    captures: Vec<String>,
    /// The literal prefix, when paths below it are served (so it acts as a directory).
    dir: Option<String>,
    read: Invocation,
    write: Option<Invocation>,
    env: Vec<(String, Template)>,
    inherit_env: bool,
    cwd: Option<PathBuf>,
    timeout: Duration,
    max_output: usize,
    list: Vec<String>,
    /// Query keys some template reads; others are refused.
    query_keys: Vec<String>,
}

impl ScriptProvider {
    /// Builds the provider for mount `pattern`, checking every option.
    pub fn new(pattern: &str, opts: ScriptOptions) -> Result<Self> {
        let parsed = Pattern::parse(pattern)?;
        let captures = pattern_captures(pattern)?;
        let prefix = parsed.literal_prefix();
        let literal_segments = prefix.split('/').filter(|s| !s.is_empty()).count();
        let all_segments = pattern.split('/').filter(|s| !s.is_empty()).count();
        let dir = (all_segments > literal_segments).then_some(prefix);

        let templates = |list: &[String], option: &str| -> Result<Vec<Template>> {
            list.iter()
                .enumerate()
                .map(|(i, a)| Template::parse(a, &format!("{option}[{i}]"), &captures))
                .collect()
        };
        let read = Invocation {
            program: resolve_program(&opts.program, "program")?,
            args: templates(&opts.args, "args")?,
        };
        let write = match &opts.write_program {
            Some(p) => Some(Invocation {
                program: resolve_program(p, "write_program")?,
                args: templates(&opts.write_args, "write_args")?,
            }),
            None if !opts.write_args.is_empty() => {
                return Err(Error::invalid(
                    "option write_args is set but write_program is not; set write_program or remove write_args",
                ));
            }
            None => None,
        };
        let mut env = Vec::new();
        for (name, value) in &opts.env {
            let bad_name = name.is_empty()
                || name.contains(['=', '\0'])
                || RESERVED_ENV.contains(&name.as_str())
                || name.starts_with("AVM_CAPTURE_");
            if bad_name {
                return Err(Error::invalid(format!(
                    "option env: variable name {name:?} is not accepted; use a non-empty name without '=' that is not one of avm's own (AVM_PATH, AVM_SUFFIX, AVM_CALLER, AVM_CAPTURE_*)"
                )));
            }
            env.push((
                name.clone(),
                Template::parse(value, &format!("env.{name}"), &captures)?,
            ));
        }
        let cwd = match &opts.cwd {
            Some(raw) => {
                let p = PathBuf::from(expand(raw).map_err(|e| e.context("option cwd"))?);
                if !p.is_dir() {
                    return Err(Error::invalid(format!(
                        "option cwd: {raw:?} is not an existing directory"
                    )));
                }
                Some(p)
            }
            None => None,
        };
        if opts.timeout_ms == 0 {
            return Err(Error::invalid(
                "option timeout_ms must be at least 1 (milliseconds)",
            ));
        }
        if opts.max_output == 0 {
            return Err(Error::invalid(
                "option max_output must be at least 1 (bytes of stdout)",
            ));
        }
        for name in &opts.list {
            if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
                return Err(Error::invalid(format!(
                    "option list: {name:?} is not a file name; use names without '/', not '.' or '..'"
                )));
            }
        }
        if !opts.list.is_empty() && dir.is_none() {
            return Err(Error::invalid(format!(
                "option list: pattern {pattern:?} has no directory to list; use a pattern with a capture or ** below a literal prefix"
            )));
        }
        let mut query_keys: Vec<String> = read
            .args
            .iter()
            .chain(write.iter().flat_map(|w| w.args.iter()))
            .chain(env.iter().map(|(_, t)| t))
            .flat_map(|t| t.query_keys().map(str::to_string))
            .collect();
        query_keys.sort();
        query_keys.dedup();
        Ok(ScriptProvider {
            pattern: parsed,
            captures,
            dir,
            read,
            write,
            env,
            inherit_env: opts.inherit_env,
            cwd,
            timeout: Duration::from_millis(opts.timeout_ms),
            max_output: opts.max_output,
            list: opts.list,
            query_keys,
        })
    }

    fn is_dir(&self, path: &str) -> bool {
        self.dir.as_deref() == Some(path)
    }

    fn served(&self, req: &Request, op: &str) -> Result<BTreeMap<String, String>> {
        req.file_captures(&self.pattern, self.dir.as_deref(), op)
    }

    fn command(
        &self,
        inv: &Invocation,
        req: &Request,
        caps: &BTreeMap<String, String>,
    ) -> Result<Command> {
        let caller = req.caller.agent().unwrap_or("operator");
        let suffix = req.suffix.as_deref().unwrap_or("");
        let ctx = Context {
            captures: caps,
            path: &req.path,
            suffix,
            caller,
            query: &req.query,
        };
        let mut cmd = Command::new(&inv.program);
        for a in &inv.args {
            let arg = a.render(&ctx);
            // A value from the request that opens an argument would read as an option
            // (`--output=/home/u/.bashrc`): it stays one argument, but not one that starts
            // with `-` unless the template itself put the dash there.
            if arg.starts_with('-') && !a.starts_with_literal_dash() {
                return Err(Error::invalid(format!(
                    "{}: a value starting with '-' cannot open an argument of {} (it would read as an option)",
                    req.path,
                    inv.program.display()
                )));
            }
            cmd.arg(arg);
        }
        if !self.inherit_env {
            cmd.env_clear();
            for k in KEPT_ENV {
                if let Some(v) = std::env::var_os(k) {
                    cmd.env(k, v);
                }
            }
        }
        for (k, t) in &self.env {
            cmd.env(k, t.render(&ctx));
        }
        cmd.env("AVM_PATH", &req.path)
            .env("AVM_SUFFIX", suffix)
            .env("AVM_CALLER", caller);
        // Only the pattern's own capture names become variables, so a request cannot invent
        // variable names.
        for name in &self.captures {
            let value = caps.get(name).map_or("", String::as_str);
            cmd.env(format!("AVM_CAPTURE_{}", env_name(name)), value);
        }
        if let Some(d) = &self.cwd {
            cmd.current_dir(d);
        }
        Ok(cmd)
    }

    fn limits(&self, req: &Request) -> run::Limits {
        let own = Instant::now() + self.timeout;
        match req.deadline {
            Some(d) if d < own => run::Limits {
                deadline: d,
                deadline_label: "the caller's deadline".into(),
                max_output: self.max_output,
            },
            _ => run::Limits {
                deadline: own,
                deadline_label: format!("timeout_ms ({} ms)", self.timeout.as_millis()),
                max_output: self.max_output,
            },
        }
    }

    fn exec(
        &self,
        inv: &Invocation,
        req: &Request,
        stdin: Option<Vec<u8>>,
        op: &str,
    ) -> Result<String> {
        let caps = self.served(req, op)?;
        let keys: Vec<&str> = self.query_keys.iter().map(String::as_str).collect();
        req.query.check_keys(&keys, &req.describe(op))?;
        let label = format!("{} (for {})", inv.program.display(), req.path);
        let out = run::run(
            self.command(inv, req, &caps)?,
            stdin,
            &self.limits(req),
            &label,
        )?;
        Ok(String::from_utf8_lossy(&out).into_owned())
    }
}

/// `city` → `CITY`, `**` → `REST`, anything not alphanumeric → `_`.
fn env_name(capture: &str) -> String {
    if capture == "**" {
        return "REST".into();
    }
    capture
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

fn is_executable_file(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Resolves `program` now, so a missing one is a config error rather than a failing read.
fn resolve_program(raw: &str, option: &str) -> Result<PathBuf> {
    if raw.trim().is_empty() {
        return Err(Error::invalid(format!(
            "option {option} is empty; name a program or a path to one"
        )));
    }
    let expanded = expand(raw).map_err(|e| e.context(format!("option {option}")))?;
    if expanded.contains('/') {
        let p = std::path::absolute(&expanded).map_err(|e| {
            Error::invalid(format!(
                "option {option}: {raw:?} is not a usable path: {e}"
            ))
        })?;
        if !is_executable_file(&p) {
            return Err(Error::invalid(format!(
                "option {option}: {raw:?} is not an executable file"
            )));
        }
        return Ok(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(&expanded))
        .find(|p| is_executable_file(p))
        .ok_or_else(|| {
            Error::invalid(format!(
                "option {option}: program {raw:?} is not found in PATH; give a full path or install it"
            ))
        })
}

impl Provider for ScriptProvider {
    fn info(&self) -> ProviderInfo {
        ProviderInfo {
            kind: "script".into(),
            description: format!(
                "runs {} for each read{}",
                self.read.program.display(),
                match &self.write {
                    Some(w) => format!("; writes go to {} on stdin", w.program.display()),
                    None => String::new(),
                }
            ),
            ops: Ops {
                read: true,
                list: self.dir.is_some(),
                write: self.write.is_some(),
                ..Ops::default()
            },
            suffixes: Vec::new(),
        }
    }

    fn read(&self, req: &Request) -> Result<Output> {
        let text = self.exec(&self.read, req, None, "read")?;
        Ok(Output::text(text))
    }

    fn stat(&self, req: &Request) -> Result<Stat> {
        // Content is generated on read, so its size is unknown without running the program.
        let kind = if self.is_dir(&req.path) {
            NodeKind::Dir
        } else {
            self.served(req, "stat")?;
            NodeKind::File
        };
        Ok(Stat::untimed(kind, 0))
    }

    fn list(&self, req: &Request, opts: &ListOptions) -> Result<Listing> {
        if !self.is_dir(&req.path) {
            self.served(req, "list")?;
            return Err(Error::new(
                ErrorKind::NotADirectory,
                format!("{} is generated content, not a directory", req.path),
            ));
        }
        let mut entries: Vec<Entry> = self
            .list
            .iter()
            .map(|name| Entry {
                path: avm_core::address::join(&req.path, name),
                kind: NodeKind::File,
                size: 0,
                version: None,
                updated_at: None,
            })
            .collect();
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        entries.dedup_by(|a, b| a.path == b.path);
        Ok(Listing::page(entries, opts))
    }

    fn write(&self, req: &Request, input: WriteInput) -> Result<Output> {
        let Some(inv) = &self.write else {
            return Err(Error::new(
                ErrorKind::ReadOnly,
                format!(
                    "{} is served by a script mount without write_program",
                    req.path
                ),
            ));
        };
        let content = match input {
            WriteInput::Text(t) => avm_core::Content::from(t),
            WriteInput::Put(p) => {
                let only_content = p.meta.is_none()
                    && p.tags.is_none()
                    && p.importance.is_none()
                    && p.expires_at.is_none()
                    && !p.append
                    && !p.create_only;
                match p.content {
                    Some(c) if only_content => c,
                    _ => {
                        return Err(Error::invalid(format!(
                            "{}: a script mount accepts plain content only (no append, create-only, metadata, tags, importance or expiry)",
                            req.describe("write")
                        )));
                    }
                }
            }
            WriteInput::Record(_) => {
                return Err(Error::invalid(format!(
                    "{}: a script mount cannot import records; write plain content",
                    req.describe("write")
                )));
            }
        };
        let out = self.exec(inv, req, Some(content.as_bytes().to_vec()), "write")?;
        Ok(Output::new(
            out.clone(),
            json!({"path": req.path, "output": out}),
        ))
    }
}
