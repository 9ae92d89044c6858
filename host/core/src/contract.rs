//! The provider contract: checks every provider must pass, run from each provider's tests.
//!
//! Each check returns `Err(description)` instead of panicking so the calling test can report
//! which clause failed. `writable` providers are also checked for write/read/list agreement.

use crate::error::ErrorKind;
use crate::provider::{Caller, ListOptions, NodeKind, Provider, Put, Request, WriteInput};

type Check = Result<(), String>;

fn req(path: &str) -> Request {
    Request::new(path, Caller::Operator)
}

/// A missing path reads and stats as `NotFound`.
pub fn missing_is_not_found(p: &dyn Provider, missing: &str) -> Check {
    both_not_found(missing, p.read(&req(missing)), p.stat(&req(missing)))
}

/// The clause of [`missing_is_not_found`], whoever answered the read and the stat.
fn both_not_found(
    missing: &str,
    read: crate::Result<crate::provider::Output>,
    stat: crate::Result<crate::provider::Stat>,
) -> Check {
    match read {
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        other => {
            return Err(format!(
                "read of missing {missing}: expected not-found, got {other:?}"
            ));
        }
    }
    match stat {
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        other => Err(format!(
            "stat of missing {missing}: expected not-found, got {other:?}"
        )),
    }
}

/// A provider that does not declare `write` refuses writes with `ReadOnly` or `Unsupported`.
pub fn read_only_rejects_writes(p: &dyn Provider, path: &str) -> Check {
    if p.info().ops.write {
        return Ok(());
    }
    match p.write(&req(path), WriteInput::Text("x".into())) {
        Err(e) if matches!(e.kind(), ErrorKind::ReadOnly | ErrorKind::Unsupported) => Ok(()),
        other => Err(format!("write to read-only provider: got {other:?}")),
    }
}

/// What is written can be read back, shows in its parent's listing, and stats as a file of
/// the right size; the parent stats as a directory.
pub fn write_read_list_agree(p: &dyn Provider, dir: &str) -> Check {
    if !p.info().ops.write {
        return Ok(());
    }
    let path = format!("{dir}/contract-{}.md", std::process::id());
    let body = "contract body ✓\n";
    p.write(
        &req(&path),
        WriteInput::Put(Put {
            content: Some(body.into()),
            ..Put::default()
        }),
    )
    .map_err(|e| format!("write {path}: {e}"))?;
    let got = p
        .read(&req(&path))
        .map_err(|e| format!("read {path}: {e}"))?;
    if got.text != body {
        return Err(format!("read back {:?}, wrote {body:?}", got.text));
    }
    let st = p
        .stat(&req(&path))
        .map_err(|e| format!("stat {path}: {e}"))?;
    if st.kind != NodeKind::File || st.size != body.len() as u64 {
        return Err(format!(
            "stat {path}: {st:?}, expected a file of {} bytes",
            body.len()
        ));
    }
    let dst = p.stat(&req(dir)).map_err(|e| format!("stat {dir}: {e}"))?;
    if dst.kind != NodeKind::Dir {
        return Err(format!("stat {dir}: {dst:?}, expected a directory"));
    }
    let listing = p
        .list(&req(dir), &ListOptions::default())
        .map_err(|e| format!("list {dir}: {e}"))?;
    if !listing
        .entries
        .iter()
        .any(|e| e.path == path && e.kind == NodeKind::File)
    {
        return Err(format!("list {dir} lacks {path}: {listing:?}"));
    }
    for e in &listing.entries {
        if e.kind == NodeKind::File {
            p.read(&req(&e.path))
                .map_err(|err| format!("listed {} but read fails: {err}", e.path))?;
        }
    }
    Ok(())
}

/// Every declared suffix that is readable on files answers on an existing file (or refuses
/// with a typed error, never a panic or an `Internal`).
pub fn declared_suffixes_work(p: &dyn Provider, file: &str) -> Check {
    file_suffixes_read(p, file, |suffix| {
        let mut r = req(file);
        r.suffix = Some(suffix.to_string());
        p.read(&r)
    })
}

/// Reads `file` with every readable file suffix `p` declares through `read`; fails on the
/// first `Internal` error.
fn file_suffixes_read(
    p: &dyn Provider,
    file: &str,
    read: impl Fn(&str) -> crate::Result<crate::provider::Output>,
) -> Check {
    for s in p.info().suffixes {
        if !s.read || s.on == crate::provider::SuffixOn::Dir {
            continue;
        }
        if let Err(e) = read(&s.name)
            && e.kind() == ErrorKind::Internal
        {
            return Err(format!("{file}:{} failed internally: {e}", s.name));
        }
    }
    Ok(())
}

/// [`missing_is_not_found`] through `host`, for providers that read the router's captures
/// (a plugin mounted at `/x/{name}` learns `name` only from the host).
pub fn missing_is_not_found_through(host: &crate::host::Host, missing: &str) -> Check {
    let op = Caller::Operator;
    both_not_found(missing, host.read(&op, missing), host.stat(&op, missing))
}

/// [`declared_suffixes_work`] through `host`: every readable file suffix `p` declares, read
/// on `file` of its mount.
pub fn declared_suffixes_work_through(
    host: &crate::host::Host,
    p: &dyn Provider,
    file: &str,
) -> Check {
    file_suffixes_read(p, file, |suffix| {
        host.read(&Caller::Operator, &format!("{file}:{suffix}"))
    })
}

/// Every readable suffix of every service on `host` answers through the host on `file` and
/// on `dir` (both readable by `caller`), or refuses with a typed error: never an `Internal`
/// error, whatever the query lacks. Returns how many addresses were read.
pub fn services_answer_their_suffixes(
    host: &crate::host::Host,
    caller: &Caller,
    file: &str,
    dir: &str,
) -> Result<usize, String> {
    let mut tried = 0;
    for service in host.services() {
        let info = service.info();
        for s in info.suffixes.iter().filter(|s| s.read) {
            let on: &[&str] = match s.on {
                crate::provider::SuffixOn::File => &[file],
                crate::provider::SuffixOn::Dir => &[dir],
                crate::provider::SuffixOn::Any => &[file, dir],
            };
            for path in on {
                let address = format!("{path}:{}", s.name);
                if let Err(e) = host.read(caller, &address)
                    && e.kind() == ErrorKind::Internal
                {
                    return Err(format!(
                        "service {}: {address} failed internally: {e}",
                        info.kind
                    ));
                }
                tried += 1;
            }
        }
    }
    if tried == 0 {
        return Err("the host has no service suffix to try".into());
    }
    Ok(tried)
}

/// Runs every check; `dir` must be a writable directory for writable providers.
pub fn run_all(p: &dyn Provider, dir: &str) -> Check {
    missing_is_not_found(p, &format!("{dir}/surely-missing-node"))?;
    read_only_rejects_writes(p, &format!("{dir}/ro"))?;
    write_read_list_agree(p, dir)?;
    let path = format!("{dir}/contract-{}.md", std::process::id());
    if p.info().ops.write {
        declared_suffixes_work(p, &path)?;
    }
    Ok(())
}
