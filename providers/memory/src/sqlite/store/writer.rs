//! The writer thread: group commit of queued writes in one transaction, idle purges of
//! expired nodes, access-time flushes and WAL checkpoints.

use super::*;

impl Drop for Store {
    fn drop(&mut self) {
        if let Ok(mut tx) = self.tx.lock() {
            tx.take();
        }
        if let Ok(mut w) = self.writer.lock()
            && let Some(h) = w.take()
        {
            let _ = h.join();
        }
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> Result<MutexGuard<'_, T>> {
    m.lock()
        .map_err(|_| Error::internal("a store lock was poisoned by a panicking thread"))
}

/// How often expired nodes are purged and access times flushed when the writer is idle.
const IDLE_TICK: Duration = Duration::from_millis(500);

/// How long the writer waits for more writers to join a group when writes are concurrent.
const GROUP_WINDOW: Duration = Duration::from_micros(200);

pub(super) fn writer_loop(mut conn: Connection, rx: Receiver<Job>, shared: Arc<Shared>) {
    let mut last_purge = Instant::now() - Duration::from_secs(3600);
    let mut last_checkpoint = Instant::now();
    let mut last_group = 1usize;
    loop {
        let first = match rx.recv_timeout(IDLE_TICK) {
            Ok(j) => j,
            Err(RecvTimeoutError::Timeout) => {
                let _ = run_batch(&mut conn, &shared, Vec::new(), &mut last_purge);
                if last_checkpoint.elapsed() >= IDLE_TICK {
                    last_checkpoint = Instant::now();
                    checkpoint(&conn);
                }
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => {
                let _ = run_batch(&mut conn, &shared, Vec::new(), &mut last_purge);
                let wal = std::fs::metadata(format!("{}-wal", shared.path.display()))
                    .map(|m| m.len())
                    .unwrap_or(0);
                // Short-lived processes never run the background checkpointer long enough.
                if wal > db::WAL_LIMIT {
                    checkpoint(&conn);
                }
                return;
            }
        };
        let mut jobs = vec![first];
        let max = shared.opts.group_commit_max.max(1);
        let mut count = 1;
        // When the last group had company, give the other writers a moment to join this one:
        // one commit for many writes is what makes concurrent writers fast.
        let window = if last_group > 1 {
            GROUP_WINDOW
        } else {
            Duration::ZERO
        };
        let opened = Instant::now();
        while count < max {
            match rx.try_recv() {
                Ok(j) => {
                    count += match &j {
                        Job::Batch(ops, _) => ops.len(),
                        _ => 1,
                    };
                    jobs.push(j);
                }
                Err(_) if count < last_group && opened.elapsed() < window => {
                    std::thread::yield_now()
                }
                Err(_) => break,
            }
        }
        last_group = count;
        let _ = run_batch(&mut conn, &shared, jobs, &mut last_purge);
        // Checkpoint between batches, not inside a commit, so no writer waits on it.
        if last_checkpoint.elapsed() >= Duration::from_millis(250) {
            last_checkpoint = Instant::now();
            checkpoint(&conn);
        }
    }
}

/// Copies committed WAL frames into the database without blocking readers or writers.
fn checkpoint(conn: &Connection) {
    let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
}

enum TxnError {
    /// An operation failed; the transaction was rolled back.
    Op(Error),
    /// The transaction itself could not begin or commit.
    Db(Error),
}

/// Runs `ops` in one transaction; any failure rolls all of them back.
fn txn(
    conn: &Connection,
    shared: &Shared,
    ops: &[&WriteOp],
    touches: &HashMap<i64, (String, Micros)>,
    purge: bool,
    invalid: &mut Vec<String>,
) -> std::result::Result<Vec<Outcome>, TxnError> {
    let file = &shared.file;
    db::retry_busy(shared.opts.busy_timeout, || {
        conn.execute_batch("BEGIN IMMEDIATE")
    })
    .map_err(|e| TxnError::Db(file.err(e)))?;
    let mut changed = Vec::new();
    if purge && let Ok(paths) = write::purge_expired(conn, file) {
        changed.extend(paths);
    }
    let ctx = write::Ctx {
        file,
        max_bytes: shared.opts.max_node_bytes,
    };
    let mut outs = Vec::with_capacity(ops.len());
    for op in ops {
        match write::apply(conn, &ctx, op) {
            Ok(o) => {
                changed.extend(o.changed.iter().cloned());
                outs.push(o);
            }
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                return Err(TxnError::Op(e));
            }
        }
    }
    write::flush_touches(conn, touches);
    if let Err(e) = db::retry_busy(shared.opts.busy_timeout, || conn.execute_batch("COMMIT")) {
        let _ = conn.execute_batch("ROLLBACK");
        return Err(TxnError::Db(file.err(e)));
    }
    invalid.extend(changed);
    Ok(outs)
}

/// Commits one group of jobs in a single transaction (group commit). If one operation
/// fails, the group is rolled back and each operation is retried in a transaction of its
/// own, so one failure never undoes the others. (Savepoints would give the same isolation,
/// but FTS5 flushes its index at every savepoint, which costs more than the rare retry.)
fn run_batch(
    conn: &mut Connection,
    shared: &Shared,
    jobs: Vec<Job>,
    last_purge: &mut Instant,
) -> Result<()> {
    let touches: HashMap<i64, (String, Micros)> = match shared.touches.lock() {
        Ok(mut t) => std::mem::take(&mut *t),
        Err(_) => HashMap::new(),
    };
    // Look for expired nodes at most once a second.
    let purge = if last_purge.elapsed() >= Duration::from_secs(1) {
        *last_purge = Instant::now();
        write::has_expired(conn)
    } else {
        false
    };
    let deferred: Vec<WriteOp> = match shared.deferred.lock() {
        Ok(mut d) => std::mem::take(&mut *d),
        Err(_) => Vec::new(),
    };
    // Deferred writes go first; their results are nobody's and are dropped below.
    let ops: Vec<&WriteOp> = deferred
        .iter()
        .chain(jobs.iter().flat_map(|j| match j {
            Job::Op(op, _) => vec![op.as_ref()],
            Job::Batch(ops, _) => ops.iter().collect(),
            Job::Sync(_) => vec![],
        }))
        .collect();
    let mut invalid: Vec<String> = Vec::new();
    let mut results: Vec<Result<Outcome>> = Vec::with_capacity(ops.len());
    let mut touched = false;
    if !ops.is_empty() || !touches.is_empty() || purge {
        match txn(conn, shared, &ops, &touches, purge, &mut invalid) {
            Ok(outs) => {
                touched = true;
                results.extend(outs.into_iter().map(Ok));
            }
            Err(TxnError::Db(e)) => results.extend(ops.iter().map(|_| Err(e.clone()))),
            Err(TxnError::Op(_)) => {
                let none = HashMap::new();
                if !touches.is_empty() || purge {
                    touched = txn(conn, shared, &[], &touches, purge, &mut invalid).is_ok();
                }
                for op in &ops {
                    results.push(
                        match txn(conn, shared, &[*op], &none, false, &mut invalid) {
                            Ok(mut o) => o.pop().ok_or_else(|| Error::internal("missing result")),
                            Err(TxnError::Op(e) | TxnError::Db(e)) => Err(e),
                        },
                    );
                }
            }
        }
    }
    if let Ok(mut cache) = shared.cache.lock() {
        for p in &invalid {
            cache.invalidate(p);
        }
        if touched {
            for (p, at) in touches.values() {
                if let Some(n) = cache.map.get_mut(p) {
                    Arc::make_mut(n).accessed_at = Some(*at);
                }
            }
        }
    }
    let mut results = results.into_iter().skip(deferred.len());
    for j in jobs {
        match j {
            Job::Op(_, reply) => {
                let r = results
                    .next()
                    .unwrap_or_else(|| Err(Error::internal("missing result")));
                let _ = reply.send(r);
            }
            Job::Batch(ops, reply) => {
                let rs: Vec<Result<Outcome>> = ops
                    .iter()
                    .map(|_| {
                        results
                            .next()
                            .unwrap_or_else(|| Err(Error::internal("missing result")))
                    })
                    .collect();
                let _ = reply.send(rs);
            }
            Job::Sync(reply) => {
                let _ = reply.send(());
            }
        }
    }
    Ok(())
}
