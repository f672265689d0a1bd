//! What the process does about glibc's heap: fewer arenas, and freed memory handed back
//! between the phases of a large cycle. A no-op on other platforms.

/// Two glibc malloc arenas instead of eight per core. A sync's memory is built on the
/// runtime's worker threads and SQLite's, and with an arena each the freed snapshot of one
/// phase could not be reused by the next: a first sync of 100k users peaked at 242 MB with
/// the default and 180 MB with one arena, at the same speed. Call first thing in `main`.
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: called first thing in `main`, before any other thread exists or any
    // allocation could race with the change; mallopt takes no pointers.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Hands the pages of freed memory back to the system. glibc keeps freed memory for reuse,
/// but memory freed between long-lived allocations (a cycle's early apply, done while the
/// read still grows its snapshot) is in holes the next phase's large buffers do not fit:
/// without this, it stays resident on top of that phase's peak. Also what an idle daemon
/// does after a cycle, so that it does not sit at the cycle's peak until the next one.
pub fn release_freed() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks glibc's own arenas under their locks; it takes no
    // pointers from us and is safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}
