//! The OpenAPI 3.1 document served at `/openapi.json`.

use serde_json::{Value, json};

fn err_responses() -> Value {
    json!({
        "400": {"$ref": "#/components/responses/Error"},
        "401": {"$ref": "#/components/responses/Error"},
        "403": {"$ref": "#/components/responses/Error"},
        "404": {"$ref": "#/components/responses/Error"},
        "413": {"$ref": "#/components/responses/Error"}
    })
}

fn op(summary: &str, params: Value, ok: &str) -> Value {
    let mut responses = err_responses();
    responses["200"] = json!({"description": ok, "content": {"application/json": {}}});
    json!({"summary": summary, "parameters": params, "responses": responses})
}

fn q(name: &str, kind: &str, desc: &str, required: bool) -> Value {
    json!({"name": name, "in": "query", "required": required, "description": desc, "schema": {"type": kind}})
}

fn path_param() -> Value {
    json!({"name": "path", "in": "path", "required": true,
           "description": "node path without its leading slash; may end in :suffix (memory/a.md:meta)",
           "schema": {"type": "string"}})
}

/// The document.
pub fn document() -> Value {
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "avm HTTP API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Shared memory for teams of agents. Authenticate with `Authorization: Bearer <key>` (`avm key create --agent NAME`); on a loopback-only server, requests without a key act as the operator or as `X-Avm-Agent`."
        },
        "servers": [{"url": "http://127.0.0.1:7420"}],
        "security": [{"bearer": []}, {}],
        "paths": {
            "/health": {"get": {"summary": "liveness", "security": [], "responses": {"200": {"description": "ok"}}}},
            "/v1/nodes/{path}": {
                "get": op("read a node or a suffix (Accept: text/plain for the text alone)", json!([path_param()]), "{path, text, data}"),
                "put": {
                    "summary": "write a node: a text body is the content; application/json takes {content, append, meta, tags, importance}",
                    "parameters": [path_param()],
                    "requestBody": {"content": {"text/plain": {}, "application/json": {"schema": {"$ref": "#/components/schemas/Put"}}}},
                    "responses": err_responses()
                },
                "delete": op("remove a node (to the trash unless hard)", json!([path_param(), q("recursive", "boolean", "a whole subtree", false), q("hard", "boolean", "skip the trash", false)]), "removed")
            },
            "/v1/list/{path}": {"get": op("list a directory", json!([path_param(), q("recursive", "boolean", "every node below", false), q("limit", "integer", "at most (100)", false), q("offset", "integer", "skip", false)]), "{path, entries, more}")},
            "/v1/search": {"get": op("full-text search", json!([q("q", "string", "words or \"a phrase\"", true), q("limit", "integer", "at most (10)", false), q("path", "string", "below this path (/)", false)]), "{results}")},
            "/v1/recall": {"get": op("token-budgeted recall (Markdown in text)", json!([q("q", "string", "what to recall", true), q("max_tokens", "integer", "budget (cl100k)", false), q("strategy", "string", "balanced|relevance|importance|recency", false), q("ns", "string", "shared namespaces, comma-separated", false)]), "{path, text, data}")},
            "/v1/remember": {"post": {
                "summary": "store a memory (201 new, 200 already remembered)",
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Remember"}}}},
                "responses": err_responses()
            }},
            "/v1/tell": {"post": {
                "summary": "message an agent (or @all)",
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Tell"}}}},
                "responses": err_responses()
            }},
            "/v1/inbox": {"get": op("your messages", json!([q("mark_read", "boolean", "mark them read", false)]), "{path, text, data}")},
            "/v1/stats": {"get": op("counts below a path", json!([q("path", "string", "(/memory)", false)]), "{path, text, data}")}
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "responses": {"Error": {"description": "an error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}},
            "schemas": {
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "object", "required": ["kind", "message"], "properties": {
                    "kind": {"type": "string", "enum": ["not-found", "not-a-directory", "is-a-directory", "already-exists", "not-empty", "permission-denied", "read-only", "invalid-input", "unsupported", "too-large", "busy", "timed-out", "unavailable", "internal", "unauthorized"]},
                    "message": {"type": "string"}}}}},
                "Put": {"type": "object", "properties": {"content": {"type": "string"}, "append": {"type": "boolean"}, "meta": {"type": "object"}, "tags": {"type": "array", "items": {"type": "string"}}, "importance": {"type": "number"}}},
                "Remember": {"type": "object", "required": ["content"], "properties": {"content": {"type": "string"}, "title": {"type": "string"}, "namespace": {"type": "string"}, "tags": {"type": "array", "items": {"type": "string"}}, "importance": {"type": "number"}}},
                "Tell": {"type": "object", "required": ["to", "message"], "properties": {"to": {"type": "string"}, "message": {"type": "string"}, "priority": {"type": "string", "enum": ["urgent", "normal", "low"]}}}
            }
        }
    })
}
