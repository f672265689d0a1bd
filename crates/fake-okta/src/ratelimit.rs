//! Okta's per-endpoint rate-limit buckets and their fixed windows.
//!
//! Each bucket counts requests in a window of `60s / time_scale` that opens at the bucket's
//! first request after the previous window ended (Okta's windows are not aligned to the wall
//! clock). Over the limit the request gets 429; the headers always report the limit, what is
//! left and the window's end in epoch seconds (rounded up), so a client can compute
//! `Reset - Date + 1` the way Okta's SDKs do.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Endpoint groups with their own limit (Workforce defaults, per minute).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Bucket {
    Users,
    User,
    Groups,
    Group,
    Apps,
    Logs,
    Other,
    /// The org authorization server's `/oauth2/v1/token`: its own org-wide bucket.
    Token,
}

impl Bucket {
    pub const COUNT: usize = 8;
    pub const ALL: [Bucket; Bucket::COUNT] = [
        Bucket::Users,
        Bucket::User,
        Bucket::Groups,
        Bucket::Group,
        Bucket::Apps,
        Bucket::Logs,
        Bucket::Other,
        Bucket::Token,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Bucket::Users => "users",
            Bucket::User => "user",
            Bucket::Groups => "groups",
            Bucket::Group => "group",
            Bucket::Apps => "apps",
            Bucket::Logs => "logs",
            Bucket::Other => "other",
            Bucket::Token => "token",
        }
    }

    pub fn base_limit(self) -> u32 {
        match self {
            Bucket::Users => 600,
            Bucket::User => 2000,
            Bucket::Groups => 500,
            Bucket::Group => 1000,
            Bucket::Apps => 100,
            Bucket::Logs => 120,
            Bucket::Other => 1200,
            // No published figure; generous, as authentication buckets are.
            Bucket::Token => 2000,
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }

    /// Okta matches the exact path first, then the longest prefix.
    pub fn for_path(path: &str) -> Bucket {
        match path {
            "/api/v1/users" => Bucket::Users,
            "/api/v1/groups" => Bucket::Groups,
            "/api/v1/apps" => Bucket::Apps,
            "/api/v1/logs" => Bucket::Logs,
            "/oauth2/v1/token" => Bucket::Token,
            p if p.starts_with("/api/v1/users/") => Bucket::User,
            p if p.starts_with("/api/v1/groups/") => Bucket::Group,
            p if p.starts_with("/api/v1/apps/") => Bucket::Apps,
            p if p.starts_with("/api/v1/logs/") => Bucket::Logs,
            _ => Bucket::Other,
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Window {
    /// Monotonic start and the matching real epoch milliseconds.
    start: Option<(Instant, i64)>,
    count: u32,
}

/// The outcome of counting one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub bucket: Bucket,
    pub limit: u32,
    pub remaining: u32,
    /// Real epoch milliseconds at which the current window ends.
    pub window_end_ms: i64,
    pub allowed: bool,
}

impl Decision {
    /// `X-Rate-Limit-Reset`: the window end on the fake's clock, in seconds rounded up.
    pub fn reset_secs(&self, clock_offset_ms: i64) -> i64 {
        let end = self.window_end_ms.saturating_add(clock_offset_ms);
        end.div_euclid(1000) + i64::from(end.rem_euclid(1000) != 0)
    }
}

#[derive(Debug)]
pub struct RateLimiter {
    enforce: bool,
    window: Duration,
    limits: [u32; Bucket::COUNT],
    windows: Mutex<[Window; Bucket::COUNT]>,
}

impl RateLimiter {
    pub fn new(enforce: bool, time_scale: f64, multiplier: f64) -> Self {
        let scale = if time_scale.is_finite() && time_scale > 0.0 {
            time_scale
        } else {
            1.0
        };
        let window = Duration::try_from_secs_f64(60.0 / scale)
            .unwrap_or(Duration::from_secs(60))
            .max(Duration::from_millis(1));
        let mult = if multiplier.is_finite() && multiplier > 0.0 {
            multiplier
        } else {
            1.0
        };
        let limits = Bucket::ALL.map(|b| {
            let l = (f64::from(b.base_limit()) * mult).round();
            if l >= f64::from(u32::MAX) {
                u32::MAX
            } else {
                (l as u32).max(1)
            }
        });
        RateLimiter {
            enforce,
            window,
            limits,
            windows: Mutex::new([Window::default(); Bucket::COUNT]),
        }
    }

    pub fn limit(&self, bucket: Bucket) -> u32 {
        self.limits[bucket.index()]
    }

    /// Counts one request to `bucket` made at `now` (real epoch ms `now_ms`).
    pub fn check(&self, bucket: Bucket, now: Instant, now_ms: i64) -> Decision {
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let w = &mut windows[bucket.index()];
        let expired = w
            .start
            .is_none_or(|(start, _)| now.saturating_duration_since(start) >= self.window);
        if expired {
            *w = Window {
                start: Some((now, now_ms)),
                count: 0,
            };
        }
        w.count = w.count.saturating_add(1);
        let limit = self.limit(bucket);
        let start_ms = w.start.map_or(now_ms, |(_, ms)| ms);
        let window_ms = i64::try_from(self.window.as_millis()).unwrap_or(i64::MAX);
        Decision {
            bucket,
            limit,
            remaining: limit.saturating_sub(w.count),
            window_end_ms: start_ms.saturating_add(window_ms),
            allowed: !self.enforce || w.count <= limit,
        }
    }

    /// Forgets every window (admin `POST /__admin/ratelimit/reset`).
    pub fn reset(&self) {
        *self.windows.lock().unwrap_or_else(|e| e.into_inner()) =
            [Window::default(); Bucket::COUNT];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_by_path() {
        assert_eq!(Bucket::for_path("/api/v1/users"), Bucket::Users);
        assert_eq!(Bucket::for_path("/api/v1/users/00u1"), Bucket::User);
        assert_eq!(Bucket::for_path("/api/v1/groups"), Bucket::Groups);
        assert_eq!(Bucket::for_path("/api/v1/groups/00g1/users"), Bucket::Group);
        assert_eq!(Bucket::for_path("/api/v1/apps"), Bucket::Apps);
        assert_eq!(
            Bucket::for_path("/api/v1/apps/0oa1/group-push/mappings"),
            Bucket::Apps
        );
        assert_eq!(Bucket::for_path("/api/v1/logs"), Bucket::Logs);
        assert_eq!(Bucket::for_path("/api/v1/meta/types/user"), Bucket::Other);
        assert_eq!(Bucket::for_path("/oauth2/v1/token"), Bucket::Token);
        assert!(
            Bucket::ALL.iter().enumerate().all(|(i, b)| b.index() == i),
            "ALL is in index order"
        );
    }

    #[test]
    fn window_starts_at_first_request_and_throttles() {
        let rl = RateLimiter::new(true, 1.0, 0.03); // apps: 100 * 0.03 = 3
        assert_eq!(rl.limit(Bucket::Apps), 3);
        let t0 = Instant::now();
        let ms0 = 1_000_000_400; // not on a second boundary
        let d1 = rl.check(Bucket::Apps, t0, ms0);
        assert_eq!((d1.remaining, d1.allowed), (2, true));
        assert_eq!(d1.window_end_ms, ms0 + 60_000);
        assert_eq!(
            d1.reset_secs(0),
            1_000_061,
            "rounded up to the next whole second"
        );
        assert_eq!(d1.reset_secs(3_600_000), 1_003_661, "on the fake's clock");
        let later = t0 + Duration::from_secs(10);
        assert!(rl.check(Bucket::Apps, later, ms0 + 10_000).allowed);
        let d3 = rl.check(Bucket::Apps, later, ms0 + 10_000);
        assert_eq!((d3.remaining, d3.allowed), (0, true));
        let d4 = rl.check(Bucket::Apps, later, ms0 + 10_000);
        assert_eq!((d4.remaining, d4.allowed), (0, false));
        assert_eq!(
            d4.window_end_ms, d1.window_end_ms,
            "same window, not restarted by calls"
        );
        // other buckets are independent
        assert!(rl.check(Bucket::Users, later, ms0 + 10_000).allowed);
        // a new window opens at the first request after the old one ends
        let t1 = t0 + Duration::from_secs(75);
        let d5 = rl.check(Bucket::Apps, t1, ms0 + 75_000);
        assert_eq!((d5.remaining, d5.allowed), (2, true));
        assert_eq!(d5.window_end_ms, ms0 + 135_000);
    }

    #[test]
    fn time_scale_shortens_windows_and_disabled_never_throttles() {
        let rl = RateLimiter::new(false, 60.0, 1.0);
        let t0 = Instant::now();
        let first = rl.check(Bucket::Logs, t0, 0);
        assert_eq!(first.window_end_ms, 1000);
        for _ in 0..200 {
            assert!(rl.check(Bucket::Logs, t0, 0).allowed);
        }
        assert_eq!(rl.check(Bucket::Logs, t0, 0).remaining, 0);
        assert_eq!(
            rl.check(Bucket::Logs, t0 + Duration::from_secs(1), 1000)
                .remaining,
            119
        );
    }
}
