//! Many processes writing one database at once.

use std::collections::HashMap;
use std::process::Stdio;

use crate::Env;

const PROCS: usize = 8;
const PER_PROC: usize = 500;
const SHARED_PATHS: usize = 25;

#[test]
fn eight_processes_writing_at_once_lose_nothing_and_number_versions_without_gaps() {
    let e = Env::new();
    // Create the database first so every process starts from the same schema.
    e.run(&["stats"]).ok();
    let children: Vec<_> = (0..PROCS)
        .map(|p| {
            let mut script = String::new();
            for i in 0..PER_PROC {
                // Half of each process's writes go to paths every process writes.
                let path = if i % 2 == 0 {
                    format!("/memory/own/p{p}/n{i}.md")
                } else {
                    format!("/memory/shared/hot/s{}.md", i % SHARED_PATHS)
                };
                let line = serde_json::json!({"op": "write", "path": path, "content": format!("proc {p} write {i}")});
                script.push_str(&line.to_string());
                script.push('\n');
            }
            let mut child = e
                .cmd(&["batch"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let mut stdin = child.stdin.take().unwrap();
            std::thread::spawn(move || {
                use std::io::Write;
                stdin.write_all(script.as_bytes()).unwrap();
            });
            child
        })
        .collect();
    // Acknowledged writes: (path -> [(content, version)]).
    let mut acked: HashMap<String, Vec<(String, i64)>> = HashMap::new();
    for (p, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("locked"), "process {p} saw: {stderr}");
        assert!(out.status.success(), "process {p} failed: {stderr}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines.len(), PER_PROC, "process {p} answered every line");
        for l in lines {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            assert_eq!(v["ok"], true, "process {p}: {l}");
            let r = &v["result"];
            acked
                .entry(r["path"].as_str().unwrap().to_string())
                .or_default()
                .push((
                    r["content"].as_str().unwrap().to_string(),
                    r["version"].as_i64().unwrap(),
                ));
        }
    }
    // Every acknowledged write is readable; versions run 1..n with no gap or repeat.
    let export = e.run(&["export", "-o", "-"]);
    let mut records: HashMap<String, serde_json::Value> = HashMap::new();
    for l in export.ok().lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        records.insert(v["path"].as_str().unwrap().to_string(), v);
    }
    assert_eq!(records.len(), PROCS * PER_PROC / 2 + SHARED_PATHS);
    for (path, writes) in &acked {
        let rec = &records[path];
        let versions: Vec<i64> = rec["versions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["version"].as_i64().unwrap())
            .collect();
        assert_eq!(
            versions,
            (1..=versions.len() as i64).collect::<Vec<_>>(),
            "{path}"
        );
        assert_eq!(
            versions.len(),
            writes.len(),
            "{path}: one version per acknowledged write"
        );
        let mut acked_versions: Vec<i64> = writes.iter().map(|w| w.1).collect();
        acked_versions.sort_unstable();
        assert_eq!(
            acked_versions, versions,
            "{path}: each acknowledgement got its own version"
        );
        for (content, version) in writes {
            let stored = &rec["versions"][(*version - 1) as usize]["content"];
            assert_eq!(stored, content, "{path} v{version}");
        }
        let last = writes.iter().max_by_key(|w| w.1).unwrap();
        assert_eq!(
            rec["content"],
            last.0.as_str(),
            "{path}: the newest acknowledged write wins"
        );
    }
}

#[test]
fn a_write_from_one_process_is_visible_to_the_next_at_once() {
    let e = Env::new();
    for i in 0..20 {
        e.run(&["write", "/v.md", "-c", &format!("value {i}")]).ok();
        assert_eq!(e.run(&["read", "/v.md"]).ok(), format!("value {i}"));
    }
}

#[test]
fn a_long_lived_process_sees_other_processes_writes_through_its_cache() {
    use std::io::{BufRead, BufReader, Write};
    let e = Env::new();
    e.run(&["write", "/c.md", "-c", "value 0"]).ok();
    let mut reader = e
        .cmd(&["batch"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = reader.stdin.take().unwrap();
    let mut output = BufReader::new(reader.stdout.take().unwrap());
    let mut read = |expect: &str| {
        writeln!(input, r#"{{"op":"read","path":"/c.md"}}"#).unwrap();
        input.flush().unwrap();
        let mut line = String::new();
        output.read_line(&mut line).unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["result"]["content"], expect, "{line}");
    };
    for i in 0..10 {
        read(&format!("value {i}"));
        read(&format!("value {i}")); // now from the hot cache
        e.run(&["write", "/c.md", "-c", &format!("value {}", i + 1)])
            .ok();
    }
    read("value 10");
    drop(input);
    assert!(reader.wait().unwrap().success());
}

#[test]
fn eight_processes_creating_a_fresh_database_at_once_all_succeed() {
    let e = Env::new();
    let db = e.path("fresh/x.db");
    let children: Vec<_> = (0..8)
        .map(|i| {
            e.cmd(&[
                "--db",
                crate::s(&db),
                "write",
                &format!("/n{i}.md"),
                "-c",
                &format!("v{i}"),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
        })
        .collect();
    for (i, c) in children.into_iter().enumerate() {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "process {i}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("Saved: /n{i}.md (v1)\n")
        );
    }
    let stats = e.run(&["--db", crate::s(&db), "--json", "stats"]).json();
    assert_eq!(stats["nodes"], 8);
}
