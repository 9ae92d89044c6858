//! Writing to stdout: plain text, exact bytes, JSON, and the text rendering of `avm stats`.

use std::io::Write;

use serde_json::Value;

use avm_core::Output;

/// Prints to stdout, ignoring a closed pipe (`avm ls | head`).
pub(super) fn out(s: &str) {
    let mut o = std::io::stdout().lock();
    let _ = o.write_all(s.as_bytes());
    let _ = o.flush();
}

/// Writes bytes to stdout as they are (file content), ignoring a closed pipe.
pub(super) fn out_bytes(b: &[u8]) {
    let mut o = std::io::stdout().lock();
    let _ = o.write_all(b);
    let _ = o.flush();
}

/// Text that does not end its last line would glue the shell's prompt to it: on a terminal
/// (never in a pipe or a file, where the bytes must stay exact) the line is ended.
pub(super) fn end_line_on_terminal(o: &Output) {
    use std::io::IsTerminal;
    let b = o.bytes();
    if !o.is_binary() && !b.is_empty() && !b.ends_with(b"\n") && std::io::stdout().is_terminal() {
        out("\n");
    }
}

pub(super) fn outln(s: &str) {
    out(&format!("{s}\n"));
}

pub(crate) fn print_json(v: &Value) {
    outln(&serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string()));
}

/// Text mode prints `text`; JSON mode prints `data`.
pub(crate) fn emit(json_mode: bool, o: &Output, text: &str) {
    if json_mode {
        print_json(&o.data());
    } else {
        out(text);
    }
}

pub(crate) fn ensure_nl(s: &str) -> String {
    if s.is_empty() || s.ends_with('\n') {
        s.to_string()
    } else {
        format!("{s}\n")
    }
}

pub(super) fn render_stats(d: &Value) -> String {
    let mut s = String::new();
    if let Some(db) = d["database"].as_str() {
        s.push_str(&format!("Database:   {db}\n"));
        s.push_str(&format!(
            "File:       {} bytes (+{} in WAL)\n",
            d["file_bytes"], d["wal_bytes"]
        ));
    }
    s.push_str(&format!(
        "Path:       {}\n",
        d["path"].as_str().unwrap_or("/")
    ));
    s.push_str(&format!("Nodes:      {}\n", d["nodes"]));
    s.push_str(&format!("Content:    {} bytes\n", d["content_bytes"]));
    for (k, label) in [
        ("versions", "Versions:"),
        ("links", "Links:"),
        ("events", "Events:"),
        ("distinct_tags", "Tags:"),
    ] {
        if !d[k].is_null() {
            s.push_str(&format!("{label:<11} {}\n", d[k]));
        }
    }
    if let Some(rows) = d["by_prefix"].as_array()
        && !rows.is_empty()
    {
        s.push_str("\nBy prefix:\n");
        for r in rows {
            s.push_str(&format!(
                "  {:<40} {:>8} nodes {:>12} bytes\n",
                r["prefix"].as_str().unwrap_or(""),
                r["nodes"],
                r["bytes"]
            ));
        }
    }
    s
}
