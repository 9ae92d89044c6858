//! Timers that end with the call. wasmtime-wasi's `subscribe-duration`/`subscribe-instant`
//! block inside the host, where the epoch deadline cannot reach, so a guest that sleeps for an
//! hour would hold its thread for an hour. These replacements end the call at once with
//! `timed-out` when the timer would fire after the call's deadline, and sleep normally
//! otherwise.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use wasmtime::component::{Linker, Resource};
use wasmtime_wasi::HostMonotonicClock;
use wasmtime_wasi::p2::{DynPollable, Pollable, subscribe};

/// The WASI interface whose timers are replaced (the guest's 0.2.x imports resolve to it).
const MONOTONIC: &str = "wasi:clocks/monotonic-clock@0.2.12";

fn epoch() -> Instant {
    static E: OnceLock<Instant> = OnceLock::new();
    *E.get_or_init(Instant::now)
}

/// The guest's monotonic clock: nanoseconds since the first use in this process.
pub struct Clock;

impl HostMonotonicClock for Clock {
    fn resolution(&self) -> u64 {
        1
    }
    fn now(&self) -> u64 {
        u64::try_from(epoch().elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

struct Sleep(tokio::time::Instant);

#[async_trait::async_trait]
impl Pollable for Sleep {
    async fn ready(&mut self) {
        tokio::time::sleep_until(self.0).await;
    }
}

/// What the timers need from the store's data.
pub trait CallClock: Send + 'static {
    /// When the current call must end.
    fn deadline(&self) -> Instant;
    /// The resource table of the call.
    fn table(&mut self) -> &mut wasmtime::component::ResourceTable;
}

fn sleep_for<T: CallClock>(
    data: &mut T,
    wanted: Duration,
) -> wasmtime::Result<Resource<DynPollable>> {
    let left = data.deadline().saturating_duration_since(Instant::now());
    if wanted > left {
        // It would wake after the call's end: end the call now, as the deadline would.
        return Err(wasmtime::Error::new(avm_core::Error::new(
            avm_core::ErrorKind::TimedOut,
            format!(
                "asked to sleep {} ms, past its time limit (option timeout; {} ms were left)",
                wanted.as_millis(),
                left.as_millis()
            ),
        )));
    }
    let until = tokio::time::Instant::now() + wanted;
    let r = data.table().push(Sleep(until))?;
    subscribe(data.table(), r)
}

/// Replaces the two timer functions in `linker` (which already holds wasmtime-wasi's).
pub fn add_to_linker<T: CallClock>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let mut inst = linker.instance(MONOTONIC)?;
    inst.func_wrap(
        "subscribe-duration",
        |mut cx: wasmtime::StoreContextMut<'_, T>, (ns,): (u64,)| {
            Ok((sleep_for(cx.data_mut(), Duration::from_nanos(ns))?,))
        },
    )?;
    inst.func_wrap(
        "subscribe-instant",
        |mut cx: wasmtime::StoreContextMut<'_, T>, (when,): (u64,)| {
            let now = Clock.now();
            Ok((sleep_for(
                cx.data_mut(),
                Duration::from_nanos(when.saturating_sub(now)),
            )?,))
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}
