//! A WASM plugin read (fresh instance per call) against a memory-provider read, both through
//! the host. Run with `cargo bench -p avm-benches --bench wasm`; builds `plugins/` first
//! (needs the wasm32-wasip2 target). Target: under 50 µs per `hello` call.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};

use avm_benches::open;
use avm_core::{Caller, Host, Mount, Put, WriteInput};
use avm_provider_memory::StoreOptions;
use avm_provider_wasm::{WasmEnv, WasmOptions, WasmProvider};

fn reads(c: &mut Criterion) {
    let guests = avm_provider_wasm::build_repo_guests().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (mem_host, _m) = open(&dir.path().join("m.db"), StoreOptions::default()).unwrap();
    mem_host
        .write(
            &Caller::Operator,
            "/memory/shared/bench/hello.md",
            WriteInput::Put(Put {
                content: Some("Hello, world!\n".into()),
                ..Put::default()
            }),
        )
        .unwrap();
    let env = WasmEnv {
        cache_dir: Some(dir.path().join("cache")),
        default_kv: Some(dir.path().join("kv.db")),
    };
    let hello = WasmProvider::new(
        "/hello/{name}",
        WasmOptions::new(guests.join("hello.wasm").to_string_lossy()),
        &env,
    )
    .unwrap();
    let wasm_host = Host::new(vec![Mount::new("/hello/{name}", Arc::new(hello))]).unwrap();
    let op = Caller::Operator;
    assert_eq!(
        wasm_host.read(&op, "/hello/world").unwrap().text,
        "Hello, world!\n"
    );

    let mut g = c.benchmark_group("provider read");
    g.bench_function("memory provider (hot cache)", |b| {
        b.iter(|| black_box(mem_host.read(&op, "/memory/shared/bench/hello.md").unwrap()))
    });
    g.bench_function("wasm hello (fresh instance per call)", |b| {
        b.iter(|| black_box(wasm_host.read(&op, "/hello/world").unwrap()))
    });
    g.finish();
}

criterion_group!(benches, reads);
criterion_main!(benches);
