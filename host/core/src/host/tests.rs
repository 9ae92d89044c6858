//! Tests of routing, suffix declarations, `/private`, read-only mounts, the read cache and
//! request deadlines.

use super::*;
use crate::provider::{Ops, Put};

/// A tiny in-memory provider: enough to exercise routing and caller checks.
struct Echo(&'static str);
impl Provider for Echo {
    fn info(&self) -> ProviderInfo {
        ProviderInfo {
            kind: self.0.into(),
            description: "echo".into(),
            ops: Ops {
                read: true,
                write: true,
                ..Ops::default()
            },
            suffixes: vec![SuffixSpec::new(
                "meta",
                SuffixOn::File,
                true,
                false,
                &["pretty"],
                "metadata",
            )],
        }
    }
    fn read(&self, req: &Request) -> Result<Output> {
        Ok(Output::text(format!(
            "{}:{}:{}:{}",
            self.0,
            req.path,
            req.suffix.clone().unwrap_or_default(),
            req.captures.get("sym").cloned().unwrap_or_default()
        )))
    }
    fn write(&self, req: &Request, _: WriteInput) -> Result<Output> {
        Ok(Output::text(req.path.clone()))
    }
    fn stat(&self, _: &Request) -> Result<Stat> {
        Ok(Stat {
            kind: NodeKind::File,
            size: 0,
            version: None,
            created_at: None,
            updated_at: None,
            accessed_at: None,
            attrs: Default::default(),
        })
    }
}

fn host() -> Host {
    Host::new(vec![
        Mount::new("/**", Arc::new(Echo("mem"))),
        Mount::new("/live/{sym}", Arc::new(Echo("live"))).read_only(true),
    ])
    .unwrap()
}

/// Says how long its request had left.
struct Clock;
impl Provider for Clock {
    fn info(&self) -> ProviderInfo {
        ProviderInfo {
            kind: "clock".into(),
            description: "deadline".into(),
            ops: Ops {
                read: true,
                ..Ops::default()
            },
            suffixes: Vec::new(),
        }
    }
    fn read(&self, req: &Request) -> Result<Output> {
        Ok(Output::text(match req.deadline {
            Some(d) => d
                .saturating_duration_since(Instant::now())
                .as_millis()
                .to_string(),
            None => "none".into(),
        }))
    }
}

#[test]
fn a_front_ends_time_limit_becomes_each_requests_deadline() {
    let plain = Host::new(vec![Mount::new("/**", Arc::new(Clock))]).unwrap();
    assert_eq!(plain.read(&Caller::Operator, "/a").unwrap().text, "none");
    let limited = Host::new(vec![Mount::new("/**", Arc::new(Clock))])
        .unwrap()
        .with_timeout(Duration::from_secs(30));
    let left: u128 = limited
        .read(&Caller::Operator, "/a")
        .unwrap()
        .text
        .parse()
        .unwrap();
    assert!((29_000..=30_000).contains(&left), "{left} ms left");
}

#[test]
fn routes_by_specificity_and_passes_captures() {
    let h = host();
    assert_eq!(
        h.read(&Caller::Operator, "/a/b.md").unwrap().text,
        "mem:/a/b.md::"
    );
    assert_eq!(
        h.read(&Caller::Operator, "/live/nvda").unwrap().text,
        "live:/live/nvda::nvda"
    );
}

#[test]
fn declared_suffixes_split_and_undeclared_stay_in_the_name() {
    let h = host();
    assert_eq!(
        h.read(&Caller::Operator, "/a.md:meta").unwrap().text,
        "mem:/a.md:meta:"
    );
    assert_eq!(
        h.read(&Caller::Operator, "/a:b.md").unwrap().text,
        "mem:/a:b.md::"
    );
    let e = h.read(&Caller::Operator, "/a.md:meta?bogus=1").unwrap_err();
    assert!(e.message().contains("accepted keys: pretty"), "{e}");
    let e = h
        .write(
            &Caller::Operator,
            "/a.md:meta",
            WriteInput::Text("x".into()),
        )
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ReadOnly);
    let info = h.read(&Caller::Operator, "/a.md:info").unwrap();
    assert!(info.text.contains(":meta"), "{}", info.text);
}

#[test]
fn private_shorthand_expands_for_agents_and_isolates_them() {
    let h = host();
    let alice = Caller::Agent("alice".into());
    assert_eq!(
        h.read(&alice, "/private/x.md").unwrap().text,
        "mem:/memory/private/alice/x.md::"
    );
    let e = h.read(&alice, "/memory/private/bob/x.md").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied);
    assert!(e.message().contains("rule"), "{e}");
    let e = h.read(&Caller::Operator, "/private/x.md").unwrap_err();
    assert!(e.message().contains("--agent"), "{e}");
    let e = h
        .rename(&alice, "/private/x.md", "/memory/private/bob/y.md", false)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied);
}

#[test]
fn read_only_mounts_refuse_writes() {
    let h = host();
    let e = h
        .write(
            &Caller::Operator,
            "/live/x",
            WriteInput::Put(Put::default()),
        )
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ReadOnly);
}

/// Counts reads, to see the host cache at work.
struct Counter(std::sync::atomic::AtomicUsize);
impl Provider for Counter {
    fn info(&self) -> ProviderInfo {
        ProviderInfo {
            kind: "counter".into(),
            description: "counts reads".into(),
            ops: Ops {
                read: true,
                write: true,
                ..Ops::default()
            },
            suffixes: vec![],
        }
    }
    fn read(&self, _: &Request) -> Result<Output> {
        let n = self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(Output::text(n.to_string()))
    }
    fn write(&self, req: &Request, _: WriteInput) -> Result<Output> {
        Ok(Output::text(req.path.clone()))
    }
}

#[test]
fn mounts_with_a_ttl_are_cached_per_caller_and_writes_invalidate() {
    let c = Arc::new(Counter(std::sync::atomic::AtomicUsize::new(0)));
    let h = Host::new(vec![
        Mount::new("/live/**", c.clone()).with_ttl(Duration::from_secs(60)),
    ])
    .unwrap();
    assert_eq!(h.read(&Caller::Operator, "/live/x").unwrap().text, "0");
    assert_eq!(
        h.read(&Caller::Operator, "/live/x").unwrap().text,
        "0",
        "served from cache"
    );
    assert_eq!(
        h.read(&Caller::Agent("a".into()), "/live/x").unwrap().text,
        "1",
        "cache is per caller"
    );
    h.write(&Caller::Operator, "/live/x", WriteInput::Text("y".into()))
        .unwrap();
    assert_eq!(
        h.read(&Caller::Operator, "/live/x").unwrap().text,
        "2",
        "a write invalidates"
    );
}

#[test]
fn unrouted_paths_name_the_mounts() {
    let h = Host::new(vec![Mount::new("/memory/**", Arc::new(Echo("mem")))]).unwrap();
    let e = h.read(&Caller::Operator, "/elsewhere").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert!(e.message().contains("/memory/**"));
}
