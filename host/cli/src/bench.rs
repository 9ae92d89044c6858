//! `avm bench store`: ops/s and p50/p99 for the store on this machine.

use avm_benches::{BenchOptions, store_bench};
use avm_core::{Error, ErrorKind, Result};

use crate::cli::BenchWhat;

/// Runs a bench and prints one line per measurement (or JSON at the end).
pub fn run(what: &BenchWhat, json: bool) -> Result<()> {
    match what {
        BenchWhat::Store {
            n,
            writers,
            readers,
            only,
            dir,
        } => {
            if let Some(bad) = only
                .iter()
                .find(|p| !["write", "writers", "read", "search"].contains(&p.as_str()))
            {
                return Err(Error::invalid(format!(
                    "--only {bad:?}: use write, writers, read or search"
                )));
            }
            if *n == 0 || *writers == 0 {
                return Err(Error::invalid("--n and --writers must be at least 1"));
            }
            let tmp;
            let dir = match dir {
                Some(d) => {
                    std::fs::create_dir_all(d).map_err(|e| {
                        Error::new(
                            ErrorKind::Unavailable,
                            format!("cannot create {}: {e}", d.display()),
                        )
                    })?;
                    d.clone()
                }
                None => {
                    tmp = tempdir()?;
                    tmp.0.clone()
                }
            };
            if !json {
                eprintln!(
                    "avm bench store: {n} nodes, {writers} writers, in {} ({} build)",
                    dir.display(),
                    if cfg!(debug_assertions) {
                        "DEBUG — numbers are not representative"
                    } else {
                        "release"
                    }
                );
                println!(
                    "{:<44} {:>10} {:>12} {:>10} {:>10}",
                    "measurement", "ops", "ops/s", "p50 µs", "p99 µs"
                );
            }
            let results = store_bench(
                &dir,
                &BenchOptions {
                    n: *n,
                    writers: *writers,
                    readers: *readers,
                    only: only.clone(),
                },
                |s| {
                    if !json {
                        println!(
                            "{:<44} {:>10} {:>12.0} {:>10.1} {:>10.1}",
                            s.name, s.ops, s.ops_per_sec, s.p50_us, s.p99_us
                        );
                    }
                },
            )?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&results).unwrap_or_default()
                );
            }
            Ok(())
        }
        BenchWhat::Recall {
            n,
            questions,
            budgets,
            dir,
        } => {
            if *n < 100 || *questions == 0 || budgets.is_empty() {
                return Err(Error::invalid(
                    "--n must be at least 100, --questions at least 1, and give at least one budget",
                ));
            }
            let tmp;
            let dir = match dir {
                Some(d) => {
                    std::fs::create_dir_all(d).map_err(|e| {
                        Error::new(
                            ErrorKind::Unavailable,
                            format!("cannot create {}: {e}", d.display()),
                        )
                    })?;
                    d.clone()
                }
                None => {
                    tmp = tempdir()?;
                    tmp.0.clone()
                }
            };
            if !json {
                eprintln!(
                    "avm bench recall: {n} memories, {questions} questions, in {} ({} build)",
                    dir.display(),
                    if cfg!(debug_assertions) {
                        "DEBUG — numbers are not representative"
                    } else {
                        "release"
                    }
                );
            }
            let r = avm_benches::recall_bench::recall_bench(
                &dir,
                &avm_benches::recall_bench::RecallBenchOptions {
                    n: *n,
                    questions: *questions,
                    budgets: budgets.clone(),
                },
            )?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
            } else {
                println!(
                    "corpus: {} memories written in {:.1}s, topic index built in {:.1}s; {} questions",
                    r.memories, r.load_secs, r.topic_sync_secs, r.questions
                );
                println!(
                    "{:<10} {:>9} {:>10} {:>7} {:>8} {:>10} {:>10}",
                    "budget", "hit rate", "first hit", "leaks", "items", "p50 µs", "p99 µs"
                );
                for b in &r.budgets {
                    println!(
                        "{:<10} {:>9.3} {:>10.3} {:>7} {:>8.1} {:>10.0} {:>10.0}",
                        b.max_tokens,
                        b.hit_rate,
                        b.first_rate,
                        b.leaks,
                        b.mean_items,
                        b.latency.p50_us,
                        b.latency.p99_us
                    );
                }
            }
            Ok(())
        }
    }
}

/// A scratch directory removed on drop.
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tempdir() -> Result<TempDir> {
    let base = std::env::temp_dir().join(format!("avm-bench-{}", std::process::id()));
    std::fs::create_dir_all(&base).map_err(|e| {
        Error::new(
            ErrorKind::Unavailable,
            format!("cannot create {}: {e}", base.display()),
        )
    })?;
    Ok(TempDir(base))
}
