//! Reads: the list of indexes, an index's summary, a file's signatures, listings below an
//! index, and the `:sigs`, `:files`, `:status`, `:json`, `:scan` and `:describe` suffixes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde_json::{Value, json};

use avm_core::time::{to_iso, to_second};
use avm_core::{Entry, Error, ErrorKind, NodeKind, Output, Request, Result};

use super::helpers::{dir_entry, not_tracked, on_index_only, push_sigs, require, within};
use super::{IndexProvider, Target};
use crate::lang::{Signature, is_parsed, language_from_query};
use crate::store::{FileRow, IndexRow};

impl IndexProvider {
    pub(super) fn list_indexes(&self) -> Result<Output> {
        let rows = self.store()?.indexes()?;
        if rows.is_empty() {
            return Ok(Output::new(
                "No indexes yet; create one with: avm index scan NAME DIR\n",
                json!([]),
            ));
        }
        let mut text = String::new();
        let mut data = Vec::new();
        for (row, files) in &rows {
            text.push_str(&format!(
                "{}  {}  {} files  scanned {}\n",
                row.name,
                row.root,
                files,
                to_second(row.scanned_at)
            ));
            data.push(json!({
                "name": row.name,
                "root": row.root,
                "description": row.description,
                "files": files,
                "scanned_at": to_iso(row.scanned_at),
            }));
        }
        Ok(Output::new(text, Value::Array(data)))
    }

    fn summary_json(&self, row: &IndexRow, files: &[FileRow]) -> Value {
        let mut languages: BTreeMap<&str, u64> = BTreeMap::new();
        for f in files {
            *languages.entry(f.language.as_str()).or_default() += 1;
        }
        let with = files.iter().filter(|f| f.sig_count > 0).count();
        let sigs: u64 = files.iter().map(|f| f.sig_count).sum();
        let bytes: u64 = files.iter().map(|f| f.size).sum();
        json!({
            "name": row.name,
            "path": self.index_path(&row.name),
            "root": row.root,
            "description": row.description,
            "created_at": to_iso(row.created_at),
            "scanned_at": to_iso(row.scanned_at),
            "files": files.len(),
            "with_signatures": with,
            "signatures": sigs,
            "bytes": bytes,
            "languages": languages,
        })
    }

    pub(super) fn summary(&self, name: &str) -> Result<Output> {
        let (row, files) = self.index_and_files(name, false)?;
        let data = self.summary_json(&row, &files);
        let mut text = format!("# {}\n\nRoot: {}\n", row.name, row.root);
        if !row.description.is_empty() {
            text.push_str(&format!("Description: {}\n", row.description));
        }
        text.push_str(&format!(
            "Last scan: {} UTC\nFiles: {} ({} with signatures, {} signatures)\n",
            to_second(row.scanned_at),
            files.len(),
            data["with_signatures"],
            data["signatures"],
        ));
        if let Some(langs) = data["languages"].as_object()
            && !langs.is_empty()
        {
            text.push_str("\n## Languages\n\n");
            let mut by_count: Vec<(&String, u64)> = langs
                .iter()
                .map(|(k, v)| (k, v.as_u64().unwrap_or(0)))
                .collect();
            by_count.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
            for (lang, n) in by_count {
                text.push_str(&format!("- {lang}: {n}\n"));
            }
        }
        Ok(Output::new(text, data))
    }

    pub(super) fn index_and_files(
        &self,
        name: &str,
        sigs: bool,
    ) -> Result<(IndexRow, Vec<FileRow>)> {
        let store = self.store()?;
        let row = require(store.index(name)?, name)?;
        let files = store.files(name, sigs)?;
        Ok((row, files))
    }

    /// The tracked files at or below `rel` (`""` = all); NotFound when there are none.
    fn files_below(&self, name: &str, rel: &str, path: &str, sigs: bool) -> Result<Vec<FileRow>> {
        let (_, mut files) = self.index_and_files(name, sigs)?;
        if !rel.is_empty() {
            files.retain(|f| f.path == rel || within(&f.path, rel));
            if files.is_empty() {
                return Err(not_tracked(path, name, rel));
            }
        }
        Ok(files)
    }

    pub(super) fn read_file(&self, req: &Request, name: &str, rel: &str) -> Result<Output> {
        let (row, file) = {
            let store = self.store()?;
            let row = require(store.index(name)?, name)?;
            (row, store.file(name, rel)?)
        };
        let Some(f) = file else {
            if self.store()?.has_dir(name, rel)? {
                return Err(Error::new(
                    ErrorKind::IsADirectory,
                    format!(
                        "{} is a directory of index '{name}'; list it, or read {}:sigs for its signatures",
                        req.path, req.path
                    ),
                ));
            }
            return Err(not_tracked(&req.path, name, rel));
        };
        let text = self.render_file(&f);
        let data = json!({
            "index": name,
            "root": row.root,
            "path": f.path,
            "language": f.language,
            "size": f.size,
            "mtime": to_iso(f.mtime / 1000),
            "sha256": f.sha256,
            "signatures": f.signatures,
        });
        Ok(Output::new(text, data))
    }

    /// `## rel/path`, a blank line, then `- L12 pub fn foo()` per signature (nested by depth).
    pub(super) fn render_file(&self, f: &FileRow) -> String {
        let mut s = format!("## {}\n\n", f.path);
        if f.signatures.is_empty() {
            let why = if !is_parsed(&f.language) {
                format!("{} files are tracked, not parsed", f.language)
            } else if f.size > self.max_file_bytes {
                format!(
                    "{} bytes is over max_file_bytes ({})",
                    f.size, self.max_file_bytes
                )
            } else {
                "none found".to_string()
            };
            s.push_str(&format!("(no signatures: {why})\n"));
            return s;
        }
        push_sigs(&mut s, f.signatures.iter(), false);
        s
    }

    /// A listing entry; its size is that of the rendered signatures, as a read returns them
    /// (the signatures are loaded here when `f` came without them).
    pub(super) fn file_entry(&self, name: &str, f: &FileRow) -> Entry {
        let size = if f.sig_count > 0 && f.signatures.is_empty() {
            match self.store().and_then(|s| s.file(name, &f.path)) {
                Ok(Some(full)) => self.render_file(&full).len(),
                _ => self.render_file(f).len(),
            }
        } else {
            self.render_file(f).len()
        };
        Entry {
            path: avm_core::address::join(&self.index_path(name), &f.path),
            kind: NodeKind::File,
            size: size as u64,
            version: None,
            updated_at: Some(f.mtime / 1000),
        }
    }

    /// Adds the entries below `rel` (`""` = the index): immediate children, or every file
    /// when `recursive`.
    pub(super) fn list_below(
        &self,
        entries: &mut Vec<Entry>,
        files: &[FileRow],
        row: &IndexRow,
        rel: &str,
        recursive: bool,
    ) {
        let index = self.index_path(&row.name);
        let base = if rel.is_empty() {
            index
        } else {
            avm_core::address::join(&index, rel)
        };
        let mut dirs: BTreeSet<&str> = BTreeSet::new();
        for f in files {
            let rest = if rel.is_empty() {
                Some(f.path.as_str())
            } else {
                f.path.strip_prefix(rel).and_then(|r| r.strip_prefix('/'))
            };
            let Some(rest) = rest else { continue };
            match rest.split_once('/') {
                Some((dir, _)) if !recursive => {
                    dirs.insert(dir);
                }
                _ => entries.push(self.file_entry(&row.name, f)),
            }
        }
        for d in dirs {
            entries.push(dir_entry(
                avm_core::address::join(&base, d),
                Some(row.scanned_at),
            ));
        }
    }

    fn read_sigs(&self, req: &Request, name: &str, rel: &str) -> Result<Output> {
        let lang = match req.query.get("lang") {
            Some(v) => Some(language_from_query(v).ok_or_else(|| {
                Error::invalid(format!(
                    "lang={v:?} is not accepted; use rs, py, ts, js or go"
                ))
            })?),
            None => None,
        };
        let q = req
            .query
            .get("q")
            .map(str::to_lowercase)
            .filter(|q| !q.is_empty());
        let files = self.files_below(name, rel, &req.path, true)?;
        let mut text = String::new();
        let mut data = Vec::new();
        for f in &files {
            if lang.is_some_and(|l| l != f.language) {
                continue;
            }
            let sigs: Vec<&Signature> = f
                .signatures
                .iter()
                .filter(|s| {
                    q.as_deref().is_none_or(|q| {
                        s.text.to_lowercase().contains(q) || s.name.to_lowercase().contains(q)
                    })
                })
                .collect();
            if sigs.is_empty() {
                continue;
            }
            if !text.is_empty() {
                text.push('\n');
            }
            text.push_str(&format!("## {}\n\n", f.path));
            // A filtered list loses the parents, so nesting would point at the wrong items.
            push_sigs(&mut text, sigs.iter().copied(), q.is_some());
            data.push(json!({"path": f.path, "language": f.language, "signatures": sigs}));
        }
        if text.is_empty() {
            text = if lang.is_some() || q.is_some() {
                "(no signatures match)\n".into()
            } else {
                "(no signatures extracted)\n".into()
            };
        }
        Ok(Output::new(text, Value::Array(data)))
    }

    fn read_files(&self, req: &Request, name: &str, rel: &str) -> Result<Output> {
        let files = self.files_below(name, rel, &req.path, false)?;
        let text: String = files.iter().map(|f| format!("{}\n", f.path)).collect();
        let data: Vec<Value> = files
            .iter()
            .map(|f| {
                json!({
                    "path": f.path,
                    "language": f.language,
                    "size": f.size,
                    "sha256": f.sha256,
                    "signatures": f.sig_count,
                })
            })
            .collect();
        Ok(Output::new(text, Value::Array(data)))
    }

    fn read_status(&self, req: &Request, name: &str, rel: &str) -> Result<Output> {
        if !rel.is_empty() {
            // Scoping to a path the index never saw is a typo more often than not.
            self.files_below(name, rel, &req.path, false)?;
        }
        let st = self.status_below(name, rel)?;
        let mut text = format!(
            "[{} clean, {} modified, {} missing, {} new]\n",
            st.clean,
            st.modified.len(),
            st.missing.len(),
            st.new.len()
        );
        if !st.root_exists {
            let root = self
                .store()?
                .index(name)?
                .map(|r| r.root)
                .unwrap_or_default();
            text.push_str(&format!(
                "The root {root} no longer exists; scan its new place with: echo DIR > {}:scan\n",
                self.index_path(name)
            ));
        }
        for p in &st.modified {
            text.push_str(&format!("M {p}\n"));
        }
        for p in &st.missing {
            text.push_str(&format!("D {p}\n"));
        }
        for p in &st.new {
            text.push_str(&format!("? {p}\n"));
        }
        if st.root_exists {
            for p in &st.unreadable {
                text.push_str(&format!("! {p}\n"));
            }
        }
        if st.modified.is_empty() && st.missing.is_empty() && st.new.is_empty() {
            text.push_str("All files clean.\n");
        }
        let data = json!({
            "name": name,
            "scope": rel,
            "root_exists": st.root_exists,
            "clean": st.clean,
            "modified": st.modified,
            "missing": st.missing,
            "new": st.new,
            "unreadable": st.unreadable,
        });
        Ok(Output::new(text, data))
    }

    fn rescan(&self, name: &str) -> Result<Output> {
        let root = require(self.store()?.index(name)?, name)?.root;
        let path = PathBuf::from(&root);
        if !path.is_dir() {
            return Err(Error::new(
                ErrorKind::Unavailable,
                format!(
                    "the root {root} of index '{name}' no longer exists; scan its new place with: echo DIR > {}:scan",
                    self.index_path(name)
                ),
            ));
        }
        let report = self.scan(name, &path, &mut |_| {})?;
        Ok(Output::new(report.text(), report.to_json()))
    }

    pub(super) fn read_suffix(&self, req: &Request, suffix: &str) -> Result<Output> {
        let keys: &[&str] = if suffix == "sigs" {
            &["lang", "q"]
        } else {
            &[]
        };
        req.query.check_keys(keys, &req.describe("read"))?;
        let (name, rel) = match self.target(&req.path)? {
            Target::Root => {
                return Err(Error::unsupported(
                    &format!(":{suffix}"),
                    &format!(
                        "{} (the list of indexes); read {}:{suffix}",
                        req.path,
                        self.index_path("NAME")
                    ),
                ));
            }
            Target::Index(name) => (name, String::new()),
            Target::Node(name, rel) => (name, rel),
        };
        match suffix {
            "sigs" => self.read_sigs(req, &name, &rel),
            "files" => self.read_files(req, &name, &rel),
            "status" => self.read_status(req, &name, &rel),
            _ if !rel.is_empty() => Err(on_index_only(req, suffix, &self.index_path(&name))),
            "json" => {
                let (row, files) = self.index_and_files(&name, false)?;
                let data = self.summary_json(&row, &files);
                let text = serde_json::to_string_pretty(&data)
                    .map_err(|e| Error::internal(format!("cannot encode JSON: {e}")))?;
                Ok(Output::new(text + "\n", data))
            }
            "scan" => {
                // A rescan reads the whole recorded tree with avm's rights: operators only.
                if req.caller != avm_core::Caller::Operator {
                    return Err(Error::new(
                        ErrorKind::PermissionDenied,
                        format!(
                            "only an operator may rescan {} (rule: index scans are operator-only)",
                            req.path
                        ),
                    ));
                }
                self.rescan(&name)
            }
            "describe" => {
                let row = require(self.store()?.index(&name)?, &name)?;
                let text = if row.description.is_empty() {
                    String::new()
                } else {
                    format!("{}\n", row.description)
                };
                Ok(Output::new(
                    text,
                    json!({"name": name, "description": row.description}),
                ))
            }
            other => Err(Error::unsupported(&format!(":{other}"), &req.path)),
        }
    }
}
