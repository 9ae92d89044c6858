//! `avm hooks`: coding-agent hooks. Memory reachable only as MCP tools is rarely called by a
//! coding agent; the agent's own lifecycle hooks bring it in without asking: when a session
//! starts, the project's recall goes into the agent's context; when the session ends (or its
//! context is compacted), what the session did is remembered for the next one.
//!
//! `install` writes the agent's hook configuration (Claude Code's `settings.json`, Codex's
//! `hooks.json`: the same `{"hooks": {EVENT: [{"matcher"?, "hooks": [{"type": "command",
//! "command", "timeout"}]}]}}` shape), keeping everything else in the file; `uninstall` removes
//! exactly the handlers whose command is `… hooks run AGENT …`; `run` is what those commands
//! execute: it reads the agent's hook JSON on stdin, and whatever happens exits 0 within its
//! time limit, so a broken store never breaks the agent's session.
//!
//! Project memories live in the shared namespace `projects/NAME` (NAME: the session's git
//! repository, else its directory, or `--project`), one memory per session at
//! `/memory/shared/projects/NAME/sessions/DATE_SESSION.md`, tagged `session` and
//! `project:NAME`, rewritten in place as the session goes on (its history keeps the earlier
//! versions).

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use serde_json::{Map, Value, json};

use avm_core::{Error, ErrorKind, Result};
use avm_recall::Memory;

use crate::app::App;
use crate::cli::{Global, HookAgent, HookEvent, HookScope, HooksAction};
use crate::commands::{addr, print_json};

/// `avm hooks --help`, after the commands.
pub const AFTER_HELP: &str = "\
Claude Code: SessionStart runs `avm hooks run claude-code session-start`, which prints the project's recall (within --max-tokens) for Claude to read; PreCompact and SessionEnd run `… pre-compact` and `… session-end`, which read the session's transcript and remember what was asked, the files changed, the summary of a compaction and the last answer.
Codex (hooks.json; its `hooks` feature is on by default in recent versions): SessionStart, PreCompact, and Stop after each turn, since Codex has no session-end event.
Memories: /memory/shared/projects/NAME/sessions/DATE_SESSION.md (tags session, project:NAME), one per session, updated in place; NAME is the session's git repository (else its directory) unless --project.
A hook never fails the agent's session: an error is a note on stderr, and it exits 0 within 20 s.

Examples:
  avm hooks install claude-code
  avm hooks install claude-code --scope project --avm avm --max-tokens 1500
  avm hooks status --json
  avm hooks uninstall claude-code";

/// The agent's name on the command line (and in the installed commands).
fn agent_name(a: HookAgent) -> &'static str {
    match a {
        HookAgent::ClaudeCode => "claude-code",
        HookAgent::Codex => "codex",
    }
}

/// The agent's name for people.
fn agent_title(a: HookAgent) -> &'static str {
    match a {
        HookAgent::ClaudeCode => "Claude Code",
        HookAgent::Codex => "Codex",
    }
}

fn event_name(e: HookEvent) -> &'static str {
    match e {
        HookEvent::SessionStart => "session-start",
        HookEvent::SessionEnd => "session-end",
        HookEvent::PreCompact => "pre-compact",
        HookEvent::Stop => "stop",
    }
}

fn scope_name(s: HookScope) -> &'static str {
    match s {
        HookScope::User => "user",
        HookScope::Project => "project",
        HookScope::Local => "local",
    }
}

/// One hook avm installs: the agent's event, what avm does then, the agent's timeout (s).
struct Slot {
    event: &'static str,
    run: HookEvent,
    timeout: u64,
    does: &'static str,
}

/// The hooks avm installs for `agent`. Timeouts are the agent's; `hooks run` gives up earlier
/// (20 s) on its own. Claude Code gives SessionEnd hooks 1.5 s unless they declare a timeout.
fn slots(agent: HookAgent) -> [Slot; 3] {
    let start = Slot {
        event: "SessionStart",
        run: HookEvent::SessionStart,
        timeout: 30,
        does: "recall for the project",
    };
    let compact = Slot {
        event: "PreCompact",
        run: HookEvent::PreCompact,
        timeout: 60,
        does: "remember what the session did so far",
    };
    match agent {
        HookAgent::ClaudeCode => [
            start,
            compact,
            Slot {
                event: "SessionEnd",
                run: HookEvent::SessionEnd,
                timeout: 30,
                does: "remember what the session did",
            },
        ],
        HookAgent::Codex => [
            start,
            compact,
            Slot {
                event: "Stop",
                run: HookEvent::Stop,
                timeout: 30,
                does: "remember what the session did so far (after each turn)",
            },
        ],
    }
}

/// Runs `avm hooks …`.
pub fn run(g: &Global, action: &HooksAction, j: bool) -> Result<ExitCode> {
    match action {
        HooksAction::Install {
            coding_agent: agent,
            scope,
            dir,
            max_tokens,
            project,
            avm,
        } => install(
            g,
            *agent,
            *scope,
            dir.as_deref(),
            *max_tokens,
            project.as_deref(),
            avm.as_deref(),
            j,
        ),
        HooksAction::Uninstall {
            coding_agent: agent,
            scope,
            dir,
        } => uninstall(*agent, *scope, dir.as_deref(), j),
        HooksAction::Status { dir } => status(dir.as_deref(), j),
        HooksAction::Run {
            coding_agent: agent,
            event,
            max_tokens,
            project,
            time_limit,
        } => Ok(run_hook(
            g,
            *agent,
            *event,
            *max_tokens,
            project.clone(),
            *time_limit,
        )),
    }
}

// ---------------------------------------------------------------------------------------------
// Where the settings are.

fn home() -> Result<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .ok_or_else(|| {
            Error::new(
                ErrorKind::Unavailable,
                "HOME is not set, so the user's settings cannot be found",
            )
        })
}

/// An environment variable naming a directory, when set.
fn env_dir(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

fn project_dir(dir: Option<&Path>) -> Result<PathBuf> {
    let d = match dir {
        Some(d) => d.to_path_buf(),
        None => std::env::current_dir()
            .map_err(|e| Error::internal(format!("cannot tell the current directory: {e}")))?,
    };
    std::path::absolute(&d)
        .map_err(|e| Error::invalid(format!("cannot resolve {}: {e}", d.display())))
}

/// The settings file of `agent` at `scope`.
fn settings_path(agent: HookAgent, scope: HookScope, dir: Option<&Path>) -> Result<PathBuf> {
    Ok(match (agent, scope) {
        (HookAgent::ClaudeCode, HookScope::User) => env_dir("CLAUDE_CONFIG_DIR")
            .map_or_else(|| home().map(|h| h.join(".claude")), Ok)?
            .join("settings.json"),
        (HookAgent::ClaudeCode, HookScope::Project) => {
            project_dir(dir)?.join(".claude/settings.json")
        }
        (HookAgent::ClaudeCode, HookScope::Local) => {
            project_dir(dir)?.join(".claude/settings.local.json")
        }
        (HookAgent::Codex, HookScope::User) => env_dir("CODEX_HOME")
            .map_or_else(|| home().map(|h| h.join(".codex")), Ok)?
            .join("hooks.json"),
        (HookAgent::Codex, HookScope::Project) => project_dir(dir)?.join(".codex/hooks.json"),
        (HookAgent::Codex, HookScope::Local) => {
            return Err(Error::invalid(
                "Codex has no local (uncommitted) hooks file: use --scope user or --scope project",
            ));
        }
    })
}

fn scopes(agent: HookAgent) -> &'static [HookScope] {
    match agent {
        HookAgent::ClaudeCode => &[HookScope::User, HookScope::Project, HookScope::Local],
        HookAgent::Codex => &[HookScope::User, HookScope::Project],
    }
}

// ---------------------------------------------------------------------------------------------
// Editing the settings JSON.

/// The settings in `path`: `None` when there is no file. A file that is not a JSON object is
/// an error: avm leaves it as it is.
fn read_settings(path: &Path) -> Result<Option<Value>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(Error::new(
                ErrorKind::Unavailable,
                format!("cannot read {}: {e}", path.display()),
            ));
        }
    };
    if text.trim().is_empty() {
        return Ok(Some(Value::Object(Map::new())));
    }
    let v: Value = serde_json::from_str(&text).map_err(|e| {
        Error::invalid(format!(
            "{} is not JSON ({e}); avm leaves it as it is: fix it, then try again",
            path.display()
        ))
    })?;
    if !v.is_object() {
        return Err(Error::invalid(format!(
            "{} is not a JSON object; avm leaves it as it is",
            path.display()
        )));
    }
    Ok(Some(v))
}

/// Writes `v` to `path` through a temporary file renamed over it (a symbolic link is followed,
/// so a settings file kept elsewhere stays there), keeping the file's permissions.
fn write_settings(path: &Path, v: &Value) -> Result<()> {
    let target = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let fail = |what: &str, e: std::io::Error| {
        Error::new(
            ErrorKind::Unavailable,
            format!("cannot {what} {}: {e}", target.display()),
        )
    };
    let dir = target.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| fail("create the directory of", e))?;
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "settings.json".into());
    let tmp = dir.join(format!(".{name}.avm-{}.tmp", std::process::id()));
    let mut text = serde_json::to_string_pretty(v)
        .map_err(|e| Error::internal(format!("cannot write the settings as JSON: {e}")))?;
    text.push('\n');
    let written = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        if let Ok(m) = std::fs::metadata(&target) {
            std::fs::set_permissions(&tmp, m.permissions())?;
        }
        std::fs::rename(&tmp, &target)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(fail("write", e));
    }
    Ok(())
}

/// What marks a handler as avm's: its command runs `hooks run AGENT`.
fn marker(agent: HookAgent) -> String {
    format!(" hooks run {} ", agent_name(agent))
}

fn is_ours(handler: &Value, agent: HookAgent) -> bool {
    handler["command"]
        .as_str()
        .is_some_and(|c| format!("{c} ").contains(&marker(agent)))
}

/// avm's handlers in `settings`: (event, command, timeout).
fn ours(settings: &Value, agent: HookAgent) -> Vec<(String, String, Option<u64>)> {
    let mut out = Vec::new();
    let Some(hooks) = settings["hooks"].as_object() else {
        return out;
    };
    for (event, groups) in hooks {
        for group in groups.as_array().into_iter().flatten() {
            for h in group["hooks"].as_array().into_iter().flatten() {
                if is_ours(h, agent) {
                    out.push((
                        event.clone(),
                        h["command"].as_str().unwrap_or_default().to_string(),
                        h["timeout"].as_u64(),
                    ));
                }
            }
        }
    }
    out
}

/// Removes avm's handlers for `agent`, and what held only them (a matcher group, an event's
/// list, the `hooks` object); everything else stays where it was. Returns how many went.
fn strip(settings: &mut Value, agent: HookAgent) -> usize {
    let Some(root) = settings.as_object_mut() else {
        return 0;
    };
    let Some(hooks) = root.get_mut("hooks").and_then(Value::as_object_mut) else {
        return 0;
    };
    let mut removed = 0;
    let mut emptied = Vec::new();
    for (event, groups) in hooks.iter_mut() {
        let Some(groups) = groups.as_array_mut() else {
            continue;
        };
        let mut here = 0;
        groups.retain_mut(|group| {
            let Some(hs) = group.get_mut("hooks").and_then(Value::as_array_mut) else {
                return true;
            };
            let before = hs.len();
            hs.retain(|h| !is_ours(h, agent));
            let gone = before - hs.len();
            here += gone;
            !(gone > 0 && hs.is_empty())
        });
        removed += here;
        if here > 0 && groups.is_empty() {
            emptied.push(event.clone());
        }
    }
    for e in emptied {
        hooks.shift_remove(&e);
    }
    if removed > 0 && hooks.is_empty() {
        root.shift_remove("hooks");
    }
    removed
}

/// Adds one matcher group per hook (no matcher: every source, reason or trigger).
fn add(settings: &mut Value, path: &Path, entries: &[(&str, String, u64)]) -> Result<()> {
    let bad = |what: &str| {
        Error::invalid(format!(
            "{}: {what}; avm leaves the file as it is",
            path.display()
        ))
    };
    let root = settings
        .as_object_mut()
        .ok_or_else(|| bad("not a JSON object"))?;
    let hooks = root
        .entry("hooks")
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
        .ok_or_else(|| bad("\"hooks\" is not an object"))?;
    for (event, _, _) in entries {
        if hooks.get(*event).is_some_and(|v| !v.is_array()) {
            return Err(bad(&format!("\"hooks\".\"{event}\" is not a list")));
        }
    }
    for (event, command, timeout) in entries {
        if let Some(list) = hooks
            .entry(event.to_string())
            .or_insert_with(|| Value::Array(Vec::new()))
            .as_array_mut()
        {
            list.push(
                json!({"hooks": [{"type": "command", "command": command, "timeout": timeout}]}),
            );
        }
    }
    Ok(())
}

/// `s` for `sh -c`: as it is when it is plain, else single-quoted.
fn sh_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+=:,@%".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// The command a hook runs: this avm (or `avm_program`), the global options given to install,
/// then `hooks run AGENT EVENT`.
fn hook_command(
    g: &Global,
    avm_program: &str,
    agent: HookAgent,
    event: HookEvent,
    max_tokens: usize,
    project: Option<&str>,
) -> String {
    let mut parts = vec![sh_quote(avm_program)];
    let abs = |p: &Path| {
        std::path::absolute(p)
            .unwrap_or_else(|_| p.to_path_buf())
            .to_string_lossy()
            .into_owned()
    };
    if let Some(db) = &g.db {
        let d = db.to_string_lossy();
        // A PostgreSQL address stays as typed; a file becomes absolute (the agent's hooks run
        // in the project's directory).
        let d = if d.contains("://") {
            d.into_owned()
        } else {
            abs(db)
        };
        parts.extend(["--db".to_string(), sh_quote(&d)]);
    }
    if let Some(c) = &g.config {
        parts.extend(["--config".to_string(), sh_quote(&abs(c))]);
    }
    if let Some(a) = &g.agent {
        parts.extend(["--agent".to_string(), sh_quote(a)]);
    }
    parts.extend([
        "hooks".to_string(),
        "run".to_string(),
        agent_name(agent).to_string(),
        event_name(event).to_string(),
    ]);
    if event == HookEvent::SessionStart {
        parts.extend(["--max-tokens".to_string(), max_tokens.to_string()]);
    }
    if let Some(p) = project {
        parts.extend(["--project".to_string(), sh_quote(p)]);
    }
    parts.join(" ")
}

#[allow(clippy::too_many_arguments)]
fn install(
    g: &Global,
    agent: HookAgent,
    scope: HookScope,
    dir: Option<&Path>,
    max_tokens: usize,
    project: Option<&str>,
    avm_program: Option<&str>,
    j: bool,
) -> Result<ExitCode> {
    if max_tokens == 0 {
        return Err(Error::invalid("--max-tokens must be at least 1"));
    }
    let project = project.map(project_slug);
    let path = settings_path(agent, scope, dir)?;
    let program = match avm_program {
        Some(p) => p.to_string(),
        None => std::env::current_exe()
            .map_err(|e| Error::internal(format!("cannot tell where this avm is: {e}")))?
            .to_string_lossy()
            .into_owned(),
    };
    let before = read_settings(&path)?;
    let mut settings = before.clone().unwrap_or_else(|| Value::Object(Map::new()));
    strip(&mut settings, agent);
    let slots = slots(agent);
    let entries: Vec<(&str, String, u64)> = slots
        .iter()
        .map(|s| {
            (
                s.event,
                hook_command(g, &program, agent, s.run, max_tokens, project.as_deref()),
                s.timeout,
            )
        })
        .collect();
    add(&mut settings, &path, &entries)?;
    let changed = before.as_ref() != Some(&settings);
    if changed {
        write_settings(&path, &settings)?;
    }
    if j {
        print_json(&json!({
            "agent": agent_name(agent),
            "scope": scope_name(scope),
            "file": path,
            "changed": changed,
            "hooks": entries.iter().map(|(e, c, t)| json!({"event": e, "command": c, "timeout": t})).collect::<Vec<_>>(),
        }));
        return Ok(ExitCode::SUCCESS);
    }
    if changed {
        println!(
            "Installed avm hooks for {} in {}:",
            agent_title(agent),
            path.display()
        );
    } else {
        println!(
            "avm hooks for {} are already installed in {} (unchanged):",
            agent_title(agent),
            path.display()
        );
    }
    for s in &slots {
        let budget = if s.run == HookEvent::SessionStart {
            format!(" (up to {max_tokens} tokens)")
        } else {
            String::new()
        };
        println!("  {:<13} {}{budget}", s.event, s.does);
    }
    let scope_flag = match scope {
        HookScope::User => String::new(),
        s => format!(" --scope {}", scope_name(s)),
    };
    println!(
        "Project memories: /memory/shared/projects/{}/sessions/. Remove the hooks with: avm hooks uninstall {}{scope_flag}",
        project.as_deref().unwrap_or("NAME"),
        agent_name(agent)
    );
    if agent == HookAgent::Codex {
        println!(
            "Codex runs them while its hooks feature is on ([features] hooks = true in ~/.codex/config.toml; the default in recent versions) and may ask you to review new hooks first."
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn uninstall(agent: HookAgent, scope: HookScope, dir: Option<&Path>, j: bool) -> Result<ExitCode> {
    let path = settings_path(agent, scope, dir)?;
    let mut removed = 0;
    let mut deleted = false;
    if let Some(mut settings) = read_settings(&path)? {
        removed = strip(&mut settings, agent);
        if removed > 0 {
            // A file that held only avm's hooks goes, as it came.
            if settings.as_object().is_some_and(Map::is_empty) {
                std::fs::remove_file(&path).map_err(|e| {
                    Error::new(
                        ErrorKind::Unavailable,
                        format!("cannot remove {}: {e}", path.display()),
                    )
                })?;
                deleted = true;
            } else {
                write_settings(&path, &settings)?;
            }
        }
    }
    if j {
        print_json(&json!({
            "agent": agent_name(agent),
            "scope": scope_name(scope),
            "file": path,
            "removed": removed,
            "file_removed": deleted,
        }));
    } else if removed == 0 {
        println!(
            "No avm hooks for {} in {}.",
            agent_title(agent),
            path.display()
        );
    } else {
        println!(
            "Removed {removed} avm hook{} for {} from {}{}.",
            if removed == 1 { "" } else { "s" },
            agent_title(agent),
            path.display(),
            if deleted {
                " (the file held nothing else, so it went too)"
            } else {
                ""
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn status(dir: Option<&Path>, j: bool) -> Result<ExitCode> {
    let mut rows = Vec::new();
    for agent in [HookAgent::ClaudeCode, HookAgent::Codex] {
        for scope in scopes(agent) {
            let path = settings_path(agent, *scope, dir)?;
            let (hooks, problem) = match read_settings(&path) {
                Ok(Some(v)) => (ours(&v, agent), None),
                Ok(None) => (Vec::new(), None),
                Err(e) => (Vec::new(), Some(e.message().to_string())),
            };
            rows.push((agent, *scope, path, hooks, problem));
        }
    }
    if j {
        print_json(&Value::Array(
            rows.iter()
                .map(|(a, s, p, h, problem)| {
                    json!({
                        "agent": agent_name(*a),
                        "scope": scope_name(*s),
                        "file": p,
                        "installed": !h.is_empty(),
                        "hooks": h.iter().map(|(e, c, t)| json!({"event": e, "command": c, "timeout": t})).collect::<Vec<_>>(),
                        "error": problem,
                    })
                })
                .collect(),
        ));
        return Ok(ExitCode::SUCCESS);
    }
    for (a, s, p, h, problem) in &rows {
        let what = match (problem, h.is_empty()) {
            (Some(e), _) => format!("cannot tell: {e}"),
            (None, true) => "not installed".to_string(),
            (None, false) => h
                .iter()
                .map(|(e, _, _)| e.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        };
        println!(
            "{:<12} {:<8} {}  {what}",
            agent_name(*a),
            scope_name(*s),
            p.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------------------------------------
// Running a hook.

/// Runs one hook with a time limit. Always exits 0: what went wrong is a note on stderr, which
/// the agent shows in its debug output, and the session goes on.
fn run_hook(
    g: &Global,
    agent: HookAgent,
    event: HookEvent,
    max_tokens: usize,
    project: Option<String>,
    limit: u64,
) -> ExitCode {
    let (tx, rx) = std::sync::mpsc::channel();
    let g = g.clone();
    let spawned = std::thread::Builder::new()
        .name("hook".into())
        .spawn(move || {
            let r = hook(&g, agent, event, max_tokens, project.as_deref());
            let _ = tx.send(r);
        });
    let note = |m: &str| {
        eprintln!(
            "avm hooks run {} {}: {m}; the session goes on without it",
            agent_name(agent),
            event_name(event)
        );
    };
    if let Err(e) = spawned {
        note(&format!("cannot start: {e}"));
        return ExitCode::SUCCESS;
    }
    match rx.recv_timeout(Duration::from_secs(limit.max(1))) {
        Ok(Ok(Some(out))) => {
            let mut o = std::io::stdout().lock();
            let _ = o.write_all(out.as_bytes());
            let _ = o.flush();
        }
        Ok(Ok(None)) => {}
        Ok(Err(e)) => note(e.message()),
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            note(&format!("gave up after {limit} s"));
            // The work may hold a lock or wait on stdin: leave without it.
            std::process::exit(0);
        }
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => note("failed"),
    }
    ExitCode::SUCCESS
}

/// The largest hook input read from stdin.
const MAX_INPUT: u64 = 4 << 20;

/// The agent's hook JSON from stdin (`{}` when stdin is a terminal or empty).
fn read_input() -> Result<Value> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        return Ok(Value::Object(Map::new()));
    }
    let mut text = String::new();
    stdin
        .lock()
        .take(MAX_INPUT)
        .read_to_string(&mut text)
        .map_err(|e| Error::invalid(format!("cannot read the hook input on stdin: {e}")))?;
    if text.trim().is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    let v: Value = serde_json::from_str(&text)
        .map_err(|e| Error::invalid(format!("the hook input on stdin is not JSON: {e}")))?;
    if !v.is_object() {
        return Err(Error::invalid(
            "the hook input on stdin is not a JSON object",
        ));
    }
    Ok(v)
}

fn hook(
    g: &Global,
    agent: HookAgent,
    event: HookEvent,
    max_tokens: usize,
    project: Option<&str>,
) -> Result<Option<String>> {
    let input = read_input()?;
    let cwd = match input["cwd"].as_str().filter(|c| !c.is_empty()) {
        Some(c) => PathBuf::from(c),
        None => project_dir(None)?,
    };
    let root = project_root(&cwd);
    let name = match project {
        Some(p) => project_slug(p),
        None => project_slug(
            &root
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        ),
    };
    match event {
        HookEvent::SessionStart => session_start(g, &name, max_tokens),
        _ => capture(g, agent, event, &input, &root, &name),
    }
}

/// The project a directory belongs to: the nearest directory above it (itself included) with a
/// `.git`, else the directory itself.
fn project_root(cwd: &Path) -> PathBuf {
    cwd.ancestors()
        .find(|d| d.join(".git").exists())
        .unwrap_or(cwd)
        .to_path_buf()
}

/// A project's name as a namespace segment: lower case, letters, digits, `-`, `_` and `.`
/// kept, anything else one `-`; `project` when nothing is left.
fn project_slug(name: &str) -> String {
    let mut out = String::new();
    for c in name.trim().to_lowercase().chars() {
        if c.is_alphanumeric() || c == '_' || c == '.' {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let out = out.trim_matches(|c| c == '-' || c == '.').to_string();
    if out.is_empty() {
        "project".into()
    } else {
        out
    }
}

/// SessionStart: the project's recall, as the JSON both agents read (`additionalContext` goes
/// into the model's context); nothing when nothing is recalled.
fn session_start(g: &Global, name: &str, max_tokens: usize) -> Result<Option<String>> {
    let header = format!(
        "Memory from avm for project {name}, recalled as this session started (`avm fetch @ID` shows a memory in full; `avm remember --namespace projects/{name} \"...\"` keeps a fact for later sessions):\n\n"
    );
    let used = avm_recall::tokens::count(&header).unwrap_or(header.len() / 3);
    // A budget too small for the header and a recall injects nothing.
    if max_tokens < used + avm_recall::recall::MIN_TOKENS {
        return Ok(None);
    }
    let app = App::open(g)?;
    let query = name.replace(['-', '_', '.'], " ");
    let pairs = [
        ("q", query),
        ("max_tokens", (max_tokens - used).to_string()),
    ];
    let o = app.read_warm(&app.caller, &addr("/", "recall", &pairs)?)?;
    if o.data()["items"].as_array().is_none_or(Vec::is_empty) {
        return Ok(None);
    }
    let context = format!("{header}{}", o.text.trim_end());
    let out = json!({
        "hookSpecificOutput": {"hookEventName": "SessionStart", "additionalContext": context}
    });
    Ok(Some(format!("{out}\n")))
}

/// SessionEnd, PreCompact, Stop: remembers what the transcript says the session did, at the
/// session's own path (rewritten as the session goes on).
fn capture(
    g: &Global,
    agent: HookAgent,
    event: HookEvent,
    input: &Value,
    root: &Path,
    name: &str,
) -> Result<Option<String>> {
    let transcript = input["transcript_path"]
        .as_str()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| Error::invalid("the hook input names no transcript_path"))?;
    let d = Digest::read(Path::new(transcript), root)?;
    if d.prompts.is_empty() && d.last_reply.is_none() {
        // Nothing was asked or answered: nothing to keep.
        return Ok(None);
    }
    let session = input["session_id"]
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .or_else(|| {
            Path::new(transcript)
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
        })
        .unwrap_or_default();
    let short: String = session
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(8)
        .collect();
    let day = d
        .first_at
        .as_deref()
        .and_then(|t| t.get(..10))
        .map(str::to_string)
        .unwrap_or_else(|| chrono::Utc::now().format("%Y-%m-%d").to_string());
    let ns = format!("projects/{name}");
    let path = format!(
        "/memory/shared/{ns}/sessions/{}_{}.md",
        day.replace('-', ""),
        if short.is_empty() { "session" } else { &short }
    );
    let content = d.compose(agent, event, input, root, name, &session);
    let m = Memory {
        content,
        title: Some(format!("Session of {day} in {name}")),
        importance: Some(0.6),
        tags: vec![
            "session".into(),
            format!("project:{name}"),
            agent_name(agent).into(),
        ],
        source: Some(format!("hook:{}", agent_name(agent))),
        namespace: Some(ns),
        path: Some(path),
        ttl: None,
        at: None,
    };
    let app = App::open(g)?;
    avm_recall::remember(&app.host, app.store.as_ref(), &app.caller, &m)?;
    let _ = app.memory.store().sync();
    Ok(None)
}

// ---------------------------------------------------------------------------------------------
// What a transcript says.

/// The notable parts of a session's transcript (Claude Code's JSONL, or Codex's rollout
/// JSONL): the prompts the person typed, the assistant's last reply, the files its tools
/// changed, the latest compaction summary, when it began and last moved.
#[derive(Debug, Default)]
struct Digest {
    prompts: Vec<String>,
    last_reply: Option<String>,
    files: Vec<String>,
    compact_summary: Option<String>,
    first_at: Option<String>,
    last_at: Option<String>,
}

/// The text of a message's content: a string, or the blocks of the given types joined.
fn text_of(content: &Value, kinds: &[&str]) -> Option<String> {
    let t = match content {
        Value::String(s) => s.trim().to_string(),
        Value::Array(blocks) => blocks
            .iter()
            .filter(|b| b["type"].as_str().is_some_and(|k| kinds.contains(&k)))
            .filter_map(|b| b["text"].as_str())
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    };
    (!t.is_empty()).then_some(t)
}

/// Whether a user message is something the person typed (not a command's echo, a system
/// reminder or an interruption marker).
fn is_prompt(t: &str) -> bool {
    let t = t.trim_start();
    !(t.is_empty()
        || t.starts_with('<')
        || t.starts_with("[Request interrupted")
        || t.starts_with("Caveat:"))
}

/// `s` on one line, runs of white space as one space.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// At most `n` characters of `s`, with `…` when cut.
fn clip(s: &str, n: usize) -> String {
    let s = s.trim();
    if s.chars().count() <= n {
        return s.to_string();
    }
    let mut out: String = s.chars().take(n).collect();
    out.push('…');
    out
}

impl Digest {
    fn read(path: &Path, root: &Path) -> Result<Digest> {
        use std::io::BufRead;
        let f = std::fs::File::open(path).map_err(|e| {
            Error::new(
                ErrorKind::NotFound,
                format!("cannot read the transcript {}: {e}", path.display()),
            )
        })?;
        let mut d = Digest::default();
        for line in std::io::BufReader::new(f).lines() {
            let Ok(line) = line else { continue };
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                d.note(&v, root);
            }
        }
        Ok(d)
    }

    fn file(&mut self, p: &str, root: &Path) {
        let p = p.trim();
        if p.is_empty() {
            return;
        }
        let rel = Path::new(p)
            .strip_prefix(root)
            .map(|r| r.to_string_lossy().into_owned())
            .unwrap_or_else(|_| p.to_string());
        if !self.files.contains(&rel) {
            self.files.push(rel);
        }
    }

    /// Files named in an apply_patch text (Codex): `*** Add|Update|Delete File: PATH`.
    fn patch_files(&mut self, s: &str, root: &Path) {
        for key in ["*** Add File: ", "*** Update File: ", "*** Delete File: "] {
            for (i, _) in s.match_indices(key) {
                let rest = &s[i + key.len()..];
                let end = rest.find(['\n', '\\', '"']).unwrap_or(rest.len());
                self.file(&rest[..end], root);
            }
        }
    }

    fn note(&mut self, v: &Value, root: &Path) {
        if let Some(t) = v["timestamp"].as_str() {
            if self.first_at.is_none() {
                self.first_at = Some(t.to_string());
            }
            self.last_at = Some(t.to_string());
        }
        if v["isSidechain"].as_bool() == Some(true) || v["isMeta"].as_bool() == Some(true) {
            return;
        }
        match v["type"].as_str() {
            // Claude Code.
            Some("user") => {
                let Some(t) = text_of(&v["message"]["content"], &["text"]) else {
                    return;
                };
                if v["isCompactSummary"].as_bool() == Some(true) {
                    self.compact_summary = Some(t);
                } else if is_prompt(&t) {
                    self.prompts.push(t);
                }
            }
            Some("assistant") => {
                let c = &v["message"]["content"];
                if let Some(t) = text_of(c, &["text"]) {
                    self.last_reply = Some(t);
                }
                for b in c.as_array().into_iter().flatten() {
                    if b["type"] == "tool_use"
                        && matches!(
                            b["name"].as_str(),
                            Some("Edit" | "Write" | "MultiEdit" | "NotebookEdit")
                        )
                    {
                        let input = &b["input"];
                        if let Some(p) = input["file_path"]
                            .as_str()
                            .or(input["notebook_path"].as_str())
                        {
                            self.file(p, root);
                        }
                    }
                }
            }
            // Codex.
            Some("event_msg") => {
                let p = &v["payload"];
                match (p["type"].as_str(), p["message"].as_str()) {
                    (Some("user_message"), Some(m)) if is_prompt(m) => {
                        self.prompts.push(m.trim().to_string());
                    }
                    (Some("agent_message"), Some(m)) if !m.trim().is_empty() => {
                        self.last_reply = Some(m.trim().to_string());
                    }
                    _ => {}
                }
            }
            Some("response_item") => {
                let p = &v["payload"];
                for s in [p["input"].as_str(), p["arguments"].as_str()]
                    .into_iter()
                    .flatten()
                {
                    self.patch_files(s, root);
                }
                if p["type"] == "message"
                    && p["role"] == "assistant"
                    && let Some(t) = text_of(&p["content"], &["output_text"])
                {
                    self.last_reply = Some(t);
                }
            }
            Some("compacted") => {
                if let Some(m) = v["payload"]["message"].as_str().filter(|m| !m.is_empty()) {
                    self.compact_summary = Some(m.trim().to_string());
                }
            }
            _ => {}
        }
    }

    /// The memory's text: a few kilobytes at most, whatever the transcript's size.
    fn compose(
        &self,
        agent: HookAgent,
        event: HookEvent,
        input: &Value,
        root: &Path,
        name: &str,
        session: &str,
    ) -> String {
        // First a line that stands for the whole: recall shows the lines of a memory that
        // match the query (the project's name) best, earlier ones first, in a few hundred
        // characters.
        let mut out = format!("Project {name}, {} session", agent_title(agent));
        if let Some(p) = self.prompts.first() {
            out.push_str(&format!(": asked \"{}\"", clip(&one_line(p), 100)));
        }
        if let Some(r) = &self.last_reply {
            out.push_str(&format!("; ended with: {}", clip(&one_line(r), 180)));
        }
        out.push('\n');
        if !self.prompts.is_empty() {
            out.push_str("\n## Asked\n\n");
            let n = self.prompts.len();
            // The first two (what the session was for) and the last four (where it went).
            for (i, p) in self.prompts.iter().enumerate() {
                if n > 6 && i == 2 {
                    out.push_str(&format!("- … ({} more)\n", n - 6));
                }
                if n <= 6 || i < 2 || i >= n - 4 {
                    out.push_str(&format!("- {}\n", clip(&one_line(p), 300)));
                }
            }
        }
        if !self.files.is_empty() {
            out.push_str("\n## Files changed\n\n");
            for f in self.files.iter().take(40) {
                out.push_str(&format!("- {f}\n"));
            }
            if self.files.len() > 40 {
                out.push_str(&format!("- … ({} more)\n", self.files.len() - 40));
            }
        }
        if let Some(k) = input["custom_instructions"]
            .as_str()
            .filter(|k| !k.trim().is_empty())
        {
            out.push_str(&format!(
                "\n## Asked to keep at compaction\n\n{}\n",
                clip(k, 500)
            ));
        }
        if let Some(s) = &self.compact_summary {
            out.push_str(&format!(
                "\n## Summary at the last compaction\n\n{}\n",
                clip(s, 1500)
            ));
        }
        if let Some(r) = &self.last_reply {
            out.push_str(&format!(
                "\n## Where it ended (the assistant's last reply)\n\n{}\n",
                clip(r, 2000)
            ));
        }
        let when = match (&self.first_at, &self.last_at) {
            (Some(a), Some(b)) if a != b => format!(", {a} to {b}"),
            (Some(a), _) => format!(", {a}"),
            _ => String::new(),
        };
        let saved = match event {
            HookEvent::SessionEnd => match input["reason"].as_str() {
                Some(r) if !r.is_empty() => format!("when the session ended ({r})"),
                _ => "when the session ended".to_string(),
            },
            HookEvent::PreCompact => match input["trigger"].as_str() {
                Some(t) if !t.is_empty() => format!("before its context was compacted ({t})"),
                _ => "before its context was compacted".to_string(),
            },
            _ => "after its latest turn".to_string(),
        };
        out.push_str(&format!(
            "\n## Session\n\n{session}{when}, in {}; saved {saved}.\n",
            root.display()
        ));
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn strip_removes_only_avms_handlers_and_what_held_only_them() {
        let mut v = json!({
            "model": "opus",
            "hooks": {
                "SessionStart": [
                    {"hooks": [{"type": "command", "command": "echo theirs"}]},
                    {"hooks": [{"type": "command", "command": "/bin/avm hooks run claude-code session-start --max-tokens 9"}]}
                ],
                "SessionEnd": [
                    {"hooks": [{"type": "command", "command": "'/a b/avm' hooks run claude-code session-end"}]}
                ]
            }
        });
        assert_eq!(strip(&mut v, HookAgent::Codex), 0);
        assert_eq!(strip(&mut v, HookAgent::ClaudeCode), 2);
        assert_eq!(
            v,
            json!({"model": "opus", "hooks": {"SessionStart": [{"hooks": [{"type": "command", "command": "echo theirs"}]}]}})
        );
    }

    #[test]
    fn commands_quote_what_the_shell_would_split() {
        assert_eq!(sh_quote("/usr/bin/avm"), "/usr/bin/avm");
        assert_eq!(sh_quote("/my dir/avm"), "'/my dir/avm'");
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
        let g = Global {
            db: None,
            config: None,
            agent: Some("bob".into()),
            json: false,
        };
        let c = hook_command(
            &g,
            "/x/avm",
            HookAgent::ClaudeCode,
            HookEvent::SessionStart,
            700,
            Some("p"),
        );
        assert_eq!(
            c,
            "/x/avm --agent bob hooks run claude-code session-start --max-tokens 700 --project p"
        );
        assert!(is_ours(&json!({"command": c}), HookAgent::ClaudeCode));
    }

    #[test]
    fn project_names_become_namespace_segments() {
        assert_eq!(project_slug("My App"), "my-app");
        assert_eq!(project_slug(".hidden"), "hidden");
        assert_eq!(project_slug("a/b:c"), "a-b-c");
        assert_eq!(project_slug("///"), "project");
    }

    #[test]
    fn claude_and_codex_transcripts_give_prompts_files_and_the_last_reply() {
        let root = Path::new("/w/p");
        let mut d = Digest::default();
        for line in [
            json!({"type": "user", "timestamp": "2026-01-02T03:04:05Z", "message": {"role": "user", "content": "Fix the parser"}}),
            json!({"type": "user", "isMeta": true, "message": {"content": "Caveat: local commands"}}),
            json!({"type": "user", "message": {"content": "<command-name>/clear</command-name>"}}),
            json!({"type": "assistant", "message": {"content": [{"type": "text", "text": "Looking."}, {"type": "tool_use", "name": "Edit", "input": {"file_path": "/w/p/src/parse.rs"}}]}}),
            json!({"type": "user", "message": {"content": [{"type": "tool_result", "content": "ok"}]}}),
            json!({"type": "user", "isCompactSummary": true, "message": {"content": "Earlier: parser work."}}),
            json!({"type": "assistant", "isSidechain": true, "message": {"content": [{"type": "text", "text": "subagent"}]}}),
            json!({"type": "assistant", "timestamp": "2026-01-02T04:00:00Z", "message": {"content": [{"type": "text", "text": "Fixed: the parser now accepts tabs."}]}}),
            json!({"type": "event_msg", "payload": {"type": "user_message", "message": "And the docs"}}),
            json!({"type": "response_item", "payload": {"type": "custom_tool_call", "name": "apply_patch", "input": "*** Begin Patch\n*** Update File: README.md\n@@"}}),
            json!({"type": "event_msg", "payload": {"type": "agent_message", "message": "Docs updated."}}),
        ] {
            d.note(&line, root);
        }
        assert_eq!(d.prompts, ["Fix the parser", "And the docs"]);
        assert_eq!(d.files, ["src/parse.rs", "README.md"]);
        assert_eq!(d.last_reply.as_deref(), Some("Docs updated."));
        assert_eq!(d.compact_summary.as_deref(), Some("Earlier: parser work."));
        assert_eq!(d.first_at.as_deref(), Some("2026-01-02T03:04:05Z"));
        let text = d.compose(
            HookAgent::ClaudeCode,
            HookEvent::SessionEnd,
            &json!({"reason": "logout"}),
            root,
            "p",
            "abc",
        );
        assert!(
            text.contains("saved when the session ended (logout)"),
            "{text}"
        );
        assert!(text.contains("- src/parse.rs"), "{text}");
    }
}
