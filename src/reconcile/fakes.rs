//! In-memory fakes of the engine's ports, for unit tests: a workspace target that applies
//! operations to a `WorkspaceState`, a state store, and an Okta source that returns a fixed
//! snapshot.

use std::collections::BTreeSet;
use std::sync::Mutex;

use crate::model::{OktaSnapshot, WorkspaceGroup, WorkspaceState, WorkspaceUser};
use crate::reconcile::plan::Operation;
use crate::reconcile::ports::{
    HeldPlan, JournalEntryId, OktaSource, ReadRequest, StateError, StateStore, TargetError,
    TargetErrorKind, UsersRead, WorkspaceTarget,
};

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Applies an operation to an in-memory workspace, with the local target's semantics.
pub fn apply_in_memory(state: &mut WorkspaceState, op: &Operation) -> Result<(), String> {
    let by_okta = |s: &mut WorkspaceState, id: &str| {
        s.users
            .iter_mut()
            .position(|u| u.okta_id.as_deref() == Some(id))
    };
    match op {
        Operation::CreateUser {
            okta_id,
            attributes,
        } => match by_okta(state, okta_id) {
            Some(i) => {
                state.users[i].attributes = attributes.clone();
                state.users[i].active = true;
            }
            None => state.users.push(WorkspaceUser {
                id: format!("ws-{okta_id}"),
                okta_id: Some(okta_id.clone()),
                external_id: Some(okta_id.clone()),
                attributes: attributes.clone(),
                active: true,
                pushed_at: None,
            }),
        },
        Operation::AdoptUser {
            okta_id,
            workspace_id,
            attributes,
            ..
        } => {
            let user = state
                .users
                .iter_mut()
                .find(|u| u.id == *workspace_id)
                .ok_or("adoptee gone")?;
            user.okta_id = Some(okta_id.clone());
            user.external_id = Some(okta_id.clone());
            user.attributes = attributes.clone();
            user.active = true;
        }
        Operation::UpdateUser {
            okta_id,
            to: attributes,
            ..
        }
        | Operation::ReactivateUser {
            okta_id,
            attributes,
            ..
        } => {
            let i = by_okta(state, okta_id).ok_or("no such user")?;
            state.users[i].attributes = attributes.clone();
            state.users[i].active = true;
        }
        Operation::DeactivateUser { okta_id, .. } => {
            let i = by_okta(state, okta_id).ok_or("no such user")?;
            state.users[i].active = false;
        }
        Operation::CreateGroup {
            okta_group_id,
            display_name,
            adopt,
        } => match adopt {
            Some(id) => {
                let g = state
                    .groups
                    .iter_mut()
                    .find(|g| g.id == *id)
                    .ok_or("no group")?;
                g.okta_group_id = Some(okta_group_id.clone());
            }
            None => {
                if !state
                    .groups
                    .iter()
                    .any(|g| g.okta_group_id.as_ref() == Some(okta_group_id))
                {
                    state.groups.push(WorkspaceGroup {
                        id: format!("wg-{okta_group_id}"),
                        okta_group_id: Some(okta_group_id.clone()),
                        display_name: display_name.clone(),
                        members: BTreeSet::new(),
                        pushed_at: None,
                    });
                }
            }
        },
        Operation::RenameGroup {
            okta_group_id, to, ..
        } => {
            let g = group_mut(state, okta_group_id)?;
            g.display_name = to.clone();
        }
        Operation::AddMembers {
            okta_group_id,
            members,
        } => {
            let ids: Vec<String> = members
                .iter()
                .map(|m| {
                    state
                        .users
                        .iter()
                        .find(|u| u.okta_id.as_ref() == Some(m))
                        .map(|u| u.id.clone())
                        .ok_or_else(|| format!("member {m} missing"))
                })
                .collect::<Result<_, _>>()?;
            group_mut(state, okta_group_id)?.members.extend(ids);
        }
        Operation::RemoveMembers {
            okta_group_id,
            members,
        } => {
            let g = group_mut(state, okta_group_id)?;
            for m in members {
                g.members.remove(&m.workspace_id);
            }
        }
        Operation::PushUser(_)
        | Operation::PushGroup(_)
        | Operation::DeleteUser { .. }
        | Operation::DeleteGroup { .. } => return Err("SCIM pushes are not simulated".into()),
        Operation::UnlinkGroup {
            okta_group_id,
            delete,
            ..
        } => {
            if *delete {
                state
                    .groups
                    .retain(|g| g.okta_group_id.as_ref() != Some(okta_group_id));
            } else {
                group_mut(state, okta_group_id)?.okta_group_id = None;
            }
        }
    }
    Ok(())
}

fn group_mut<'a>(
    state: &'a mut WorkspaceState,
    okta_group_id: &str,
) -> Result<&'a mut WorkspaceGroup, String> {
    state
        .groups
        .iter_mut()
        .find(|g| g.okta_group_id.as_deref() == Some(okta_group_id))
        .ok_or_else(|| format!("group {okta_group_id} missing"))
}

#[derive(Default)]
pub struct FakeTarget {
    pub state: Mutex<WorkspaceState>,
    /// Operations on these Okta ids fail.
    pub failing: Mutex<BTreeSet<String>>,
    /// This many loads fail before they succeed again.
    pub failing_loads: std::sync::atomic::AtomicUsize,
}

impl WorkspaceTarget for FakeTarget {
    async fn load(&self, _workspace_id: &str) -> Result<WorkspaceState, TargetError> {
        use std::sync::atomic::Ordering;
        let failing = self
            .failing_loads
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        if failing.is_ok() {
            return Err(TargetError {
                message: "injected load failure".into(),
                kind: TargetErrorKind::Transient,
            });
        }
        Ok(lock(&self.state).clone())
    }

    async fn execute(&self, _workspace_id: &str, operation: &Operation) -> Result<(), TargetError> {
        if lock(&self.failing).contains(operation.okta_id()) {
            return Err(TargetError {
                message: "injected failure".into(),
                kind: TargetErrorKind::Transient,
            });
        }
        apply_in_memory(&mut lock(&self.state), operation).map_err(|message| TargetError {
            message,
            kind: TargetErrorKind::Invalid,
        })
    }
}

#[derive(Default)]
pub struct FakeState {
    pub journal: Mutex<Vec<(String, Option<String>)>>,
    pub holds: Mutex<Vec<(String, Vec<String>, bool)>>,
}

impl StateStore for FakeState {
    async fn begin_cycle(&self, _: &str, _: bool) -> Result<i64, StateError> {
        Ok(1)
    }

    async fn journal_pending(
        &self,
        _: Option<i64>,
        _: &str,
        ops: &[Operation],
    ) -> Result<Vec<JournalEntryId>, StateError> {
        let mut journal = lock(&self.journal);
        let start = journal.len();
        journal.extend(
            ops.iter()
                .map(|o| (o.okta_id().to_owned(), Some("pending".into()))),
        );
        Ok((start..journal.len()).map(|i| i as i64).collect())
    }

    async fn journal_outcomes(
        &self,
        outcomes: &[(JournalEntryId, Option<&str>)],
    ) -> Result<(), StateError> {
        let mut journal = lock(&self.journal);
        for (entry, error) in outcomes {
            if let Some(e) = journal.get_mut(*entry as usize) {
                e.1 = error.map(str::to_owned);
            }
        }
        Ok(())
    }

    async fn finish_cycle(&self, _: i64, _: &str, _: &str) -> Result<(), StateError> {
        Ok(())
    }

    async fn hold(
        &self,
        workspace_id: &str,
        deactivations: &[String],
    ) -> Result<HeldPlan, StateError> {
        let mut holds = lock(&self.holds);
        let id = format!("{workspace_id}-{}", deactivations.len());
        let approved = holds.iter().any(|(h, _, approved)| *h == id && *approved);
        if !holds.iter().any(|(h, _, _)| *h == id) {
            holds.push((id.clone(), deactivations.to_vec(), false));
        }
        Ok(HeldPlan { id, approved })
    }

    async fn consume_hold(&self, id: &str) -> Result<(), StateError> {
        lock(&self.holds).retain(|(h, _, _)| h != id);
        Ok(())
    }
}

pub struct FakeSource(pub OktaSnapshot);

impl OktaSource for FakeSource {
    async fn read(&self, request: ReadRequest<'_>) -> OktaSnapshot {
        let mut snapshot = self.0.clone();
        if let Some(on_users_read) = request.on_users_read
            && snapshot.complete
        {
            on_users_read(&UsersRead {
                users: &snapshot.users,
                assigned: snapshot
                    .apps
                    .iter()
                    .map(|(id, app)| (id.as_str(), &app.users))
                    .collect(),
                read_started_at: snapshot.read_started_at,
            });
        }
        let wanted = (request.select_groups)(&snapshot);
        snapshot.group_members.retain(|g, _| wanted.contains(g));
        snapshot
    }
}
