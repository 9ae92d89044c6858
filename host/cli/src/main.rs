//! The `avm` command (its code is the `avm` library, which the Python bindings share).

use std::process::ExitCode;

fn main() -> ExitCode {
    avm::main()
}
