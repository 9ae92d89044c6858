//! The MCP server driven by a real MCP client (rmcp) over stdio.

use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::TokioChildProcess;

use crate::{Env, s};

pub(crate) fn text(r: &rmcp::model::CallToolResult) -> String {
    r.content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("\n")
}

pub(crate) async fn client(
    env: &Env,
    agent: &str,
) -> rmcp::service::RunningService<rmcp::RoleClient, ()> {
    let mut cmd =
        tokio::process::Command::from(env.cmd(&["--db", s(&env.db()), "--agent", agent, "mcp"]));
    cmd.stderr(std::process::Stdio::null());
    ().serve(TokioChildProcess::new(cmd).unwrap())
        .await
        .unwrap()
}

pub(crate) fn call(name: &str, args: serde_json::Value) -> CallToolRequestParams {
    let mut p = CallToolRequestParams::new(name.to_string());
    p.arguments = args.as_object().cloned();
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mcp_client_uses_every_tool_and_sessions_are_isolated() {
    let env = Env::new();
    let alice = client(&env, "alice").await;
    let info = alice.peer_info().unwrap();
    assert_eq!(info.server_info.as_ref().unwrap().name, "avm");
    let tools = alice.list_all_tools().await.unwrap();
    let names: Vec<String> = tools.iter().map(|t| t.name.to_string()).collect();
    for want in [
        "avm_recall",
        "avm_browse",
        "avm_fetch",
        "avm_remember",
        "avm_search",
        "avm_semantic",
        "avm_list",
        "avm_read",
        "avm_write",
        "avm_tags",
        "avm_recent",
        "avm_stats",
        "avm_link",
        "avm_tell",
        "avm_inbox",
        "avm_topics",
        "avm_who_knows",
        "avm_digest",
    ] {
        assert!(
            names.iter().any(|n| n == want),
            "{want} missing from {names:?}"
        );
    }
    let recall = tools.iter().find(|t| t.name == "avm_recall").unwrap();
    assert!(
        recall
            .input_schema
            .get("required")
            .unwrap()
            .to_string()
            .contains("query")
    );
    // Good calls.
    let r = alice
        .call_tool(call(
            "avm_remember",
            serde_json::json!({"content": "MCP memory about zebra migrations", "title": "zebras", "tags": ["wildlife"]}),
        ))
        .await
        .unwrap();
    assert_ne!(r.is_error, Some(true), "{}", text(&r));
    let path = text(&r).trim_start_matches("Stored: ").to_string();
    assert!(path.starts_with("/memory/private/alice/"), "{path}");
    let r = alice
        .call_tool(call(
            "avm_recall",
            serde_json::json!({"query": "zebra migrations", "max_tokens": 300, "paths": true}),
        ))
        .await
        .unwrap();
    assert!(text(&r).contains(&path), "{}", text(&r));
    let r = alice
        .call_tool(call("avm_digest", serde_json::json!({"days": 1})))
        .await
        .unwrap();
    assert!(
        text(&r).contains("# Memory Digest: /memory/private/alice"),
        "{}",
        text(&r)
    );
    assert!(
        text(&r).contains("MCP memory about zebra migrations"),
        "{}",
        text(&r)
    );
    let r = alice
        .call_tool(call("avm_digest", serde_json::json!({"days": -1})))
        .await
        .unwrap();
    assert_eq!(r.is_error, Some(true), "{}", text(&r));
    let r = alice
        .call_tool(call(
            "avm_digest",
            serde_json::json!({"path": "/memory/private/bob"}),
        ))
        .await
        .unwrap();
    assert_eq!(r.is_error, Some(true), "{}", text(&r));
    let r = alice
        .call_tool(call("avm_browse", serde_json::json!({"query": "zebra"})))
        .await
        .unwrap();
    assert!(text(&r).contains(&path));
    let r = alice
        .call_tool(call("avm_fetch", serde_json::json!({"paths": [path]})))
        .await
        .unwrap();
    assert!(text(&r).contains("MCP memory about zebra migrations"));
    let r = alice
        .call_tool(call("avm_search", serde_json::json!({"query": "zebra"})))
        .await
        .unwrap();
    assert!(text(&r).contains(&path));
    let r = alice
        .call_tool(call(
            "avm_write",
            serde_json::json!({"path": "/memory/shared/team/plan.md", "content": "ship it"}),
        ))
        .await
        .unwrap();
    assert!(
        text(&r).starts_with("Saved: /memory/shared/team/plan.md"),
        "{}",
        text(&r)
    );
    let r = alice
        .call_tool(call(
            "avm_read",
            serde_json::json!({"path": "/memory/shared/team/plan.md"}),
        ))
        .await
        .unwrap();
    assert_eq!(text(&r), "# /memory/shared/team/plan.md\n\nship it");
    let r = alice.call_tool(call("avm_link", serde_json::json!({"source": "/memory/shared/team/plan.md", "target": path, "link_type": "derived"}))).await.unwrap();
    assert_ne!(r.is_error, Some(true), "{}", text(&r));
    for (tool, args) in [
        ("avm_list", serde_json::json!({})),
        ("avm_tags", serde_json::json!({})),
        ("avm_recent", serde_json::json!({})),
        ("avm_stats", serde_json::json!({})),
        ("avm_topics", serde_json::json!({})),
        ("avm_who_knows", serde_json::json!({"topic": "zebra"})),
        (
            "avm_tell",
            serde_json::json!({"to": "bob", "message": "hi bob", "priority": "urgent"}),
        ),
        ("avm_inbox", serde_json::json!({})),
    ] {
        let r = alice.call_tool(call(tool, args)).await.unwrap();
        assert_ne!(r.is_error, Some(true), "{tool}: {}", text(&r));
    }
    // A tool that runs and fails is an isError result; malformed arguments are protocol errors.
    let r = alice
        .call_tool(call(
            "avm_read",
            serde_json::json!({"path": "/memory/none.md"}),
        ))
        .await
        .unwrap();
    assert_eq!(r.is_error, Some(true));
    assert!(text(&r).starts_with("not-found:"), "{}", text(&r));
    let r = alice
        .call_tool(call(
            "avm_recall",
            serde_json::json!({"query": "x", "strategy": "fastest"}),
        ))
        .await
        .unwrap();
    assert_eq!(r.is_error, Some(true));
    // Arguments that do not fit the schema: refused (as a protocol error, or as an error result
    // the model can read and correct, which is what the current MCP revision asks for).
    match alice
        .call_tool(call("avm_recall", serde_json::json!({"max_tokens": 5})))
        .await
    {
        Err(_) => {}
        Ok(r) => assert_eq!(r.is_error, Some(true), "{}", text(&r)),
    }
    assert!(
        alice
            .call_tool(call("avm_nope", serde_json::json!({})))
            .await
            .is_err()
    );
    // Bob's session on the same database cannot reach Alice's private memory.
    let bob = client(&env, "bob").await;
    let r = bob
        .call_tool(call("avm_read", serde_json::json!({"path": path})))
        .await
        .unwrap();
    assert_eq!(r.is_error, Some(true));
    assert!(text(&r).starts_with("permission-denied:"), "{}", text(&r));
    for (tool, args) in [
        (
            "avm_recall",
            serde_json::json!({"query": "zebra migrations"}),
        ),
        ("avm_search", serde_json::json!({"query": "zebra"})),
        ("avm_browse", serde_json::json!({"query": "zebra"})),
        ("avm_recent", serde_json::json!({})),
        ("avm_list", serde_json::json!({"prefix": "/memory/private"})),
        ("avm_fetch", serde_json::json!({"paths": [path]})),
    ] {
        let r = bob.call_tool(call(tool, args)).await.unwrap();
        // (avm_fetch may name the path it was given back; it never shows the content.)
        let t = text(&r);
        assert!(!t.contains("MCP memory about"), "{tool}: {t}");
        assert!(
            tool == "avm_fetch" || !t.contains("/memory/private/alice"),
            "{tool}: {t}"
        );
    }
    let r = bob
        .call_tool(call("avm_inbox", serde_json::json!({})))
        .await
        .unwrap();
    assert!(text(&r).contains("hi bob"), "{}", text(&r));
    let r = bob
        .call_tool(call(
            "avm_read",
            serde_json::json!({"path": "/memory/shared/team/plan.md"}),
        ))
        .await
        .unwrap();
    assert!(text(&r).contains("ship it"), "shared stays visible");
    alice.cancel().await.unwrap();
    bob.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memories_are_resources_each_session_sees_only_its_own_and_ping_answers() {
    use rmcp::model::{ClientRequest, PingRequest, ReadResourceRequestParams, ServerResult};
    let env = Env::new();
    env.run(&[
        "--db",
        s(&env.db()),
        "write",
        "/memory/shared/team/plan.md",
        "-c",
        "ship friday",
    ])
    .ok();
    env.run(&[
        "--db",
        s(&env.db()),
        "write",
        "/memory/private/alice/diary.md",
        "-c",
        "alice only",
    ])
    .ok();
    let alice = client(&env, "alice").await;
    let bob = client(&env, "bob").await;
    let pong = alice
        .send_request(ClientRequest::PingRequest(PingRequest::default()))
        .await
        .unwrap();
    assert!(matches!(pong, ServerResult::EmptyResult(_)), "{pong:?}");

    let uris = |rs: Vec<rmcp::model::Resource>| -> Vec<String> {
        rs.iter().map(|r| r.uri.clone()).collect()
    };
    let listed = alice.list_all_resources().await.unwrap();
    // Named by what they say, not only by file name.
    let plan = listed.iter().find(|r| r.uri.ends_with("/plan.md")).unwrap();
    assert_eq!(plan.title.as_deref(), Some("ship friday"), "{plan:?}");
    assert_eq!(plan.name, "shared/team/plan.md", "{plan:?}");
    let a = uris(listed);
    assert!(
        a.contains(&"avm:///memory/shared/team/plan.md".to_string()),
        "{a:?}"
    );
    assert!(
        a.contains(&"avm:///memory/private/alice/diary.md".to_string()),
        "{a:?}"
    );
    let b = uris(bob.list_all_resources().await.unwrap());
    assert!(
        b.contains(&"avm:///memory/shared/team/plan.md".to_string()),
        "{b:?}"
    );
    assert!(!b.iter().any(|u| u.contains("/private/alice")), "{b:?}");

    let read = alice
        .read_resource(ReadResourceRequestParams::new(
            "avm:///memory/private/alice/diary.md",
        ))
        .await
        .unwrap();
    let body = serde_json::to_value(&read.contents[0]).unwrap();
    assert_eq!(body["text"], "alice only");
    assert_eq!(body["uri"], "avm:///memory/private/alice/diary.md");
    // Another agent's private memory: an error, and not its content.
    let denied = bob
        .read_resource(ReadResourceRequestParams::new(
            "avm:///memory/private/alice/diary.md",
        ))
        .await;
    let msg = format!("{denied:?}");
    assert!(denied.is_err() && !msg.contains("alice only"), "{msg}");
    let bad = alice
        .read_resource(ReadResourceRequestParams::new("file:///etc/passwd"))
        .await;
    assert!(bad.is_err());
    let traversal = alice
        .read_resource(ReadResourceRequestParams::new(
            "avm:///memory/shared/../private/alice/diary.md",
        ))
        .await;
    assert!(traversal.is_err(), "{traversal:?}");
    alice.cancel().await.unwrap();
    bob.cancel().await.unwrap();
}

/// An MCP client over streamable HTTP to `avm serve` at `addr`, with a key or an agent header.
pub(crate) async fn http_client(
    addr: &str,
    key: Option<&str>,
    agent: Option<&str>,
) -> Result<rmcp::service::RunningService<rmcp::RoleClient, ()>, String> {
    use rmcp::transport::StreamableHttpClientTransport;
    use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
    let mut cfg = StreamableHttpClientTransportConfig::with_uri(format!("http://{addr}/mcp"));
    if let Some(k) = key {
        cfg = cfg.auth_header(k.to_string());
    }
    if let Some(a) = agent {
        let mut h = std::collections::HashMap::new();
        h.insert(
            http::HeaderName::from_static("x-avm-agent"),
            http::HeaderValue::from_str(a).unwrap(),
        );
        cfg = cfg.custom_headers(h);
    }
    ().serve(StreamableHttpClientTransport::from_config(cfg))
        .await
        .map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_over_http_acts_as_the_agent_the_credentials_name() {
    let env = Env::new();
    let key = |agent: &str| {
        env.run(&["--db", s(&env.db()), "--agent", agent, "key", "create"])
            .ok()
            .trim()
            .to_string()
    };
    let (ka, kb) = (key("alice"), key("bob"));
    // Bound beyond loopback: every request needs a key.
    let srv = crate::http::Server::start(&env, &["0.0.0.0:0"]);
    let alice = http_client(&srv.addr, Some(&ka), None).await.unwrap();
    assert_eq!(
        alice
            .peer_info()
            .unwrap()
            .server_info
            .as_ref()
            .unwrap()
            .name,
        "avm"
    );
    assert!(alice.list_all_tools().await.unwrap().len() >= 17);
    let r = alice
        .call_tool(call(
            "avm_remember",
            serde_json::json!({"content": "The vault combination is 31-7-42", "title": "vault"}),
        ))
        .await
        .unwrap();
    assert_ne!(r.is_error, Some(true), "{}", text(&r));
    assert!(text(&r).contains("/memory/private/alice/"), "{}", text(&r));
    let r = alice
        .call_tool(call(
            "avm_recall",
            serde_json::json!({"query": "vault combination"}),
        ))
        .await
        .unwrap();
    assert!(text(&r).contains("31-7-42"), "{}", text(&r));
    let res = alice.list_all_resources().await.unwrap();
    assert!(
        res.iter().any(|r| r.uri.contains("/memory/private/alice/")),
        "{res:?}"
    );

    // Bob's key acts as bob: alice's memory is out of reach, whatever header he adds.
    let bob = http_client(&srv.addr, Some(&kb), None).await.unwrap();
    let r = bob
        .call_tool(call(
            "avm_recall",
            serde_json::json!({"query": "vault combination"}),
        ))
        .await
        .unwrap();
    assert!(!text(&r).contains("31-7-42"), "{}", text(&r));
    let r = bob
        .call_tool(call(
            "avm_list",
            serde_json::json!({"path": "/memory/private/alice"}),
        ))
        .await
        .unwrap();
    assert!(!text(&r).contains("vault"), "{}", text(&r));
    let res = bob.list_all_resources().await.unwrap();
    assert!(!res.iter().any(|r| r.uri.contains("alice")), "{res:?}");
    assert!(
        http_client(&srv.addr, Some(&kb), Some("alice"))
            .await
            .is_err(),
        "a key for bob claiming to be alice is refused"
    );
    // No key, or a made-up one: no session at all.
    assert!(http_client(&srv.addr, None, Some("alice")).await.is_err());
    assert!(
        http_client(&srv.addr, Some("avm_not_a_key"), None)
            .await
            .is_err()
    );
    // SIGTERM stops the server even while MCP sessions (and their event streams) are open.
    let mut srv = srv;
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(srv.child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let t = std::time::Instant::now();
    loop {
        if srv.child.try_wait().unwrap().is_some() {
            break;
        }
        assert!(
            t.elapsed() < std::time::Duration::from_secs(10),
            "avm serve did not stop with MCP clients connected"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let _ = alice.cancel().await;
    let _ = bob.cancel().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemas_suit_form_based_clients_and_their_string_arguments() {
    let env = Env::new();
    let alice = client(&env, "alice").await;
    let tools = alice.list_all_tools().await.unwrap();
    for t in &tools {
        let schema = serde_json::Value::Object((*t.input_schema).clone()).to_string();
        assert!(!schema.contains("\"null\""), "{}: {schema}", t.name);
        let a = t.annotations.as_ref().expect("every tool is annotated");
        assert!(
            a.read_only_hint.is_some() && a.destructive_hint.is_some(),
            "{}",
            t.name
        );
    }
    let recall = tools.iter().find(|t| t.name == "avm_recall").unwrap();
    let props = &recall.input_schema["properties"];
    assert_eq!(props["max_tokens"]["type"], "integer");
    assert_eq!(props["max_tokens"]["minimum"], 1);
    assert!(props["strategy"]["enum"].as_array().unwrap().len() == 4);
    let read = tools.iter().find(|t| t.name == "avm_read").unwrap();
    assert_eq!(
        read.annotations.as_ref().unwrap().read_only_hint,
        Some(true)
    );
    // The MCP Inspector sends every field of its form as a string.
    let r = alice
        .call_tool(call(
            "avm_remember",
            serde_json::json!({"content": "the canary deploy runs at noon", "importance": "0.9", "tags": ["ops"]}),
        ))
        .await
        .unwrap();
    assert_ne!(r.is_error, Some(true), "{}", text(&r));
    let r = alice
        .call_tool(call(
            "avm_recall",
            serde_json::json!({"query": "canary deploy", "max_tokens": "300", "strategy": "relevance"}),
        ))
        .await
        .unwrap();
    assert_ne!(r.is_error, Some(true), "{}", text(&r));
    assert!(text(&r).contains("noon"), "{}", text(&r));
    // What cannot be read as the parameter's type is the caller's to fix, said plainly.
    let r = alice
        .call_tool(call(
            "avm_recall",
            serde_json::json!({"query": "canary", "max_tokens": "lots"}),
        ))
        .await
        .unwrap();
    assert_eq!(r.is_error, Some(true));
    let t = text(&r);
    assert!(t.starts_with("invalid-input: "), "{t}");
    assert!(!t.contains("usize"), "{t}");
    // Forget: to the trash, not gone.
    alice
        .call_tool(call(
            "avm_write",
            serde_json::json!({"path": "/memory/private/alice/old.md", "content": "stale fact"}),
        ))
        .await
        .unwrap();
    let r = alice
        .call_tool(call(
            "avm_forget",
            serde_json::json!({"path": "/memory/private/alice/old.md"}),
        ))
        .await
        .unwrap();
    assert_ne!(r.is_error, Some(true), "{}", text(&r));
    let trashed = env.run(&[
        "--db",
        s(&env.db()),
        "-a",
        "alice",
        "read",
        "/trash/memory/private/alice/old.md",
    ]);
    assert_eq!(trashed.ok(), "stale fact");
    // The inbox shows what is unread, unless asked for all.
    env.run(&[
        "--db",
        s(&env.db()),
        "-a",
        "bob",
        "tell",
        "alice",
        "first note",
    ])
    .ok();
    let r = alice
        .call_tool(call("avm_inbox", serde_json::json!({"mark_read": "true"})))
        .await
        .unwrap();
    assert!(text(&r).contains("first note"), "{}", text(&r));
    env.run(&[
        "--db",
        s(&env.db()),
        "-a",
        "bob",
        "tell",
        "alice",
        "second note",
    ])
    .ok();
    let r = alice
        .call_tool(call("avm_inbox", serde_json::json!({})))
        .await
        .unwrap();
    assert!(
        text(&r).contains("second note") && !text(&r).contains("first note"),
        "{}",
        text(&r)
    );
    let r = alice
        .call_tool(call("avm_inbox", serde_json::json!({"all": true})))
        .await
        .unwrap();
    assert!(text(&r).contains("first note"), "{}", text(&r));
    alice.cancel().await.unwrap();
}
