//! The `oktasync` binary: parses the command line and hands over to `cli`.

use std::process::ExitCode;

fn main() -> ExitCode {
    limit_malloc_arenas();
    oktasync::cli::main()
}

/// Two glibc malloc arenas instead of eight per core. A sync's memory is built on the
/// runtime's worker threads and SQLite's, and with an arena each the freed snapshot of one
/// phase could not be reused by the next: a first sync of 100k users peaked at 242 MB with
/// the default and 180 MB with one arena, at the same speed.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: called first thing in `main`, before any other thread exists or any
    // allocation could race with the change; mallopt takes no pointers.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}
