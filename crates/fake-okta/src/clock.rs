//! The fake's clock and Okta's timestamp formats.
//!
//! The clock is real time plus an offset that `POST /__admin/clock` moves, so tests can
//! simulate a server whose clock is ahead of (or behind) the client's. Everything the fake
//! writes (entity timestamps, log `published`, the `Date` header, `X-Rate-Limit-Reset`) reads
//! this clock; rate-limit windows are measured on the monotonic clock and are unaffected.

use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Serialize, Serializer};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Real wall-clock time in epoch milliseconds.
pub fn real_now_ms() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(_) => 0,
    }
}

/// Real time shifted by an adjustable offset.
#[derive(Debug, Default)]
pub struct FakeClock {
    offset_ms: AtomicI64,
}

impl FakeClock {
    pub fn now_ms(&self) -> i64 {
        real_now_ms().saturating_add(self.offset_ms())
    }

    pub fn offset_ms(&self) -> i64 {
        self.offset_ms.load(Ordering::Relaxed)
    }

    /// Moves the clock by `seconds` (negative moves it back); returns the new offset.
    pub fn advance(&self, seconds: i64) -> i64 {
        let delta = seconds.saturating_mul(1000);
        self.offset_ms.fetch_add(delta, Ordering::Relaxed) + delta
    }
}

fn datetime(ms: i64) -> OffsetDateTime {
    let nanos = i128::from(ms) * 1_000_000;
    OffsetDateTime::from_unix_timestamp_nanos(nanos).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn write_iso(f: &mut fmt::Formatter<'_>, ms: i64, millis: Option<i64>) -> fmt::Result {
    let t = datetime(ms);
    write!(
        f,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )?;
    match millis {
        Some(m) => write!(f, ".{m:03}Z"),
        None => f.write_str("Z"),
    }
}

/// Entity timestamp (epoch seconds) rendered as Okta does: `YYYY-MM-DDTHH:mm:ss.000Z`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ts(pub i64);

impl fmt::Display for Ts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_iso(f, self.0.saturating_mul(1000), Some(0))
    }
}

impl Serialize for Ts {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Push mapping timestamp (epoch seconds) without milliseconds: `YYYY-MM-DDTHH:mm:ssZ`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TsNoMillis(pub i64);

impl fmt::Display for TsNoMillis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_iso(f, self.0.saturating_mul(1000), None)
    }
}

impl Serialize for TsNoMillis {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// System Log timestamp (epoch milliseconds) with real milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TsMillis(pub i64);

impl fmt::Display for TsMillis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_iso(f, self.0, Some(self.0.rem_euclid(1000)))
    }
}

impl Serialize for TsMillis {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// RFC 7231 HTTP date, e.g. `Tue, 26 Sep 2017 21:33:25 GMT`.
pub fn http_date(ms: i64) -> String {
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let t = datetime(ms);
    let day = DAYS[usize::from(t.weekday().number_days_from_monday())];
    let month = MONTHS[usize::from(u8::from(t.month())) - 1];
    format!(
        "{day}, {:02} {month} {:04} {:02}:{:02}:{:02} GMT",
        t.day(),
        t.year(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// Parses an ISO 8601 / RFC 3339 timestamp (`2013-06-01T00:00:00.000Z`, `…+00:00`) to epoch ms.
pub fn parse_ms(s: &str) -> Option<i64> {
    let t = OffsetDateTime::parse(s.trim(), &Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        // 2017-09-26T21:33:25.123Z
        let ms = 1_506_461_605_123;
        assert_eq!(Ts(ms / 1000).to_string(), "2017-09-26T21:33:25.000Z");
        assert_eq!(TsNoMillis(ms / 1000).to_string(), "2017-09-26T21:33:25Z");
        assert_eq!(TsMillis(ms).to_string(), "2017-09-26T21:33:25.123Z");
        assert_eq!(http_date(ms), "Tue, 26 Sep 2017 21:33:25 GMT");
    }

    #[test]
    fn parses() {
        assert_eq!(
            parse_ms("2017-09-26T21:33:25.123Z"),
            Some(1_506_461_605_123)
        );
        assert_eq!(parse_ms("2017-09-26T21:33:25Z"), Some(1_506_461_605_000));
        assert_eq!(
            parse_ms("2017-09-26T23:33:25+02:00"),
            Some(1_506_461_605_000)
        );
        assert_eq!(parse_ms("2017-09-26"), None);
        assert_eq!(parse_ms("yesterday"), None);
    }

    #[test]
    fn clock_advances() {
        let c = FakeClock::default();
        let before = c.now_ms();
        assert_eq!(c.advance(3600), 3_600_000);
        assert!(c.now_ms() >= before + 3_600_000);
    }
}
