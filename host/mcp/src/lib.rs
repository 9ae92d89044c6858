//! avm-mcp: agent memory over the Model Context Protocol (rmcp), as tools an LLM can use.
//!
//! Every tool turns its arguments into a host call as the session's agent (isolation holds
//! exactly as on the other front ends). A tool that ran and failed is an `isError` result
//! naming the error kind; malformed arguments are JSON-RPC errors (rmcp's parameter parsing).
//!
//! Two transports: stdio ([`serve_stdio`], one agent per process) and streamable HTTP
//! ([`http_service`], mounted by `avm serve` at `/mcp`), where every request acts as whoever its
//! credentials say (the same API keys and rules as the HTTP API).

use std::sync::Arc;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock as Content};
use rmcp::service::{RequestContext, RoleServer};
use rmcp::{ServiceExt, tool, tool_router};

use avm_core::address::Query;
use avm_core::storage::MemoryStore;
use avm_core::{Caller, Error, Host, ListOptions, Output, Put, Result, SearchOptions, WriteInput};

mod args;
mod handler;
mod resources;
mod schema;

pub use args::{
    BrowseArgs, DigestArgs, FetchArgs, InboxArgs, LinkArgs, ListArgs, PathArgs, RecallArgs,
    RecentArgs, RememberArgs, SearchArgs, TagsArgs, TellArgs, TopicsArgs, WhoKnowsArgs, WriteArgs,
};
pub use resources::{RESOURCE_SCHEME, resource_path};

/// Who an HTTP request acts as, from its headers (the HTTP API's rules).
pub type Identify = Arc<dyn Fn(&http::HeaderMap) -> Result<Caller> + Send + Sync>;

/// What the tools work on.
#[derive(Clone)]
pub struct Ctx {
    /// The host (rights checked there).
    pub host: Arc<Host>,
    /// The store, for the titles of listed resources.
    pub store: Arc<dyn MemoryStore>,
    /// Who this session is.
    pub caller: Caller,
    /// Whether semantic search is available.
    pub semantic: bool,
    /// Over HTTP: who each request acts as (then `caller` is only the fallback for calls that
    /// come without an HTTP request, which streamable HTTP never makes).
    pub identify: Option<Identify>,
}

/// The one place avm results become MCP tool results.
fn result(r: Result<Output>) -> std::result::Result<CallToolResult, rmcp::ErrorData> {
    Ok(match r {
        Ok(o) => CallToolResult::success(vec![Content::text(o.text)]),
        Err(e) => CallToolResult::error(vec![Content::text(format!(
            "{}: {}",
            e.kind().as_str(),
            e.message()
        ))]),
    })
}

fn address(path: &str, suffix: &str, pairs: &[(&str, String)]) -> Result<String> {
    avm_core::address::suffixed(path, suffix, pairs)
}

/// The MCP server of one agent session.
#[derive(Clone)]
pub struct AvmMcp {
    ctx: Arc<Ctx>,
    tool_router: ToolRouter<Self>,
}

type ToolResult = std::result::Result<CallToolResult, rmcp::ErrorData>;

#[tool_router]
impl AvmMcp {
    /// A server for `ctx`.
    pub fn new(ctx: Ctx) -> Self {
        let mut tool_router = Self::tool_router();
        for route in tool_router.map.values_mut() {
            schema::tune(&mut route.attr);
        }
        AvmMcp {
            ctx: Arc::new(ctx),
            tool_router,
        }
    }

    /// This server as the caller of one request: itself over stdio; over HTTP, a copy acting
    /// as whoever the request's credentials name.
    fn for_request(
        &self,
        context: &RequestContext<RoleServer>,
    ) -> std::result::Result<Self, rmcp::ErrorData> {
        let Some(identify) = &self.ctx.identify else {
            return Ok(self.clone());
        };
        let parts = context
            .extensions
            .get::<http::request::Parts>()
            .ok_or_else(|| rmcp::ErrorData::invalid_request("no HTTP request to identify", None))?;
        let caller = identify(&parts.headers)
            .map_err(|e| rmcp::ErrorData::invalid_request(e.message().to_string(), None))?;
        Ok(AvmMcp {
            ctx: Arc::new(Ctx {
                caller,
                identify: None,
                ..(*self.ctx).clone()
            }),
            tool_router: self.tool_router.clone(),
        })
    }

    fn read(&self, addr: Result<String>) -> Result<Output> {
        self.ctx.host.read(&self.ctx.caller, &addr?)
    }

    #[tool(
        description = "Recall what you (and your team, through shared namespaces) remember about a query, summarised to fit a token budget. Returns Markdown: one entry per memory, named by its short @id handle (paths=true for full paths; paths and scores are always in the structured result), with its title and its text or most relevant lines. Use this first; then avm_fetch with the @id for the full text."
    )]
    async fn avm_recall(&self, Parameters(a): Parameters<RecallArgs>) -> ToolResult {
        let mut pairs = vec![("q", a.query)];
        if let Some(t) = a.max_tokens {
            pairs.push(("max_tokens", t.to_string()));
        }
        if let Some(s) = a.strategy {
            pairs.push(("strategy", s));
        }
        if let Some(ns) = a.namespaces.filter(|n| !n.is_empty()) {
            pairs.push(("ns", ns.join(",")));
        }
        if a.paths == Some(true) {
            pairs.push(("paths", "true".into()));
        }
        result(self.read(address("/", "recall", &pairs)))
    }

    #[tool(
        description = "Phase one of two-phase retrieval: the paths of the memories most relevant to a query, each with a one-line summary and score, without their content. Follow with avm_fetch for the ones you need."
    )]
    async fn avm_browse(&self, Parameters(a): Parameters<BrowseArgs>) -> ToolResult {
        let pairs = vec![("q", a.query), ("limit", a.limit.unwrap_or(10).to_string())];
        result(self.read(address("/memory", "browse", &pairs)))
    }

    #[tool(
        description = "Phase two: the full content of the given memories, by path or by the @id handle that avm_recall shows."
    )]
    async fn avm_fetch(&self, Parameters(a): Parameters<FetchArgs>) -> ToolResult {
        let pairs: Vec<(&str, String)> = a.paths.into_iter().map(|p| ("path", p)).collect();
        // On the caller's own namespace, which it may always read; each path is checked as read.
        let root = self.ctx.caller.private_root().unwrap_or_else(|| "/".into());
        result(self.read(address(&root, "fetch", &pairs)))
    }

    #[tool(
        description = "Store a memory: private to you by default, or in a shared namespace your team can read. Returns its path. Remembering the same content twice returns the first memory."
    )]
    async fn avm_remember(&self, Parameters(a): Parameters<RememberArgs>) -> ToolResult {
        let mut pairs = vec![("source", "mcp".to_string())];
        if let Some(t) = a.title {
            pairs.push(("title", t));
        }
        if let Some(i) = a.importance {
            pairs.push(("importance", i.to_string()));
        }
        if let Some(tags) = a.tags.filter(|t| !t.is_empty()) {
            pairs.push(("tags", tags.join(",")));
        }
        if let Some(at) = a.at {
            pairs.push(("at", at));
        }
        let caller = &self.ctx.caller;
        let r = avm_core::host::remember_dir(caller, a.namespace.as_deref())
            .and_then(|dir| address(&dir, "remember", &pairs))
            .and_then(|addr| {
                self.ctx
                    .host
                    .write(caller, &addr, WriteInput::Text(a.content))
            })
            .map(|o| {
                let data = o.data();
                let path = data["path"].as_str().unwrap_or_default().to_string();
                Output::new(
                    if data["created"].as_bool() == Some(true) {
                        format!("Stored: {path}")
                    } else {
                        format!("Already stored: {path}")
                    },
                    data,
                )
            });
        result(r)
    }

    #[tool(
        description = "Full-text search over the memories you may read: words match as prefixes, \"quoted text\" as a phrase. Returns scored paths with snippets."
    )]
    async fn avm_search(&self, Parameters(a): Parameters<SearchArgs>) -> ToolResult {
        let r = self
            .ctx
            .host
            .search(
                &self.ctx.caller,
                "/",
                &SearchOptions {
                    query: a.query.clone(),
                    limit: a.limit.unwrap_or(10),
                },
            )
            .map(|hits| {
                let mut t = format!("Found {} results for '{}':\n\n", hits.len(), a.query);
                for h in &hits {
                    let snip: String = h.snippet.replace('\n', " ").chars().take(100).collect();
                    t.push_str(&format!("- [{:.2}] {}\n  {snip}\n\n", h.score, h.path));
                }
                Output::new(t, serde_json::json!(hits))
            });
        result(r)
    }

    #[tool(
        description = "Search by meaning (local embeddings): finds memories that say the same thing in other words. Needs the embedding model installed (avm model install)."
    )]
    async fn avm_semantic(&self, Parameters(a): Parameters<SearchArgs>) -> ToolResult {
        if !self.ctx.semantic {
            return result(Err(Error::new(
                avm_core::ErrorKind::Unavailable,
                "semantic search needs the embedding model: run `avm model install`",
            )));
        }
        let pairs = vec![
            ("q", a.query),
            ("limit", a.limit.unwrap_or(10).to_string()),
            ("mode", "semantic".to_string()),
        ];
        result(self.read(address("/memory", "search", &pairs)))
    }

    #[tool(description = "List a directory of memories (default: your private memory).")]
    async fn avm_list(&self, Parameters(a): Parameters<ListArgs>) -> ToolResult {
        let prefix = a.prefix.unwrap_or_else(|| "/private".into());
        let r = self
            .ctx
            .host
            .list(
                &self.ctx.caller,
                &prefix,
                &ListOptions {
                    recursive: false,
                    limit: Some(a.limit.unwrap_or(50)),
                    offset: 0,
                },
            )
            .map(|l| {
                let mut t = format!("Memories in {prefix} ({} items):\n\n", l.entries.len());
                for e in &l.entries {
                    let dir = if e.kind == avm_core::NodeKind::Dir {
                        "/"
                    } else {
                        ""
                    };
                    t.push_str(&format!("- {}{dir}\n", e.path));
                }
                Output::new(t, serde_json::json!(l))
            });
        result(r)
    }

    #[tool(description = "Read one memory in full.")]
    async fn avm_read(&self, Parameters(a): Parameters<PathArgs>) -> ToolResult {
        let r = self
            .ctx
            .host
            .read(&self.ctx.caller, &a.path)
            .map(|o| Output::text(format!("# {}\n\n{}", a.path, o.text)));
        result(r)
    }

    #[tool(
        description = "Create or replace a node's content; tags and metadata not given are kept."
    )]
    async fn avm_write(&self, Parameters(a): Parameters<WriteArgs>) -> ToolResult {
        let r = avm_core::Address::path(&a.path).and_then(|addr| {
            self.ctx.host.write(
                &self.ctx.caller,
                &addr.path,
                WriteInput::Put(Put {
                    content: Some(a.content.into()),
                    tags: a.tags,
                    ..Put::default()
                }),
            )
        });
        result(r)
    }

    #[tool(description = "Tags of a memory, or tag counts below a directory (default /memory).")]
    async fn avm_tags(&self, Parameters(a): Parameters<TagsArgs>) -> ToolResult {
        let p = a.path.unwrap_or_else(|| "/memory".into());
        result(self.read(address(&p, "tags", &[])))
    }

    #[tool(
        description = "Memories of recent days that you may read (by when they are about, else their last change), newest first."
    )]
    async fn avm_recent(&self, Parameters(a): Parameters<RecentArgs>) -> ToolResult {
        let pairs = vec![
            ("days", a.days.unwrap_or(1).to_string()),
            ("limit", a.limit.unwrap_or(20).to_string()),
        ];
        result(self.read(address("/", "timeline", &pairs)))
    }

    #[tool(description = "Counts and sizes of the memories you may read.")]
    async fn avm_stats(&self) -> ToolResult {
        result(self.read(address("/memory", "stats", &[])))
    }

    #[tool(
        description = "Link two memories with a typed edge (related, derived, supersedes, contradicts, …)."
    )]
    async fn avm_link(&self, Parameters(a): Parameters<LinkArgs>) -> ToolResult {
        let line = format!(
            "{} {}",
            a.target,
            a.link_type.unwrap_or_else(|| "related".into())
        );
        let r = avm_core::Address::path(&a.source).and_then(|addr| {
            self.ctx.host.write(
                &self.ctx.caller,
                &format!("{}:links", addr.path),
                WriteInput::Text(line),
            )
        });
        result(r)
    }

    #[tool(
        description = "Send a message to another agent (or @all). Urgent messages appear on top of its next file read."
    )]
    async fn avm_tell(&self, Parameters(a): Parameters<TellArgs>) -> ToolResult {
        let r = (|| {
            if a.to != "@all" {
                avm_core::config::validate_agent_id(&a.to)?;
            }
            let mut q = Query::new();
            q.push("priority", a.priority.unwrap_or_else(|| "normal".into()));
            self.ctx.host.write(
                &self.ctx.caller,
                &format!("/tell/{}?{q}", a.to),
                WriteInput::Text(a.message),
            )
        })()
        .map(|o| Output::text(o.text.trim_end().to_string()));
        result(r)
    }

    #[tool(
        description = "A digest of what changed recently: memories changed in the last days (default 1), grouped by topic, with the important ones on top. Reads only. Use it at the start of a session to catch up."
    )]
    async fn avm_digest(&self, Parameters(a): Parameters<DigestArgs>) -> ToolResult {
        // The caller's own namespace by default (all of /memory for the operator).
        let scope = a.path.unwrap_or_else(|| {
            self.ctx
                .caller
                .private_root()
                .unwrap_or_else(|| "/memory".into())
        });
        let mut pairs = vec![("days", a.days.unwrap_or(1.0).to_string())];
        if let Some(m) = a.max {
            pairs.push(("max", m.to_string()));
        }
        result(self.read(address(&scope, "digest", &pairs)))
    }

    #[tool(
        description = "Your unread messages from other agents (all: the read ones too); mark_read marks the ones shown read."
    )]
    async fn avm_inbox(&self, Parameters(a): Parameters<InboxArgs>) -> ToolResult {
        let mut pairs = Vec::new();
        if a.mark_read.unwrap_or(false) {
            pairs.push(("mark", "read".to_string()));
        }
        if !a.all.unwrap_or(false) {
            pairs.push(("only", "unread".to_string()));
        }
        // On the caller's own namespace, which it may always read (an operator's inbox is
        // refused by the service, which names why).
        let root = self.ctx.caller.private_root().unwrap_or_else(|| "/".into());
        result(self.read(address(&root, "inbox", &pairs)))
    }

    #[tool(
        description = "Forget a memory: move it to the trash (history kept; `avm restore` brings it back)."
    )]
    async fn avm_forget(&self, Parameters(a): Parameters<PathArgs>) -> ToolResult {
        let r = self
            .ctx
            .host
            .remove(
                &self.ctx.caller,
                &a.path,
                avm_core::RemoveOptions {
                    recursive: false,
                    hard: false,
                },
            )
            .map(|o| {
                Output::text(format!(
                    "Forgot {} (moved to the trash; restore it with `avm restore {}`). {}",
                    a.path,
                    a.path,
                    o.text.trim()
                ))
            });
        result(r)
    }

    #[tool(
        description = "The most common topics of the memories you may read, or the topics of one memory."
    )]
    async fn avm_topics(&self, Parameters(a): Parameters<TopicsArgs>) -> ToolResult {
        let p = a.path.unwrap_or_else(|| "/memory".into());
        result(self.read(address(
            &p,
            "topics",
            &[("limit", a.limit.unwrap_or(30).to_string())],
        )))
    }

    #[tool(
        description = "Which agents know about a topic (ids and counts only, never their private content)."
    )]
    async fn avm_who_knows(&self, Parameters(a): Parameters<WhoKnowsArgs>) -> ToolResult {
        result(self.read(address("/", "who-knows", &[("topic", a.topic)])))
    }
}

/// Serves `ctx` over stdin/stdout until the client closes the connection.
pub fn serve_stdio(ctx: Ctx) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::internal(format!("cannot start the runtime: {e}")))?;
    rt.block_on(async move {
        let server = AvmMcp::new(ctx);
        match server.serve(rmcp::transport::stdio()).await {
            Ok(running) => {
                let _ = running.waiting().await;
            }
            // A client that leaves before initializing is not an error worth a backtrace.
            Err(e) => eprintln!("avm mcp: {e}"),
        }
    });
    Ok(())
}

/// The MCP server as a streamable-HTTP service (for `avm serve` to mount at `/mcp`): sessions
/// live in memory; each request acts as `ctx.identify` says. `any_host` turns off the Host-header
/// check that protects loopback servers from DNS rebinding (for servers bound beyond loopback,
/// where every request needs an API key anyway); `stop` ends every session.
pub fn http_service(
    ctx: Ctx,
    any_host: bool,
    stop: tokio_util::sync::CancellationToken,
) -> rmcp::transport::StreamableHttpService<
    AvmMcp,
    rmcp::transport::streamable_http_server::session::local::LocalSessionManager,
> {
    let server = AvmMcp::new(ctx);
    let mut config =
        rmcp::transport::StreamableHttpServerConfig::default().with_cancellation_token(stop);
    if any_host {
        config = config.disable_allowed_hosts();
    }
    rmcp::transport::StreamableHttpService::new(
        move || Ok(server.clone()),
        Arc::new(Default::default()),
        config,
    )
}
