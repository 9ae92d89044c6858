//! The one trait every provider implements, built-in or plugin, and the types it speaks.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::address::Query;
use crate::content::Content;
use crate::error::{Error, Result};
use crate::policy::Policy;
use crate::time::{Micros, Nanos};

/// Who is asking. The host fills this from the front end (`--agent`, the mount's agent, the MCP
/// session, the HTTP key) and never from request content.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "type", content = "id", rename_all = "lowercase")]
pub enum Caller {
    /// A person or script with no agent identity: sees everything.
    Operator,
    /// An agent, by id.
    Agent(String),
}

/// The root of every agent's private namespace.
pub const PRIVATE_ROOT: &str = "/memory/private";

impl Caller {
    /// The agent id, if the caller is an agent.
    pub fn agent(&self) -> Option<&str> {
        match self {
            Caller::Operator => None,
            Caller::Agent(a) => Some(a),
        }
    }

    /// The private namespace of this agent (`/memory/private/<agent>`).
    pub fn private_root(&self) -> Option<String> {
        self.agent().map(|a| format!("{PRIVATE_ROOT}/{a}"))
    }

    /// May this caller see `path` at all? Other agents' private namespaces are invisible.
    pub fn may_see(&self, path: &str) -> bool {
        match self {
            Caller::Operator => true,
            Caller::Agent(a) => match private_owner(path) {
                Some(owner) => owner == a,
                None => true,
            },
        }
    }
}

/// The path a `/trash` or `/archive` copy stands for, however the copies nest
/// (`/trash/archive/memory/x.md` → `/memory/x.md`); any other path as it is. Ownership and
/// permission rules apply to copies as to originals.
pub fn live_path(path: &str) -> &str {
    let mut p = path;
    while let Some(rest) = ["/trash", "/archive"]
        .iter()
        .find_map(|root| p.strip_prefix(root).filter(|r| r.starts_with('/')))
    {
        p = rest;
    }
    p
}

/// The one visibility rule for a node, used by the host's checks and by the stores' queries
/// alike: an agent sees neither another agent's private namespace (nor its copies in
/// `/trash` and `/archive`, however nested) nor a node shared with named agents (`shared_with`,
/// from its metadata) unless it wrote it or is named; operators see everything.
pub fn visible_to(
    caller: &Caller,
    path: &str,
    author: Option<&str>,
    shared_with: &[String],
) -> bool {
    visible(caller.agent(), path, author, shared_with)
}

/// [`visible_to`] for an agent id (`None` for the operator), as stores call it per row.
pub fn visible(
    agent: Option<&str>,
    path: &str,
    author: Option<&str>,
    shared_with: &[String],
) -> bool {
    let Some(a) = agent else {
        return true;
    };
    if private_owner(path).is_some_and(|owner| owner != a) {
        return false;
    }
    shared_with.is_empty() || author == Some(a) || shared_with.iter().any(|s| s == a)
}

/// The agents a node is shared with, from its metadata (`shared_with`: a list of agent ids;
/// absent or empty = everyone who may see its path).
pub fn shared_with(meta: &Map<String, Value>) -> Vec<String> {
    meta.get("shared_with")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The agent owning `path` when it lies inside `/memory/private/<agent>/…` (or that path's
/// copy in `/trash` or `/archive`).
pub fn private_owner(path: &str) -> Option<&str> {
    let path = live_path(path);
    let rest = path.strip_prefix(PRIVATE_ROOT)?.strip_prefix('/')?;
    Some(rest.split('/').next().unwrap_or(rest))
}

/// A request built by the host for one provider call.
#[derive(Debug, Clone)]
pub struct Request {
    /// The mount pattern that routed the request.
    pub mount: String,
    /// The normalised full path.
    pub path: String,
    /// Named captures from the mount pattern (`**` holds the rest of the path).
    pub captures: BTreeMap<String, String>,
    /// The validated suffix, if any.
    pub suffix: Option<String>,
    /// The decoded query.
    pub query: Query,
    /// Who asks.
    pub caller: Caller,
    /// When the caller stops waiting, if it ever does.
    pub deadline: Option<Instant>,
    /// The permission policy, for providers that build result sets (search, recall, links).
    pub policy: Arc<Policy>,
}

/// The policy used by requests built outside a host: private namespaces only.
fn open_policy() -> Arc<Policy> {
    static OPEN: std::sync::OnceLock<Arc<Policy>> = std::sync::OnceLock::new();
    OPEN.get_or_init(|| Arc::new(Policy::open())).clone()
}

impl Request {
    /// A bare request for `path` (used by tests and by the host for internal calls).
    pub fn new(path: impl Into<String>, caller: Caller) -> Self {
        Request {
            mount: "/**".into(),
            path: path.into(),
            captures: BTreeMap::new(),
            suffix: None,
            query: Query::new(),
            caller,
            deadline: None,
            policy: open_policy(),
        }
    }

    /// The request's captures: the host's, or (for a request built without a host) `pattern`
    /// matched against the path; `None` when the pattern does not match.
    pub fn captures_or_match(
        &self,
        pattern: &crate::router::Pattern,
    ) -> Option<BTreeMap<String, String>> {
        if self.captures.is_empty() {
            pattern.matches(&self.path)
        } else {
            Some(self.captures.clone())
        }
    }

    /// The captures of a request for one generated file of a mount whose pattern is `pattern`
    /// and whose literal root is the directory `dir`: the root itself is refused with
    /// `IsADirectory` (naming `op`), a path the pattern does not serve with `NotFound`.
    pub fn file_captures(
        &self,
        pattern: &crate::router::Pattern,
        dir: Option<&str>,
        op: &str,
    ) -> crate::Result<BTreeMap<String, String>> {
        if dir == Some(self.path.as_str()) {
            return Err(crate::Error::new(
                crate::ErrorKind::IsADirectory,
                format!("{} is a directory; {op} a path below it", self.path),
            ));
        }
        self.captures_or_match(pattern).ok_or_else(|| {
            crate::Error::not_found(&self.path).context(format!(
                "mount {} does not serve this path",
                pattern.as_str()
            ))
        })
    }

    /// May the caller see `path` in a result set (private namespaces and read rules)?
    pub fn may_read(&self, path: &str) -> bool {
        self.caller.may_see(path) && self.policy.may_read(&self.caller, path)
    }

    /// `"read of /a.md:meta"`-style label for error messages.
    pub fn describe(&self, op: &str) -> String {
        match &self.suffix {
            Some(s) => format!("{op} of {}:{s}", self.path),
            None => format!("{op} of {}", self.path),
        }
    }
}

/// What a read (or a write that reports back) returns: a text rendering for shells and
/// agents, and the same result as structured data for `--json`, HTTP and MCP. The structured
/// form may be computed lazily, so plain reads never pay for JSON they do not print.
#[derive(Clone)]
pub struct Output {
    /// Text form (file content for plain reads of text; a one-line note for binary content,
    /// whose bytes are in [`Output::bytes`]).
    pub text: String,
    /// The exact bytes of binary content (`None` for text: the bytes are `text`'s).
    raw: Option<Arc<Vec<u8>>>,
    data: Data,
}

#[derive(Clone)]
enum Data {
    Value(Value),
    Lazy(std::sync::Arc<dyn Fn() -> Value + Send + Sync>),
}

impl Output {
    /// An output whose data is the text itself.
    pub fn text(text: impl Into<String>) -> Self {
        let text = text.into();
        Output {
            data: Data::Value(Value::String(text.clone())),
            raw: None,
            text,
        }
    }

    /// An output with both forms.
    pub fn new(text: impl Into<String>, data: Value) -> Self {
        Output {
            text: text.into(),
            raw: None,
            data: Data::Value(data),
        }
    }

    /// An output whose structured form is built only when asked for.
    pub fn lazy(text: impl Into<String>, data: impl Fn() -> Value + Send + Sync + 'static) -> Self {
        Output {
            text: text.into(),
            raw: None,
            data: Data::Lazy(std::sync::Arc::new(data)),
        }
    }

    /// The output of a plain read of `content`: text as its text, binary content as its exact
    /// bytes (with a one-line note as the text form); the structured form built when asked for.
    pub fn content(content: Content, data: impl Fn() -> Value + Send + Sync + 'static) -> Self {
        match content {
            Content::Text(t) => Output::lazy(t, data),
            Content::Bytes(b) => Output {
                text: crate::content::binary_note(b.len()),
                raw: Some(Arc::new(b)),
                data: Data::Lazy(std::sync::Arc::new(data)),
            },
        }
    }

    /// The content's exact bytes: binary content as stored, or the text's bytes.
    pub fn bytes(&self) -> &[u8] {
        match &self.raw {
            Some(b) => b,
            None => self.text.as_bytes(),
        }
    }

    /// The content's exact bytes, by value (no copy of binary content held alone).
    pub fn into_bytes(self) -> Vec<u8> {
        match self.raw {
            Some(b) => Arc::try_unwrap(b).unwrap_or_else(|b| b.as_ref().clone()),
            None => self.text.into_bytes(),
        }
    }

    /// Is this binary content (whose text form is only a note)?
    pub fn is_binary(&self) -> bool {
        self.raw.is_some()
    }

    /// The content as [`Content`] (bytes for binary output, text otherwise).
    pub fn to_content(&self) -> Content {
        match &self.raw {
            Some(b) => Content::Bytes(b.as_ref().clone()),
            None => Content::Text(self.text.clone()),
        }
    }

    /// The structured form.
    pub fn data(&self) -> Value {
        match &self.data {
            Data::Value(v) => v.clone(),
            Data::Lazy(f) => f(),
        }
    }
}

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Output")
            .field("text", &self.text)
            .field("data", &self.data())
            .finish()
    }
}

impl PartialEq for Output {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text && self.raw == other.raw && self.data() == other.data()
    }
}

impl Serialize for Output {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Output", 2)?;
        st.serialize_field("text", &self.text)?;
        st.serialize_field("data", &self.data())?;
        st.end()
    }
}

/// File, directory or symbolic link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeKind {
    /// A node with content.
    File,
    /// A path that has nodes below it.
    Dir,
    /// A symbolic link: a node whose content is the target path, stored and shown as a link
    /// and never followed by avm itself.
    Symlink,
}

/// Filesystem attributes a provider keeps for a path. `None` means the provider keeps no
/// value and the front end shows its default (0644 files, 0755 directories, the mount's owner,
/// `updated_at` as the modification time).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Attrs {
    /// Permission bits (`0o7777` at most).
    pub mode: Option<u32>,
    /// Owner.
    pub uid: Option<u32>,
    /// Group.
    pub gid: Option<u32>,
    /// Last content modification, as set by writes or `utimensat`.
    pub mtime: Option<Nanos>,
    /// Last change of content or attributes.
    pub ctime: Option<Nanos>,
    /// Last access as set by `utimensat` (reads move [`Stat::accessed_at`]).
    pub atime: Option<Nanos>,
    /// Link count of a directory (2 plus its subdirectories), when the provider counts them.
    pub nlink: Option<u32>,
}

/// Attributes to change (`None` leaves one as it is).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SetAttrs {
    /// Permission bits (`0o7777` at most).
    pub mode: Option<u32>,
    /// Owner.
    pub uid: Option<u32>,
    /// Group.
    pub gid: Option<u32>,
    /// Access time.
    pub atime: Option<Nanos>,
    /// Modification time.
    pub mtime: Option<Nanos>,
}

impl SetAttrs {
    /// Does this change nothing?
    pub fn is_empty(&self) -> bool {
        *self == SetAttrs::default()
    }
}

/// How a POSIX `rename(2)` treats an existing destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rename {
    /// Replace a file, or an empty directory, at the destination (plain `rename(2)`).
    Replace,
    /// Fail with `AlreadyExists` if anything is at the destination (`RENAME_NOREPLACE`).
    NoReplace,
    /// Swap source and destination atomically; both must exist (`RENAME_EXCHANGE`).
    Exchange,
}

/// Space on the storage behind a provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Capacity {
    /// Size of the storage in bytes.
    pub total: u64,
    /// Bytes still free for avm.
    pub free: u64,
}

/// Attributes of a path.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stat {
    /// File, directory or symbolic link.
    pub kind: NodeKind,
    /// Content length in bytes (0 for directories; the target's length for links).
    pub size: u64,
    /// Content version, for files of versioned providers.
    pub version: Option<i64>,
    /// Creation time.
    pub created_at: Option<Micros>,
    /// Last content or metadata change.
    pub updated_at: Option<Micros>,
    /// Last read.
    pub accessed_at: Option<Micros>,
    /// Filesystem attributes the provider keeps.
    pub attrs: Attrs,
}

impl Stat {
    /// Attributes of content without versions or times (generated on each read: http, script,
    /// sqlite, wasm, native providers).
    pub fn untimed(kind: NodeKind, size: u64) -> Stat {
        Stat {
            kind,
            size,
            version: None,
            created_at: None,
            updated_at: None,
            accessed_at: None,
            attrs: Attrs::default(),
        }
    }
}

/// One listed path.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entry {
    /// Full path.
    pub path: String,
    /// File or directory.
    pub kind: NodeKind,
    /// Content length in bytes.
    pub size: u64,
    /// Content version.
    pub version: Option<i64>,
    /// Last change.
    pub updated_at: Option<Micros>,
}

/// How much is stored below a path.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    /// Nodes.
    pub nodes: u64,
    /// Content bytes.
    pub bytes: u64,
}

/// How to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListOptions {
    /// Every node below the path (files only) instead of the immediate children.
    pub recursive: bool,
    /// At most this many entries.
    pub limit: Option<usize>,
    /// Skip this many entries first.
    pub offset: usize,
}

/// A listing page.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Listing {
    /// The entries, in path order.
    pub entries: Vec<Entry>,
    /// Whether entries remain past this page.
    pub more: bool,
}

impl Listing {
    /// One page of `entries` (already sorted) as `opts` asks: `offset`, then at most `limit`,
    /// with `more` telling whether entries remain.
    pub fn page(entries: Vec<Entry>, opts: &ListOptions) -> Listing {
        let total = entries.len();
        let entries: Vec<Entry> = entries
            .into_iter()
            .skip(opts.offset)
            .take(opts.limit.unwrap_or(usize::MAX))
            .collect();
        let more = opts.offset + entries.len() < total;
        Listing { entries, more }
    }
}

/// A typed write of content and metadata. Fields left `None` are left as they are.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Put {
    /// New content (`None` = keep the content, change metadata only).
    pub content: Option<Content>,
    /// Append `content` to the existing content instead of replacing it.
    pub append: bool,
    /// Keys merged into the node's metadata; a `null` value removes the key.
    pub meta: Option<Map<String, Value>>,
    /// Replaces the tag set.
    pub tags: Option<Vec<String>>,
    /// Sets importance (0..=1).
    pub importance: Option<f64>,
    /// `Some(Some(t))` expires the node at `t`; `Some(None)` removes an expiry.
    pub expires_at: Option<Option<Micros>>,
    /// Fail with `AlreadyExists` if the node exists.
    pub create_only: bool,
    /// Filesystem attributes to set with this write (the mount's owner, mode and times).
    pub attrs: SetAttrs,
}

/// What a write carries.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteInput {
    /// A typed write of content and metadata.
    Put(Put),
    /// A text body, as written through a file (`echo … > a.md:tags`).
    Text(String),
    /// A full exported record (import); the provider defines and validates its shape.
    Record(Value),
}

impl WriteInput {
    /// The text written, for a service that takes text only (a memory to remember, a
    /// message): a text body, or a put's text content (none is empty). Binary content and
    /// records are refused as invalid, naming `what` is written ("a message").
    pub fn into_text(self, what: &str) -> Result<String> {
        match self {
            WriteInput::Text(t) => Ok(t),
            WriteInput::Put(p) => match p.content.unwrap_or_default() {
                Content::Text(t) => Ok(t),
                Content::Bytes(_) => Err(Error::invalid(format!(
                    "{what} is UTF-8 text, not binary content"
                ))),
            },
            WriteInput::Record(_) => Err(Error::invalid(format!("{what} is text, not a record"))),
        }
    }
}

/// How to remove.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RemoveOptions {
    /// Remove a whole subtree.
    pub recursive: bool,
    /// Skip the trash.
    pub hard: bool,
}

/// How to search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchOptions {
    /// The user's query text (never passed to an engine unescaped).
    pub query: String,
    /// At most this many hits.
    pub limit: usize,
}

/// One search hit.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SearchHit {
    /// The node.
    pub path: String,
    /// 0..1, higher is better, the same scale on every front end: full text relative to the
    /// best hit (1.0), semantic the cosine similarity, hybrid the fused rank (1.0 = first in
    /// both lists). Hits from several mounts are each scaled to their own best.
    pub score: f64,
    /// A short excerpt around the match.
    pub snippet: String,
}

/// Where a suffix applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SuffixOn {
    /// On files.
    File,
    /// On directories (including `/`).
    Dir,
    /// On both.
    Any,
}

/// A suffix a provider serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SuffixSpec {
    /// Name without the colon.
    pub name: String,
    /// Where it applies.
    pub on: SuffixOn,
    /// Readable.
    pub read: bool,
    /// Writable.
    pub write: bool,
    /// Accepted query keys.
    pub query: Vec<String>,
    /// One line of help.
    pub help: String,
}

impl SuffixSpec {
    /// Shorthand constructor.
    pub fn new(
        name: &str,
        on: SuffixOn,
        read: bool,
        write: bool,
        query: &[&str],
        help: &str,
    ) -> Self {
        SuffixSpec {
            name: name.into(),
            on,
            read,
            write,
            query: query.iter().map(|s| s.to_string()).collect(),
            help: help.into(),
        }
    }
}

/// The operations a provider offers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Ops {
    /// `read` and `stat`.
    pub read: bool,
    /// `list`.
    pub list: bool,
    /// `write`.
    pub write: bool,
    /// `remove`.
    pub remove: bool,
    /// `rename`.
    pub rename: bool,
    /// `search`.
    pub search: bool,
}

/// What a provider declares about itself; the host answers `:info` from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProviderInfo {
    /// The `type` string in config (`memory`, `http`, …).
    pub kind: String,
    /// One line describing it.
    pub description: String,
    /// Operations offered.
    pub ops: Ops,
    /// Suffixes served.
    pub suffixes: Vec<SuffixSpec>,
}

/// A provider: something that serves a part of the virtual filesystem.
///
/// Every method has a default that refuses, so a provider implements only what it offers and
/// declares it in [`Provider::info`]. Providers are shared between threads.
pub trait Provider: Send + Sync {
    /// What this provider offers.
    fn info(&self) -> ProviderInfo;

    /// Reads a file or a suffix.
    fn read(&self, req: &Request) -> Result<Output> {
        Err(Error::unsupported("read", &req.path))
    }

    /// Reads a suffix through `host`: what the host calls, so that a service can read other
    /// paths as the caller (rights checked again there), as `:fetch` does. Defaults to
    /// [`Provider::read`].
    fn read_via(&self, host: &crate::Host, req: &Request) -> Result<Output> {
        let _ = host;
        self.read(req)
    }

    /// Writes through `host`: what the host calls, so that a service can write other paths
    /// as the caller (rights and quotas checked there), as `:remember` does. Defaults to
    /// [`Provider::write`].
    fn write_via(&self, host: &crate::Host, req: &Request, input: WriteInput) -> Result<Output> {
        let _ = host;
        self.write(req, input)
    }

    /// Attributes of a path.
    fn stat(&self, req: &Request) -> Result<Stat> {
        Err(Error::unsupported("stat", &req.path))
    }

    /// Lists a directory (or, with `recursive`, everything below it).
    fn list(&self, req: &Request, opts: &ListOptions) -> Result<Listing> {
        let _ = opts;
        Err(Error::unsupported("list", &req.path))
    }

    /// Writes a file or a writable suffix; returns the result as it now stands.
    fn write(&self, req: &Request, input: WriteInput) -> Result<Output> {
        let _ = input;
        Err(Error::new(
            crate::ErrorKind::ReadOnly,
            format!("{} is served by a read-only provider", req.path),
        ))
    }

    /// Writes many nodes in one go (import); the default writes them one by one.
    fn write_many(&self, reqs: Vec<(Request, WriteInput)>) -> Vec<Result<Output>> {
        reqs.into_iter()
            .map(|(req, input)| self.write(&req, input))
            .collect()
    }

    /// Removes a file (or a subtree with `recursive`).
    fn remove(&self, req: &Request, opts: RemoveOptions) -> Result<Output> {
        let _ = opts;
        Err(Error::new(
            crate::ErrorKind::ReadOnly,
            format!("{} is served by a read-only provider", req.path),
        ))
    }

    /// Moves a file or subtree to `dst` (a normalised path on the same provider).
    fn rename(&self, src: &Request, dst: &str, force: bool) -> Result<Output> {
        let _ = (dst, force);
        Err(Error::unsupported("rename", &src.path))
    }

    /// Moves a file or directory with `rename(2)` semantics: a file replaces a file, a
    /// directory replaces an empty directory (`NotEmpty` otherwise), a file never replaces a
    /// directory (`IsADirectory`) nor a directory a file (`NotADirectory`); never "into".
    fn rename_posix(&self, src: &Request, dst: &str, how: Rename) -> Result<Output> {
        let _ = (dst, how);
        Err(Error::unsupported("rename", &src.path))
    }

    /// Changes filesystem attributes; returns the attributes as they now stand.
    fn set_attrs(&self, req: &Request, set: &SetAttrs) -> Result<Stat> {
        let _ = set;
        Err(Error::unsupported("setting attributes of", &req.path))
    }

    /// Makes a symbolic link at `req.path` pointing at `target` (stored as given, never
    /// followed); fails with `AlreadyExists` when something is there.
    fn symlink(&self, req: &Request, target: &str, attrs: &SetAttrs) -> Result<Stat> {
        let _ = (target, attrs);
        Err(Error::unsupported("symlink", &req.path))
    }

    /// Size and free space of the storage behind this provider, if it has one.
    fn capacity(&self) -> Result<Option<Capacity>> {
        Ok(None)
    }

    /// Makes an empty directory that persists until removed.
    fn mkdir(&self, req: &Request) -> Result<Output> {
        Err(Error::unsupported("mkdir", &req.path))
    }

    /// Removes an empty directory.
    fn rmdir(&self, req: &Request) -> Result<Output> {
        Err(Error::unsupported("rmdir", &req.path))
    }

    /// Node count and content bytes below `req.path` (for quotas); `None` if not tracked.
    fn usage(&self, req: &Request) -> Result<Option<Usage>> {
        let _ = req;
        Ok(None)
    }

    /// Full-text search below `req.path`, filtered to what `req.caller` may see.
    fn search(&self, req: &Request, opts: &SearchOptions) -> Result<Vec<SearchHit>> {
        let _ = opts;
        Err(Error::unsupported("search", &req.path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_text_only_service_takes_text_and_a_puts_text_content_and_nothing_else() {
        let put = |content| {
            WriteInput::Put(Put {
                content,
                ..Put::default()
            })
        };
        assert_eq!(WriteInput::Text("hi".into()).into_text("x").unwrap(), "hi");
        assert_eq!(put(Some(Content::from("hi"))).into_text("x").unwrap(), "hi");
        assert_eq!(put(None).into_text("x").unwrap(), "");
        let e = put(Some(Content::Bytes(vec![0, 1])))
            .into_text("a message")
            .unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::InvalidInput);
        assert!(e.to_string().contains("a message is UTF-8 text"), "{e}");
        let e = WriteInput::Record(Value::Null)
            .into_text("a message")
            .unwrap_err();
        assert!(e.to_string().contains("not a record"), "{e}");
    }

    #[test]
    fn agents_cannot_see_other_agents_private_paths() {
        let alice = Caller::Agent("alice".into());
        assert!(alice.may_see("/memory/private/alice/x.md"));
        assert!(!alice.may_see("/memory/private/bob/x.md"));
        assert!(!alice.may_see("/memory/private/bob"));
        assert!(alice.may_see("/memory/private"));
        assert!(alice.may_see("/memory/shared/market/x.md"));
        assert!(alice.may_see("/memory/privateer/x.md"));
        assert!(Caller::Operator.may_see("/memory/private/bob/x.md"));
        assert_eq!(private_owner("/memory/private/bob/a/b"), Some("bob"));
        assert_eq!(private_owner("/memory/private"), None);
        assert!(!alice.may_see("/trash/memory/private/bob/x.md"));
        assert!(alice.may_see("/trash/memory/private/alice/x.md"));
        assert_eq!(private_owner("/trashy/memory/private/bob"), None);
        assert!(!alice.may_see("/archive/memory/private/bob/x.md"));
        assert!(!alice.may_see("/trash/archive/memory/private/bob/x.md"));
        assert!(!alice.may_see("/archive/trash/archive/memory/private/bob/x.md"));
        assert_eq!(live_path("/trash/archive/memory/x.md"), "/memory/x.md");
        assert_eq!(live_path("/trashcan/x"), "/trashcan/x");
        let carol = vec!["carol".to_string()];
        assert!(!visible_to(
            &alice,
            "/memory/shared/s.md",
            Some("dan"),
            &carol
        ));
        assert!(visible_to(
            &alice,
            "/memory/shared/s.md",
            Some("alice"),
            &carol
        ));
        assert!(visible_to(
            &Caller::Agent("carol".into()),
            "/memory/shared/s.md",
            Some("dan"),
            &carol
        ));
        assert!(visible_to(
            &Caller::Operator,
            "/memory/shared/s.md",
            Some("dan"),
            &carol
        ));
        assert!(visible_to(&alice, "/memory/shared/s.md", Some("dan"), &[]));
        assert!(alice.may_see("/archive/memory/private/alice/x.md"));
        assert_eq!(private_owner("/archived/memory/private/bob"), None);
    }
}
