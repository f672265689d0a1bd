//! Injected faults: admin-registered misbehaviours applied to matching Okta API requests.
//!
//! A fault matches a request by path (exact, or a prefix when the pattern ends in `*`) and,
//! optionally, by page number of a listing (page 1 = no `after`; otherwise the cursor's
//! position in the listing divided by the effective limit, plus one). `times` bounds how
//! many matching requests it affects. Faults let tests prove the daemon survives 5xx,
//! broken bodies, slow pages, duplicated reset headers and concurrency 429s mid-listing.

use std::sync::Mutex;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// Answer `status` with an Okta error body.
    Status,
    /// Answer 200 with a body that is not JSON.
    InvalidJson,
    /// Answer the real page with its body cut in half.
    TruncatedJson,
    /// Sleep `delay_ms`, then answer normally.
    Delay,
    /// Answer normally with two `X-Rate-Limit-Reset` lines, one later than the other.
    DuplicateResetHeader,
    /// Answer 429 with `X-Rate-Limit-Limit: 0` and `X-Rate-Limit-Remaining: 0`.
    #[serde(rename = "concurrency_429")]
    Concurrency429,
}

/// Body of `POST /__admin/faults`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    pub path: String,
    #[serde(default)]
    pub page: Option<usize>,
    pub kind: FaultKind,
    #[serde(default = "default_status")]
    pub status: u16,
    #[serde(default)]
    pub delay_ms: u64,
    #[serde(default)]
    pub times: Option<u64>,
}

fn default_status() -> u16 {
    500
}

impl FaultSpec {
    fn matches_path(&self, path: &str) -> bool {
        match self.path.strip_suffix('*') {
            Some(prefix) => path.starts_with(prefix),
            None => path == self.path,
        }
    }

    fn matches(&self, path: &str, page: Option<usize>) -> bool {
        self.matches_path(path) && self.page.is_none_or(|p| page == Some(p))
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Fault {
    pub id: u64,
    #[serde(flatten)]
    pub spec: FaultSpec,
    /// How many more requests it affects (`None`: until cleared).
    pub remaining: Option<u64>,
}

#[derive(Debug, Default)]
struct Table {
    next_id: u64,
    faults: Vec<Fault>,
}

#[derive(Debug, Default)]
pub struct Faults {
    table: Mutex<Table>,
}

impl Faults {
    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a fault; returns its id, or why the spec is invalid.
    pub fn add(&self, spec: FaultSpec) -> Result<u64, String> {
        if !(100..=599).contains(&spec.status) {
            return Err(format!("status {} is not an HTTP status", spec.status));
        }
        if spec.page == Some(0) {
            return Err("page numbers start at 1".into());
        }
        if spec.times == Some(0) {
            return Err("times must be at least 1 (or null)".into());
        }
        let mut t = self.lock();
        t.next_id += 1;
        let id = t.next_id;
        let remaining = spec.times;
        t.faults.push(Fault {
            id,
            spec,
            remaining,
        });
        Ok(id)
    }

    pub fn clear(&self) {
        self.lock().faults.clear();
    }

    pub fn remove(&self, id: u64) -> bool {
        let mut t = self.lock();
        let before = t.faults.len();
        t.faults.retain(|f| f.id != id);
        t.faults.len() != before
    }

    pub fn list(&self) -> Vec<Fault> {
        self.lock().faults.clone()
    }

    /// Whether some fault targets a specific page of `path` (handlers then number their page).
    pub fn wants_page(&self, path: &str) -> bool {
        self.lock()
            .faults
            .iter()
            .any(|f| f.spec.page.is_some() && f.spec.matches_path(path))
    }

    /// The first fault matching this request, used up by one.
    pub fn take(&self, path: &str, page: Option<usize>) -> Option<FaultSpec> {
        let mut t = self.lock();
        let i = t.faults.iter().position(|f| f.spec.matches(path, page))?;
        let f = &mut t.faults[i];
        let spec = f.spec.clone();
        if let Some(r) = &mut f.remaining {
            *r -= 1;
            if *r == 0 {
                t.faults.remove(i);
            }
        }
        Some(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(path: &str, page: Option<usize>, times: Option<u64>) -> FaultSpec {
        FaultSpec {
            path: path.into(),
            page,
            kind: FaultKind::Status,
            status: 500,
            delay_ms: 0,
            times,
        }
    }

    #[test]
    fn matches_by_page_and_counts_down() {
        let f = Faults::default();
        f.add(spec("/api/v1/users", Some(3), Some(2))).unwrap();
        assert!(f.wants_page("/api/v1/users"));
        assert!(!f.wants_page("/api/v1/groups"));
        assert!(f.take("/api/v1/users", Some(1)).is_none());
        assert!(
            f.take("/api/v1/users", None).is_none(),
            "unknown page never matches a page fault"
        );
        assert!(f.take("/api/v1/users", Some(3)).is_some());
        assert!(f.take("/api/v1/users", Some(3)).is_some());
        assert!(
            f.take("/api/v1/users", Some(3)).is_none(),
            "used up after 2"
        );
        assert!(f.list().is_empty());
    }

    #[test]
    fn wildcard_and_unlimited() {
        let f = Faults::default();
        let id = f.add(spec("/api/v1/apps/*", None, None)).unwrap();
        for _ in 0..5 {
            assert!(f.take("/api/v1/apps/0oa1/users", Some(2)).is_some());
        }
        assert!(f.take("/api/v1/apps", None).is_none());
        assert!(f.take("/api/v1/users", None).is_none());
        assert!(f.remove(id));
        assert!(f.take("/api/v1/apps/0oa1/users", None).is_none());
    }

    #[test]
    fn first_registered_wins_and_rejects_nonsense() {
        let f = Faults::default();
        let mut a = spec("/api/v1/users", None, Some(1));
        a.kind = FaultKind::Delay;
        f.add(a).unwrap();
        f.add(spec("/api/v1/users", None, None)).unwrap();
        assert_eq!(
            f.take("/api/v1/users", None).map(|s| s.kind),
            Some(FaultKind::Delay)
        );
        assert_eq!(
            f.take("/api/v1/users", None).map(|s| s.kind),
            Some(FaultKind::Status)
        );
        assert!(
            f.add(FaultSpec {
                status: 99,
                ..spec("/x", None, None)
            })
            .is_err()
        );
        assert!(f.add(spec("/x", Some(0), None)).is_err());
        let parsed: FaultSpec = serde_json::from_str(
            r#"{"path":"/api/v1/users","page":null,"kind":"concurrency_429","times":null}"#,
        )
        .unwrap();
        assert_eq!(
            (parsed.kind, parsed.status),
            (FaultKind::Concurrency429, 500)
        );
    }
}
