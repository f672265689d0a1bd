//! The last complete Okta read, per org, so a cycle can read only what changed since: the
//! snapshot (as compact JSON, the store's own format: neither Okta's nor SCIM's), the
//! opaque checkpoint the Okta reader resumes from, and when the last full read was. A read
//! is staged first and promoted once its cycle has applied.

use futures_util::TryStreamExt;
use serde::{Deserialize, Serialize};

use super::{BeginWrite, Store, StoreError, now_millis, on_pool};
use crate::model::{
    AppAssignments, AssignmentScope, OktaGroup, OktaProfile, OktaSnapshot, OktaUser, OktaUserStatus,
};

/// The format version: a stored snapshot of another version is ignored (a full read follows).
const VERSION: u32 = 1;

/// id, status, login, email, first name, last name, display name.
type UserTuple<S> = (S, S, S, Option<S>, Option<S>, Option<S>, Option<S>);

/// The snapshot as written: each listing streamed from the snapshot's own maps, so encoding
/// 100k users allocates nothing but the output (it is written right after a full read, at
/// the cycle's memory peak).
struct SnapshotOut<'a>(&'a OktaSnapshot);

/// A listing serialised from an iterator made on demand.
struct Listing<F>(F);

impl<F, I> Serialize for Listing<F>
where
    F: Fn() -> I,
    I: Iterator,
    I::Item: Serialize,
{
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq((self.0)())
    }
}

#[derive(Serialize)]
struct AppOut<'a> {
    id: &'a str,
    /// User id and whether the assignment is through a group.
    users: Vec<(&'a str, bool)>,
    groups: Vec<&'a str>,
    push: Vec<&'a str>,
}

impl Serialize for SnapshotOut<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let snapshot = self.0;
        let mut out = serializer.serialize_struct("SnapshotOut", 5)?;
        out.serialize_field("v", &VERSION)?;
        out.serialize_field(
            "users",
            &Listing(|| {
                snapshot.users.values().map(|u| {
                    let p = &u.profile;
                    (
                        u.id.as_str(),
                        u.status.as_str(),
                        p.login.as_str(),
                        p.email.as_deref(),
                        p.first_name.as_deref(),
                        p.last_name.as_deref(),
                        p.display_name.as_deref(),
                    )
                })
            }),
        )?;
        out.serialize_field(
            "groups",
            &Listing(|| {
                snapshot
                    .groups
                    .values()
                    .map(|g| (g.id.as_str(), g.name.as_str()))
            }),
        )?;
        out.serialize_field(
            "members",
            &Listing(|| {
                snapshot
                    .group_members
                    .iter()
                    .map(|(g, m)| (g.as_str(), Listing(move || m.iter().map(String::as_str))))
            }),
        )?;
        out.serialize_field(
            "apps",
            &Listing(|| {
                snapshot.apps.iter().map(|(id, a)| AppOut {
                    id,
                    users: a
                        .users
                        .iter()
                        .map(|(u, s)| (u.as_str(), *s == AssignmentScope::Group))
                        .collect(),
                    groups: a.groups.iter().map(String::as_str).collect(),
                    push: a.push_mappings.iter().map(String::as_str).collect(),
                })
            }),
        )?;
        out.end()
    }
}

#[derive(Deserialize)]
struct SnapshotIn {
    v: u32,
    users: Vec<UserTuple<String>>,
    groups: Vec<(String, String)>,
    members: Vec<(String, Vec<String>)>,
    apps: Vec<AppIn>,
}

#[derive(Deserialize)]
struct AppIn {
    id: String,
    users: Vec<(String, bool)>,
    groups: Vec<String>,
    push: Vec<String>,
}

/// The most of a stored read one row holds (see migration 0005).
const READ_PART_BYTES: usize = 1 << 20;

/// `text` in consecutive parts of at most `max` bytes (more only for a character longer
/// than `max`), each ending on a character boundary.
fn text_parts(text: &str, max: usize) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut end = max.min(rest.len());
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        if end == 0 {
            end = rest.chars().next().map_or(rest.len(), char::len_utf8);
        }
        let (part, tail) = rest.split_at(end);
        rest = tail;
        Some(part)
    })
}

fn encode(snapshot: &OktaSnapshot) -> Result<String, StoreError> {
    serde_json::to_string(&SnapshotOut(snapshot))
        .map_err(|e| StoreError::Invalid(format!("Okta snapshot: {e}")))
}

fn decode(text: &str) -> Result<OktaSnapshot, String> {
    let stored: SnapshotIn = serde_json::from_str(text).map_err(|e| e.to_string())?;
    if stored.v != VERSION {
        return Err(format!("format version {} (expected {VERSION})", stored.v));
    }
    let mut snapshot = OktaSnapshot {
        complete: true,
        ..OktaSnapshot::default()
    };
    for (id, status, login, email, first_name, last_name, display_name) in stored.users {
        let user = OktaUser {
            id: id.clone(),
            status: OktaUserStatus::parse(&status),
            profile: OktaProfile {
                login,
                email,
                first_name,
                last_name,
                display_name,
            },
        };
        snapshot.users.insert(id, user);
    }
    for (id, name) in stored.groups {
        snapshot.groups.insert(id.clone(), OktaGroup { id, name });
    }
    for (id, members) in stored.members {
        snapshot
            .group_members
            .insert(id, members.into_iter().collect());
    }
    for app in stored.apps {
        let users = app
            .users
            .into_iter()
            .map(|(u, by_group)| {
                let scope = if by_group {
                    AssignmentScope::Group
                } else {
                    AssignmentScope::User
                };
                (u, scope)
            })
            .collect();
        snapshot.apps.insert(
            app.id,
            AppAssignments {
                users,
                groups: app.groups.into_iter().collect(),
                push_mappings: app.push.into_iter().collect(),
            },
        );
    }
    Ok(snapshot)
}

/// What the store holds of the last promoted read (without the snapshot itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    pub scope: String,
    pub checkpoint: String,
    /// When the last full read was promoted (epoch ms).
    pub full_read_at: i64,
}

type InfoRow = (Option<String>, Option<String>, Option<i64>);

impl Store {
    /// The last promoted read's scope, checkpoint and full-read time, if any.
    pub async fn okta_snapshot_info(&self, org: &str) -> Result<Option<SnapshotInfo>, StoreError> {
        let row: Option<InfoRow> = on_pool!(self, pool => sqlx::query_as(
            "SELECT scope, checkpoint, full_read_at FROM okta_snapshots WHERE org = $1 AND read_id IS NOT NULL",
        )
        .bind(org)
        .fetch_optional(pool)
        .await?);
        Ok(row.and_then(|(scope, checkpoint, full_read_at)| {
            Some(SnapshotInfo {
                scope: scope?,
                checkpoint: checkpoint?,
                full_read_at: full_read_at?,
            })
        }))
    }

    /// The last promoted snapshot (complete). `None` when there is none or it cannot be read
    /// back (another format version, a damaged row): the caller then reads Okta in full.
    pub async fn load_okta_snapshot(&self, org: &str) -> Result<Option<OktaSnapshot>, StoreError> {
        let row: Option<(Option<i64>, Option<String>)> = on_pool!(self, pool => sqlx::query_as(
            "SELECT r.id, r.snapshot FROM okta_snapshots s JOIN okta_reads r ON r.id = s.read_id WHERE s.org = $1",
        )
        .bind(org)
        .fetch_optional(pool)
        .await?);
        let Some((Some(read_id), Some(mut text))) = row else {
            return Ok(None);
        };
        if text.is_empty() {
            // Stored in parts: appended as they arrive, never all held twice.
            on_pool!(self, pool => {
                let mut parts = sqlx::query_scalar::<_, String>(
                    "SELECT text FROM okta_read_parts WHERE read_id = $1 ORDER BY part",
                )
                .bind(read_id)
                .fetch(pool);
                while let Some(part) = parts.try_next().await? {
                    text.push_str(&part);
                }
            });
        }
        match decode(&text) {
            Ok(snapshot) => Ok(Some(snapshot)),
            Err(e) => {
                tracing::warn!(error = %e, "stored Okta snapshot unreadable: reading Okta in full");
                Ok(None)
            }
        }
    }

    /// Stages a complete read (replacing an earlier staged one); `promote_okta_snapshot`
    /// puts it in effect.
    pub async fn stage_okta_snapshot(
        &self,
        org: &str,
        scope: &str,
        snapshot: &OktaSnapshot,
        checkpoint: &str,
        full: bool,
    ) -> Result<(), StoreError> {
        let text = encode(snapshot)?;
        let now = now_millis();
        on_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let read_id: i64 = sqlx::query_scalar("INSERT INTO okta_reads (org, snapshot) VALUES ($1, '') RETURNING id")
                .bind(org)
                .fetch_one(&mut *tx)
                .await?;
            for (part, chunk) in (0_i32..).zip(text_parts(&text, READ_PART_BYTES)) {
                sqlx::query("INSERT INTO okta_read_parts (read_id, part, text) VALUES ($1, $2, $3)")
                    .bind(read_id)
                    .bind(part)
                    .bind(chunk)
                    .execute(&mut *tx)
                    .await?;
            }
            // An earlier staged read that was never promoted is replaced.
            sqlx::query(
                "DELETE FROM okta_reads WHERE id IN (SELECT pending_read_id FROM okta_snapshots WHERE org = $1)",
            )
            .bind(org)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO okta_snapshots (org, pending_scope, pending_read_id, pending_checkpoint, pending_full, pending_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (org) DO UPDATE SET pending_scope = $2, pending_read_id = $3, \
                 pending_checkpoint = $4, pending_full = $5, pending_at = $6",
            )
            .bind(org)
            .bind(scope)
            .bind(read_id)
            .bind(checkpoint)
            .bind(full)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// How many reads the store holds for an org (the promoted one and a staged one at
    /// most): older ones are deleted as they are replaced.
    pub async fn stored_okta_reads(&self, org: &str) -> Result<i64, StoreError> {
        Ok(
            on_pool!(self, pool => sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM okta_reads WHERE org = $1")
            .bind(org)
            .fetch_one(pool)
            .await?),
        )
    }

    /// Puts the staged read in effect; false when nothing was staged.
    pub async fn promote_okta_snapshot(&self, org: &str) -> Result<bool, StoreError> {
        let done = on_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let replaced: Option<(Option<i64>,)> = sqlx::query_as(
                "SELECT read_id FROM okta_snapshots WHERE org = $1 AND pending_read_id IS NOT NULL \
                 AND (pending_full OR full_read_at IS NOT NULL)",
            )
            .bind(org)
            .fetch_optional(&mut *tx)
            .await?;
            let done = sqlx::query(
                "UPDATE okta_snapshots SET scope = pending_scope, read_id = pending_read_id, \
                 checkpoint = pending_checkpoint, \
                 full_read_at = CASE WHEN pending_full THEN pending_at ELSE full_read_at END, \
                 updated_at = pending_at, pending_scope = NULL, pending_read_id = NULL, \
                 pending_checkpoint = NULL, pending_full = NULL, pending_at = NULL \
                 WHERE org = $1 AND pending_read_id IS NOT NULL \
                 AND (pending_full OR full_read_at IS NOT NULL)",
            )
            .bind(org)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if let Some((Some(old),)) = replaced {
                sqlx::query("DELETE FROM okta_reads WHERE id = $1")
                    .bind(old)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            done
        });
        Ok(done > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_read_splits_on_character_boundaries() {
        let text = "ab\u{e9}cd\u{1F600}e";
        for max in 1..=text.len() + 1 {
            let parts: Vec<&str> = text_parts(text, max).collect();
            assert_eq!(parts.concat(), text, "max {max}");
            assert!(
                parts
                    .iter()
                    .all(|p| !p.is_empty() && (p.len() <= max || p.chars().count() == 1)),
                "max {max}: {parts:?}"
            );
        }
        assert_eq!(text_parts("", 4).count(), 0);
    }

    #[test]
    fn encoding_round_trips_every_field() {
        let mut s = OktaSnapshot {
            complete: true,
            ..OktaSnapshot::default()
        };
        s.users.insert(
            "00u1".into(),
            OktaUser {
                id: "00u1".into(),
                status: OktaUserStatus::Suspended,
                profile: OktaProfile {
                    login: "a@example.com".into(),
                    email: Some("a@example.com".into()),
                    first_name: None,
                    last_name: Some("Ó'Brien \"x\"".into()),
                    display_name: Some("A".into()),
                },
            },
        );
        s.groups.insert(
            "00g1".into(),
            OktaGroup {
                id: "00g1".into(),
                name: "Eng".into(),
            },
        );
        s.group_members
            .insert("00g1".into(), ["00u1".to_owned()].into());
        s.apps.insert(
            "0oa1".into(),
            AppAssignments {
                users: [("00u1".to_owned(), AssignmentScope::Group)].into(),
                groups: ["00g1".to_owned()].into(),
                push_mappings: ["00g1".to_owned()].into(),
            },
        );
        let back = decode(&encode(&s).unwrap()).unwrap();
        assert_eq!(back.users, s.users);
        assert_eq!(back.groups, s.groups);
        assert_eq!(back.group_members, s.group_members);
        assert_eq!(back.apps, s.apps);
        assert!(back.complete);
    }

    #[test]
    fn another_version_is_refused() {
        let text = r#"{"v":99,"users":[],"groups":[],"members":[],"apps":[]}"#;
        assert!(decode(text).unwrap_err().contains("version 99"));
    }
}
