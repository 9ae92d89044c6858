//! The mount as a real filesystem: a differential random-operation test against a plain
//! directory of this machine, regression tests for what broke before (each named after the
//! behaviour), real tools (git, sqlite3, rsync, cp -a, tar, an editor's save) and a deadlock
//! watchdog under concurrent writers and renames.
//!
//! The differential test runs `AVM_DIFF_OPS` operations (default 20,000) from the seed
//! `AVM_DIFF_SEED` (default fixed, so CI is repeatable); by hand, run it bigger:
//! `AVM_DIFF_OPS=200000 AVM_DIFF_SEED=7 cargo test -p avm --test e2e differential -- --nocapture`.
//! Tools the tests drive must be installed where `REQUIRE_FS_TOOLS=1` (CI); elsewhere a test
//! whose tool is missing says so and skips.

use std::collections::{HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::fcntl::{AT_FDCWD, RenameFlags};
use nix::sys::stat::UtimensatFlags;
use nix::sys::time::TimeSpec;

use crate::fuse::{Mount, need_fuse};
use crate::{Env, s};

/// A small deterministic generator (xorshift64*), so a failing seed replays exactly.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len() as u64) as usize]
    }

    /// Bytes of every kind: text, NULs, high bytes, invalid UTF-8.
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let kind = self.below(3);
        (0..n)
            .map(|_| match kind {
                0 => b"abc def\n"[self.below(8) as usize],
                1 => self.next() as u8,
                _ => [0u8, 0xff, 0x80, b'x', 0xc3][self.below(5) as usize],
            })
            .collect()
    }
}

/// Paths the random operations use: few, so they collide (files become directories, links
/// point at things that come and go).
const NAMES: &[&str] = &["a", "b", "c", "d", "d/e", "d/f", "g", "g/h", "g/h/i"];
const LINK_TARGETS: &[&str] = &["a", "../a", "d/e", "nowhere", "g/h"];
const MODES: &[u32] = &[0o600, 0o644, 0o755, 0o700, 0o444, 0o640];
const SLOTS: usize = 6;

#[derive(Debug, Clone, Copy)]
enum Flags {
    ReadOnly,
    WriteCreate,
    ReadWriteCreate,
    Truncate,
    Append,
    Exclusive,
    ReadWrite,
}

const FLAGS: &[Flags] = &[
    Flags::ReadOnly,
    Flags::WriteCreate,
    Flags::ReadWriteCreate,
    Flags::Truncate,
    Flags::Append,
    Flags::Exclusive,
    Flags::ReadWrite,
];

#[derive(Debug, Clone)]
enum Op {
    Open(usize, &'static str, Flags),
    Close(usize),
    Pwrite(usize, u64, Vec<u8>),
    Write(usize, Vec<u8>),
    Pread(usize, u64, usize),
    Ftruncate(usize, u64),
    Fsync(usize),
    Truncate(&'static str, u64),
    Rename(&'static str, &'static str, u32),
    Unlink(&'static str),
    Mkdir(&'static str),
    Rmdir(&'static str),
    Chmod(&'static str, u32),
    Utimens(&'static str, i64, i64),
    Symlink(&'static str, &'static str),
    Readlink(&'static str),
    ReadWhole(&'static str),
}

fn gen_op(r: &mut Rng) -> Op {
    let slot = r.below(SLOTS as u64) as usize;
    let name = NAMES[r.below(NAMES.len() as u64) as usize];
    let off = if r.below(4) == 0 {
        r.below(20_000)
    } else {
        r.below(600)
    };
    match r.below(100) {
        0..=13 => Op::Open(slot, name, *r.pick(FLAGS)),
        14..=21 => Op::Close(slot),
        22..=33 => {
            let n = r.below(3000) as usize;
            Op::Pwrite(slot, off, r.bytes(n))
        }
        34..=41 => {
            let n = r.below(500) as usize;
            Op::Write(slot, r.bytes(n))
        }
        42..=49 => Op::Pread(slot, off, r.below(5000) as usize),
        50..=53 => Op::Ftruncate(slot, off),
        54..=55 => Op::Fsync(slot),
        56..=58 => Op::Truncate(name, off),
        59..=67 => Op::Rename(
            name,
            NAMES[r.below(NAMES.len() as u64) as usize],
            *r.pick(&[0, 0, 0, libc_noreplace(), libc_exchange()]),
        ),
        68..=72 => Op::Unlink(name),
        73..=79 => Op::Mkdir(name),
        80..=83 => Op::Rmdir(name),
        84..=86 => Op::Chmod(name, *r.pick(MODES)),
        87..=89 => Op::Utimens(
            name,
            1_600_000_000 + r.below(100_000_000) as i64,
            r.below(1_000_000_000) as i64,
        ),
        90..=92 => Op::Symlink(
            LINK_TARGETS[r.below(LINK_TARGETS.len() as u64) as usize],
            name,
        ),
        93..=94 => Op::Readlink(name),
        _ => Op::ReadWhole(name),
    }
}

fn libc_noreplace() -> u32 {
    RenameFlags::RENAME_NOREPLACE.bits()
}

fn libc_exchange() -> u32 {
    RenameFlags::RENAME_EXCHANGE.bits()
}

/// One side of the comparison: a root directory and its open descriptors.
struct Side {
    root: PathBuf,
    fds: Vec<Option<File>>,
}

/// What an operation gave: a value, or an errno.
type Out = Result<String, i32>;

fn errno(e: &std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(-1)
}

fn nerr(e: nix::Error) -> i32 {
    e as i32
}

fn digest(b: &[u8]) -> String {
    // FNV-1a over the bytes, with the length: enough to tell contents apart.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for x in b {
        h ^= u64::from(*x);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{}:{h:016x}", b.len())
}

impl Side {
    fn p(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    fn fd(&self, slot: usize) -> Result<&File, i32> {
        self.fds[slot].as_ref().ok_or(9) // EBADF
    }

    fn apply(&mut self, op: &Op) -> Out {
        match op {
            Op::Open(slot, name, flags) => {
                if let Some(f) = self.fds[*slot].take() {
                    let _ = nix::unistd::close(f);
                }
                let mut o = OpenOptions::new();
                o.mode(0o644);
                match flags {
                    Flags::ReadOnly => o.read(true),
                    Flags::WriteCreate => o.write(true).create(true),
                    Flags::ReadWriteCreate => o.read(true).write(true).create(true),
                    Flags::Truncate => o.write(true).create(true).truncate(true),
                    Flags::Append => o.read(true).append(true).create(true),
                    Flags::Exclusive => o.write(true).create_new(true),
                    Flags::ReadWrite => o.read(true).write(true),
                };
                let f = o.open(self.p(name)).map_err(|e| errno(&e))?;
                self.fds[*slot] = Some(f);
                Ok("open".into())
            }
            Op::Close(slot) => match self.fds[*slot].take() {
                Some(f) => nix::unistd::close(f).map(|_| "closed".into()).map_err(nerr),
                None => Err(9),
            },
            Op::Pwrite(slot, off, data) => self
                .fd(*slot)?
                .write_at(data, *off)
                .map(|n| format!("wrote {n}"))
                .map_err(|e| errno(&e)),
            Op::Write(slot, data) => {
                let mut f = self.fd(*slot)?;
                f.write(data)
                    .map(|n| format!("wrote {n}"))
                    .map_err(|e| errno(&e))
            }
            Op::Pread(slot, off, len) => {
                let mut buf = vec![0u8; *len];
                let n = self
                    .fd(*slot)?
                    .read_at(&mut buf, *off)
                    .map_err(|e| errno(&e))?;
                Ok(format!("read {}", digest(&buf[..n])))
            }
            Op::Ftruncate(slot, size) => self
                .fd(*slot)?
                .set_len(*size)
                .map(|_| "truncated".into())
                .map_err(|e| errno(&e)),
            Op::Fsync(slot) => self
                .fd(*slot)?
                .sync_all()
                .map(|_| "synced".into())
                .map_err(|e| errno(&e)),
            Op::Truncate(name, size) => nix::unistd::truncate(&self.p(name), *size as i64)
                .map(|_| "truncated".into())
                .map_err(nerr),
            Op::Rename(a, b, flags) => nix::fcntl::renameat2(
                AT_FDCWD,
                &self.p(a),
                AT_FDCWD,
                &self.p(b),
                RenameFlags::from_bits_truncate(*flags),
            )
            .map(|_| "renamed".into())
            .map_err(nerr),
            Op::Unlink(name) => std::fs::remove_file(self.p(name))
                .map(|_| "unlinked".into())
                .map_err(|e| errno(&e)),
            Op::Mkdir(name) => std::fs::create_dir(self.p(name))
                .map(|_| "made".into())
                .map_err(|e| errno(&e)),
            Op::Rmdir(name) => std::fs::remove_dir(self.p(name))
                .map(|_| "removed".into())
                .map_err(|e| errno(&e)),
            Op::Chmod(name, mode) => {
                std::fs::set_permissions(self.p(name), std::fs::Permissions::from_mode(*mode))
                    .map(|_| "chmod".into())
                    .map_err(|e| errno(&e))
            }
            Op::Utimens(name, sec, nsec) => {
                let t = TimeSpec::new(*sec, *nsec);
                nix::sys::stat::utimensat(
                    AT_FDCWD,
                    &self.p(name),
                    &t,
                    &t,
                    UtimensatFlags::FollowSymlink,
                )
                .map(|_| "touched".into())
                .map_err(nerr)
            }
            Op::Symlink(target, name) => std::os::unix::fs::symlink(target, self.p(name))
                .map(|_| "linked".into())
                .map_err(|e| errno(&e)),
            Op::Readlink(name) => std::fs::read_link(self.p(name))
                .map(|t| format!("-> {}", t.display()))
                .map_err(|e| errno(&e)),
            Op::ReadWhole(name) => std::fs::read(self.p(name))
                .map(|b| digest(&b))
                .map_err(|e| errno(&e)),
        }
    }

    /// What `lstat` says of a name, in the terms both sides share.
    fn lstat(&self, name: &str) -> (String, Option<(i64, i64)>) {
        match std::fs::symlink_metadata(self.p(name)) {
            Err(e) => (format!("err {}", errno(&e)), None),
            Ok(m) => {
                let t = m.file_type();
                let mtime = Some((m.mtime(), m.mtime_nsec()));
                let desc = if t.is_dir() {
                    format!("dir {:o} nlink {}", m.mode() & 0o7777, m.nlink())
                } else if t.is_symlink() {
                    format!("link {}", m.len())
                } else {
                    format!(
                        "file {:o} size {} nlink {}",
                        m.mode() & 0o7777,
                        m.len(),
                        m.nlink()
                    )
                };
                (desc, mtime)
            }
        }
    }

    /// What `fstat` says of each open descriptor.
    fn fstats(&self) -> Vec<String> {
        self.fds
            .iter()
            .map(|f| match f {
                None => "-".into(),
                Some(f) => match f.metadata() {
                    // A directory's size means nothing comparable (ext4 says 4096).
                    Ok(m) if m.is_dir() => {
                        format!("dir {:o} nlink {}", m.mode() & 0o7777, m.nlink())
                    }
                    Ok(m) => format!(
                        "{:o} size {} nlink {}",
                        m.mode() & 0o7777,
                        m.len(),
                        m.nlink()
                    ),
                    Err(e) => format!("err {}", errno(&e)),
                },
            })
            .collect()
    }

    fn contents(&self) -> Vec<String> {
        NAMES
            .iter()
            .map(|n| match std::fs::symlink_metadata(self.p(n)) {
                Ok(m) if m.file_type().is_file() => match std::fs::read(self.p(n)) {
                    Ok(b) => format!("{n}={}", digest(&b)),
                    Err(e) => format!("{n}=err {}", errno(&e)),
                },
                _ => format!("{n}=-"),
            })
            .collect()
    }

    fn listing(&self) -> Vec<String> {
        ["", "d", "g", "g/h"]
            .iter()
            .map(|d| match std::fs::read_dir(self.p(d)) {
                Ok(rd) => {
                    let mut names: Vec<String> = rd
                        .filter_map(|e| e.ok())
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect();
                    names.sort();
                    format!("{d}/: {}", names.join(" "))
                }
                Err(e) => format!("{d}/: err {}", errno(&e)),
            })
            .collect()
    }
}

/// Runs `ops` random operations from `seed` on the mount and on a plain directory, comparing
/// after every step; panics with the seed, the step and the operations that led there.
fn differential(seed: u64, ops: usize) {
    let env = Env::new();
    let m = Mount::new(&env, None, "mnt");
    let mount_root = m.p("diff");
    let plain_root = env.path("plain");
    std::fs::create_dir_all(&mount_root).unwrap();
    std::fs::create_dir_all(&plain_root).unwrap();
    let mut sides = [
        Side {
            root: mount_root,
            fds: (0..SLOTS).map(|_| None).collect(),
        },
        Side {
            root: plain_root,
            fds: (0..SLOTS).map(|_| None).collect(),
        },
    ];
    let mut r = Rng::new(seed);
    let mut trail: VecDeque<String> = VecDeque::new();
    let mut mtimes: HashMap<&str, [Option<(i64, i64)>; 2]> = HashMap::new();
    let started = Instant::now();
    for step in 0..ops {
        let op = gen_op(&mut r);
        let desc = match &op {
            Op::Pwrite(s, o, d) => format!("pwrite(fd{s}, {o}, {} bytes)", d.len()),
            Op::Write(s, d) => format!("write(fd{s}, {} bytes)", d.len()),
            other => format!("{other:?}"),
        };
        let got_mount = sides[0].apply(&op);
        let got_plain = sides[1].apply(&op);
        trail.push_back(format!(
            "#{step} {desc}: mount {got_mount:?} plain {got_plain:?}"
        ));
        if trail.len() > 40 {
            trail.pop_front();
        }
        let fail = |what: &str, a: &dyn std::fmt::Debug, b: &dyn std::fmt::Debug| -> ! {
            panic!(
                "differential test, seed {seed}, step {step}: {what} differs\n  mount: {a:?}\n  plain: {b:?}\nlast operations:\n{}",
                trail.iter().cloned().collect::<Vec<_>>().join("\n")
            )
        };
        if got_mount != got_plain {
            fail("the result", &got_mount, &got_plain);
        }
        for name in NAMES {
            let (a, ta) = sides[0].lstat(name);
            let (b, tb) = sides[1].lstat(name);
            if a != b {
                fail(&format!("lstat of {name}"), &a, &b);
            }
            // A file's mtime moves on the mount when it moves on the plain directory (ext4's
            // clock is coarse, so the plain one may stay put when the mount's moves), never
            // on an operation that changes no content, and holds what utimensat set.
            let prev = mtimes.entry(name).or_insert([None, None]);
            if a.starts_with("file") && prev[0].is_some() && prev[1].is_some() {
                let moved = [prev[0] != ta, prev[1] != tb];
                if moved[1] && !moved[0] {
                    fail(
                        &format!("whether the mtime of {name} moved"),
                        &moved[0],
                        &moved[1],
                    );
                }
                let reads_only = matches!(
                    op,
                    Op::Close(_)
                        | Op::Fsync(_)
                        | Op::Pread(..)
                        | Op::ReadWhole(_)
                        | Op::Readlink(_)
                        | Op::Chmod(..)
                );
                if reads_only && moved[0] {
                    fail(&format!("the mtime of {name} after {op:?}"), &prev[0], &ta);
                }
            }
            if let Op::Utimens(n, _, _) = &op
                && n == name
                && got_plain.is_ok()
                && !a.starts_with("link")
                && ta != tb
            {
                fail(&format!("the mtime utimensat set on {name}"), &ta, &tb);
            }
            *prev = [ta, tb];
        }
        let (fa, fb) = (sides[0].fstats(), sides[1].fstats());
        if fa != fb {
            fail("fstat of the open descriptors", &fa, &fb);
        }
        if step % 20 == 19 {
            let (ca, cb) = (sides[0].contents(), sides[1].contents());
            if ca != cb {
                fail("file contents", &ca, &cb);
            }
            let (la, lb) = (sides[0].listing(), sides[1].listing());
            if la != lb {
                fail("directory listings", &la, &lb);
            }
        }
    }
    for side in &mut sides {
        for f in side.fds.iter_mut() {
            if let Some(f) = f.take() {
                let _ = nix::unistd::close(f);
            }
        }
    }
    assert_eq!(sides[0].contents(), sides[1].contents());
    eprintln!(
        "differential: {ops} operations from seed {seed} agreed in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn differential_random_operations_agree_with_a_plain_directory() {
    need_fuse!();
    let ops: usize = std::env::var("AVM_DIFF_OPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    match std::env::var("AVM_DIFF_SEED")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        Some(seed) => differential(seed, ops),
        None => {
            // Two fixed seeds: the same runs in CI every time.
            differential(1, ops / 2);
            differential(2, ops / 2);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Regression tests: one per symptom the mount used to show.

fn operator_mount(env: &Env) -> Mount {
    let m = Mount::new(env, None, "mnt");
    std::fs::create_dir_all(m.p("t")).unwrap();
    m
}

/// Runs `f` on another thread and fails if it has not finished within `secs` (a hung mount
/// would otherwise hang the whole suite).
fn within<T: Send + 'static>(secs: u64, what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(secs))
        .unwrap_or_else(|_| panic!("{what} did not finish within {secs} s: the mount hangs"))
}

#[test]
fn rename_of_a_file_still_open_for_writing_returns_and_keeps_its_bytes() {
    need_fuse!();
    let env = Env::new();
    let m = operator_mount(&env);
    let dir = m.p("t");
    within(20, "write + rename of an open file", move || {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join("f"))
            .unwrap();
        f.write_all(b"x").unwrap();
        std::fs::rename(dir.join("f"), dir.join("g")).unwrap();
        f.write_all(b"y").unwrap();
        drop(f);
        assert_eq!(std::fs::read(dir.join("g")).unwrap(), b"xy");
        assert!(!dir.join("f").exists());
    });
    // And the mount still answers.
    within(10, "a stat after it", move || {
        std::fs::metadata(m.p("t/g")).unwrap()
    });
}

#[test]
fn a_huge_truncate_fails_with_efbig_and_the_mount_lives_on() {
    need_fuse!();
    let env = Env::new();
    let m = operator_mount(&env);
    let f = File::create(m.p("t/big")).unwrap();
    let e = f.set_len(999_999_999_999_999).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(27), "EFBIG: {e}");
    let e = f.write_at(b"x", 1 << 40).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(27), "EFBIG at write: {e}");
    drop(f);
    std::fs::write(m.p("t/after"), "alive").unwrap();
    assert_eq!(std::fs::read_to_string(m.p("t/after")).unwrap(), "alive");
}

#[test]
fn binary_bytes_read_back_exactly_through_the_mount_and_the_cli() {
    need_fuse!();
    let env = Env::new();
    let m = operator_mount(&env);
    let raw: Vec<u8> = (0..=255u8).chain([0, 0x80, 0xff, 0xc3, 0x28]).collect();
    std::fs::write(m.p("t/bin"), &raw).unwrap();
    assert_eq!(std::fs::read(m.p("t/bin")).unwrap(), raw);
    let out = env.cmd(&["read", "/t/bin"]).output().unwrap();
    assert_eq!(out.stdout, raw);
    // Three bytes from printf, as the issue showed.
    m.ok("printf '\\000\\200\\377' > t/p");
    assert_eq!(std::fs::read(m.p("t/p")).unwrap(), [0, 0x80, 0xff]);
}

#[test]
fn a_hole_reads_as_zeros() {
    need_fuse!();
    let env = Env::new();
    let m = operator_mount(&env);
    m.ok("printf ab > t/h && printf z | dd of=t/h bs=1 seek=6 conv=notrunc 2>/dev/null");
    assert_eq!(std::fs::read(m.p("t/h")).unwrap(), b"ab\0\0\0\0z");
}

#[test]
fn a_read_on_the_writing_descriptor_and_fstat_see_the_write_at_once() {
    need_fuse!();
    let env = Env::new();
    let m = operator_mount(&env);
    std::fs::write(m.p("t/rw"), "old").unwrap();
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(m.p("t/rw"))
        .unwrap();
    f.write_all(b"hello").unwrap();
    let mut buf = [0u8; 8];
    let n = f.read_at(&mut buf, 0).unwrap();
    assert_eq!(&buf[..n], b"hello");
    assert_eq!(f.metadata().unwrap().len(), 5);
    assert_eq!(std::fs::metadata(m.p("t/rw")).unwrap().len(), 5);
    // Another descriptor opened before the write sees it too.
    let other = File::open(m.p("t/rw")).unwrap();
    f.write_at(b"!", 5).unwrap();
    let n = other.read_at(&mut buf, 0).unwrap();
    assert_eq!(&buf[..n], b"hello!");
}

#[test]
fn two_writers_on_one_file_merge_their_bytes() {
    need_fuse!();
    let env = Env::new();
    let m = operator_mount(&env);
    std::fs::write(m.p("t/two"), "0123456789").unwrap();
    let a = OpenOptions::new().write(true).open(m.p("t/two")).unwrap();
    let b = OpenOptions::new().write(true).open(m.p("t/two")).unwrap();
    a.write_at(b"AA", 0).unwrap();
    b.write_at(b"BB", 8).unwrap();
    drop(a);
    drop(b);
    assert_eq!(std::fs::read(m.p("t/two")).unwrap(), b"AA234567BB");
}

#[test]
fn creating_and_removing_files_in_a_loop_leaves_none_behind() {
    need_fuse!();
    let env = Env::new();
    let m = operator_mount(&env);
    m.ok("cd t && for i in $(seq 1 200); do : > f$i; rm f$i; done");
    std::thread::sleep(Duration::from_millis(300));
    let left: Vec<_> = std::fs::read_dir(m.p("t")).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
    let out = env.run(&["ls", "/t"]).ok().to_string();
    assert!(out.trim().is_empty(), "{out}");
}

#[test]
fn an_unlinked_open_file_stays_usable_and_never_comes_back() {
    need_fuse!();
    let env = Env::new();
    let m = operator_mount(&env);
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(m.p("t/u"))
        .unwrap();
    f.write_all(b"data").unwrap();
    std::fs::remove_file(m.p("t/u")).unwrap();
    f.write_all(b" more").unwrap();
    let mut buf = Vec::new();
    let mut r = &f;
    r.read_to_end(&mut buf).unwrap();
    let mut all = [0u8; 16];
    let n = f.read_at(&mut all, 0).unwrap();
    assert_eq!(&all[..n], b"data more");
    assert_eq!(f.metadata().unwrap().nlink(), 0);
    drop(f);
    std::thread::sleep(Duration::from_millis(200));
    assert!(!m.p("t/u").exists());
}

#[test]
fn renaming_a_directory_onto_a_directory_replaces_an_empty_one_and_refuses_a_full_one() {
    need_fuse!();
    let env = Env::new();
    let m = operator_mount(&env);
    m.ok("mkdir t/a t/b t/c && echo x > t/a/x && echo y > t/c/y");
    m.ok("mv -T t/a t/b");
    assert_eq!(std::fs::read_to_string(m.p("t/b/x")).unwrap(), "x\n");
    assert!(!m.p("t/a").exists() && !m.p("t/b/a").exists());
    let e = std::fs::rename(m.p("t/b"), m.p("t/c")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(39), "ENOTEMPTY: {e}");
    // A file never replaces a directory, nor a directory a file.
    std::fs::write(m.p("t/f"), "f").unwrap();
    let e = std::fs::rename(m.p("t/f"), m.p("t/c")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(21), "EISDIR: {e}");
    let e = std::fs::rename(m.p("t/c"), m.p("t/f")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(20), "ENOTDIR: {e}");
}

#[test]
fn rename_exchange_swaps_and_noreplace_refuses() {
    need_fuse!();
    let env = Env::new();
    let m = operator_mount(&env);
    std::fs::write(m.p("t/a"), "A").unwrap();
    std::fs::write(m.p("t/b"), "B").unwrap();
    nix::fcntl::renameat2(
        AT_FDCWD,
        &m.p("t/a"),
        AT_FDCWD,
        &m.p("t/b"),
        RenameFlags::RENAME_EXCHANGE,
    )
    .unwrap();
    assert_eq!(std::fs::read_to_string(m.p("t/a")).unwrap(), "B");
    assert_eq!(std::fs::read_to_string(m.p("t/b")).unwrap(), "A");
    let e = nix::fcntl::renameat2(
        AT_FDCWD,
        &m.p("t/a"),
        AT_FDCWD,
        &m.p("t/b"),
        RenameFlags::RENAME_NOREPLACE,
    )
    .unwrap_err();
    assert_eq!(e, nix::errno::Errno::EEXIST);
    // `avm mv` keeps its own "move into a directory" meaning.
    m.ok("mkdir t/d");
    env.run(&["mv", "/t/a", "/t/d"]).ok();
    assert_eq!(std::fs::read_to_string(m.p("t/d/a")).unwrap(), "B");
}

#[test]
fn a_name_over_255_bytes_is_enametoolong() {
    need_fuse!();
    let env = Env::new();
    let m = operator_mount(&env);
    let e = File::create(m.p(&format!("t/{}", "n".repeat(256)))).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(36), "ENAMETOOLONG: {e}");
    File::create(m.p(&format!("t/{}", "n".repeat(255)))).unwrap();
}

#[test]
fn unsupported_operations_give_a_definite_errno_never_enosys() {
    need_fuse!();
    let env = Env::new();
    let m = operator_mount(&env);
    std::fs::write(m.p("t/f"), "f").unwrap();
    let e = std::fs::hard_link(m.p("t/f"), m.p("t/hard")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(1), "EPERM: {e}");
    let o = m.sh("mkfifo t/fifo");
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("not permitted"), "{err}");
    // The mount keeps working for links afterwards (ENOSYS would switch them off).
    let e = std::fs::hard_link(m.p("t/f"), m.p("t/hard2")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(1));
}

#[test]
fn a_full_disk_is_enospc_at_write_or_fsync_not_eio_at_close() {
    need_fuse!();
    if !nix::unistd::getuid().is_root() {
        eprintln!("SKIP: needs root to mount a small tmpfs for the database");
        return;
    }
    let env = Env::new();
    let small = env.path("small");
    std::fs::create_dir_all(&small).unwrap();
    let st = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=12m", "tmpfs"])
        .arg(&small)
        .status()
        .unwrap();
    if !st.success() {
        eprintln!("SKIP: cannot mount a tmpfs here");
        return;
    }
    struct Umount(PathBuf);
    impl Drop for Umount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let _u = Umount(small.clone());
    let db = small.join("full.db");
    let dir = env.path("mnt");
    std::fs::create_dir_all(&dir).unwrap();
    let mut child = env
        .cmd(&["--db", s(&db), "mount", s(&dir), "--foreground"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while !std::fs::read_to_string("/proc/self/mounts")
        .unwrap()
        .contains(s(&dir))
    {
        assert!(t.elapsed() < Duration::from_secs(20));
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut errs = Vec::new();
    for i in 0..40 {
        let p = dir.join(format!("f{i}"));
        let r = (|| -> std::io::Result<()> {
            let mut f = File::create(&p)?;
            for _ in 0..8 {
                f.write_all(&vec![b'z'; 128 * 1024])?;
            }
            f.sync_all()?;
            Ok(())
        })();
        if let Err(e) = r {
            errs.push(e.raw_os_error());
            break;
        }
    }
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let _ = child.wait();
    let _ = Command::new("umount").arg("-l").arg(&dir).status();
    assert_eq!(errs, vec![Some(28)], "the disk filled and said ENOSPC");
}

#[test]
fn directory_mtimes_move_only_when_the_directory_changes() {
    need_fuse!();
    let env = Env::new();
    let m = operator_mount(&env);
    m.ok("mkdir t/d && echo x > t/d/f");
    let mt = |p: &str| std::fs::metadata(m.p(p)).unwrap().modified().unwrap();
    let before = mt("t/d");
    std::thread::sleep(Duration::from_millis(30));
    for _ in 0..5 {
        assert_eq!(mt("t/d"), before, "a stat moved it");
    }
    m.ok("cat t/d/f > /dev/null && echo y >> t/d/f && chmod 600 t/d/f");
    assert_eq!(mt("t/d"), before, "writing a file inside moved it");
    m.ok("echo z > t/d/g");
    let after = mt("t/d");
    assert!(after > before, "adding a file did not move it");
    std::thread::sleep(Duration::from_millis(30));
    m.ok("rm t/d/g");
    assert!(mt("t/d") > after, "removing a file did not move it");
}

#[test]
fn modes_persist_so_scripts_run_and_owners_and_times_stick() {
    need_fuse!();
    let env = Env::new();
    let m = operator_mount(&env);
    m.ok("printf '#!/bin/sh\\necho ran\\n' > t/s.sh && chmod +x t/s.sh");
    assert_eq!(m.ok("./t/s.sh"), "ran\n");
    assert_eq!(m.ok("stat -c %a t/s.sh"), "755\n");
    m.ok("touch -d '2001-02-03 04:05:06.123456789' t/s.sh");
    assert_eq!(
        m.ok("stat -c %y t/s.sh"),
        "2001-02-03 04:05:06.123456789 +0000\n"
    );
    if nix::unistd::getuid().is_root() {
        m.ok("chown 1234:5678 t/s.sh");
        assert_eq!(m.ok("stat -c %u:%g t/s.sh"), "1234:5678\n");
    }
    // All of it survives a remount.
    drop(m);
    let m = Mount::new(&env, None, "mnt");
    assert_eq!(
        m.ok("stat -c '%a %y' t/s.sh"),
        "755 2001-02-03 04:05:06.123456789 +0000\n"
    );
    assert_eq!(m.ok("./t/s.sh"), "ran\n");
}

#[test]
fn symbolic_links_are_stored_as_links_and_never_followed_by_the_store() {
    need_fuse!();
    let env = Env::new();
    let m = operator_mount(&env);
    m.ok("echo target > t/real && ln -s real t/link && ln -s ../../etc/passwd t/out");
    assert_eq!(m.ok("readlink t/link"), "real\n");
    assert_eq!(m.ok("cat t/link"), "target\n");
    assert_eq!(m.ok("stat -c %F t/link"), "symbolic link\n");
    // The store keeps the target as given and never resolves it.
    let j = env.run(&["--json", "read", "/t/out"]).json();
    assert_eq!(j["node_type"], "symlink");
    assert_eq!(j["content"], "../../etc/passwd");
    // Removing the link leaves its target alone.
    m.ok("rm t/link");
    assert_eq!(m.ok("cat t/real"), "target\n");
}

#[test]
fn a_mount_forgets_inodes_and_stays_flat_under_a_million_missing_lookups() {
    need_fuse!();
    // The full million takes minutes (AVM_FUSE_SOAK=1000000); CI runs 100,000 and checks
    // the same bound.
    let lookups: usize = std::env::var("AVM_FUSE_SOAK")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let env = Env::new();
    let m = operator_mount(&env);
    let pid = m.pid();
    let rss = || -> u64 {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap()
    };
    for i in 0..2_000 {
        let _ = std::fs::metadata(m.p(&format!("t/warm{i}")));
    }
    let base = rss();
    for i in 0..lookups {
        let _ = std::fs::metadata(m.p(&format!("t/missing{i}")));
    }
    let grown = rss().saturating_sub(base);
    assert!(
        grown < 8 * 1024,
        "{lookups} missing lookups grew the mount by {grown} KiB"
    );
}

// ---------------------------------------------------------------------------------------
// Real tools.

/// Whether `tool` is installed; where it is not, the test skips unless CI requires it.
fn have(tool: &str) -> bool {
    let ok = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var_os("REQUIRE_FS_TOOLS").is_none(),
            "{tool} is required here (REQUIRE_FS_TOOLS is set)"
        );
        eprintln!("SKIP: {tool} is not installed");
    }
    ok
}

#[test]
fn git_init_add_commit_and_fsck_work_on_the_mount() {
    need_fuse!();
    if !have("git") {
        return;
    }
    let env = Env::new();
    let m = operator_mount(&env);
    m.ok(
        "cd t && git init -q repo && cd repo && git config user.email t@t && git config user.name t \
         && echo hello > README && mkdir src && printf 'fn main() {}\\n' > src/main.rs \
         && head -c 20000 /dev/urandom > blob.bin && git add -A && git commit -qm one \
         && echo more >> README && git commit -qam two && git gc -q && git fsck --strict",
    );
    let log = m.ok("cd t/repo && git log --oneline | wc -l && git status --porcelain");
    assert_eq!(log, "2\n", "{log}");
}

#[test]
fn sqlite3_creates_inserts_and_queries_a_database_on_the_mount() {
    need_fuse!();
    if !have("sqlite3") {
        return;
    }
    let env = Env::new();
    let m = operator_mount(&env);
    m.ok("sqlite3 t/x.db 'create table t(a, b); create index ta on t(a);'");
    let mut script = String::from("BEGIN;");
    for i in 0..500 {
        script.push_str(&format!("insert into t values({i}, randomblob(64));"));
    }
    script.push_str("COMMIT;");
    m.ok(&format!("sqlite3 t/x.db '{script}'"));
    let q = m.ok("sqlite3 t/x.db 'select count(*), sum(a) from t; pragma integrity_check;'");
    assert_eq!(q, "500|124750\nok\n");
}

#[test]
fn rsync_a_in_and_out_twice_transfers_nothing_the_second_time() {
    need_fuse!();
    if !have("rsync") {
        return;
    }
    let env = Env::new();
    let m = operator_mount(&env);
    let src = tree(&env, "src");
    let rs = |from: &str, to: &str| m.ok(&format!("rsync -a --itemize-changes {from}/ {to}/"));
    let first = rs(s(&src), "t/in");
    assert!(!first.is_empty());
    assert_eq!(
        rs(s(&src), "t/in"),
        "",
        "second rsync in transferred something"
    );
    let out = env.path("out");
    rs("t/in", s(&out));
    assert_eq!(
        rs("t/in", s(&out)),
        "",
        "second rsync out transferred something"
    );
    m.ok(&format!("diff -r {} {}", s(&src), s(&out)));
}

/// A tree with text, binary, an empty file, a symlink, an executable and a nested directory.
fn tree(env: &Env, name: &str) -> PathBuf {
    let root = env.path(name);
    std::fs::create_dir_all(root.join("a/b")).unwrap();
    let mut r = Rng::new(42);
    std::fs::write(root.join("a/r.bin"), r.bytes(70_000)).unwrap();
    std::fs::write(root.join("a/b/t.txt"), "text\n").unwrap();
    std::fs::write(root.join("empty"), "").unwrap();
    std::fs::write(root.join("run.sh"), "#!/bin/sh\necho hi\n").unwrap();
    std::fs::set_permissions(root.join("run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink("../r.bin", root.join("a/b/link")).unwrap();
    root
}

#[test]
fn cp_a_of_a_tree_with_binary_files_and_symlinks_compares_equal() {
    need_fuse!();
    let env = Env::new();
    let m = operator_mount(&env);
    let src = tree(&env, "src");
    m.ok(&format!("cp -a {} t/copy", s(&src)));
    m.ok(&format!("diff -r {} t/copy", s(&src)));
    m.ok(&format!("cmp {}/a/r.bin t/copy/a/r.bin", s(&src)));
    assert_eq!(m.ok("readlink t/copy/a/b/link"), "../r.bin\n");
    assert_eq!(m.ok("stat -c %a t/copy/run.sh"), "755\n");
    let back = env.path("back");
    m.ok(&format!("cp -a t/copy {}", s(&back)));
    m.ok(&format!("diff -r {} {}", s(&src), s(&back)));
}

#[test]
fn tar_extracts_onto_the_mount_exactly() {
    need_fuse!();
    let env = Env::new();
    let m = operator_mount(&env);
    let src = tree(&env, "src");
    let tarball = env.path("t.tar");
    let st = Command::new("tar")
        .arg("-C")
        .arg(&src)
        .arg("-cf")
        .arg(&tarball)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    m.ok(&format!("mkdir t/x && tar -C t/x -xf {}", s(&tarball)));
    m.ok(&format!("diff -r {} t/x", s(&src)));
}

#[test]
fn an_editor_style_save_replaces_the_file_and_keeps_its_history_and_tags() {
    need_fuse!();
    let env = Env::new();
    let m = operator_mount(&env);
    env.run(&["write", "/t/notes.md", "-c", "v1\n", "--tags", "keep"])
        .ok();
    // What vim and most editors do: write a temporary file, fsync, rename over the original.
    {
        let mut f = File::create(m.p("t/.notes.md.swp")).unwrap();
        f.write_all(b"v2\n").unwrap();
        f.sync_all().unwrap();
    }
    std::fs::rename(m.p("t/.notes.md.swp"), m.p("t/notes.md")).unwrap();
    assert_eq!(std::fs::read_to_string(m.p("t/notes.md")).unwrap(), "v2\n");
    assert!(!m.p("t/.notes.md.swp").exists());
    let j = env.run(&["--json", "read", "/t/notes.md"]).json();
    assert_eq!(j["meta"]["tags"][0], "keep", "{j}");
    let h = env.run(&["--json", "history", "/t/notes.md"]).json();
    assert_eq!(h.as_array().unwrap().len(), 2, "{h}");
}

// ---------------------------------------------------------------------------------------
// No deadlock.

#[test]
fn concurrent_writers_and_renames_never_deadlock() {
    need_fuse!();
    let env = Env::new();
    let m = operator_mount(&env);
    for d in ["x", "y"] {
        std::fs::create_dir_all(m.p(&format!("t/{d}"))).unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let progress = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    for w in 0..6u64 {
        let root = m.p("t");
        let stop = stop.clone();
        let progress = progress.clone();
        threads.push(std::thread::spawn(move || {
            let mut r = Rng::new(100 + w);
            while !stop.load(Ordering::Relaxed) {
                let a = root.join(r.pick(&["x/a", "x/b", "y/a", "y/b", "c"]));
                let b = root.join(r.pick(&["x/a", "x/b", "y/a", "y/b", "c"]));
                let _ = match r.below(6) {
                    0 => std::fs::rename(&a, &b).map(drop),
                    1 => std::fs::rename(root.join("x"), root.join("z"))
                        .and_then(|_| std::fs::rename(root.join("z"), root.join("x"))),
                    2 => OpenOptions::new()
                        .write(true)
                        .create(true)
                        .truncate(false)
                        .open(&a)
                        .and_then(|f| {
                            f.write_at(&r.bytes(500), r.below(2000))?;
                            std::fs::rename(&a, &b)?;
                            f.write_at(b"after", 0).map(drop)
                        }),
                    3 => std::fs::remove_file(&a),
                    4 => std::fs::read(&a).map(drop),
                    _ => std::fs::write(&a, r.bytes(300)),
                };
                progress.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    // The watchdog: progress must keep coming, and everything must stop when asked.
    let mut last = 0;
    for _ in 0..10 {
        std::thread::sleep(Duration::from_millis(500));
        let now = progress.load(Ordering::Relaxed);
        assert!(
            now > last,
            "no operation finished in 500 ms: the mount is stuck"
        );
        last = now;
    }
    stop.store(true, Ordering::Relaxed);
    within(30, "the writers", move || {
        for t in threads {
            t.join().unwrap();
        }
    });
    within(10, "a listing afterwards", {
        let p = m.p("t");
        move || std::fs::read_dir(p).unwrap().count()
    });
    eprintln!("concurrency: {last} operations, no deadlock");
}

#[test]
fn allow_other_lets_other_users_in_and_the_kernel_enforces_the_stored_modes() {
    need_fuse!();
    if !nix::unistd::getuid().is_root() || !have("setpriv") {
        eprintln!("SKIP: needs root and setpriv to act as another user");
        return;
    }
    let env = Env::new();
    let dir = env.path("shared");
    std::fs::create_dir_all(&dir).unwrap();
    // The scratch directory must be reachable by the other user.
    for p in [env.dir.path(), dir.as_path()] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let mut child = env
        .cmd(&["mount", s(&dir), "--foreground", "--allow-other"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let t = Instant::now();
    let line = loop {
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
        if let Some(l) = mounts.lines().find(|l| l.contains(s(&dir))) {
            break l.to_string();
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "mount did not come up"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        line.contains("allow_other") && line.contains("default_permissions"),
        "{line}"
    );
    std::fs::create_dir_all(dir.join("t")).unwrap();
    std::fs::write(dir.join("t/open.txt"), "for all\n").unwrap();
    std::fs::write(dir.join("t/secret.txt"), "root only\n").unwrap();
    std::fs::set_permissions(
        dir.join("t/secret.txt"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let as_nobody = |cmd: &str| {
        Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "sh",
                "-c",
                cmd,
            ])
            .current_dir(&dir)
            .output()
            .unwrap()
    };
    let o = as_nobody("cat t/open.txt");
    assert_eq!(String::from_utf8_lossy(&o.stdout), "for all\n", "{o:?}");
    let o = as_nobody("cat t/secret.txt");
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("Permission denied"),
        "{o:?}"
    );
    let o = as_nobody("echo x >> t/open.txt");
    assert!(
        !o.status.success(),
        "a 0644 file of root is not writable by nobody"
    );
    let o = as_nobody("chmod 777 t/open.txt");
    assert!(!o.status.success(), "only the owner may chmod");
    assert_eq!(
        std::fs::read_to_string(dir.join("t/open.txt")).unwrap(),
        "for all\n"
    );
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let _ = child.wait();
    let _ = Command::new("umount").arg("-l").arg(&dir).status();
}
