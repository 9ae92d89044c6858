//! The process-wide wasmtime engine, its epoch ticker and the on-disk cache of compiled
//! components.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use avm_core::{Error, ErrorKind, Result};
use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::options::MAX_MEMORY;

/// How often the ticker advances the engine's epoch; call deadlines are counted in ticks.
pub const TICK: Duration = Duration::from_millis(2);

/// Instances that may run at once across all plugins of a process when pooling is on.
const POOL_INSTANCES: u32 = 128;

static ENGINE: OnceLock<std::result::Result<Engine, String>> = OnceLock::new();

fn config(pooling: bool) -> Config {
    let mut cfg = Config::new();
    cfg.epoch_interruption(true);
    cfg.wasm_component_model(true);
    if pooling {
        // A pool makes per-call instantiation cheap (tens of µs instead of hundreds): slots,
        // memories and tables are reserved once and reset copy-on-write after each call.
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(POOL_INSTANCES)
            .total_core_instances(POOL_INSTANCES * 8)
            .total_memories(POOL_INSTANCES * 2)
            .total_tables(POOL_INSTANCES * 8)
            .max_memories_per_component(4)
            .max_memory_size(MAX_MEMORY as usize);
        cfg.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    cfg
}

/// The shared engine (pooling allocator when the address space allows it), started once with a
/// ticker thread that advances the epoch every [`TICK`].
pub fn engine() -> Result<&'static Engine> {
    let r = ENGINE.get_or_init(|| {
        let engine = Engine::new(&config(true))
            .or_else(|_| Engine::new(&config(false)))
            .map_err(|e| format!("cannot start the wasm engine: {e}"))?;
        let ticker = engine.clone();
        std::thread::Builder::new()
            .name("avm-wasm-epoch".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(TICK);
                    ticker.increment_epoch();
                }
            })
            .map_err(|e| format!("cannot start the wasm epoch ticker: {e}"))?;
        Ok(engine)
    });
    r.as_ref()
        .map_err(|e| Error::new(ErrorKind::Unavailable, e.clone()))
}

/// Where compiled components are cached: `$XDG_CACHE_HOME/avm/wasm` (or `~/.cache/avm/wasm`).
pub fn default_cache_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".cache"))
        })
        .map(|d| d.join("avm").join("wasm"))
}

/// Where a compiled component came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compiled {
    /// Loaded from the cache.
    Cached,
    /// Compiled now (and stored in the cache when there is one).
    Fresh,
}

/// Loads the component in `file`, from the cache when an entry for these exact bytes and this
/// engine exists, else compiling it and storing the result.
pub fn load_component(
    engine: &Engine,
    file: &Path,
    cache_dir: Option<&Path>,
) -> Result<(Component, Compiled)> {
    let bytes = std::fs::read(file).map_err(|e| {
        let kind = if e.kind() == std::io::ErrorKind::NotFound {
            ErrorKind::NotFound
        } else {
            ErrorKind::Unavailable
        };
        Error::new(kind, format!("cannot read plugin {}: {e}", file.display()))
    })?;
    let key = cache_key(engine, &bytes);
    if let Some(dir) = cache_dir {
        let entry = dir.join(format!("{key}.cwasm"));
        if entry.is_file()
            && private_to_us(dir, &entry)
            && let Ok(c) = deserialize(engine, &entry)
        {
            return Ok((c, Compiled::Cached));
        }
    }
    let component = Component::from_binary(engine, &bytes).map_err(|e| {
        Error::invalid(format!(
            "{} is not a wasm component this host can run (build it for wasm32-wasip2 against wit/avm-provider-0.1.0): {}",
            file.display(),
            first_line(&e)
        ))
    })?;
    if let Some(dir) = cache_dir {
        // A cache that cannot be written only costs a recompilation next time.
        let _ = store_in_cache(&component, dir, &key);
    }
    Ok((component, Compiled::Fresh))
}

fn cache_key(engine: &Engine, bytes: &[u8]) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    let mut d = Sha256::new();
    d.update(bytes);
    d.update(h.finish().to_le_bytes());
    d.update(env!("CARGO_PKG_VERSION").as_bytes());
    avm_core::bytes::hex(&d.finalize()[..20])
}

/// Is the cache entry ours alone: directory and file owned by this process's user and
/// writable by nobody else? Only then is it trusted as compiled code.
fn private_to_us(dir: &Path, entry: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(me) = std::fs::metadata("/proc/self") else {
        return false;
    };
    [dir, entry].iter().all(|p| {
        std::fs::symlink_metadata(p).is_ok_and(|m| {
            m.uid() == me.uid() && m.mode() & 0o022 == 0 && !m.file_type().is_symlink()
        })
    })
}

#[allow(unsafe_code)]
fn deserialize(engine: &Engine, entry: &Path) -> wasmtime::Result<Component> {
    // SAFETY: wasmtime requires that the bytes were produced by `Component::serialize` of a
    // compatible engine and not tampered with. The entry is named by the hash of the source
    // bytes and the engine's compatibility hash, is read only after `private_to_us` checked
    // that this user owns it and its directory and nobody else can write either, and
    // wasmtime itself rejects entries from another version or config.
    unsafe { Component::deserialize_file(engine, entry) }
}

fn store_in_cache(component: &Component, dir: &Path, key: &str) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let bytes = component
        .serialize()
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(".{key}.{}.{n}.tmp", std::process::id()));
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&bytes)?;
    }
    std::fs::rename(&tmp, dir.join(format!("{key}.cwasm")))
}

/// The first line of an error's message (wasmtime errors carry long backtraces).
pub fn first_line(e: &wasmtime::Error) -> String {
    let s = format!("{e:#}");
    s.lines().next().unwrap_or("").to_string()
}
