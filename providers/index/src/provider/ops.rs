//! The [`Provider`] implementation: what the provider serves, and read, stat, list and write
//! on its paths.

use std::path::PathBuf;

use avm_core::{
    Entry, Error, ErrorKind, ListOptions, Listing, NodeKind, Ops, Output, Provider, ProviderInfo,
    Request, Result, Stat, SuffixOn, SuffixSpec, WriteInput,
};

use super::helpers::{
    dir_entry, dir_stat, missing_index, not_tracked, require, validate_name, within,
};
use super::{IndexProvider, Target};

impl Provider for IndexProvider {
    fn info(&self) -> ProviderInfo {
        use SuffixOn::{Any, Dir};
        ProviderInfo {
            kind: "index".into(),
            description: "project trees: tracked files, change status and code signatures".into(),
            ops: Ops {
                read: true,
                list: true,
                write: true,
                remove: false,
                rename: false,
                search: false,
            },
            suffixes: vec![
                SuffixSpec::new(
                    "status",
                    Any,
                    true,
                    false,
                    &[],
                    "files modified (M), missing (D) or new (?) on disk since the last scan",
                ),
                SuffixSpec::new(
                    "sigs",
                    Any,
                    true,
                    false,
                    &["lang", "q"],
                    "signatures per file; lang=rs|py|ts|js|go, q= substring filter",
                ),
                SuffixSpec::new(
                    "files",
                    Any,
                    true,
                    false,
                    &[],
                    "tracked files, one per line",
                ),
                SuffixSpec::new("json", Dir, true, false, &[], "the index summary as JSON"),
                SuffixSpec::new(
                    "scan",
                    Dir,
                    true,
                    true,
                    &[],
                    "write an absolute directory to scan it into this index; read to rescan",
                ),
                SuffixSpec::new(
                    "describe",
                    Dir,
                    true,
                    true,
                    &[],
                    "the index's description; write to set it",
                ),
            ],
        }
    }

    fn read(&self, req: &Request) -> Result<Output> {
        if let Some(s) = &req.suffix {
            return self.read_suffix(req, s);
        }
        req.query.check_keys(&[], &req.describe("read"))?;
        match self.target(&req.path)? {
            Target::Root => self.list_indexes(),
            Target::Index(name) => self.summary(&name),
            Target::Node(name, rel) => self.read_file(req, &name, &rel),
        }
    }

    fn stat(&self, req: &Request) -> Result<Stat> {
        match self.target(&req.path)? {
            Target::Root => Ok(dir_stat(None, None)),
            Target::Index(name) => {
                let row = require(self.store()?.index(&name)?, &name)?;
                Ok(dir_stat(Some(row.scanned_at), Some(row.created_at)))
            }
            Target::Node(name, rel) => {
                let store = self.store()?;
                let row = require(store.index(&name)?, &name)?;
                if let Some(f) = store.file(&name, &rel)? {
                    drop(store);
                    return Ok(Stat {
                        kind: NodeKind::File,
                        size: self.render_file(&f).len() as u64,
                        version: None,
                        created_at: None,
                        updated_at: Some(f.mtime / 1000),
                        accessed_at: None,
                        attrs: avm_core::Attrs::default(),
                    });
                }
                if store.has_dir(&name, &rel)? {
                    return Ok(dir_stat(Some(row.scanned_at), None));
                }
                Err(not_tracked(&req.path, &name, &rel))
            }
        }
    }

    fn list(&self, req: &Request, opts: &ListOptions) -> Result<Listing> {
        let mut entries: Vec<Entry> = Vec::new();
        match self.target(&req.path)? {
            Target::Root => {
                let rows = self.store()?.indexes()?;
                for (row, _) in rows {
                    if opts.recursive {
                        let files = self.store()?.files(&row.name, false)?;
                        entries.extend(files.iter().map(|f| self.file_entry(&row.name, f)));
                    } else {
                        entries.push(dir_entry(self.index_path(&row.name), Some(row.scanned_at)));
                    }
                }
            }
            Target::Index(name) => {
                let (row, files) = self.index_and_files(&name, false)?;
                self.list_below(&mut entries, &files, &row, "", opts.recursive);
            }
            Target::Node(name, rel) => {
                let (row, files) = self.index_and_files(&name, false)?;
                if let Some(f) = files.iter().find(|f| f.path == rel) {
                    if !opts.recursive {
                        return Err(Error::new(
                            ErrorKind::NotADirectory,
                            format!("{} is a file, not a directory; read it", req.path),
                        ));
                    }
                    entries.push(self.file_entry(&name, f));
                } else {
                    if !files.iter().any(|f| within(&f.path, &rel)) {
                        return Err(not_tracked(&req.path, &name, &rel));
                    }
                    self.list_below(&mut entries, &files, &row, &rel, opts.recursive);
                }
            }
        }
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        let mut entries: Vec<Entry> = entries.into_iter().skip(opts.offset).collect();
        let more = opts.limit.is_some_and(|l| entries.len() > l);
        if let Some(l) = opts.limit {
            entries.truncate(l);
        }
        Ok(Listing { entries, more })
    }

    fn write(&self, req: &Request, input: WriteInput) -> Result<Output> {
        let refuse = || {
            Error::new(
                ErrorKind::ReadOnly,
                format!(
                    "{} is read-only: an index changes only through :scan and :describe (e.g. echo /abs/project > {}:scan)",
                    req.path,
                    self.index_path("NAME")
                ),
            )
        };
        let Some(suffix) = req.suffix.as_deref() else {
            return Err(refuse());
        };
        if suffix != "scan" && suffix != "describe" {
            return Err(refuse());
        }
        req.query.check_keys(&[], &req.describe("write"))?;
        // A scan reads whatever directory it is given with avm's own rights, so only an
        // operator (a person or script, not an agent) may point an index at a directory.
        if suffix == "scan" && req.caller != avm_core::Caller::Operator {
            return Err(Error::new(
                ErrorKind::PermissionDenied,
                format!(
                    "only an operator may scan a directory into {}; agents read indexes (rule: index scans are operator-only)",
                    req.path
                ),
            ));
        }
        let name = match self.target(&req.path)? {
            Target::Index(name) => name,
            Target::Root | Target::Node(..) => {
                return Err(Error::invalid(format!(
                    "{}:{suffix} names no index; write to {}:{suffix}",
                    req.path,
                    self.index_path("NAME")
                )));
            }
        };
        let body = input.into_text(&format!("what {}:{suffix} takes", req.path))?;
        let body = body.trim();
        if suffix == "describe" {
            validate_name(&name)?;
            if !self.store()?.describe(&name, body)? {
                return Err(missing_index(&name));
            }
            return self.summary(&name);
        }
        if body.is_empty() {
            return Err(Error::invalid(format!(
                "{}:scan needs the directory to scan, e.g. echo /home/me/project > {}:scan",
                req.path, req.path
            )));
        }
        // An absolute path is taken as given (the CLI sends canonical ones, and a directory
        // may have a `$` in its name); `~` and `${VAR}` are expanded otherwise.
        let dir = if body.starts_with('/') {
            PathBuf::from(body)
        } else {
            PathBuf::from(avm_core::config::expand(body)?)
        };
        let report = self.scan(&name, &dir, &mut |_| {})?;
        Ok(Output::new(report.text(), report.to_json()))
    }
}
