//! A newcomer's first minutes: the README's quick start, run line by line as written, in a fresh
//! HOME with nothing configured. The lines come from README.md itself, so this test breaks when
//! the README drifts from what avm does.

use std::path::PathBuf;
use std::process::Command;

use crate::Env;

/// The shell lines between the README's quick-start markers.
fn quick_start() -> Vec<String> {
    let readme = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../README.md");
    let text = std::fs::read_to_string(&readme).unwrap();
    let start = text
        .find("<!-- quickstart")
        .expect("README.md has a quick-start block");
    let end = text[start..]
        .find("<!-- /quickstart -->")
        .expect("the quick-start block ends")
        + start;
    let block = &text[start..end];
    let body = block
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("the quick start is a sh code block");
    body.lines()
        .map(|l| l.split(" # ").next().unwrap_or(l).trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

#[test]
fn the_readme_quick_start_works_as_written_in_a_fresh_home() {
    let env = Env::new();
    let home = env.path("newcomer");
    std::fs::create_dir_all(&home).unwrap();
    // The binary under test stands where `cargo install` puts it: first on PATH.
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_avm"));
    let path = format!(
        "{}:{}",
        bin.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let fuse = crate::fuse::fuse_unavailable();
    let lines = quick_start();
    assert!(lines.len() >= 5 && lines.len() <= 15, "{lines:?}");
    let mut ran = 0;
    let mut outputs = String::new();
    for line in &lines {
        let skip = if line.starts_with("cargo install") {
            Some("the binary under test stands in for the installed one")
        } else if line.contains("model install") {
            Some("the model comes from the package registry; recall works without it")
        } else if line.starts_with("claude ") {
            Some("needs the Claude Code CLI")
        } else if (line.contains(" mount ") || line.contains("~/avm")) && fuse.is_some() {
            Some("no usable /dev/fuse here")
        } else {
            None
        };
        if let Some(why) = skip {
            eprintln!("quick start: not run here ({why}): {line}");
            continue;
        }
        let out = Command::new("bash")
            .args(["-c", line])
            .env_clear()
            .env("HOME", &home)
            .env("PATH", &path)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "README quick start line failed: {line}\n{stdout}\n{stderr}"
        );
        outputs.push_str(&stdout);
        ran += 1;
    }
    assert!(ran >= 2, "too few quick-start lines ran");
    assert!(
        outputs.contains("db2.internal"),
        "recall did not bring the memory back:\n{outputs}"
    );
    if fuse.is_none() {
        // The mount line ran and its `cat` showed the memory through the filesystem.
        assert!(
            outputs.matches("db2.internal").count() >= 2,
            "the mount did not show the memory:\n{outputs}"
        );
    }
    // What a newcomer's store looks like on disk: private to them.
    use std::os::unix::fs::PermissionsExt;
    let data = home.join(".local/share/avm");
    let mode = std::fs::metadata(&data).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "{}", data.display());
}
