//! `avm bench search`: search and recall latency as the store grows, on every path that
//! searches (in-process, the mount, a new CLI process).

use std::sync::Arc;
use std::time::{Duration, Instant};

use avm_benches::{Rng, fill_prose, prose};
use avm_core::{Error, ErrorKind, Result, SearchOptions};

use crate::bench::{Row, print_rows, row, scratch, time_processes};

/// A question as a query string of a path (`a+b+c`).
fn plus(q: &str) -> String {
    q.split_whitespace().collect::<Vec<_>>().join("+")
}

/// Runs the bench at each size and prints one table per size (or JSON at the end).
pub fn run(
    sizes: &[usize],
    questions: usize,
    processes: usize,
    dir: &Option<std::path::PathBuf>,
    json: bool,
) -> Result<()> {
    if sizes.is_empty() || sizes.contains(&0) || questions == 0 {
        return Err(Error::invalid(
            "--sizes must list memory counts of at least 1, and --questions must be at least 1",
        ));
    }
    let (dir, _tmp) = scratch(dir)?;
    let mut all: Vec<(usize, Vec<Row>)> = Vec::new();
    for &n in sizes {
        if !json {
            eprintln!(
                "avm bench search: filling {n} memories in {}",
                dir.display()
            );
        }
        let rows = one_size(&dir.join(format!("search-{n}")), n, questions, processes)?;
        if !json {
            print_rows(&format!("avm bench search: {n} memories"), &rows, false);
        }
        all.push((n, rows));
    }
    if json {
        let v: Vec<serde_json::Value> = all
            .iter()
            .map(|(n, rows)| serde_json::json!({ "memories": n, "rows": rows }))
            .collect();
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    }
    Ok(())
}

fn one_size(
    dir: &std::path::Path,
    n: usize,
    questions: usize,
    processes: usize,
) -> Result<Vec<Row>> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::new(ErrorKind::Unavailable, format!("{}: {e}", dir.display())))?;
    let db = dir.join("avm.db");
    // Full text only: vectors (and embedding what lags behind) are `avm bench semantic`'s.
    let config = dir.join("avm.toml");
    std::fs::write(&config, "[embedding]\nenabled = false\n")
        .map_err(|e| Error::new(ErrorKind::Unavailable, format!("{}: {e}", config.display())))?;
    let g = crate::cli::Global {
        db: Some(db.clone()),
        config: Some(config.clone()),
        agent: None,
        json: false,
    };
    let app = crate::app::App::open(&g)?;
    let caller = app.caller.clone();
    fill_prose(&app.host, n, 11)?;
    let mut rng = Rng::new(13);
    let qs: Vec<String> = (0..questions)
        .map(|_| prose::question(&mut rng).text)
        .collect();
    let mut rows = Vec::new();
    let timed = |f: &mut dyn FnMut(&str) -> Result<()>| -> Result<Vec<Duration>> {
        let mut lat = Vec::with_capacity(qs.len());
        for q in &qs {
            let t = Instant::now();
            f(q)?;
            lat.push(t.elapsed());
        }
        Ok(lat)
    };
    // Warm up once: recall's tokenizer tables load on first use.
    app.host
        .read(&caller, "/:recall?q=warm+up&max_tokens=500")
        .map(drop)?;
    // In-process, as a library or `avm serve` runs it.
    rows.push(row(
        "search top 10 (in-process)",
        timed(&mut |q| {
            app.host
                .search(
                    &caller,
                    "/",
                    &SearchOptions {
                        query: q.to_string(),
                        limit: 10,
                    },
                )
                .map(drop)
        })?,
    ));
    rows.push(row(
        "recall, 2000 tokens (in-process)",
        timed(&mut |q| {
            app.host
                .read(&caller, &format!("/:recall?q={}&max_tokens=2000", plus(q)))
                .map(drop)
        })?,
    ));
    // A new `avm search` process per question: what an agent's shell tool pays.
    if processes > 0 {
        let lat = time_processes("avm search", &qs, processes, |cmd, q| {
            cmd.arg("--db")
                .arg(&db)
                .arg("--config")
                .arg(&config)
                .args(["search", q, "--limit", "10"]);
        })?;
        rows.push(row("avm search process (top 10)", lat));
    }
    // Through a real mount, when this machine has FUSE.
    if std::path::Path::new("/dev/fuse").exists() {
        let mnt = dir.join("mnt");
        std::fs::create_dir_all(&mnt)
            .map_err(|e| Error::new(ErrorKind::Unavailable, format!("{}: {e}", mnt.display())))?;
        let store = app.store.clone();
        let max_bytes = app.config.max_node_bytes;
        let session = avm_fuse::mount(
            Arc::new(app.host),
            caller,
            Some(store),
            &mnt,
            avm_fuse::MountOptions {
                threads: avm_fuse::default_threads(),
                allow_other: false,
                max_bytes,
                inject_urgent: false,
            },
        )?;
        let lat = timed(&mut |q| {
            std::fs::read(mnt.join(format!(":search?q={}&limit=10", plus(q))))
                .map(drop)
                .map_err(|e| Error::new(ErrorKind::Unavailable, format!(":search: {e}")))
        });
        session
            .umount_and_join()
            .map_err(|e| Error::new(ErrorKind::Unavailable, format!("unmount: {e}")))?;
        rows.push(row(":search through the mount (top 10)", lat?));
    }
    Ok(rows)
}
