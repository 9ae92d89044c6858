//! Memories as MCP resources: `avm://` URIs, paged resource lists with titles, and the
//! JSON-RPC errors resource requests give.

use rmcp::model::{ListResourcesResult, Resource};

use avm_core::{Error, ListOptions};

use crate::AvmMcp;

/// The URI scheme of memories as MCP resources: `avm:///memory/shared/x.md`.
pub const RESOURCE_SCHEME: &str = "avm://";

/// Resources listed per `resources/list` page.
const RESOURCE_PAGE: usize = 200;

/// The avm path a resource URI names (`avm:///memory/a.md` → `/memory/a.md`).
pub fn resource_path(uri: &str) -> std::result::Result<String, rmcp::ErrorData> {
    let path = uri
        .strip_prefix(RESOURCE_SCHEME)
        .filter(|p| p.starts_with('/'))
        .ok_or_else(|| {
            rmcp::ErrorData::invalid_params(
                format!("resource URIs look like avm:///memory/shared/notes.md, not {uri:?}"),
                None,
            )
        })?;
    avm_core::Address::path(path)
        .map(|a| a.path)
        .map_err(|e| rmcp::ErrorData::invalid_params(e.message().to_string(), None))
}

/// The one place avm errors become JSON-RPC errors for resource requests.
pub(crate) fn resource_error(e: Error) -> rmcp::ErrorData {
    let text = format!("{}: {}", e.kind().as_str(), e.message());
    match e.kind() {
        avm_core::ErrorKind::NotFound | avm_core::ErrorKind::PermissionDenied => {
            rmcp::ErrorData::resource_not_found(text, None)
        }
        avm_core::ErrorKind::InvalidInput
        | avm_core::ErrorKind::IsADirectory
        | avm_core::ErrorKind::NotADirectory => rmcp::ErrorData::invalid_params(text, None),
        _ => rmcp::ErrorData::internal_error(text, None),
    }
}

impl AvmMcp {
    /// One page of the memories this session may read, as resources.
    pub(crate) fn resources(
        &self,
        cursor: Option<&str>,
    ) -> std::result::Result<ListResourcesResult, rmcp::ErrorData> {
        let offset = match cursor {
            None => 0,
            Some(c) => c
                .parse::<usize>()
                .map_err(|_| rmcp::ErrorData::invalid_params(format!("bad cursor {c:?}"), None))?,
        };
        let listing = self
            .ctx
            .host
            .list(
                &self.ctx.caller,
                "/memory",
                &ListOptions {
                    recursive: true,
                    limit: Some(RESOURCE_PAGE),
                    offset,
                },
            )
            .map_err(resource_error)?;
        let resources: Vec<Resource> = listing
            .entries
            .iter()
            .filter(|e| e.kind == avm_core::NodeKind::File)
            .map(|e| {
                let name = e.path.trim_start_matches("/memory/").to_string();
                let mut r = Resource::new(format!("{RESOURCE_SCHEME}{}", e.path), name)
                    .with_mime_type(if e.path.ends_with(".md") {
                        "text/markdown"
                    } else {
                        "text/plain"
                    })
                    .with_size(e.size);
                // A person picks a resource by what it is about, not by its time-stamped name.
                if let Ok(Some(n)) = self.ctx.store.node(&e.path) {
                    let (title, about) = label(&n);
                    r = r.with_title(title).with_description(about);
                }
                r
            })
            .collect();
        let mut out = ListResourcesResult::with_all_items(resources);
        if listing.more {
            out.next_cursor = Some((offset + listing.entries.len()).to_string());
        }
        Ok(out)
    }
}

/// A memory's title (its `title` metadata, else its first line of text past a remember header)
/// and the opening of its text, for resource lists.
fn label(n: &avm_core::storage::Node) -> (String, String) {
    use avm_core::storage::{body_lines, excerpt};
    let heading = n
        .text()
        .lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix("# "))
        .map(str::to_string);
    let title = n
        .meta
        .get("title")
        .and_then(serde_json::Value::as_str)
        .map(str::to_string)
        .or(heading)
        .unwrap_or_else(|| match body_lines(n.text()).next() {
            Some(first) => excerpt(first, 60),
            None => n.title(),
        });
    (title, excerpt(n.text(), 160))
}
