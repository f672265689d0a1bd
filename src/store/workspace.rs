//! Workspace objects in the store: loading a workspace's users, groups and memberships, and
//! applying one plan operation to them, idempotently and in one transaction each. This is
//! what the `local` target executes.

use std::collections::BTreeMap;

use sqlx::Row;

use super::{Store, StoreError, now_millis, on_pool};
use crate::model::{UserAttributes, WorkspaceGroup, WorkspaceState, WorkspaceUser};
use crate::reconcile::plan::Operation;

type UserRow = (
    String,
    Option<String>,
    Option<String>,
    String,
    Option<String>,
    Option<String>,
    String,
    Option<String>,
    bool,
);

fn user_from_row(row: UserRow) -> WorkspaceUser {
    let (id, okta_id, external_id, user_name, given_name, family_name, display_name, email, active) =
        row;
    WorkspaceUser {
        id,
        okta_id,
        external_id,
        attributes: UserAttributes {
            user_name,
            given_name,
            family_name,
            display_name,
            email,
        },
        active,
    }
}

/// Binds a user's attributes in the column order every user query here uses:
/// user_name, user_name_lower, given_name, family_name, display_name, email.
trait BindAttributes: Sized {
    fn bind_attributes(self, attributes: &UserAttributes) -> Self;
}

impl<'q, DB: sqlx::Database> BindAttributes
    for sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments>
where
    String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<String>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    fn bind_attributes(self, a: &UserAttributes) -> Self {
        self.bind(a.user_name.clone())
            .bind(a.user_name.to_lowercase())
            .bind(a.given_name.clone())
            .bind(a.family_name.clone())
            .bind(a.display_name.clone())
            .bind(a.email.clone())
    }
}

impl Store {
    pub async fn load_workspace(&self, workspace_id: &str) -> Result<WorkspaceState, StoreError> {
        let (users, groups, members) = on_pool!(self, pool => {
            let users: Vec<UserRow> = sqlx::query_as(
                "SELECT id, okta_id, external_id, user_name, given_name, family_name, display_name, email, active \
                 FROM workspace_users WHERE workspace_id = $1 ORDER BY id",
            )
            .bind(workspace_id)
            .fetch_all(pool)
            .await?;
            let groups: Vec<(String, Option<String>, String)> = sqlx::query_as(
                "SELECT id, okta_group_id, display_name FROM workspace_groups WHERE workspace_id = $1 ORDER BY id",
            )
            .bind(workspace_id)
            .fetch_all(pool)
            .await?;
            let members: Vec<(String, String)> = sqlx::query_as(
                "SELECT group_id, user_id FROM workspace_group_members WHERE workspace_id = $1",
            )
            .bind(workspace_id)
            .fetch_all(pool)
            .await?;
            (users, groups, members)
        });
        let mut by_group: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (group, user) in members {
            by_group.entry(group).or_default().push(user);
        }
        Ok(WorkspaceState {
            users: users.into_iter().map(user_from_row).collect(),
            groups: groups
                .into_iter()
                .map(|(id, okta_group_id, display_name)| WorkspaceGroup {
                    members: by_group
                        .remove(&id)
                        .unwrap_or_default()
                        .into_iter()
                        .collect(),
                    id,
                    okta_group_id,
                    display_name,
                })
                .collect(),
        })
    }

    /// Inserts an unmanaged user (one oktasync neither created nor adopted), as an operator
    /// or another provisioning client would have. Used by tests and the SCIM endpoint.
    pub async fn insert_unmanaged_user(
        &self,
        workspace_id: &str,
        external_id: Option<&str>,
        attributes: &UserAttributes,
    ) -> Result<String, StoreError> {
        let id = uuid::Uuid::new_v4().to_string();
        let now = now_millis();
        on_pool!(self, pool => sqlx::query(
            "INSERT INTO workspace_users (workspace_id, id, okta_id, external_id, user_name, user_name_lower, \
             given_name, family_name, display_name, email, active, created_at, updated_at) \
             VALUES ($1, $2, NULL, $3, $4, $5, $6, $7, $8, $9, TRUE, $10, $10)",
        )
        .bind(workspace_id)
        .bind(&id)
        .bind(external_id)
        .bind_attributes(attributes)
        .bind(now)
        .execute(pool)
        .await.map(|_| ()))?;
        Ok(id)
    }

    /// Applies one operation to the workspace held in the store. Idempotent: replaying an
    /// operation that already took effect changes nothing.
    pub async fn apply_operation(
        &self,
        workspace_id: &str,
        operation: &Operation,
    ) -> Result<(), StoreError> {
        let now = now_millis();
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            match operation {
                Operation::CreateUser { okta_id, attributes } => {
                    sqlx::query(
                        "INSERT INTO workspace_users (workspace_id, id, okta_id, external_id, user_name, user_name_lower, \
                         given_name, family_name, display_name, email, active, created_at, updated_at) \
                         VALUES ($1, $2, $3, $3, $4, $5, $6, $7, $8, $9, TRUE, $10, $10) \
                         ON CONFLICT (workspace_id, okta_id) WHERE okta_id IS NOT NULL DO UPDATE SET \
                         user_name = excluded.user_name, user_name_lower = excluded.user_name_lower, \
                         given_name = excluded.given_name, family_name = excluded.family_name, \
                         display_name = excluded.display_name, email = excluded.email, active = TRUE, \
                         version = workspace_users.version + 1, updated_at = excluded.updated_at",
                    )
                    .bind(workspace_id)
                    .bind(uuid::Uuid::new_v4().to_string())
                    .bind(okta_id)
                    .bind_attributes(attributes)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                }
                Operation::AdoptUser { okta_id, workspace_id: object_id, attributes, .. } => {
                    let done = sqlx::query(
                        "UPDATE workspace_users SET okta_id = $3, external_id = $3, user_name = $4, user_name_lower = $5, \
                         given_name = $6, family_name = $7, display_name = $8, email = $9, active = TRUE, \
                         version = version + 1, updated_at = $10 \
                         WHERE workspace_id = $1 AND id = $2 AND (okta_id IS NULL OR okta_id = $3)",
                    )
                    .bind(workspace_id)
                    .bind(object_id)
                    .bind(okta_id)
                    .bind_attributes(attributes)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    if done.rows_affected() == 0 {
                        return Err(StoreError::Invalid(format!(
                            "user {object_id} to adopt is gone or managed by another Okta user"
                        )));
                    }
                }
                Operation::UpdateUser { okta_id, to: attributes, .. }
                | Operation::ReactivateUser { okta_id, attributes, .. } => {
                    let done = sqlx::query(
                        "UPDATE workspace_users SET user_name = $3, user_name_lower = $4, given_name = $5, \
                         family_name = $6, display_name = $7, email = $8, active = TRUE, \
                         version = version + 1, updated_at = $9 WHERE workspace_id = $1 AND okta_id = $2",
                    )
                    .bind(workspace_id)
                    .bind(okta_id)
                    .bind_attributes(attributes)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    if done.rows_affected() == 0 {
                        return Err(StoreError::Invalid(format!("no managed user for Okta user {okta_id}")));
                    }
                }
                Operation::DeactivateUser { okta_id, .. } => {
                    sqlx::query(
                        "UPDATE workspace_users SET active = FALSE, version = version + 1, updated_at = $3 \
                         WHERE workspace_id = $1 AND okta_id = $2 AND active",
                    )
                    .bind(workspace_id)
                    .bind(okta_id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                }
                Operation::CreateGroup { okta_group_id, display_name, adopt } => {
                    match adopt {
                        Some(object_id) => {
                            sqlx::query(
                                "UPDATE workspace_groups SET okta_group_id = $3, version = version + 1, updated_at = $4 \
                                 WHERE workspace_id = $1 AND id = $2 AND (okta_group_id IS NULL OR okta_group_id = $3)",
                            )
                            .bind(workspace_id)
                            .bind(object_id)
                            .bind(okta_group_id)
                            .bind(now)
                            .execute(&mut *tx)
                            .await?;
                        }
                        None => {
                            sqlx::query(
                                "INSERT INTO workspace_groups (workspace_id, id, okta_group_id, display_name, created_at, updated_at) \
                                 VALUES ($1, $2, $3, $4, $5, $5) \
                                 ON CONFLICT (workspace_id, okta_group_id) WHERE okta_group_id IS NOT NULL DO NOTHING",
                            )
                            .bind(workspace_id)
                            .bind(uuid::Uuid::new_v4().to_string())
                            .bind(okta_group_id)
                            .bind(display_name)
                            .bind(now)
                            .execute(&mut *tx)
                            .await?;
                        }
                    }
                }
                Operation::RenameGroup { okta_group_id, to, .. } => {
                    sqlx::query(
                        "UPDATE workspace_groups SET display_name = $3, version = version + 1, updated_at = $4 \
                         WHERE workspace_id = $1 AND okta_group_id = $2",
                    )
                    .bind(workspace_id)
                    .bind(okta_group_id)
                    .bind(to)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                }
                Operation::AddMembers { okta_group_id, members } => {
                    let group: Option<String> = sqlx::query(
                        "SELECT id FROM workspace_groups WHERE workspace_id = $1 AND okta_group_id = $2",
                    )
                    .bind(workspace_id)
                    .bind(okta_group_id)
                    .fetch_optional(&mut *tx)
                    .await?
                    .map(|row| row.get(0));
                    let Some(group) = group else {
                        return Err(StoreError::Invalid(format!("pushed group {okta_group_id} does not exist")));
                    };
                    let mut missing = Vec::new();
                    for okta_id in members {
                        let added = sqlx::query(
                            "INSERT INTO workspace_group_members (workspace_id, group_id, user_id) \
                             SELECT $1, $2, id FROM workspace_users WHERE workspace_id = $1 AND okta_id = $3 \
                             ON CONFLICT DO NOTHING",
                        )
                        .bind(workspace_id)
                        .bind(&group)
                        .bind(okta_id)
                        .execute(&mut *tx)
                        .await?;
                        if added.rows_affected() == 0 {
                            let known: i64 = sqlx::query_scalar(
                                "SELECT COUNT(*) FROM workspace_users WHERE workspace_id = $1 AND okta_id = $2",
                            )
                            .bind(workspace_id)
                            .bind(okta_id)
                            .fetch_one(&mut *tx)
                            .await?;
                            if known == 0 {
                                missing.push(okta_id.clone());
                            }
                        }
                    }
                    if !missing.is_empty() {
                        // Keep the members that exist; the missing ones come back next cycle.
                        tx.commit().await?;
                        return Err(StoreError::Invalid(format!(
                            "members not in the workspace yet: {}",
                            missing.join(", ")
                        )));
                    }
                    sqlx::query("UPDATE workspace_groups SET version = version + 1, updated_at = $3 WHERE workspace_id = $1 AND id = $2")
                        .bind(workspace_id)
                        .bind(&group)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                }
                Operation::RemoveMembers { okta_group_id, members } => {
                    for member in members {
                        sqlx::query(
                            "DELETE FROM workspace_group_members WHERE workspace_id = $1 AND user_id = $3 AND group_id = \
                             (SELECT id FROM workspace_groups WHERE workspace_id = $1 AND okta_group_id = $2)",
                        )
                        .bind(workspace_id)
                        .bind(okta_group_id)
                        .bind(&member.workspace_id)
                        .execute(&mut *tx)
                        .await?;
                    }
                    sqlx::query("UPDATE workspace_groups SET version = version + 1, updated_at = $3 WHERE workspace_id = $1 AND okta_group_id = $2")
                        .bind(workspace_id)
                        .bind(okta_group_id)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                }
                Operation::UnlinkGroup { okta_group_id, delete, .. } => {
                    if *delete {
                        sqlx::query("DELETE FROM workspace_groups WHERE workspace_id = $1 AND okta_group_id = $2")
                            .bind(workspace_id)
                            .bind(okta_group_id)
                            .execute(&mut *tx)
                            .await?;
                    } else {
                        sqlx::query(
                            "UPDATE workspace_groups SET okta_group_id = NULL, version = version + 1, updated_at = $3 \
                             WHERE workspace_id = $1 AND okta_group_id = $2",
                        )
                        .bind(workspace_id)
                        .bind(okta_group_id)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    }
                }
            }
            tx.commit().await?;
        });
        Ok(())
    }
}
