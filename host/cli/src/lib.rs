//! The `avm` command, as a library: the `avm` binary calls [`main`], and front ends that embed
//! avm in another process (the Python bindings in `bindings/python`) open the same wiring with
//! [`App::open_with`] — every mount, service and policy the command has, from the same
//! configuration — and talk to its [`App::host`].
//!
//! Everything else stays private to the command.

mod agent_cmds;
mod app;
mod bench;
mod bench_search;
mod bench_semantic;
mod cli;
mod commands;
mod daemon;
mod doctor;
mod hooks_cmd;
mod lifecycle_cmd;
mod migrate;
mod mount_cmd;
mod plugin_cmd;
mod registry;
mod remote;
mod serve;

pub use app::App;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

use avm_core::{Error, ErrorKind};

/// The one place CLI errors become exit codes: 2 for bad usage (input the user must fix),
/// 1 for everything else avm reports.
fn exit_code(kind: ErrorKind) -> u8 {
    match kind {
        ErrorKind::InvalidInput => 2,
        ErrorKind::NotFound
        | ErrorKind::NotADirectory
        | ErrorKind::IsADirectory
        | ErrorKind::AlreadyExists
        | ErrorKind::NotEmpty
        | ErrorKind::PermissionDenied
        | ErrorKind::ReadOnly
        | ErrorKind::Unsupported
        | ErrorKind::TooLarge
        | ErrorKind::Busy
        | ErrorKind::StorageFull
        | ErrorKind::TimedOut
        | ErrorKind::Unavailable
        | ErrorKind::Internal => 1,
    }
}

fn report(e: &Error, json: bool) -> ExitCode {
    let mut err = std::io::stderr().lock();
    if json {
        let v = serde_json::json!({"error": {"kind": e.kind().as_str(), "message": e.message()}});
        let _ = writeln!(err, "{v}");
    } else {
        let _ = writeln!(err, "avm: {}", e.message());
    }
    ExitCode::from(exit_code(e.kind()))
}

/// Exit status of a program stopped by a closed pipe (128 + SIGPIPE), as shells report it.
const CLOSED_PIPE: i32 = 141;

/// Output into a closed pipe (`avm ls -r / | head -3`) ends the process quietly, as it ends any
/// shell tool, instead of a panic about a failed print (Rust ignores SIGPIPE, so the write
/// fails with EPIPE and `println!` panics).
fn quiet_on_closed_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let p = info.payload();
        let msg = p
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| p.downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.contains("Broken pipe") || msg.contains("BrokenPipe") {
            std::process::exit(CLOSED_PIPE);
        }
        default(info);
    }));
}

/// Logs `tracing` events (avm's spans, and what axum, rmcp and wasmtime emit) to stderr,
/// filtered by `--log`/`RUST_LOG`; warnings, errors and the daemon's own lines (`avm::daemon`) by default. A filter that does not
/// parse is said once and the default used.
fn init_log(filter: Option<&str>) {
    use tracing_subscriber::EnvFilter;
    // Warnings, and what the daemon does (its stderr is its log).
    const DEFAULT: &str = "warn,avm::daemon=info";
    let f = match filter.map(EnvFilter::try_new) {
        None => EnvFilter::new(DEFAULT),
        Some(Ok(f)) => f,
        Some(Err(e)) => {
            eprintln!("avm: --log/RUST_LOG is not a log filter ({e}); logging warnings");
            EnvFilter::new(DEFAULT)
        }
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(f)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// Runs the `avm` command with the process's arguments and returns its exit status.
pub fn main() -> ExitCode {
    quiet_on_closed_pipe();
    let cli = cli::Cli::parse();
    init_log(cli.log.as_deref());
    let json = cli.global.json;
    match commands::run(cli) {
        Ok(code) => code,
        Err(e) => report(&e, json),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_kind_has_an_exit_code_and_only_bad_input_is_usage() {
        for k in ErrorKind::ALL {
            let c = exit_code(k);
            assert!(c == 1 || c == 2);
            assert_eq!(c == 2, k == ErrorKind::InvalidInput);
        }
    }

    #[test]
    fn the_command_line_grammar_is_consistent() {
        use clap::CommandFactory;
        cli::Cli::command().debug_assert();
    }
}
