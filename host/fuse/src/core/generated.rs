//! Generated content: `:suffix` and `?query` paths, `/tell` drops, `@id` shortcuts, `:help`,
//! and the block of urgent messages shown in front of a text memory file.

use std::time::{Duration, Instant};

use avm_core::address::is_within;
use avm_core::{Error, ErrorKind, Result};

use super::{Core, lock};

/// Programs that copy, archive, compare or checksum files: what they read must be the file's
/// bytes exactly, so they never get urgent messages in front.
const COPIERS: &[&str] = &[
    "cp",
    "mv",
    "install",
    "rsync",
    "scp",
    "sftp-server",
    "rclone",
    "tar",
    "bsdtar",
    "cpio",
    "pax",
    "zip",
    "7z",
    "7za",
    "gzip",
    "bzip2",
    "xz",
    "zstd",
    "dd",
    "git",
    "hg",
    "svn",
    "sqlite3",
    "diff",
    "cmp",
    "md5sum",
    "sha1sum",
    "sha224sum",
    "sha256sum",
    "sha384sum",
    "sha512sum",
    "b2sum",
    "cksum",
    "sum",
    "shasum",
    "base64",
    "od",
    "xxd",
    "hexdump",
    "file",
    "restic",
    "borg",
    "duplicity",
    "unison",
];

/// Is the process `pid` one of [`COPIERS`] (by `/proc/<pid>/comm`)?
pub(super) fn is_copier(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|c| COPIERS.contains(&c.trim()))
        .unwrap_or(false)
}
/// May urgent messages be shown in front of the file at `path`? Only text memory files
/// (`.md`, `.markdown`, `.txt`) under `/memory`: a banner in front of JSON, YAML, TOML, CSV or
/// any other format would break it for the program reading it.
pub fn urgent_fits(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or("");
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    (path == "/memory" || path.starts_with("/memory/"))
        && ["md", "markdown", "txt"].contains(&ext.as_str())
}

/// The help text served as `:help` everywhere.
pub fn help(agent: Option<&str>) -> String {
    format!(
        "AVM — AI Virtual Memory  (agent: {})\n\n\
         Files:        cat/echo/ls/mv/rm/mkdir as usual; /private/… is your private namespace\n\
         Per file:     :meta :tags :links :history :shared :ttl :delta :mark :data :path :info :topics\n\
         Writable:     :meta (JSON merge) :tags (a,b) :links (TARGET [TYPE] lines) :ttl (2h|never) :shared (all|a,b) :mark\n\
         Directories:  :list?limit=&offset=&q=&tag=  :changes?since=&minutes=&limit=  :stats  :topics  :help\n\
         Queries:      :search?q=&limit=  :recall?q=&max_tokens=&strategy=  :inbox (?mark=read)\n\
         Shortcuts:    @id (from :list / :changes) stands for its file, e.g. cat @1f:meta\n\
         Messages:     echo text > tell/AGENT?priority=urgent|normal|low ; tell/@all broadcasts\n",
        agent.unwrap_or("operator")
    )
}

impl Core {
    /// Translates a mount path into a host address: `@id` shortcuts become their node's path.
    pub(super) fn address(&self, path: &str) -> Result<String> {
        if is_within(path, "/tell") {
            return Ok(path.to_string());
        }
        let Some(i) = path.find("/@") else {
            return Ok(path.to_string());
        };
        let rest = &path[i + 2..];
        let (id, tail) = match rest.find([':', '/', '?']) {
            Some(k) => (&rest[..k], &rest[k..]),
            None => (rest, ""),
        };
        if avm_core::storage::shortcut_id(id).is_none() {
            return Err(Error::not_found(path));
        }
        let node = match self
            .host
            .read(&self.caller, &format!("{}:handle?id={id}", self.own_root()))
        {
            Ok(out) => out.data()["path"]
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| Error::not_found(path))?,
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::NotFound
                        | ErrorKind::PermissionDenied
                        | ErrorKind::Unsupported
                        | ErrorKind::InvalidInput
                ) =>
            {
                return Err(Error::not_found(path));
            }
            Err(e) => return Err(e),
        };
        Ok(format!("{node}{tail}"))
    }

    pub(super) fn is_help(path: &str) -> bool {
        path.ends_with(":help")
    }

    /// Is `path` generated content rather than a stored node?
    pub(super) fn is_virtual(&self, path: &str) -> Result<bool> {
        if Self::is_help(path) || (is_within(path, "/tell") && path != "/tell") {
            return Ok(true);
        }
        if !path.contains([':', '?']) {
            // No suffix and no query can come from a path without either (a shortcut's
            // tail is the path's own).
            return Ok(false);
        }
        let addr = self.host.parse(&self.caller, &self.address(path)?)?;
        Ok(addr.suffix.is_some() || !addr.query.is_empty())
    }

    /// The caller's own root, which it may always read: services are addressed there.
    pub(super) fn own_root(&self) -> String {
        self.caller.private_root().unwrap_or_else(|| "/".into())
    }

    /// The block of the caller's unread urgent messages and their ids (looked up at most
    /// every 250 ms), for the top of the next file it reads.
    pub(super) fn urgent(&self) -> Option<(String, Vec<i64>)> {
        self.caller.agent()?;
        let mut u = lock(&self.urgent);
        if u.0.is_none_or(|t| t.elapsed() > Duration::from_millis(250)) {
            u.1 = self
                .host
                .read(
                    &self.caller,
                    &format!("{}:inbox?only=urgent", self.own_root()),
                )
                .ok()
                .filter(|out| !out.text.is_empty())
                .map(|out| {
                    let ids = out.data()["ids"]
                        .as_array()
                        .map(|a| a.iter().filter_map(|v| v.as_i64()).collect())
                        .unwrap_or_default();
                    (out.text, ids)
                });
            u.0 = Some(Instant::now());
        }
        u.1.clone()
    }

    pub(super) fn forget_urgent(&self) {
        lock(&self.urgent).0 = None;
    }

    pub(super) fn generate(&self, path: &str) -> Result<Vec<u8>> {
        if Self::is_help(path) {
            return Ok(help(self.caller.agent()).into_bytes());
        }
        Ok(self
            .host
            .read(&self.caller, &self.address(path)?)?
            .bytes()
            .to_vec())
    }
}
