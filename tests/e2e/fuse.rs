//! A real FUSE mount driven by real shell tools and std::fs.
//!
//! Needs /dev/fuse (CI has it). Where it cannot be opened, each test prints why it skips.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::{Env, s};

/// Why FUSE tests cannot run here, if they cannot.
pub(crate) fn fuse_unavailable() -> Option<String> {
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")
    {
        Ok(_) => None,
        Err(e) => Some(format!("/dev/fuse unusable: {e}")),
    }
}

macro_rules! need_fuse {
    () => {
        if let Some(why) = $crate::fuse::fuse_unavailable() {
            eprintln!("SKIP: {why}");
            return;
        }
    };
}
pub(crate) use need_fuse;

fn mounted(dir: &Path) -> bool {
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    std::fs::read_to_string("/proc/self/mounts")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(' ').nth(1) == Some(dir.to_str().unwrap()))
}

/// An `avm mount --foreground` process; unmounts (SIGTERM) when dropped.
pub(crate) struct Mount {
    child: Child,
    pub(crate) dir: PathBuf,
}

impl Mount {
    pub(crate) fn new(env: &Env, agent: Option<&str>, name: &str) -> Mount {
        Mount::with(env, agent, name, &[], std::process::Stdio::null())
    }

    /// A mount with more global options (`--log …`) and its stderr sent to `stderr`.
    pub(crate) fn with(
        env: &Env,
        agent: Option<&str>,
        name: &str,
        options: &[&str],
        stderr: std::process::Stdio,
    ) -> Mount {
        let dir = env.path(name);
        std::fs::create_dir_all(&dir).unwrap();
        let mut args: Vec<String> = options.iter().map(|o| o.to_string()).collect();
        args.extend(["--db".to_string(), s(&env.db()).to_string()]);
        if let Some(a) = agent {
            args.extend(["--agent".into(), a.into()]);
        }
        args.extend(["mount".into(), s(&dir).into(), "--foreground".into()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let child = env
            .cmd(&args)
            .stdout(std::process::Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let m = Mount { child, dir };
        let t = Instant::now();
        while !mounted(&m.dir) {
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "mount did not come up"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        m
    }

    /// The mount process's id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn p(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    /// Runs `sh -c script` inside the mount point.
    pub(crate) fn sh(&self, script: &str) -> std::process::Output {
        Command::new("sh")
            .arg("-c")
            .arg(script)
            .current_dir(&self.dir)
            .output()
            .unwrap()
    }

    #[track_caller]
    pub(crate) fn ok(&self, script: &str) -> String {
        let o = self.sh(script);
        assert!(
            o.status.success(),
            "{script}: {}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = nix_kill(self.child.id());
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if mounted(&self.dir) {
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn nix_kill(pid: u32) -> std::io::Result<()> {
    Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status()
        .map(drop)
}

#[test]
fn shell_tools_work_through_the_mount() {
    need_fuse!();
    let env = Env::new();
    let m = Mount::new(&env, Some("alice"), "mnt");
    m.ok("mkdir -p memory/private/alice/notes/deep");
    m.ok("echo 'first line' > memory/private/alice/notes/a.md");
    m.ok("echo 'second line' >> memory/private/alice/notes/a.md");
    assert_eq!(
        m.ok("cat memory/private/alice/notes/a.md"),
        "first line\nsecond line\n"
    );
    let ls = m.ok("ls -la memory/private/alice/notes");
    assert!(ls.contains("a.md") && ls.contains("deep"), "{ls}");
    assert!(
        !ls.contains(':'.to_string().as_str()) || !ls.contains("a.md:"),
        "no virtual nodes listed: {ls}"
    );
    // Empty directories persist until removed; rmdir refuses non-empty ones.
    assert!(m.ok("ls memory/private/alice/notes").contains("deep"));
    let o = m.sh("rmdir memory/private/alice/notes");
    assert!(!o.status.success());
    m.ok("rmdir memory/private/alice/notes/deep");
    // stat reports the real size and a real mtime.
    let st = m.ok("stat -c '%s %F' memory/private/alice/notes/a.md");
    assert_eq!(st.trim(), "23 regular file");
    // cp -r in and out, grep -r, find.
    let src = env.path("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("one.txt"), "alpha needle\n").unwrap();
    std::fs::write(src.join("sub/two.txt"), "beta\n").unwrap();
    m.ok(&format!("cp -r {} memory/private/alice/copied", s(&src)));
    assert_eq!(
        m.ok("cat memory/private/alice/copied/sub/two.txt"),
        "beta\n"
    );
    let g = m.ok("grep -r needle memory/private/alice");
    assert!(g.contains("copied/one.txt:alpha needle"), "{g}");
    let f = m.ok("find memory/private/alice -type f | sort");
    assert_eq!(
        f.lines().collect::<Vec<_>>(),
        vec![
            "memory/private/alice/copied/one.txt",
            "memory/private/alice/copied/sub/two.txt",
            "memory/private/alice/notes/a.md"
        ]
    );
    let out = env.path("out");
    m.ok(&format!("cp -r memory/private/alice/copied {}", s(&out)));
    assert_eq!(
        std::fs::read_to_string(out.join("one.txt")).unwrap(),
        "alpha needle\n"
    );
    // mv of a file and of a directory; rm -r.
    m.ok("mv memory/private/alice/notes/a.md memory/private/alice/notes/b.md");
    assert!(m.sh("cat memory/private/alice/notes/a.md").status.code() != Some(0));
    m.ok("mv memory/private/alice/copied memory/private/alice/moved");
    assert_eq!(m.ok("cat memory/private/alice/moved/sub/two.txt"), "beta\n");
    m.ok("rm -r memory/private/alice/moved");
    assert!(!m.p("memory/private/alice/moved").exists());
    // std::fs too.
    std::fs::write(m.p("memory/private/alice/std.md"), "from std").unwrap();
    assert_eq!(
        std::fs::read_to_string(m.p("memory/private/alice/std.md")).unwrap(),
        "from std"
    );
    let names: Vec<String> = std::fs::read_dir(m.p("memory/private/alice"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.contains(&"std.md".to_string()), "{names:?}");
    let fsname = std::fs::read_to_string("/proc/self/mounts").unwrap();
    assert!(
        fsname
            .lines()
            .any(|l| l.starts_with("avm ") && l.contains(s(&m.dir))),
        "fsname avm: {fsname}"
    );
}

#[test]
fn overwriting_keeps_metadata_and_makes_exactly_one_version() {
    need_fuse!();
    let env = Env::new();
    env.run(&[
        "-a",
        "alice",
        "write",
        "/private/k.md",
        "-c",
        "v1",
        "--tags",
        "keep",
        "-i",
        "0.9",
    ])
    .ok();
    let m = Mount::new(&env, Some("alice"), "mnt");
    m.ok("echo v2 > memory/private/alice/k.md");
    m.ok("echo fresh > memory/private/alice/new.md");
    let h = env
        .run(&["-a", "alice", "--json", "history", "/private/k.md"])
        .json();
    assert_eq!(h.as_array().unwrap().len(), 2, "{h}");
    let n = env
        .run(&["-a", "alice", "--json", "read", "/private/k.md"])
        .json();
    assert_eq!(n["meta"]["tags"][0], "keep", "{n}");
    assert_eq!(n["meta"]["importance"], 0.9);
    assert_eq!(n["content"], "v2\n");
    let h = env
        .run(&["-a", "alice", "--json", "history", "/private/new.md"])
        .json();
    assert_eq!(
        h.as_array().unwrap().len(),
        1,
        "a new file is one version: {h}"
    );
}

/// `--log avm_fuse=debug` shows each failed operation inside its span (which operation, on
/// which inode) with the message the errno cannot carry.
#[test]
fn log_debug_shows_why_a_mount_operation_failed() {
    need_fuse!();
    let env = Env::new();
    let log = env.path("mount.log");
    let file = std::fs::File::create(&log).unwrap();
    let m = Mount::with(
        &env,
        Some("alice"),
        "mnt",
        &["--log", "avm_fuse=debug"],
        file.into(),
    );
    assert!(!m.sh("cat memory/private/alice/missing.md").status.success());
    drop(m);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.lines().any(|l| l.contains("fuse{")
            && l.contains("lookup")
            && l.contains("failed")
            && l.contains("missing.md")),
        "{text}"
    );
}

/// A generated file is size 0 until it is opened; open, it has the size of what was generated
/// for it, so a reader that sizes its buffer by `fstat` (Rust's `fs::read`, Python's `read()`)
/// reads it whole at once instead of a growing read (a round trip to avm) at a time.
#[test]
fn an_open_generated_file_has_the_size_of_its_content() {
    need_fuse!();
    let env = Env::new();
    let m = Mount::new(&env, Some("alice"), "mnt");
    m.ok("mkdir -p memory/shared/team && echo 'Ship the quokka feature by Friday' > memory/shared/team/plan.md");
    let search = m.p(":search?q=quokka+feature&limit=5");
    assert_eq!(std::fs::metadata(&search).unwrap().len(), 0);
    let mut f = std::fs::File::open(&search).unwrap();
    let size = f.metadata().unwrap().len();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut f, &mut text).unwrap();
    assert!(text.contains("/memory/shared/team/plan.md"), "{text}");
    assert_eq!(size, text.len() as u64, "fstat of the open file: {text}");
    // Closed, it is size 0 again (nothing is generated by a stat).
    drop(f);
    assert_eq!(std::fs::metadata(&search).unwrap().len(), 0);
    assert_eq!(std::fs::read(&search).unwrap().len(), text.len());
}

#[test]
fn every_virtual_node_reads_and_the_writable_ones_write() {
    need_fuse!();
    let env = Env::new();
    let m = Mount::new(&env, Some("alice"), "mnt");
    let f = "memory/shared/team/plan.md";
    m.ok(&format!(
        "mkdir -p memory/shared/team && echo 'Ship the quokka feature' > {f}"
    ));
    m.ok(&format!("echo '{{\"owner\": \"alice\"}}' > '{f}:meta'"));
    assert!(
        m.ok(&format!("cat '{f}:meta'"))
            .contains("\"owner\": \"alice\"")
    );
    m.ok(&format!("echo 'work,q4' > '{f}:tags'"));
    assert_eq!(m.ok(&format!("cat '{f}:tags'")), "work,q4\n");
    m.ok("echo 'other' > memory/shared/team/other.md");
    m.ok(&format!(
        "echo '/memory/shared/team/other.md related' > '{f}:links'"
    ));
    assert!(
        m.ok(&format!("cat '{f}:links'"))
            .contains("--> [related] /memory/shared/team/other.md")
    );
    assert!(m.ok(&format!("cat '{f}:history'")).contains("v1 [create]"));
    assert_eq!(m.ok(&format!("cat '{f}:shared'")), "all\n");
    m.ok(&format!("echo 'bob,carol' > '{f}:shared'"));
    assert_eq!(m.ok(&format!("cat '{f}:shared'")), "bob,carol\n");
    m.ok(&format!("echo 2h > '{f}:ttl'"));
    assert!(
        m.ok(&format!("cat '{f}:ttl'")).starts_with("1h 59m")
            || m.ok(&format!("cat '{f}:ttl'")).starts_with("2h")
    );
    m.ok(&format!("echo never > '{f}:ttl'"));
    assert_eq!(m.ok(&format!("cat '{f}:ttl'")), "never\n");
    assert_eq!(
        m.ok(&format!("cat '{f}:data'")),
        "Ship the quokka feature\n"
    );
    assert_eq!(
        m.ok(&format!("cat '{f}:path'")),
        "memory/shared/team/plan.md\n"
    );
    assert!(m.ok(&format!("cat '{f}:info'")).contains(":delta"));
    // :delta shows everything the first time, then only changes; :mark moves the marker.
    assert!(
        m.ok(&format!("cat '{f}:delta'"))
            .starts_with("# (first read, full content)")
    );
    assert_eq!(m.ok(&format!("cat '{f}:delta'")), "(no changes)\n");
    m.ok(&format!("echo 'Ship the quokka feature by Friday' > {f}"));
    let d = m.ok(&format!("cat '{f}:delta'"));
    assert!(
        d.starts_with("# v2 (") && d.contains("+Ship the quokka feature by Friday"),
        "{d}"
    );
    m.ok(&format!("echo x > '{f}'"));
    m.ok(&format!("echo mark > '{f}:mark'"));
    assert_eq!(
        m.ok(&format!("cat '{f}:mark'")),
        "marked: v3, current: v3\n"
    );
    // Directory and root nodes.
    let list = m.ok("cat 'memory/shared/team/:list?limit=10'");
    assert!(list.contains("  other.md  other"), "{list}");
    let short = list
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    assert!(short.starts_with('@'));
    assert!(
        !m.ok(&format!("cat 'memory/shared/team/{short}:path'"))
            .is_empty()
    );
    assert!(
        m.ok("cat 'memory/shared/team/:list?tag=work'")
            .contains("plan.md")
    );
    assert!(
        m.ok("cat 'memory/shared/team/:changes?minutes=5'")
            .contains("plan.md")
    );
    assert!(
        m.ok("cat 'memory/shared/team/:stats'")
            .contains("\"nodes\"")
    );
    assert!(
        m.ok("cat 'memory/shared/team/:topics'")
            .contains("Memory Topics")
    );
    assert!(
        m.ok("cat ':help'")
            .contains("AVM — AI Virtual Memory  (agent: alice)")
    );
    assert!(
        m.ok("cat ':search?q=other'")
            .contains("/memory/shared/team/other.md")
    );
    let r = m.ok("cat ':recall?q=quokka&max_tokens=300'");
    assert!(
        r.starts_with("@") || r.starts_with("No memory matches"),
        "no header under 500 tokens: {r}"
    );
    assert!(m.ok("cat ':inbox'").contains("Inbox"));
    // Nothing virtual is listed, so find and grep -r never run queries.
    let found = m.ok("find . -name '*:*'");
    assert_eq!(found, "", "{found}");
    // Generated files cannot be removed.
    assert!(!m.sh(&format!("rm '{f}:meta'")).status.success());
}

#[test]
fn tell_reaches_the_other_mount_and_urgent_messages_show_once() {
    need_fuse!();
    let env = Env::new();
    env.run(&[
        "-a",
        "bob",
        "write",
        "/private/todo.md",
        "-c",
        "bob's list\n",
    ])
    .ok();
    let a = Mount::new(&env, Some("alice"), "alice");
    let b = Mount::new(&env, Some("bob"), "bob");
    a.ok("echo 'deploy is broken' > 'tell/bob?priority=urgent'");
    a.ok("echo 'lunch?' > tell/@all");
    env.run(&[
        "-a",
        "bob",
        "write",
        "/private/prefs.json",
        "-c",
        "{\"a\": 1}\n",
    ])
    .ok();
    let size: usize = b
        .ok("stat -c %s memory/private/bob/todo.md")
        .trim()
        .parse()
        .unwrap();
    // Copies, checksums and structured files never get the messages, and never mark them read.
    b.ok("cp memory/private/bob/todo.md memory/private/bob/copy.md");
    b.ok("sha256sum memory/private/bob/todo.md");
    assert_eq!(b.ok("cat memory/private/bob/prefs.json"), "{\"a\": 1}\n");
    let copied = env.run(&["-a", "bob", "read", "/memory/private/bob/copy.md"]);
    assert_eq!(copied.ok(), "bob's list\n", "cp copied the banner");
    let first = b.ok("cat memory/private/bob/todo.md");
    assert!(
        first.starts_with("# ⚠️ UNREAD MESSAGES\n\n## 🔴 From: alice @ "),
        "{first}"
    );
    assert!(
        first.contains("deploy is broken") && first.ends_with("---\nbob's list\n"),
        "{first}"
    );
    assert_eq!(
        size,
        "bob's list\n".len(),
        "st_size is the content's, messages or not"
    );
    assert_eq!(b.ok("cat memory/private/bob/todo.md"), "bob's list\n");
    let inbox = b.ok("cat ':inbox'");
    assert!(
        inbox.contains("## Unread (1)") && inbox.contains("lunch?"),
        "{inbox}"
    );
    let marked = b.ok("cat ':inbox?mark=read'");
    assert!(
        marked.contains("lunch?") && marked.ends_with("Marked 1 messages as read.\n"),
        "what is marked read is shown: {marked}"
    );
    assert!(b.ok("cat ':inbox'").contains("## Read (2)"));
    // The broadcast is still unread for anyone else.
    let c = env.run(&["-a", "carol", "inbox"]);
    assert!(c.ok().contains("## Unread (1)"), "{c:#?}");
}

#[test]
fn inbox_only_mode_never_puts_messages_in_front_of_files() {
    need_fuse!();
    let env = Env::new();
    env.write_file(
        "config/avm/config.toml",
        "[fuse]\nurgent = \"inbox-only\"\n",
    );
    env.run(&[
        "-a",
        "bob",
        "write",
        "/private/todo.md",
        "-c",
        "bob's list\n",
    ])
    .ok();
    env.run(&[
        "-a",
        "alice",
        "tell",
        "bob",
        "deploy is broken",
        "--priority",
        "urgent",
    ])
    .ok();
    let b = Mount::new(&env, Some("bob"), "bob");
    assert_eq!(b.ok("cat memory/private/bob/todo.md"), "bob's list\n");
    assert!(b.ok("cat ':inbox'").contains("## Unread (1)"));
}

#[test]
fn another_agents_mount_can_neither_see_nor_open_private_files() {
    need_fuse!();
    let env = Env::new();
    env.run(&[
        "-a",
        "alice",
        "write",
        "/private/secret.md",
        "-c",
        "zebra codes",
    ])
    .ok();
    env.run(&[
        "-a",
        "alice",
        "write",
        "/memory/shared/open.md",
        "-c",
        "hello",
    ])
    .ok();
    let b = Mount::new(&env, Some("bob"), "bob");
    let ls = b.ok("ls memory/private 2>/dev/null; true");
    assert!(!ls.contains("alice"), "{ls}");
    let o = b.sh("cat memory/private/alice/secret.md");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("Permission denied"),
        "{err}"
    );
    let o = b.sh("ls memory/private/alice");
    assert!(!o.status.success(), "{o:?}");
    let o = b.sh("echo x > memory/private/alice/planted.md");
    assert!(!o.status.success(), "{o:?}");
    assert!(!b.ok("grep -r zebra . ; true").contains("zebra"));
    assert_eq!(b.ok("cat memory/shared/open.md"), "hello");
    assert!(!b.ok("cat ':search?q=zebra'").contains("secret"));
}

#[test]
fn writes_from_a_cli_process_show_through_the_mount_at_once() {
    need_fuse!();
    let env = Env::new();
    let m = Mount::new(&env, None, "mnt");
    for i in 0..5 {
        env.run(&[
            "write",
            "/memory/shared/live.md",
            "-c",
            &format!("version {i}"),
        ])
        .ok();
        assert_eq!(m.ok("cat memory/shared/live.md"), format!("version {i}"));
    }
}

#[test]
fn four_writers_and_four_readers_through_the_mount_lose_nothing() {
    need_fuse!();
    let env = Env::new();
    let m = Mount::new(&env, None, "mnt");
    m.ok("mkdir -p memory/shared/load && echo seed > memory/shared/load/seed.md");
    let mut kids = Vec::new();
    for w in 0..4 {
        kids.push(m.sh_spawn(&format!(
            "for i in $(seq 1 40); do echo \"w{w} $i\" > memory/shared/load/w{w}_$i.md || exit 1; done"
        )));
    }
    for _ in 0..4 {
        kids.push(m.sh_spawn(
            "for i in $(seq 1 60); do cat memory/shared/load/seed.md > /dev/null || exit 1; ls memory/shared/load > /dev/null || exit 1; done",
        ));
    }
    for k in kids {
        let o = k.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let n = m.ok("ls memory/shared/load | wc -l");
    assert_eq!(n.trim(), "161");
    assert_eq!(m.ok("cat memory/shared/load/w3_40.md"), "w3 40\n");
}

impl Mount {
    fn sh_spawn(&self, script: &str) -> Child {
        Command::new("sh")
            .arg("-c")
            .arg(script)
            .current_dir(&self.dir)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    }
}

#[test]
fn the_daemon_keeps_configured_mounts_alive_and_cleans_up() {
    need_fuse!();
    let env = Env::new();
    let (a, b) = (env.path("m/alice"), env.path("m/bob"));
    let conf = |bob_enabled: bool| {
        format!(
            "[[mounts]]\npath = \"{}\"\nagent = \"alice\"\n\n[[mounts]]\npath = \"{}\"\nagent = \"bob\"\nenabled = {bob_enabled}\n",
            s(&a),
            s(&b)
        )
    };
    env.write_file("config/avm/mounts.toml", &conf(true));
    let db = env.db();
    let avm = |args: &[&str]| {
        let mut v = vec!["--db", s(&db)];
        v.extend_from_slice(args);
        env.run(&v)
    };
    let r = avm(&["daemon", "start"]);
    assert!(r.ok().contains("Daemon started"), "{r:#?}");
    assert!(r.ok().contains("Mounts: 2 up"), "{r:#?}");
    // `start` returns once the mounts answer: a script may use them at once.
    assert!(
        mounted(&a) && mounted(&b),
        "start returned before the mounts were up"
    );
    let wait = |dir: &Path, want: bool| {
        let t = Instant::now();
        while mounted(dir) != want {
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "{} mounted={want}",
                dir.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait(&a, true);
    wait(&b, true);
    let st = avm(&["--json", "daemon", "status"]).json();
    assert_eq!(st["running"], true);
    assert_eq!(st["mounts"][0]["state"], "mounted", "{st}");
    // A mount process that dies is reaped, its dead mount cleared, and it is started again.
    let t = Instant::now();
    let pid = loop {
        let st = avm(&["--json", "daemon", "status"]).json();
        if let Some(p) = st["mounts"][1]["pid"].as_u64() {
            break p;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "no pid: {st}");
        std::thread::sleep(Duration::from_millis(100));
    };
    Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    let t = Instant::now();
    loop {
        let st = avm(&["--json", "daemon", "status"]).json();
        if st["mounts"][1]["restarts"].as_u64() == Some(1) && mounted(&b) {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(20), "not restarted: {st}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        std::fs::read_dir(&b).unwrap().count(),
        3,
        "index, memory and tell"
    );
    // Reload applies the edited file: bob's mount goes.
    env.write_file("config/avm/mounts.toml", &conf(false));
    avm(&["daemon", "reload"]).ok();
    wait(&b, false);
    let st = avm(&["--json", "daemon", "status"]).json();
    assert_eq!(st["mounts"][1]["state"], "disabled", "{st}");
    assert!(
        avm(&["daemon", "start"])
            .fails(1)
            .contains("already running")
    );
    avm(&["daemon", "stop"]).ok();
    wait(&a, false);
    let st = avm(&["--json", "daemon", "status"]).json();
    assert_eq!(st["running"], false);
    // The log says what the daemon did, a line each, through the default log filter.
    let log = std::fs::read_to_string(env.path("home/.local/state/avm/daemon.log")).unwrap();
    for what in [
        "INFO avm::daemon: daemon started",
        "WARN avm::daemon: ",
        "INFO avm::daemon: reloading the mounts file",
        "INFO avm::daemon: daemon stopped",
    ] {
        assert!(log.contains(what), "{what:?} missing from the log:\n{log}");
    }
    // No avm process left a child unreaped (a detached daemon that exited is init's to reap).
    let ps = Command::new("ps")
        .args(["-eo", "stat=,ppid=,args="])
        .output()
        .unwrap();
    let ps = String::from_utf8_lossy(&ps.stdout);
    assert!(
        !ps.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() >= 3 && f[0].starts_with('Z') && f[1] != "1" && l.contains("avm")
        }),
        "zombies: {ps}"
    );
    avm(&["daemon", "stop"]).fails(1);
}

#[test]
fn a_fresh_mount_has_the_namespaces_and_takes_writes_at_once() {
    need_fuse!();
    let env = Env::new();
    let m = Mount::new(&env, Some("alice"), "mnt");
    assert_eq!(m.ok("ls"), "index\nmemory\ntell\n");
    assert_eq!(m.ok("ls memory"), "private\nshared\n");
    assert_eq!(m.ok("ls memory/private"), "alice\n");
    m.ok("echo 'first thought' > memory/private/alice/idea.md");
    assert_eq!(m.ok("cat memory/private/alice/idea.md"), "first thought\n");
    let r = env.run(&["-a", "alice", "recall", "first thought", "--paths"]);
    assert!(r.ok().contains("/memory/private/alice/idea.md"), "{r:#?}");
}

#[test]
fn plugin_mounts_are_files_in_the_mount_with_content_generated_at_each_read() {
    need_fuse!();
    let wasm = avm_provider_wasm::build_repo_guests()
        .unwrap()
        .join("hello.wasm");
    let env = Env::new();
    let counter = env.write_file("bin/n.sh", "#!/bin/sh\necho \"run $1\"\n");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&counter, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    env.write_file(
        "config/avm/config.toml",
        &format!(
            "[[mounts]]\npattern = \"/**\"\ntype = \"memory\"\n\n[[mounts]]\npattern = \"/hello/{{name}}\"\ntype = \"wasm\"\noptions = {{ component = \"{}\" }}\n\n[[mounts]]\npattern = \"/tools/{{x}}\"\ntype = \"script\"\noptions = {{ program = \"{}\", args = [\"{{x}}\"] }}\n",
            s(&wasm),
            s(&counter)
        ),
    );
    let m = Mount::new(&env, Some("alice"), "mnt");
    assert_eq!(m.ok("cat hello/world"), "Hello, world! (asked by alice)\n");
    assert_eq!(
        m.ok("cat hello/world:shout"),
        "HELLO, WORLD! (ASKED BY ALICE)\n"
    );
    assert_eq!(m.ok("ls hello"), "world\n");
    // The script's size is unknown until it runs (stat says 0): reads still get everything.
    assert_eq!(m.ok("cat tools/abc"), "run abc\n");
    assert_eq!(m.ok("cat tools/xyz | wc -c").trim(), "8");
    assert!(m.sh("echo x > hello/world").status.code() != Some(0));
}

#[test]
fn avm_serve_keeps_the_configured_mounts_alive_and_unmounts_them_when_stopped() {
    need_fuse!();
    let env = Env::new();
    let dir = env.path("m/alice");
    env.write_file(
        "config/avm/mounts.toml",
        &format!("[[mounts]]\npath = \"{}\"\nagent = \"alice\"\n", s(&dir)),
    );
    let db = env.db();
    let mut srv = start_serve(&env);
    let t = Instant::now();
    while !mounted(&dir) {
        assert!(t.elapsed() < Duration::from_secs(20), "never mounted");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The mount acts as alice, beside the server, on the same database.
    std::fs::write(
        dir.join("memory/private/alice/from-mount.md"),
        "written through the mount\n",
    )
    .unwrap();
    let r = env.run(&[
        "--db",
        s(&db),
        "read",
        "/memory/private/alice/from-mount.md",
    ]);
    assert!(r.ok().contains("written through the mount"), "{r:?}");
    // The daemon sees the server as the one keeping the mounts, and does not start another.
    let st = env
        .run(&["--db", s(&db), "--json", "daemon", "status"])
        .json();
    assert_eq!(st["running"], true, "{st}");
    env.run(&["--db", s(&db), "daemon", "start"]).fails(1);
    // Another server on the same database is refused before it touches them.
    env.run(&["--db", s(&db), "serve", "--bind", "127.0.0.1:0"])
        .fails(1);
    nix_kill(srv.id()).unwrap();
    assert!(srv.wait().unwrap().success());
    assert!(!mounted(&dir), "still mounted after serve stopped");
    let st = env
        .run(&["--db", s(&db), "--json", "daemon", "status"])
        .json();
    assert_eq!(st["running"], false, "{st}");
}

#[test]
fn a_mounts_file_written_after_serve_started_is_picked_up() {
    need_fuse!();
    let env = Env::new();
    let db = env.db();
    let mut srv = start_serve(&env);
    // No mounts file yet; the server still answers for the daemon.
    let st = env
        .run(&["--db", s(&db), "--json", "daemon", "status"])
        .json();
    assert_eq!(st["running"], true, "{st}");
    let dir = env.path("m/late");
    env.write_file(
        "config/avm/mounts.toml",
        &format!("[[mounts]]\npath = \"{}\"\nagent = \"alice\"\n", s(&dir)),
    );
    let t = Instant::now();
    while !mounted(&dir) {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the new mounts file was not picked up"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // And `reload` reaches the server.
    env.run(&["--db", s(&db), "daemon", "reload"]).ok();
    // A config.toml written now restarts the server in place; its mounts come back with it.
    std::fs::write(dir.join("before.md"), "written before the restart").unwrap();
    let mount_pid = |env: &Env| {
        env.run(&["--db", s(&db), "--json", "daemon", "status"])
            .json()["mounts"][0]["pid"]
            .as_i64()
    };
    // The status names the mount's process once the daemon has recorded it, which can trail
    // the mount appearing by a moment on a loaded machine.
    let t = Instant::now();
    let mut first = mount_pid(&env);
    while first.is_none() && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
        first = mount_pid(&env);
    }
    assert!(first.is_some());
    env.write_file(
        "config/avm/config.toml",
        "[fuse]\nurgent = \"inbox-only\"\n",
    );
    let t = Instant::now();
    loop {
        assert!(srv.try_wait().unwrap().is_none(), "serve exited");
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the mount did not come back after the restart"
        );
        let st = env
            .run(&["--db", s(&db), "--json", "daemon", "status"])
            .json();
        let restarted = st["pid"].as_i64() == Some(i64::from(srv.id()))
            && std::fs::read_to_string(dir.join("before.md")).is_ok_and(|c| c.contains("before"));
        let now = mount_pid(&env);
        if restarted && mounted(&dir) && now.is_some() && now != first {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    nix_kill(srv.id()).unwrap();
    assert!(srv.wait().unwrap().success());
    assert!(!mounted(&dir), "still mounted after serve stopped");
}

/// `avm serve` on `env`'s database (loopback, any port), once it says where it listens.
fn start_serve(env: &Env) -> Child {
    let mut srv = env
        .cmd(&["--db", s(&env.db()), "serve", "--bind", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(srv.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert!(line.starts_with("Listening on"), "{line}");
    srv
}
