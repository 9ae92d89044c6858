//! Hostile test guest: each path misbehaves in one way, so tests can check that the host
//! contains it and that the next call to the same plugin still works.
//!
//! `/x/loop` spins forever, `/x/sleep` sleeps an hour, `/x/bomb` allocates without bound, `/x/http?url=` calls http-get
//! (granted or not), `/x/panic` panics, `/x/big?bytes=N` returns N bytes, `/x/flood` floods
//! stdout, `/x/escape` tries the environment and the host filesystem, `/x/count` increments a
//! key-value counter, `/x/ok` answers "ok".

use avm_plugin::{Error, Info, Provider, Request, Result, export, host, kv};
use std::hint::black_box;

struct Hostile;

impl Provider for Hostile {
    fn describe() -> Info {
        Info::new("misbehaves on purpose (tests only)")
    }

    fn read(req: Request) -> Result<String> {
        match req.name() {
            "ok" => Ok("ok\n".into()),
            "loop" => {
                let mut i = 0u64;
                loop {
                    i = black_box(i.wrapping_add(1));
                }
            }
            "bomb" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(black_box(vec![7u8; 1 << 20]));
                }
            }
            "panic" => panic!("hostile guest panicked on purpose"),
            "sleep" => {
                // Blocks in the host's timer, where the epoch deadline cannot reach.
                std::thread::sleep(std::time::Duration::from_secs(3600));
                Ok("woke up\n".into())
            }
            "big" => {
                let n: usize = req.query_num("bytes", 8 << 20)?;
                Ok("x".repeat(n))
            }
            "flood" => {
                for i in 0..1_000_000 {
                    println!("flooding stdout, line {i}");
                }
                Ok("flooded\n".into())
            }
            "http" => {
                let url = req
                    .query("url")
                    .ok_or_else(|| Error::invalid("http needs ?url="))?;
                let r = host::http_get(url)?;
                Ok(format!("{} {}", r.status, r.body))
            }
            "escape" => {
                let env = std::env::vars().count();
                let fs = match std::fs::read_to_string("/etc/passwd") {
                    Ok(_) => "read /etc/passwd",
                    Err(_) => "denied",
                };
                let dir = match std::fs::read_dir(".") {
                    Ok(_) => "listed .",
                    Err(_) => "denied",
                };
                Ok(format!("env={env} fs={fs} dir={dir}\n"))
            }
            "granted" => {
                // Reads the file `/data/hello.txt` when the mount grants `dirs = { "/data" = … }`.
                std::fs::read_to_string("/data/hello.txt")
                    .map_err(|e| Error::new(avm_plugin::ErrorKind::PermissionDenied, e.to_string()))
            }
            "count" => {
                let n: u64 = kv::get("count").and_then(|v| v.parse().ok()).unwrap_or(0) + 1;
                kv::set("count", &n.to_string())?;
                Ok(format!("{n}\n"))
            }
            other => Err(Error::not_found(format!(
                "no hostile behaviour named {other}"
            ))),
        }
    }
}

export!(Hostile);
