//! Access control seen from outside: files on disk, and (below) a hostile agent trying every
//! route to what it may not see.

use std::os::unix::fs::PermissionsExt;

use crate::{Env, s};

fn mode(p: &std::path::Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn the_store_on_disk_is_its_owners_only_and_old_readable_files_are_tightened() {
    let env = Env::new();
    env.run(&["-a", "alice", "remember", "the vault code is 0451"])
        .ok();
    env.run(&["-a", "alice", "key", "create"]).ok();
    env.run(&[
        "-a",
        "alice",
        "subscribe",
        "/memory/shared/**",
        "--webhook",
        "http://127.0.0.1:9/hook",
    ])
    .ok();
    let db = env.db();
    let dir = db.parent().unwrap().to_path_buf();
    assert_eq!(mode(&dir), 0o700, "the data directory");
    let mut files = Vec::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            files.push(p);
        }
    }
    assert!(
        files
            .iter()
            .any(|p| p.to_string_lossy().ends_with("avm.db-wal")),
        "{files:?}"
    );
    assert!(
        files
            .iter()
            .any(|p| p.to_string_lossy().contains("subs.db")),
        "{files:?}"
    );
    for f in &files {
        assert_eq!(mode(f), 0o600, "{}", f.display());
    }
    // A store made by an older avm (or copied with cp): tightened on the next open, with a notice.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    for f in &files {
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let r = env.run(&["--agent", "alice", "ls", "/memory"]);
    r.ok();
    assert!(r.stderr.contains("private to its owner"), "{}", r.stderr);
    assert!(r.stderr.contains("0644 → 0600"), "{}", r.stderr);
    assert_eq!(mode(&dir), 0o700);
    for f in &files {
        if f.exists() {
            assert_eq!(mode(f), 0o600, "{}", f.display());
        }
    }
    let again = env.run(&["--agent", "alice", "ls", "/memory"]);
    assert!(
        !again.stderr.contains("private to its owner"),
        "{}",
        again.stderr
    );
    // A database the user placed in a directory of their own: the file is tightened, the
    // directory (perhaps shared on purpose) is left alone.
    let own = env.path("projects");
    std::fs::create_dir_all(&own).unwrap();
    std::fs::set_permissions(&own, std::fs::Permissions::from_mode(0o755)).unwrap();
    let db2 = own.join("team.db");
    env.run(&["--db", s(&db2), "-a", "bob", "remember", "x"])
        .ok();
    assert_eq!(mode(&db2), 0o600);
    assert_eq!(mode(&own), 0o755);
}

// ---------------------------------------------------------------------------------------------
// A hostile agent (bob) against every kind of node it may not see or change, through every route.
// Each hidden node holds a secret word and a secret tag that bob never typed; each test runs
// bob's operations through one route, asserts that no output of any of them holds a secret (nor,
// for operations that discover rather than name a path, the hidden node's path), and that every
// protected node is unchanged afterwards.
// ---------------------------------------------------------------------------------------------

/// One protected node.
struct Planted {
    kind: &'static str,
    /// Where it is now.
    path: String,
    /// A word of its content that bob searches for (so it may appear in bob's own echo).
    query: String,
    /// A word of its content bob never types.
    secret: String,
    /// Its tag.
    tag: String,
    /// Bob may read it (an `ro` node): only "unchanged" is checked.
    readable: bool,
}

const RULES: &str = "[[permissions]]\npattern = \"/memory/shared/hr/**\"\naccess = \"none\"\n\n[[permissions]]\npattern = \"/memory/shared/ann/**\"\naccess = \"ro\"\n";

/// Plants one node of each kind.
fn plant(env: &Env) -> Vec<Planted> {
    env.write_file("config/avm/config.toml", RULES);
    let db = env.db();
    let db = s(&db);
    let run = |args: &[&str]| {
        let mut a = vec!["--db", db];
        a.extend(args);
        env.run(&a).ok().to_string()
    };
    let kinds: [(&str, &str, Option<&str>, bool); 7] = [
        (
            "private",
            "/memory/private/alice/k1/n.md",
            Some("alice"),
            false,
        ),
        (
            "archived",
            "/memory/private/alice/k2/n.md",
            Some("alice"),
            false,
        ),
        (
            "trashed",
            "/memory/private/alice/k3/n.md",
            Some("alice"),
            false,
        ),
        (
            "trash-of-archive",
            "/memory/private/alice/k4/n.md",
            Some("alice"),
            false,
        ),
        (
            "shared-with",
            "/memory/shared/team/n.md",
            Some("dan"),
            false,
        ),
        ("none-ruled", "/memory/shared/hr/n.md", None, false),
        ("ro-ruled", "/memory/shared/ann/n.md", None, true),
    ];
    let mut out = Vec::new();
    for (i, (kind, path, author, readable)) in kinds.into_iter().enumerate() {
        let short = ["prv", "arc", "trs", "tra", "shw", "non", "rox"][i];
        let query = format!("quarry{short}");
        let secret = format!("sekrit{short}q7");
        let tag = format!("tagsekrit{short}");
        let content = format!("{query} notes: the vault code is {secret} for the team");
        let mut args: Vec<&str> = Vec::new();
        if let Some(a) = author {
            args.extend(["--agent", a]);
        }
        let mut w = args.clone();
        w.extend(["write", path, "-c", &content, "--tags", &tag]);
        run(&w);
        let now = match kind {
            "archived" | "trash-of-archive" => {
                let dst = format!("/archive{path}");
                let mut m = args.clone();
                m.extend(["mv", path, &dst]);
                run(&m);
                if kind == "trash-of-archive" {
                    let mut r = args.clone();
                    r.extend(["rm", &dst]);
                    run(&r);
                    format!("/trash{dst}")
                } else {
                    dst
                }
            }
            "trashed" => {
                let mut r = args.clone();
                r.extend(["rm", path]);
                run(&r);
                format!("/trash{path}")
            }
            "shared-with" => {
                let mut sh = args.clone();
                let addr = format!("{path}:shared");
                sh.extend(["write", &addr, "-c", "carol"]);
                run(&sh);
                path.to_string()
            }
            _ => path.to_string(),
        };
        out.push(Planted {
            kind,
            path: now,
            query,
            secret,
            tag,
            readable,
        });
    }
    // Something bob may see, so that empty answers are not what passes the test.
    run(&[
        "--agent",
        "bob",
        "write",
        "/memory/shared/team/open.md",
        "-c",
        "open quarryopen notes",
    ]);
    out
}

/// What the operator sees of every planted node (content, version, metadata, tags), to compare
/// before and after the attack.
fn snapshot(env: &Env, planted: &[Planted]) -> Vec<String> {
    planted
        .iter()
        .map(|p| {
            let r = env.run(&["--db", s(&env.db()), "--json", "read", &p.path]);
            let mut v: serde_json::Value = serde_json::from_str(r.ok()).unwrap();
            if let Some(o) = v.as_object_mut() {
                o.remove("accessed_at");
            }
            v.to_string()
        })
        .collect()
}

/// Bob's operations on one route, each a name and everything it printed or answered.
type Outputs = Vec<(String, bool, String)>;

/// Asserts that no output holds a secret of a node bob may not read, nor (for discovering
/// operations) its path; returns the number of (operation × node kind) cases checked.
fn assert_nothing_leaks(route: &str, planted: &[Planted], outputs: &Outputs) -> usize {
    assert!(outputs.len() > 5, "{route}: too few operations ran");
    let mut cases = 0;
    for (op, discovers, out) in outputs {
        for p in planted {
            cases += 1;
            if p.readable {
                continue;
            }
            for word in [&p.secret, &p.tag] {
                assert!(
                    !out.contains(word.as_str()),
                    "{route}: `{op}` leaked the {} node's {word}:\n{out}",
                    p.kind
                );
            }
            if *discovers {
                assert!(
                    !out.contains(&p.path),
                    "{route}: `{op}` revealed the {} node's path {}:\n{out}",
                    p.kind,
                    p.path
                );
            }
        }
    }
    eprintln!(
        "{route}: {} operations × {} node kinds = {cases} cases",
        outputs.len(),
        planted.len()
    );
    cases
}

/// The addresses bob tries for one node (the node and its suffixes).
fn addresses(p: &Planted) -> Vec<String> {
    vec![
        p.path.clone(),
        format!("{}:meta", p.path),
        format!("{}:history", p.path),
        format!("{}:tags", p.path),
        format!("{}:links", p.path),
        format!("{}?version=1", p.path),
    ]
}

fn parent(p: &str) -> String {
    p.rsplit_once('/')
        .map(|(d, _)| d.to_string())
        .unwrap_or_default()
}

#[test]
fn through_the_cli_a_hostile_agent_neither_sees_nor_changes_protected_nodes() {
    let env = Env::new();
    let planted = plant(&env);
    let before = snapshot(&env, &planted);
    let db = env.db();
    let db = s(&db);
    // Bob does get answers where he may look (so empty answers are not what passes).
    let open = env.run(&["--db", db, "--agent", "bob", "search", "quarryopen"]);
    assert!(open.ok().contains("open.md"), "{open:?}");
    let mut outputs: Outputs = Vec::new();
    let mut bob = |args: &[&str], discovers: bool| {
        let mut a = vec!["--db", db, "--agent", "bob"];
        a.extend(args);
        let r = env.run(&a);
        outputs.push((
            args.join(" "),
            discovers,
            format!("{}{}", r.stdout, r.stderr),
        ));
    };
    for p in &planted {
        for addr in addresses(p) {
            bob(&["read", &addr], false);
            bob(&["--json", "read", &addr], false);
        }
        bob(&["history", &p.path], false);
        bob(&["search", &p.query], true);
        bob(&["--json", "search", &p.query], true);
        bob(&["recall", &p.query, "--paths"], true);
        bob(&["browse", &p.query], true);
        bob(&["ask", &p.query], true);
        bob(&["ls", &parent(&p.path)], true);
        bob(&["export", &parent(&p.path), "-o", "-"], true);
        bob(&["tags", &parent(&p.path)], true);
        // Changes: every one must fail or leave the node as it was.
        bob(&["write", &p.path, "-c", "bob was here"], false);
        bob(&["append", &p.path, "-c", "bob was here"], false);
        bob(&["write", &format!("{}:ttl", p.path), "-c", "1s"], false);
        bob(
            &["write", &format!("{}:shared", p.path), "-c", "bob"],
            false,
        );
        bob(
            &["write", &format!("{}:tags", p.path), "-c", "bobtag"],
            false,
        );
        bob(&["mv", &p.path, "/memory/shared/loot/x.md"], false);
        bob(&["rm", &p.path], false);
        bob(&["rm", "-r", "--hard", &parent(&p.path)], false);
    }
    for args in [
        &["ls", "-r", "/"][..],
        &["ls", "-r", "/trash"],
        &["ls", "-r", "/archive"],
        &["--json", "ls", "-r", "/"],
        &["export", "/", "-o", "-"],
        &["export", "/archive", "-o", "-"],
        &["export", "/trash", "-o", "-"],
        &["tags", "/"],
        &["stats"],
        &["--json", "stats"],
        &["trash"],
        &["topics"],
        &["timeline"],
        &["digest"],
        &["recent"],
        &["search", "vault"],
        &[
            "recall",
            "vault code team",
            "--max-tokens",
            "4000",
            "--paths",
        ],
        &["read", "/:tags"],
        &["read", "/:export"],
        &["read", "/memory/shared:stats"],
    ] {
        bob(args, true);
    }
    for args in [
        &["mv", "/memory/shared", "/memory/s2"][..],
        &["rm", "-r", "--hard", "/memory/shared"],
        &["rm", "-r", "--hard", "/trash"],
        &["rm", "-r", "--hard", "/archive"],
        &["rm", "-r", "/memory"],
        &["trash", "--purge", "--older-than", "0s"],
        &["archive", "/memory", "--threshold", "1"],
        &["consolidate", "/memory/shared"],
    ] {
        bob(args, false);
    }
    let cases = assert_nothing_leaks("cli", &planted, &outputs);
    assert!(cases > 1000, "{cases}");
    assert_eq!(snapshot(&env, &planted), before, "a protected node changed");
}

/// `path` relative to a mount's root (`/memory/x` → `memory/x`), quoted for `sh`.
fn rel(path: &str) -> String {
    format!("'{}'", path.trim_start_matches('/'))
}

#[test]
fn through_the_mount_a_hostile_agent_neither_sees_nor_changes_protected_nodes() {
    crate::fuse::need_fuse!();
    let env = Env::new();
    let planted = plant(&env);
    let before = snapshot(&env, &planted);
    let m = crate::fuse::Mount::new(&env, Some("bob"), "mnt-bob");
    let mut outputs: Outputs = Vec::new();
    let mut sh = |script: String, discovers: bool| {
        let o = m.sh(&script);
        outputs.push((
            script,
            discovers,
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        ));
    };
    let own = m.ok("cat 'memory/:search?q=quarryopen'");
    assert!(own.contains("open.md"), "{own}");
    for p in &planted {
        for addr in addresses(p) {
            sh(format!("cat {}", rel(&addr)), false);
        }
        sh(format!("ls -la {}", rel(&parent(&p.path))), true);
        sh(
            format!("cat {}", rel(&format!("{}:export", parent(&p.path)))),
            true,
        );
        sh(
            format!("cat {}", rel(&format!("{}:tags", parent(&p.path)))),
            true,
        );
        sh(format!("cat 'memory/:search?q={}'", p.query), true);
        sh(format!("cat ':search?q={}'", p.query), true);
        sh(format!("cat 'memory/:recall?q={}&paths=1'", p.query), true);
        sh(format!("cat 'memory/:browse?q={}'", p.query), true);
        // Changes.
        sh(format!("echo bob > {}", rel(&p.path)), false);
        sh(format!("echo bob >> {}", rel(&p.path)), false);
        sh(format!("truncate -s 0 {}", rel(&p.path)), false);
        sh(format!("chmod 777 {}", rel(&p.path)), false);
        sh(format!("touch {}", rel(&p.path)), false);
        sh(
            format!("echo 1s > {}", rel(&format!("{}:ttl", p.path))),
            false,
        );
        sh(
            format!("echo bob > {}", rel(&format!("{}:shared", p.path))),
            false,
        );
        sh(format!("mv {} memory/shared/loot.md", rel(&p.path)), false);
        sh(format!("rm -f {}", rel(&p.path)), false);
        sh(format!("rm -rf {}", rel(&parent(&p.path))), false);
    }
    for script in [
        "ls -laR .",
        "find . -type f",
        "grep -r vault . ",
        "cat ':export'",
        "cat 'trash/:export'",
        "cat 'archive/:export'",
        "cat ':tags'",
        "cat 'memory/:stats'",
        "cat 'memory/:recall?q=vault%20code%20team&max_tokens=4000&paths=1'",
        "cat 'memory/:search?q=vault'",
        "cat 'memory/:timeline'",
        "cat 'memory/:topics'",
        "tar cf - . | strings",
    ] {
        sh(script.into(), true);
    }
    for script in [
        "mv memory/shared memory/s2",
        "rm -rf memory/shared",
        "rm -rf trash archive",
        "rm -rf memory",
    ] {
        sh(script.into(), false);
    }
    drop(m);
    let cases = assert_nothing_leaks("mount", &planted, &outputs);
    assert!(cases > 500, "{cases}");
    assert_eq!(snapshot(&env, &planted), before, "a protected node changed");
}

/// Runs bob's MCP operations on `client` (stdio or HTTP) and returns what each answered.
async fn mcp_attack(
    client: &rmcp::service::RunningService<rmcp::RoleClient, ()>,
    planted: &[Planted],
) -> Outputs {
    use crate::mcp::{call, text};
    use serde_json::json;
    let mut outputs: Outputs = Vec::new();
    let mut calls: Vec<(String, serde_json::Value, bool)> = Vec::new();
    for p in planted {
        for addr in addresses(p) {
            calls.push(("avm_read".into(), json!({"path": addr}), false));
        }
        calls.push((
            "avm_read".into(),
            json!({"path": format!("{}:export", parent(&p.path))}),
            true,
        ));
        calls.push(("avm_fetch".into(), json!({"paths": [p.path]}), false));
        calls.push(("avm_search".into(), json!({"query": p.query}), true));
        calls.push((
            "avm_recall".into(),
            json!({"query": p.query, "paths": true}),
            true,
        ));
        calls.push(("avm_browse".into(), json!({"query": p.query}), true));
        calls.push(("avm_list".into(), json!({"prefix": parent(&p.path)}), true));
        calls.push(("avm_tags".into(), json!({"path": parent(&p.path)}), true));
        calls.push(("avm_who_knows".into(), json!({"topic": p.query}), true));
        calls.push((
            "avm_write".into(),
            json!({"path": p.path, "content": "bob was here"}),
            false,
        ));
        calls.push((
            "avm_write".into(),
            json!({"path": format!("{}:ttl", p.path), "content": "1s"}),
            false,
        ));
        calls.push((
            "avm_link".into(),
            json!({"source": "/memory/shared/team/open.md", "target": p.path}),
            false,
        ));
    }
    for (name, args) in [
        ("avm_search", json!({"query": "quarryopen"})),
        ("avm_list", json!({})),
        ("avm_list", json!({"prefix": "/trash"})),
        ("avm_list", json!({"prefix": "/archive"})),
        ("avm_tags", json!({})),
        ("avm_stats", json!({})),
        ("avm_recent", json!({"days": 30})),
        ("avm_topics", json!({})),
        ("avm_digest", json!({})),
        ("avm_search", json!({"query": "vault"})),
        (
            "avm_recall",
            json!({"query": "vault code team", "max_tokens": 4000, "paths": true}),
        ),
        ("avm_read", json!({"path": "/:export"})),
        ("avm_read", json!({"path": "/:tags"})),
    ] {
        calls.push((name.into(), args, true));
    }
    for (name, args, discovers) in calls {
        let label = format!("{name} {args}");
        let out = match client.call_tool(call(&name, args)).await {
            Ok(r) => format!(
                "{}{}",
                text(&r),
                serde_json::to_string(&r.structured_content).unwrap_or_default()
            ),
            Err(e) => e.to_string(),
        };
        outputs.push((label, discovers, out));
    }
    // Resources: the list and every hidden node as a resource.
    let listed = client
        .list_all_resources()
        .await
        .map(|r| format!("{r:?}"))
        .unwrap_or_else(|e| e.to_string());
    outputs.push(("resources/list".into(), true, listed));
    for p in planted {
        let r = client
            .read_resource(rmcp::model::ReadResourceRequestParams::new(format!(
                "avm://{}",
                p.path
            )))
            .await
            .map(|r| format!("{r:?}"))
            .unwrap_or_else(|e| e.to_string());
        outputs.push((format!("resources/read {}", p.path), false, r));
    }
    outputs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_mcp_over_stdio_a_hostile_agent_neither_sees_nor_changes_protected_nodes() {
    let env = Env::new();
    let planted = plant(&env);
    let before = snapshot(&env, &planted);
    let bob = crate::mcp::client(&env, "bob").await;
    let outputs = mcp_attack(&bob, &planted).await;
    bob.cancel().await.unwrap();
    assert!(
        outputs
            .iter()
            .any(|(op, _, out)| op.starts_with("avm_search") && out.contains("open.md")),
        "bob's own search found nothing"
    );
    let cases = assert_nothing_leaks("mcp-stdio", &planted, &outputs);
    assert!(cases > 500, "{cases}");
    assert_eq!(snapshot(&env, &planted), before, "a protected node changed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_mcp_over_http_a_hostile_agent_neither_sees_nor_changes_protected_nodes() {
    let env = Env::new();
    let planted = plant(&env);
    let before = snapshot(&env, &planted);
    let srv = crate::http::Server::start(&env, &["127.0.0.1:0"]);
    let bob = crate::mcp::http_client(&srv.addr, None, Some("bob"))
        .await
        .unwrap();
    let outputs = mcp_attack(&bob, &planted).await;
    bob.cancel().await.unwrap();
    let cases = assert_nothing_leaks("mcp-http", &planted, &outputs);
    assert!(cases > 500, "{cases}");
    drop(srv);
    assert_eq!(snapshot(&env, &planted), before, "a protected node changed");
}

#[test]
fn through_the_http_api_a_hostile_agent_neither_sees_nor_changes_protected_nodes() {
    let env = Env::new();
    let planted = plant(&env);
    let before = snapshot(&env, &planted);
    let srv = crate::http::Server::start(&env, &["127.0.0.1:0"]);
    let bob = [("X-Avm-Agent", "bob")];
    let json_bob = [("X-Avm-Agent", "bob"), ("Content-Type", "application/json")];
    let mut outputs: Outputs = Vec::new();
    let mut req = |method: &str, target: String, json: bool, body: &str, discovers: bool| {
        let h: &[(&str, &str)] = if json { &json_bob } else { &bob };
        let (st, _, out) = srv.req(method, &target, h, body.as_bytes());
        outputs.push((
            format!("{method} {target}"),
            discovers,
            format!("{st} {out}"),
        ));
    };
    let enc = |s: &str| s.replace(' ', "%20");
    for p in &planted {
        for addr in addresses(p) {
            req("GET", format!("/v1/nodes{addr}"), false, "", false);
        }
        req(
            "GET",
            format!("/v1/nodes{}:export", parent(&p.path)),
            false,
            "",
            true,
        );
        req(
            "GET",
            format!("/v1/nodes{}:tags", parent(&p.path)),
            false,
            "",
            true,
        );
        req(
            "GET",
            format!("/v1/list{}?recursive=true", parent(&p.path)),
            false,
            "",
            true,
        );
        req("GET", format!("/v1/search?q={}", p.query), false, "", true);
        req(
            "GET",
            format!("/v1/recall?q={}&paths=true", p.query),
            false,
            "",
            true,
        );
        req(
            "PUT",
            format!("/v1/nodes{}", p.path),
            false,
            "bob was here",
            false,
        );
        req(
            "PUT",
            format!("/v1/nodes{}:ttl", p.path),
            false,
            "1s",
            false,
        );
        req("DELETE", format!("/v1/nodes{}", p.path), false, "", false);
        req(
            "DELETE",
            format!("/v1/nodes{}?recursive=true&hard=true", parent(&p.path)),
            false,
            "",
            false,
        );
    }
    for target in [
        "/v1/list?recursive=true&limit=10000",
        "/v1/list/trash?recursive=true",
        "/v1/list/archive?recursive=true",
        "/v1/nodes/:export",
        "/v1/nodes/trash:export",
        "/v1/nodes/archive:export",
        "/v1/nodes/:tags",
        "/v1/stats",
        "/v1/search?q=vault",
        "/v1/inbox",
    ] {
        req("GET", target.into(), false, "", true);
    }
    req(
        "GET",
        format!(
            "/v1/recall?q={}&max_tokens=4000&paths=true",
            enc("vault code team")
        ),
        false,
        "",
        true,
    );
    req(
        "DELETE",
        "/v1/nodes/memory/shared?recursive=true&hard=true".into(),
        false,
        "",
        false,
    );
    req(
        "DELETE",
        "/v1/nodes/trash?recursive=true&hard=true".into(),
        false,
        "",
        false,
    );
    req(
        "POST",
        "/v1/remember".into(),
        true,
        r#"{"content": "bob's note", "namespace": "hr"}"#,
        false,
    );
    let cases = assert_nothing_leaks("http", &planted, &outputs);
    assert!(cases > 500, "{cases}");
    drop(srv);
    assert_eq!(snapshot(&env, &planted), before, "a protected node changed");
}
