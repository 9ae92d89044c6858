//! `avm trash` (list or empty the trash) and finding the trash copy `avm restore` brings back.

use serde_json::{Value, json};

use avm_core::{Error, ErrorKind, ListOptions, RemoveOptions, Result};

use super::output::{out, outln, print_json};
use crate::app::App;

pub(super) fn trash(app: &App, empty: bool, limit: usize, j: bool) -> Result<()> {
    let (h, c) = (&app.host, &app.caller);
    if empty {
        let o = match h.remove(
            c,
            "/trash",
            RemoveOptions {
                recursive: true,
                hard: true,
            },
        ) {
            Ok(o) => o,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                if j {
                    print_json(&json!({"emptied": 0}));
                } else {
                    outln("Trash is empty");
                }
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        if j {
            print_json(&json!({"emptied": o.data()["count"]}));
        } else {
            outln(&format!("Emptied {} items from trash", o.data()["count"]));
        }
        return Ok(());
    }
    let l = match h.list(
        c,
        "/trash",
        &ListOptions {
            recursive: true,
            limit: Some(limit),
            offset: 0,
        },
    ) {
        Ok(l) => l,
        Err(e) if e.kind() == ErrorKind::NotFound => avm_core::Listing {
            entries: vec![],
            more: false,
        },
        Err(e) => return Err(e),
    };
    let mut items = Vec::new();
    for e in &l.entries {
        let meta = h.read(c, &format!("{}:meta", e.path))?.data();
        items.push(json!({
            "path": e.path,
            "original_path": meta["original_path"],
            "deleted_at": meta["deleted_at"],
            "deleted_by": meta["deleted_by"],
        }));
    }
    if j {
        print_json(&Value::Array(items));
    } else if items.is_empty() {
        outln("Trash is empty");
    } else {
        let mut s = format!("Trash ({} items):\n", items.len());
        for i in &items {
            let at: String = i["deleted_at"]
                .as_str()
                .unwrap_or("")
                .chars()
                .take(16)
                .collect();
            s.push_str(&format!(
                "  [{}] {}\n",
                at.replace('T', " "),
                i["original_path"]
                    .as_str()
                    .unwrap_or(i["path"].as_str().unwrap_or(""))
            ));
        }
        out(&s);
    }
    Ok(())
}

/// The newest trash copy of `original` (`/trash<path>`, `/trash<path>~2`, …): the one deleted
/// last, or the directory `/trash<path>` when no file copy exists.
pub(super) fn newest_trash_copy(app: &App, original: &str) -> Result<String> {
    let (h, c) = (&app.host, &app.caller);
    let base = format!("/trash{original}");
    let dir = avm_core::address::parent(&base).to_string();
    let name = avm_core::address::basename(&base).to_string();
    let not_there = || {
        Error::new(
            ErrorKind::NotFound,
            format!("{original} is not in the trash; `avm trash` lists what is"),
        )
    };
    let listing = match h.list(c, &dir, &ListOptions::default()) {
        Ok(l) => l,
        Err(e) if e.kind() == ErrorKind::NotFound => return Err(not_there()),
        Err(e) => return Err(e),
    };
    let mut best: Option<(String, String)> = None;
    let mut dir_copy = None;
    for e in listing.entries {
        let n = avm_core::address::basename(&e.path);
        let is_copy = n == name
            || n.strip_prefix(&format!("{name}~"))
                .is_some_and(|k| !k.is_empty() && k.chars().all(|ch| ch.is_ascii_digit()));
        if !is_copy {
            continue;
        }
        if e.kind == avm_core::NodeKind::Dir {
            dir_copy = Some(e.path);
            continue;
        }
        let meta = h.read(c, &format!("{}:meta", e.path))?.data();
        if meta["original_path"]
            .as_str()
            .is_some_and(|o| o != original)
        {
            continue;
        }
        let at = meta["deleted_at"].as_str().unwrap_or("").to_string();
        if best.as_ref().is_none_or(|(b, _)| at > *b) {
            best = Some((at, e.path));
        }
    }
    best.map(|(_, p)| p).or(dir_copy).ok_or_else(not_there)
}
