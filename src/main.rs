//! The `oktasync` binary: parses the command line and hands over to `cli`.

use std::process::ExitCode;

fn main() -> ExitCode {
    oktasync::heap::configure();
    oktasync::cli::main()
}
