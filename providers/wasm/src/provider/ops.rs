//! The [`Provider`] implementation: the plugin's self-description as [`ProviderInfo`], and
//! read, stat, list, write and remove forwarded to the guest.

use avm_core::provider::{
    Entry, ListOptions, Listing, NodeKind, Ops, Output, ProviderInfo, RemoveOptions, Request, Stat,
    SuffixOn, SuffixSpec, WriteInput,
};
use avm_core::{Error, ErrorKind, Provider, Result};

use super::bindings::avm::provider::types as wit;
use super::{LOG_SUFFIX, WasmProvider};

pub(super) fn info_from(d: &wit::Info) -> ProviderInfo {
    let mut suffixes: Vec<SuffixSpec> = d
        .suffixes
        .iter()
        .map(|s| SuffixSpec {
            name: s.name.clone(),
            on: match (s.on_file, s.on_dir) {
                (true, true) => SuffixOn::Any,
                (false, true) => SuffixOn::Dir,
                _ => SuffixOn::File,
            },
            read: s.readable,
            write: s.writable,
            query: s.query.clone(),
            help: s.help.clone(),
        })
        .collect();
    suffixes.push(SuffixSpec::new(
        LOG_SUFFIX,
        SuffixOn::Any,
        true,
        false,
        &[],
        "the plugin's recent log lines, stdout and stderr (kept by the host)",
    ));
    ProviderInfo {
        kind: "wasm".into(),
        description: d.description.clone(),
        ops: Ops {
            read: true,
            list: d.can_list,
            write: d.can_write,
            remove: d.can_remove,
            rename: false,
            search: false,
        },
        suffixes,
    }
}

impl Provider for WasmProvider {
    fn info(&self) -> ProviderInfo {
        self.info.clone()
    }

    fn read(&self, req: &Request) -> Result<Output> {
        if req.suffix.as_deref() == Some(LOG_SUFFIX) {
            self.log_allowed(req)?;
            let lines = self.log_lines();
            let mut text = lines.join("\n");
            if !text.is_empty() {
                text.push('\n');
            }
            return Ok(Output::new(text, serde_json::json!(lines)));
        }
        self.guest_read(req).map(Output::text)
    }

    fn stat(&self, req: &Request) -> Result<Stat> {
        let dir = Stat::untimed(NodeKind::Dir, 0);
        if req.suffix.as_deref() == Some(LOG_SUFFIX) {
            self.log_allowed(req)?;
            return Ok(Stat::untimed(NodeKind::File, 0));
        }
        if self.is_root(&req.path) {
            return Ok(dir);
        }
        match self.guest_read(req) {
            Ok(text) => Ok(Stat::untimed(NodeKind::File, text.len() as u64)),
            Err(e) if e.kind() == ErrorKind::IsADirectory => Ok(dir),
            Err(e) => Err(e),
        }
    }

    fn list(&self, req: &Request, opts: &ListOptions) -> Result<Listing> {
        if !self.info.ops.list {
            return Err(Error::unsupported("list", &req.path));
        }
        let r = self.request(req);
        let mut names = self.call(req.deadline, |p, s| {
            p.avm_provider_provider().call_list(s, &r)
        })?;
        names.sort_by(|a, b| a.name.cmp(&b.name));
        let mut entries = Vec::new();
        for e in names {
            if e.name.is_empty() || e.name.contains('/') || e.name == "." || e.name == ".." {
                return Err(Error::new(
                    ErrorKind::Internal,
                    format!(
                        "plugin {} listed an invalid name {:?} under {}",
                        self.shared.name, e.name, req.path
                    ),
                ));
            }
            entries.push(Entry {
                path: avm_core::address::join(&req.path, &e.name),
                kind: match e.kind {
                    wit::NodeKind::File => NodeKind::File,
                    wit::NodeKind::Dir => NodeKind::Dir,
                },
                size: e.size,
                version: None,
                updated_at: None,
            });
        }
        Ok(Listing::page(entries, opts))
    }

    fn write(&self, req: &Request, input: WriteInput) -> Result<Output> {
        if !self.info.ops.write {
            return Err(Error::new(
                ErrorKind::ReadOnly,
                format!(
                    "{} is served by plugin {}, which takes no writes",
                    req.path, self.shared.name
                ),
            ));
        }
        let content = match input {
            WriteInput::Text(t) => t,
            WriteInput::Put(p)
                if p.meta.is_none()
                    && p.tags.is_none()
                    && p.importance.is_none()
                    && p.expires_at.is_none() =>
            {
                if p.create_only {
                    match self.guest_read(req) {
                        Ok(_) => {
                            return Err(Error::new(
                                ErrorKind::AlreadyExists,
                                format!("{} already exists", req.path),
                            ));
                        }
                        Err(e) if e.kind() == ErrorKind::NotFound => {}
                        Err(e) => return Err(e),
                    }
                }
                let text = |c: avm_core::Content| match c {
                    avm_core::Content::Text(t) => Ok(t),
                    avm_core::Content::Bytes(_) => Err(Error::invalid(format!(
                        "plugin {} takes text; this content is binary",
                        self.shared.name
                    ))),
                };
                match (p.content, p.append) {
                    (Some(c), false) => text(c)?,
                    (Some(c), true) => {
                        let mut old = match self.guest_read(req) {
                            Ok(t) => t,
                            Err(e) if e.kind() == ErrorKind::NotFound => String::new(),
                            Err(e) => return Err(e),
                        };
                        old.push_str(&text(c)?);
                        old
                    }
                    (None, _) => return Err(Error::unsupported("metadata write", &req.path)),
                }
            }
            _ => {
                return Err(Error::unsupported("metadata, tags or records", &req.path));
            }
        };
        if content.len() as u64 > self.shared.opts.output {
            return Err(Error::new(
                ErrorKind::TooLarge,
                format!(
                    "{} bytes is more than plugin {} accepts (option output: {})",
                    content.len(),
                    self.shared.name,
                    self.shared.opts.output
                ),
            ));
        }
        let r = self.request(req);
        let text = self.call(req.deadline, |p, s| {
            p.avm_provider_provider().call_write(s, &r, &content)
        })?;
        self.capped(text).map(Output::text)
    }

    fn remove(&self, req: &Request, _opts: RemoveOptions) -> Result<Output> {
        if !self.info.ops.remove {
            return Err(Error::new(
                ErrorKind::ReadOnly,
                format!("plugin {} does not remove nodes", self.shared.name),
            ));
        }
        let r = self.request(req);
        self.call(req.deadline, |p, s| {
            p.avm_provider_provider().call_remove(s, &r)
        })?;
        Ok(Output::text(format!("removed {}", req.path)))
    }
}
