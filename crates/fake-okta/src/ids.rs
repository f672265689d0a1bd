//! Identifier formats and the deterministic pseudo-randomness behind them.
//!
//! Okta ids are 20 characters: a 3-character type prefix and 17 alphanumerics. The fake
//! builds them as prefix + zero-padded base-36 index + fixed suffix, so that string order
//! equals creation order; that lets every listing page straight off a `BTreeMap` range
//! with the last id as the `after` cursor, which is what Okta's own cursors look like.

use std::sync::atomic::{AtomicU64, Ordering};

/// User ids (`00u…`).
pub const USER_PREFIX: &str = "00u";
/// Group ids (`00g…`).
pub const GROUP_PREFIX: &str = "00g";
/// Group push mapping ids (`gPm…`).
pub const MAPPING_PREFIX: &str = "gPm";
/// App-user ids as they appear in System Log `AppUser` targets (`0ua…`).
pub const APP_USER_PREFIX: &str = "0ua";
/// The single user type every generated user has.
pub const USER_TYPE_ID: &str = "oty1fake0kta0000000";
/// Suffix of every generated id (9 chars so that 3 + 8 + 9 = 20).
const SUFFIX: &str = "fk0ta1d7x";
/// Suffix of the target-side group ids of push mappings, so they never collide with real groups.
const TARGET_SUFFIX: &str = "tgt0push9";
const INDEX_WIDTH: usize = 8;

/// `prefix` + base-36 `index` zero-padded to 8 + fixed suffix: 20 characters, ascending in `index`.
pub fn okta_id(prefix: &str, index: u64) -> String {
    let mut out = String::with_capacity(20);
    out.push_str(prefix);
    push_base36(&mut out, index, INDEX_WIDTH);
    out.push_str(SUFFIX);
    out
}

/// The id the app uses for the group a push mapping creates there.
pub fn push_target_group_id(index: u64) -> String {
    let mut out = String::with_capacity(20);
    out.push_str(GROUP_PREFIX);
    push_base36(&mut out, index, INDEX_WIDTH);
    out.push_str(TARGET_SUFFIX);
    out
}

/// A `0ua…` app-user id, derived (not stored) from the user id and the app's position.
pub fn app_user_id(user_id: &str, app_index: usize) -> String {
    let mut out = String::with_capacity(20);
    out.push_str(APP_USER_PREFIX);
    let core = user_id.get(3..3 + INDEX_WIDTH).unwrap_or("00000000");
    out.push_str(core);
    push_base36(&mut out, app_index as u64, 9);
    out
}

fn push_base36(out: &mut String, mut n: u64, width: usize) {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut buf = [b'0'; 16];
    let mut i = buf.len();
    while n > 0 && i > 0 {
        i -= 1;
        buf[i] = DIGITS[(n % 36) as usize];
        n /= 36;
    }
    let start = (buf.len() - width).min(i);
    out.extend(buf[start..].iter().map(|&b| b as char));
}

/// SplitMix64 finaliser: a cheap, well-distributed 64-bit mix.
pub fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A pseudo-random number addressed by (seed, stream, index): every generated decision is a
/// pure function of its coordinates, so generation is deterministic and order-independent.
pub fn mix(seed: u64, stream: u64, index: u64) -> u64 {
    splitmix64(seed ^ splitmix64(stream.wrapping_mul(0xA24B_AED4_963E_E407) ^ splitmix64(index)))
}

/// FNV-1a of a string, for decisions keyed by an id rather than an index.
pub fn hash_str(s: &str) -> u64 {
    s.bytes().fold(0xCBF2_9CE4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01B3)
    })
}

fn push_base62(out: &mut String, mut n: u64, len: usize) {
    const DIGITS: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    for _ in 0..len {
        out.push(DIGITS[(n % 62) as usize] as char);
        n /= 62;
    }
}

/// Per-server generator of `X-Okta-Request-Id` values.
#[derive(Debug)]
pub struct IdGen {
    seed: u64,
    counter: AtomicU64,
}

impl IdGen {
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            counter: AtomicU64::new(1),
        }
    }

    fn next(&self) -> (u64, u64) {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        (mix(self.seed, 0x5EC0, n), mix(self.seed, 0x5EC1, n))
    }

    /// `X-Okta-Request-Id` value, e.g. `reqVy8wsvmBQN27h4soUE3ZEn`.
    pub fn request_id(&self) -> String {
        let (a, b) = self.next();
        let mut out = String::from("req");
        push_base62(&mut out, a, 10);
        push_base62(&mut out, b, 10);
        out
    }
}

static ERROR_SEQ: AtomicU64 = AtomicU64::new(1);

/// `errorId` value (`oae…`): only needs to differ between errors, so a process-wide counter.
pub fn error_id() -> String {
    let n = ERROR_SEQ.fetch_add(1, Ordering::Relaxed);
    let mut out = String::from("oae");
    push_base62(&mut out, splitmix64(n), 11);
    push_base62(&mut out, splitmix64(!n), 11);
    out
}

/// A version-4-shaped UUID derived from (seed, n).
pub fn uuid(seed: u64, n: u64) -> String {
    let a = mix(seed, 0x0D1D, n);
    let b = mix(seed, 0x0D1E, n);
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xFFFF,
        a & 0x0FFF,
        ((b >> 48) & 0x3FFF) | 0x8000,
        b & 0xFFFF_FFFF_FFFF
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_twenty_chars_and_sort_by_index() {
        let a = okta_id(USER_PREFIX, 9);
        let b = okta_id(USER_PREFIX, 10);
        let c = okta_id(USER_PREFIX, 36 * 36);
        assert_eq!(a.len(), 20);
        assert!(a.starts_with("00u0000000"));
        assert!(a < b && b < c, "{a} {b} {c}");
        assert!(a.chars().all(|ch| ch.is_ascii_alphanumeric()));
        assert_eq!(app_user_id(&a, 0).len(), 20);
        assert_eq!(push_target_group_id(3).len(), 20);
    }

    #[test]
    fn uuid_shape() {
        let u = uuid(1, 7);
        assert_eq!(u.len(), 36);
        assert_eq!(u.as_bytes()[14], b'4');
        assert_ne!(uuid(1, 7), uuid(1, 8));
    }
}
