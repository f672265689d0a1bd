//! What the process does about its heap: Rust's allocations go to mimalloc, C's (SQLite's)
//! to glibc with fewer arenas, and freed memory is handed back between the phases of a
//! large cycle and after it.

/// mimalloc instead of glibc's malloc for everything Rust allocates. With glibc and two
/// arenas (fewer arenas were needed to keep a 100k-user sync under 150 MB), the runtime's
/// workers and SQLite's threads queued on the arena locks: a SCIM lookup spent a fifth of
/// its CPU in malloc and its threads slept on the lock (`GET userName eq` at 100k users:
/// 7.5k -> 12.5k req/s, p99 5.8 -> 2.6 ms, with mimalloc). Built without transparent huge
/// pages (`no_thp`), which kept whole 2 MiB pages resident (peak RSS of the 100k sync
/// 185 MB with them).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Milliseconds before mimalloc hands freed pages back (its default is 10; sooner keeps
/// the 100k sync's peak down as one phase's memory is freed before the next grows).
/// `MIMALLOC_PURGE_DELAY` in the environment overrides it.
const PURGE_DELAY_MS: std::ffi::c_long = 2;
/// `mi_option_purge_delay` in mimalloc's `mi_option_t` (libmimalloc-sys names no constant
/// for it; its `mi_option_eager_commit_delay` is 14 and `mi_option_use_numa_nodes` 16).
/// Check it against mimalloc's header when the locked libmimalloc-sys moves.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Sets up both heaps. Call first thing in `main`, before any other thread exists.
pub fn configure() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets one of mimalloc's options, which it reads atomically; no pointers.
        unsafe {
            libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS);
        }
    }
    // Two glibc arenas instead of eight per core, for what SQLite allocates through malloc
    // on its worker threads.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: called first thing in `main`, before any other thread exists or any
    // allocation could race with the change; mallopt takes no pointers.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Hands the pages of freed memory back to the system: mimalloc's (purged now rather than
/// after its delay) and glibc's (which keeps freed memory for reuse otherwise). Also what
/// an idle daemon does after a cycle, so that it does not sit at the cycle's peak until the
/// next one.
pub fn release_freed() {
    // SAFETY: mi_collect only walks mimalloc's own heaps; it takes no pointers.
    unsafe {
        libmimalloc_sys::mi_collect(true);
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks glibc's own arenas under their locks; it takes no
    // pointers from us and is safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}
