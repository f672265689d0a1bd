//! Request accounting for tests: calls and 429s per rate-limit bucket (token requests to the
//! OAuth token endpoint in their own `token` bucket), and the most recent
//! requests (method, path, query, status), so a test can assert how the daemon paged and
//! paced itself.

use std::collections::VecDeque;
use std::sync::Mutex;

use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::ratelimit::Bucket;

const KEEP: usize = 10_000;

#[derive(Debug, Clone, Serialize)]
pub struct RequestRecord {
    pub method: String,
    pub path: String,
    pub query: String,
    pub status: u16,
}

#[derive(Debug, Default)]
struct Inner {
    calls: [u64; Bucket::COUNT],
    throttled: [u64; Bucket::COUNT],
    requests: VecDeque<RequestRecord>,
}

#[derive(Debug, Default)]
pub struct Stats {
    inner: Mutex<Inner>,
}

impl Stats {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn record(&self, bucket: Bucket, record: RequestRecord) {
        let mut s = self.lock();
        let i = bucket.index();
        s.calls[i] += 1;
        if record.status == 429 {
            s.throttled[i] += 1;
        }
        if s.requests.len() == KEEP {
            s.requests.pop_front();
        }
        s.requests.push_back(record);
    }

    pub fn reset(&self) {
        *self.lock() = Inner::default();
    }

    /// `{"buckets": {"users": {"calls", "throttled"}, …}, "requests": […]}`.
    pub fn snapshot(&self) -> Value {
        let s = self.lock();
        let mut buckets = Map::new();
        for (i, b) in Bucket::ALL.iter().enumerate() {
            buckets.insert(
                b.name().into(),
                json!({"calls": s.calls[i], "throttled": s.throttled[i]}),
            );
        }
        json!({"buckets": buckets, "requests": s.requests})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_caps() {
        let st = Stats::default();
        for i in 0..(KEEP + 5) {
            st.record(
                Bucket::Apps,
                RequestRecord {
                    method: "GET".into(),
                    path: "/api/v1/apps/x/users".into(),
                    query: String::new(),
                    status: if i % 2 == 0 { 200 } else { 429 },
                },
            );
        }
        let v = st.snapshot();
        assert_eq!(v["buckets"]["apps"]["calls"], (KEEP + 5) as u64);
        assert_eq!(v["buckets"]["apps"]["throttled"], ((KEEP + 5) / 2) as u64);
        assert_eq!(v["buckets"]["users"]["calls"], 0);
        assert_eq!(v["requests"].as_array().map(Vec::len), Some(KEEP));
        st.reset();
        assert_eq!(st.snapshot()["requests"], json!([]));
    }
}
