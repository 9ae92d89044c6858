//! The [`ServerHandler`] of [`AvmMcp`]: tool calls (arguments checked against the tuned
//! schemas), the tool list, resource lists and reads, and the server's description.

use rmcp::model::{
    CallToolResult, ContentBlock as Content, Implementation, ListResourcesResult,
    PaginatedRequestParams, ReadResourceRequestParams, ReadResourceResponse, ReadResourceResult,
    ResourceContents, ServerCapabilities, ServerConfig,
};
use rmcp::service::{RequestContext, RoleServer};
use rmcp::{ServerHandler, tool_handler};

use crate::resources::{resource_error, resource_path};
use crate::{AvmMcp, schema};

#[tool_handler]
impl ServerHandler for AvmMcp {
    async fn call_tool(
        &self,
        request: rmcp::model::CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> std::result::Result<rmcp::model::CallToolResponse, rmcp::ErrorData> {
        let me = self.for_request(&context)?;
        let _span = tracing::debug_span!("mcp", tool = %request.name).entered();
        let mut request = request;
        let tool = me.tool_router.get(&request.name);
        let known = tool.is_some();
        if let Some(tool) = tool {
            let args = request.arguments.get_or_insert_with(Default::default);
            schema::coerce(&tool.input_schema, args);
            if let Err(why) = schema::check(&tool.input_schema, args) {
                return Ok(CallToolResult::error(vec![Content::text(format!(
                    "{}: {why}",
                    avm_core::ErrorKind::InvalidInput.as_str()
                ))])
                .into());
            }
        }
        let tcc = rmcp::handler::server::tool::ToolCallContext::new(&me, request, context);
        // Tools make blocking host calls (SQLite, the tokenizer, plugins): tell the runtime, so
        // one slow call does not hold up every other session and request on its worker.
        let r = tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(me.tool_router.call(tcc))
        });
        // Arguments that do not fit the schema are the caller's to fix, said as every other
        // avm error is: a tool result with `invalid-input: …`, not a protocol error.
        match r {
            Err(e) if known && e.code == rmcp::model::ErrorCode::INVALID_PARAMS => {
                Ok(CallToolResult::error(vec![Content::text(format!(
                    "{}: {}",
                    avm_core::ErrorKind::InvalidInput.as_str(),
                    schema::plain_message(&e.message)
                ))])
                .into())
            }
            other => other,
        }
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> std::result::Result<rmcp::model::ListToolsResult, rmcp::ErrorData> {
        // The tuned schemas and annotations (see `schema`), not the macro's fresh router.
        Ok(rmcp::model::ListToolsResult::with_all_items(
            self.tool_router.list_all(),
        ))
    }

    fn get_tool(&self, name: &str) -> Option<rmcp::model::Tool> {
        self.tool_router.get(name).cloned()
    }

    async fn list_resources(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> std::result::Result<ListResourcesResult, rmcp::ErrorData> {
        self.for_request(&context)?
            .resources(request.as_ref().and_then(|r| r.cursor.as_deref()))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> std::result::Result<ReadResourceResponse, rmcp::ErrorData> {
        let me = self.for_request(&context)?;
        let path = resource_path(&request.uri)?;
        let out = me
            .ctx
            .host
            .read(&me.ctx.caller, &path)
            .map_err(resource_error)?;
        if out.is_binary() {
            // Binary content travels exactly, as a base64 blob.
            return Ok(ReadResourceResult::new(vec![
                ResourceContents::blob(avm_core::content::to_base64(out.bytes()), request.uri)
                    .with_mime_type("application/octet-stream"),
            ])
            .into());
        }
        let mime = if path.ends_with(".md") {
            "text/markdown"
        } else {
            "text/plain"
        };
        Ok(ReadResourceResult::new(vec![
            ResourceContents::text(out.text, request.uri).with_mime_type(mime),
        ])
        .into())
    }

    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_resources()
                .build(),
        )
        .with_server_info(Implementation::new("avm", env!("CARGO_PKG_VERSION")))
        .with_instructions(
            "avm is your long-term memory, shared with your team. Start with avm_recall (or \
                 avm_browse then avm_fetch); store what you learn with avm_remember.",
        )
    }
}
