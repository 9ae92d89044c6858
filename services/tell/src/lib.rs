//! avm-tell: messages between agents.
//!
//! `echo msg > /tell/<agent>?priority=urgent|normal|low[&expires=2h]` sends (`/tell/@all`
//! broadcasts); `:inbox` on any directory shows the caller's messages (`?mark=read` marks them
//! read, on read only); read state is kept per recipient, so one agent reading a broadcast
//! never reads it for the others. Front ends that serve files (FUSE) put the caller's unread
//! urgent messages on top of the next file it reads ([`urgent_block`]), once.

use std::sync::Arc;

use serde_json::{Value, json};

use avm_core::storage::{MemoryStore, Tell};
use avm_core::time::{now_micros, parse_duration, parse_time, to_iso};
use avm_core::{
    Caller, Entry, Error, ListOptions, Listing, NodeKind, Ops, Output, Provider, ProviderInfo,
    Request, Result, Stat, SuffixOn, SuffixSpec, WriteInput,
};

/// Priorities, most pressing first.
pub const PRIORITIES: [&str; 3] = ["urgent", "normal", "low"];

pub use avm_core::storage::{tell_header as header, urgent_block};

/// Sends a message from `caller` to `to` (an agent id or `@all`).
pub fn send(
    store: &dyn MemoryStore,
    caller: &Caller,
    to: &str,
    content: &str,
    priority: &str,
    expires: Option<&str>,
) -> Result<Tell> {
    if to != "@all" {
        avm_core::config::validate_agent_id(to)?;
    }
    if !PRIORITIES.contains(&priority) {
        return Err(Error::invalid(format!(
            "priority {priority:?} is not accepted; use urgent, normal or low"
        )));
    }
    let content = content.trim();
    if content.is_empty() {
        return Err(Error::invalid("the message is empty"));
    }
    let now = now_micros();
    let expires_at = match expires {
        None => None,
        Some(e) => Some(match parse_duration(e) {
            Ok(d) => now.saturating_add(i64::try_from(d.as_micros()).unwrap_or(i64::MAX)),
            Err(_) => parse_time(e)?,
        }),
    };
    let mut t = Tell {
        id: 0,
        from: caller.agent().unwrap_or("operator").to_string(),
        to: to.to_string(),
        content: content.to_string(),
        priority: priority.to_string(),
        created_at: now,
        expires_at,
    };
    t.id = store.tell_send(t.clone())?;
    Ok(t)
}

fn tell_json(t: &Tell, read: bool) -> Value {
    json!({
        "id": t.id, "from": t.from, "to": t.to, "content": t.content, "priority": t.priority,
        "created_at": to_iso(t.created_at), "expires_at": t.expires_at.map(to_iso), "read": read,
    })
}

/// The caller's inbox: unread messages, then the 10 newest read ones; with `mark`, marks the
/// unread ones shown read and says how many.
pub fn inbox(store: &dyn MemoryStore, caller: &Caller, mark: bool) -> Result<Output> {
    inbox_of(store, caller, mark, false)
}

/// The agent whose inbox `caller` reads: the operator has none.
fn owner(caller: &Caller) -> Result<&str> {
    caller
        .agent()
        .ok_or_else(|| Error::invalid("the inbox belongs to an agent: pass --agent NAME"))
}

/// [`inbox`], with `unread_only` leaving out the messages read before.
pub fn inbox_of(
    store: &dyn MemoryStore,
    caller: &Caller,
    mark: bool,
    unread_only: bool,
) -> Result<Output> {
    let agent = owner(caller)?;
    let mut all = store.tell_inbox(agent, 200)?;
    if unread_only {
        all.retain(|(_, read)| !read);
    }
    let unread: Vec<&Tell> = all.iter().filter(|(_, r)| !r).map(|(t, _)| t).collect();
    let read: Vec<&Tell> = all.iter().filter(|(_, r)| *r).map(|(t, _)| t).collect();
    let data: Vec<Value> = all.iter().map(|(t, r)| tell_json(t, *r)).collect();
    let mut s = String::from("# 📬 Inbox\n\n");
    if all.is_empty() {
        s.push_str("No messages.\n");
    }
    if !unread.is_empty() {
        s.push_str(&format!("## Unread ({})\n\n", unread.len()));
        for t in &unread {
            s.push_str(&header(t));
            s.push_str("\n\n");
        }
    }
    if !read.is_empty() {
        s.push_str(&format!("## Read ({})\n\n", read.len()));
        for t in read.iter().take(10) {
            s.push_str(&header(t));
            s.push_str("\n\n");
        }
    }
    let mut text = s.trim_end().to_string() + "\n";
    if !mark {
        return Ok(Output::new(text, Value::Array(data)));
    }
    // Marked read only as shown: the unread messages are in this very answer.
    let ids: Vec<i64> = unread.iter().map(|t| t.id).collect();
    store.tell_mark_read(agent, &ids)?;
    text.push_str(&format!("\nMarked {} messages as read.\n", ids.len()));
    Ok(Output::new(
        text,
        json!({"messages": data, "marked": ids.len()}),
    ))
}

/// `/tell/<agent>` as a mount, and `:inbox` as a service.
pub struct TellProvider {
    store: Arc<dyn MemoryStore>,
}

impl TellProvider {
    /// Messages kept in `store`.
    pub fn new(store: Arc<dyn MemoryStore>) -> Self {
        TellProvider { store }
    }
}

fn recipient(req: &Request) -> Result<String> {
    let rest = req.path.strip_prefix("/tell/").unwrap_or("");
    if rest.is_empty() || rest.contains('/') {
        return Err(Error::invalid(format!(
            "{}: write a message to /tell/<agent> or /tell/@all",
            req.path
        )));
    }
    Ok(rest.to_string())
}

/// Whether the query says `key=value` (absent: false; any other value is refused).
fn option(req: &Request, key: &str, value: &str) -> Result<bool> {
    match req.query.get(key) {
        None => Ok(false),
        Some(v) if v == value => Ok(true),
        Some(v) => Err(Error::invalid(format!(
            "{key}={v:?} is not accepted; use {key}={value}"
        ))),
    }
}

impl Provider for TellProvider {
    fn info(&self) -> ProviderInfo {
        ProviderInfo {
            kind: "tell".into(),
            description: "messages between agents".into(),
            ops: Ops {
                read: true,
                list: true,
                write: true,
                ..Ops::default()
            },
            suffixes: vec![SuffixSpec::new(
                "inbox",
                SuffixOn::Any,
                true,
                false,
                &["mark", "only", "ids"],
                "your messages; ?mark=read marks them read (?ids=1,2: just those), ?only=unread leaves out the read ones, ?only=urgent is the block of unread urgent ones that a mounted file shows on top",
            )],
        }
    }

    fn read(&self, req: &Request) -> Result<Output> {
        if req.suffix.as_deref() == Some("inbox") {
            let mark = option(req, "mark", "read")?;
            if let Some(ids) = req.query.get("ids") {
                if !mark {
                    return Err(Error::invalid(
                        "ids= goes with mark=read: the messages to mark",
                    ));
                }
                let ids = ids
                    .split(',')
                    .map(|i| {
                        i.trim().parse::<i64>().map_err(|_| {
                            Error::invalid(format!(
                                "ids={ids:?}: message ids are numbers, comma-separated"
                            ))
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                self.store.tell_mark_read(owner(&req.caller)?, &ids)?;
                return Ok(Output::new(
                    format!("Marked {} messages as read.\n", ids.len()),
                    json!({"marked": ids.len()}),
                ));
            }
            return match req.query.get("only") {
                Some("urgent") => {
                    if mark {
                        return Err(Error::invalid(
                            "only=urgent shows the block without marking; mark=read&ids=... marks what was shown",
                        ));
                    }
                    let (text, ids) =
                        urgent_block(self.store.as_ref(), owner(&req.caller)?)?.unwrap_or_default();
                    Ok(Output::new(text, json!({"ids": ids})))
                }
                Some("unread") => inbox_of(self.store.as_ref(), &req.caller, mark, true),
                None => inbox_of(self.store.as_ref(), &req.caller, mark, false),
                Some(v) => Err(Error::invalid(format!(
                    "only={v:?} is not accepted; use only=unread or only=urgent"
                ))),
            };
        }
        // /tell/<agent> reads as an empty file: messages are written, not read, there.
        if req.path == "/tell" {
            return Err(Error::new(
                avm_core::ErrorKind::IsADirectory,
                "/tell is a directory: write to /tell/<agent>",
            ));
        }
        recipient(req)?;
        Ok(Output::new("", json!(null)))
    }

    fn stat(&self, req: &Request) -> Result<Stat> {
        let kind = if req.path == "/tell" {
            NodeKind::Dir
        } else {
            recipient(req)?;
            NodeKind::File
        };
        Ok(Stat {
            kind,
            size: 0,
            version: None,
            created_at: None,
            updated_at: None,
            accessed_at: None,
            attrs: avm_core::Attrs::default(),
        })
    }

    fn list(&self, req: &Request, _opts: &ListOptions) -> Result<Listing> {
        if req.path != "/tell" {
            return Err(Error::new(
                avm_core::ErrorKind::NotADirectory,
                format!("{} is not a directory", req.path),
            ));
        }
        Ok(Listing {
            entries: vec![Entry {
                path: "/tell/@all".into(),
                kind: NodeKind::File,
                size: 0,
                version: None,
                updated_at: None,
            }],
            more: false,
        })
    }

    fn write(&self, req: &Request, input: WriteInput) -> Result<Output> {
        let to = recipient(req)?;
        req.query.check_keys(&["priority", "expires"], &req.path)?;
        let text = input.into_text("a message")?;
        let t = send(
            self.store.as_ref(),
            &req.caller,
            &to,
            &text,
            req.query.get("priority").unwrap_or("normal"),
            req.query.get("expires"),
        )?;
        Ok(Output::new(
            format!("Sent to {} ({}).\n", t.to, t.priority),
            tell_json(&t, false),
        ))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use avm_core::{Host, Mount};

    fn world() -> (tempfile::TempDir, Host) {
        let dir = tempfile::tempdir().unwrap();
        let mem =
            avm_provider_memory::MemoryProvider::open(&dir.path().join("a.db"), Default::default())
                .unwrap();
        let tell = Arc::new(TellProvider::new(mem.memory_store()));
        let host = Host::new(vec![
            Mount::new("/**", Arc::new(mem)),
            Mount::new("/tell/**", tell.clone()),
        ])
        .unwrap()
        .with_service(tell);
        (dir, host)
    }

    #[test]
    fn the_urgent_block_shows_unread_urgent_messages_and_only_the_ids_given_are_marked_read() {
        let (_d, host) = world();
        let (alice, bob) = (Caller::Agent("alice".into()), Caller::Agent("bob".into()));
        let inbox = "/memory/private/bob:inbox";
        for (text, prio) in [("deploy is broken", "urgent"), ("lunch?", "normal")] {
            host.write(
                &alice,
                &format!("/tell/bob?priority={prio}"),
                WriteInput::Text(text.into()),
            )
            .unwrap();
        }
        let block = host.read(&bob, &format!("{inbox}?only=urgent")).unwrap();
        assert!(
            block.text.starts_with("# ⚠️ UNREAD MESSAGES")
                && block.text.contains("deploy is broken"),
            "{}",
            block.text
        );
        assert!(!block.text.contains("lunch"), "{}", block.text);
        let ids = block.data()["ids"].clone();
        assert_eq!(ids.as_array().map(Vec::len), Some(1), "{ids}");
        // Reading the block marks nothing; marking the ids shown marks those alone.
        let again = host.read(&bob, &format!("{inbox}?only=urgent")).unwrap();
        assert_eq!(again.text, block.text);
        let marked = host
            .read(&bob, &format!("{inbox}?mark=read&ids={}", ids[0]))
            .unwrap();
        assert_eq!(marked.text, "Marked 1 messages as read.\n");
        let after = host.read(&bob, &format!("{inbox}?only=urgent")).unwrap();
        assert_eq!(after.text, "");
        let unread = host.read(&bob, &format!("{inbox}?only=unread")).unwrap();
        assert!(unread.text.contains("lunch?") && !unread.text.contains("deploy"));
        for bad in [
            "?ids=1",
            "?mark=read&ids=one",
            "?only=urgent&mark=read",
            "?only=all",
        ] {
            let e = host.read(&bob, &format!("{inbox}{bad}")).unwrap_err();
            assert_eq!(e.kind(), avm_core::ErrorKind::InvalidInput, "{bad}: {e}");
        }
    }
}
