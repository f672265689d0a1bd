//! Helpers shared by the Rust benchmarks (`scim`, `scim_provision`, `plan`), each of which
//! includes this file with `#[path = "common/mod.rs"] mod common;`: the guard that kills a
//! child process on drop ([`Proc`]), a free local port ([`free_port`]) and the positional
//! command-line arguments ([`arg`]).

use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::time::Duration;

/// A child process, killed on drop: either spawned here or a PID printed by a script.
pub struct Proc {
    pub child: Option<Child>,
    pub pid: Option<String>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(pid) = &self.pid {
            let _ = Command::new("kill").arg(pid).status();
            // Wait (up to 5 s) for it to be gone, so the next measurement has the cores.
            let alive = || {
                Command::new("kill")
                    .args(["-0", pid])
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
            };
            for _ in 0..50 {
                if !alive() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = Command::new("kill").args(["-9", pid]).status();
        }
    }
}

/// A port nothing listens on at the moment (18555 if the system will not say).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(18_555)
}

/// The `n`-th positional argument (counting from 0, skipping `--` flags such as the
/// `--bench` cargo passes), or `default` when it is missing or does not parse.
pub fn arg<T: FromStr>(n: usize, default: T) -> T {
    std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .nth(n)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}
