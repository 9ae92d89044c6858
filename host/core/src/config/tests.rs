//! Tests of configuration loading, layering, checking and path expansion.

use super::*;
use std::io::Write;

use figment::value::Value as FValue;

use crate::error::ErrorKind;

fn file(dir: &tempfile::TempDir, name: &str, body: &str) -> PathBuf {
    let p = dir.path().join(name);
    let mut f = std::fs::File::create(&p).unwrap();
    f.write_all(body.as_bytes()).unwrap();
    p
}

fn sources(file: Option<PathBuf>) -> Sources {
    Sources {
        file,
        env: false,
        flags: vec![],
        system_file: Some(PathBuf::from("/nonexistent/avm.toml")),
        user_dir: Some(PathBuf::from("/nonexistent/avm-user")),
    }
}

#[test]
fn defaults_mount_the_memory_store_everywhere() {
    let c = load(&sources(None)).unwrap();
    assert_eq!(c.mounts.len(), 1);
    assert_eq!(c.mounts[0].pattern, "/**");
    assert_eq!(c.max_node_bytes, DEFAULT_MAX_NODE_BYTES);
}

#[test]
fn file_then_flags_override_defaults() {
    let d = tempfile::tempdir().unwrap();
    let f = file(&d, "c.toml", "db = \"/tmp/x.db\"\n[store]\nreaders = 2\n");
    let mut s = sources(Some(f));
    s.flags.push(("db".into(), FValue::from("/tmp/y.db")));
    let c = load(&s).unwrap();
    assert_eq!(c.db.as_deref(), Some("/tmp/y.db"));
    assert_eq!(c.store.readers, 2);
    assert_eq!(c.store.cache_entries, StoreConfig::default().cache_entries);
}

#[test]
fn the_system_file_is_overridden_by_the_given_file() {
    let d = tempfile::tempdir().unwrap();
    let system = file(&d, "system.toml", "max_node_bytes = 1\nagent = \"sys\"\n");
    let given = file(&d, "given.toml", "max_node_bytes = 2\n");
    let mut s = sources(Some(given));
    s.system_file = Some(system);
    let c = load(&s).unwrap();
    assert_eq!(c.max_node_bytes, 2, "--config beats /etc/avm/config.toml");
    assert_eq!(
        c.agent.as_deref(),
        Some("sys"),
        "keys the later file leaves alone survive"
    );
    assert_eq!(files(&s).len(), 2);
}

#[test]
fn yaml_files_are_read_too() {
    let d = tempfile::tempdir().unwrap();
    let f = file(
        &d,
        "c.yaml",
        "max_node_bytes: 10\nstore:\n  synchronous: full\n",
    );
    let c = load(&sources(Some(f))).unwrap();
    assert_eq!(c.max_node_bytes, 10);
    assert_eq!(c.store.synchronous, "full");
}

#[test]
fn unknown_key_fails_load_and_check_lists_every_problem() {
    let d = tempfile::tempdir().unwrap();
    let f = file(
        &d,
        "c.toml",
        r#"
dbb = "x"
max_node_bytes = "lots"
[store]
readers = 0
synchronous = "sometimes"
colour = 1
[[mounts]]
pattern = "/a/{x}"
type = "memory"
[[mounts]]
pattern = "/a/{y}"
type = "nosuch"
patern = 1
"#,
    );
    let s = sources(Some(f));
    let e = load(&s).unwrap_err();
    assert!(e.message().contains("config check"), "{e}");
    let problems = check(&s, &["memory"]);
    let keys: Vec<_> = problems.iter().map(|p| p.key.as_str()).collect();
    for want in [
        "dbb",
        "max_node_bytes",
        "store.readers",
        "store.synchronous",
        "store.colour",
        "mounts[1].type",
        "mounts[1].patern",
        "mounts",
    ] {
        assert!(keys.contains(&want), "missing {want} in {problems:#?}");
    }
    let dbb = problems.iter().find(|p| p.key == "dbb").unwrap();
    assert!(dbb.message.contains("did you mean \"db\""), "{dbb:?}");
    assert!(
        dbb.source.as_deref().unwrap_or("").contains("c.toml"),
        "{dbb:?}"
    );
}

#[test]
fn a_clean_config_has_no_problems() {
    assert!(check(&sources(None), &["memory"]).is_empty());
}

#[test]
fn missing_config_file_is_reported() {
    let e = load(&sources(Some(PathBuf::from("/nonexistent/c.toml")))).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
}

#[test]
fn expansion_handles_tilde_and_variables() {
    let home = std::env::var("HOME").unwrap_or_default();
    if !home.is_empty() {
        assert_eq!(expand("~/a").unwrap(), format!("{home}/a"));
        assert_eq!(expand("${HOME}/b").unwrap(), format!("{home}/b"));
    }
    assert!(expand("$AVM_SURELY_UNSET_VARIABLE/x").is_err());
    assert_eq!(expand("a$").unwrap(), "a$");
}

#[test]
fn agent_ids_are_checked() {
    assert!(validate_agent_id("alice-2").is_ok());
    for bad in ["", "a/b", "..", "-x", "a b"] {
        assert!(validate_agent_id(bad).is_err(), "{bad}");
    }
}
