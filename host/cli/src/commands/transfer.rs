//! `avm export` and `avm import`: nodes to and from JSONL files.

use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::process::ExitCode;

use serde_json::{Value, json};

use avm_core::address::Address;
use avm_core::{Error, ErrorKind, Result, WriteInput};

use super::input::addr;
use super::output::{outln, print_json};
use crate::app::App;

pub(super) fn export(app: &App, prefix: &str, output: Option<String>, j: bool) -> Result<()> {
    let (h, c) = (&app.host, &app.caller);
    let target = output.unwrap_or_else(|| {
        format!(
            "avm-export-{}.jsonl",
            chrono::Utc::now().format("%Y%m%d-%H%M%S")
        )
    });
    let to_stdout = target == "-";
    let mut sink: Box<dyn Write> = if to_stdout {
        Box::new(std::io::stdout().lock())
    } else {
        Box::new(std::io::BufWriter::new(
            std::fs::File::create(&target).map_err(|e| {
                Error::new(
                    ErrorKind::Unavailable,
                    format!("cannot create {target}: {e}"),
                )
            })?,
        ))
    };
    let mut after: Option<String> = None;
    let mut n = 0usize;
    loop {
        let mut pairs = vec![("limit", "1000".to_string())];
        if let Some(a) = &after {
            pairs.push(("after", a.clone()));
        }
        let o = h.read(c, &addr(prefix, "export", &pairs)?)?;
        sink.write_all(o.text.as_bytes()).map_err(|e| {
            Error::new(
                ErrorKind::Unavailable,
                format!("cannot write {target}: {e}"),
            )
        })?;
        n += o.data()["records"].as_array().map_or(0, Vec::len);
        match o.data()["next_after"].as_str() {
            Some(a) => after = Some(a.to_string()),
            None => break,
        }
    }
    sink.flush().map_err(|e| {
        Error::new(
            ErrorKind::Unavailable,
            format!("cannot write {target}: {e}"),
        )
    })?;
    drop(sink);
    if !to_stdout {
        if j {
            print_json(&json!({"exported": n, "file": target}));
        } else {
            outln(&format!("Exported {n} nodes to {target}"));
        }
    }
    Ok(())
}

pub(super) fn import(app: &App, file: &str, force: bool, j: bool) -> Result<ExitCode> {
    let (h, c) = (&app.host, &app.caller);
    let (reader, total): (Box<dyn BufRead>, u64) = if file == "-" {
        (Box::new(BufReader::new(std::io::stdin())), 0)
    } else {
        let f = std::fs::File::open(file)
            .map_err(|e| Error::new(ErrorKind::NotFound, format!("cannot read {file}: {e}")))?;
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        (Box::new(BufReader::new(f)), len)
    };
    let bar = if std::io::stderr().is_terminal() && !j && total > 0 {
        let b = indicatif::ProgressBar::new(total);
        b.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        Some(b)
    } else {
        None
    };
    let mut imported = 0usize;
    let mut failures: Vec<Value> = Vec::new();
    let mut batch: Vec<(String, WriteInput)> = Vec::new();
    let mut lines_of_batch: Vec<usize> = Vec::new();
    let flush = |batch: &mut Vec<(String, WriteInput)>,
                 lines: &mut Vec<usize>,
                 failures: &mut Vec<Value>,
                 imported: &mut usize| {
        for (r, line) in h
            .write_many(c, std::mem::take(batch))
            .into_iter()
            .zip(lines.drain(..))
        {
            match r {
                Ok(_) => *imported += 1,
                Err(e) => failures
                    .push(json!({"line": line, "kind": e.kind().as_str(), "error": e.message()})),
            }
        }
    };
    for (i, line) in reader.lines().enumerate() {
        let lineno = i + 1;
        let line = line.map_err(|e| {
            Error::invalid(format!(
                "{file} line {lineno}: cannot read ({e}); is it UTF-8 JSONL?"
            ))
        })?;
        if let Some(b) = &bar {
            b.inc(line.len() as u64 + 1);
        }
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = match serde_json::from_str(&line) {
            Ok(v) => v,
            Err(e) => {
                failures.push(json!({"line": lineno, "kind": "invalid-input", "error": format!("not JSON: {e}")}));
                continue;
            }
        };
        let Some(path) = v.get("path").and_then(Value::as_str).map(str::to_string) else {
            failures.push(
                json!({"line": lineno, "kind": "invalid-input", "error": "record has no \"path\""}),
            );
            continue;
        };
        let target = match Address::path(&path) {
            Ok(a) if force => format!("{}?force=1", a.path),
            Ok(a) => a.path,
            Err(e) => {
                failures
                    .push(json!({"line": lineno, "kind": "invalid-input", "error": e.message()}));
                continue;
            }
        };
        batch.push((target, WriteInput::Record(v)));
        lines_of_batch.push(lineno);
        if batch.len() >= 500 {
            flush(
                &mut batch,
                &mut lines_of_batch,
                &mut failures,
                &mut imported,
            );
        }
    }
    flush(
        &mut batch,
        &mut lines_of_batch,
        &mut failures,
        &mut imported,
    );
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    if j {
        print_json(&json!({"imported": imported, "failed": failures}));
    } else {
        outln(&format!("Imported {imported} nodes from {file}"));
        for f in &failures {
            eprintln!(
                "avm: {file} line {}: {}",
                f["line"],
                f["error"].as_str().unwrap_or("")
            );
        }
    }
    Ok(if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
