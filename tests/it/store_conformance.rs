//! The store's behaviour, identical on SQLite and PostgreSQL: migrations, idempotent
//! operations, ownership of adopted users, the journal and held plans.

use oktasync::model::UserAttributes;
use oktasync::reconcile::plan::{MatchKey, Operation, PushedObject};
use oktasync::reconcile::ports::StateStore;
use oktasync::store::Store;

use crate::helpers::{BACKENDS, Backend, fresh_store_url};

fn attrs(name: &str) -> UserAttributes {
    UserAttributes {
        user_name: name.into(),
        given_name: Some("Ada".into()),
        family_name: None,
        display_name: "Ada".into(),
        email: Some(name.into()),
    }
}

/// The positions of the failed results.
fn failed_indices<T, E>(results: &[Result<T, E>]) -> Vec<usize> {
    (0..results.len())
        .filter(|&i| results[i].is_err())
        .collect()
}

/// A fresh store of `backend` (its database under `dir` for SQLite), migrated.
async fn migrated_store(backend: Backend, dir: &std::path::Path) -> Store {
    let url = fresh_store_url(backend, dir).await;
    let store = Store::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("{backend:?}: {e}"));
    store.migrate().await.unwrap_or_else(|e| panic!("{e}"));
    store
}

async fn conformance(backend: Backend) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = migrated_store(backend, dir.path()).await;
    store
        .migrate()
        .await
        .unwrap_or_else(|e| panic!("migrate twice: {e}"));

    let create = Operation::CreateUser {
        okta_id: "00u1".into(),
        attributes: attrs("ada@example.com"),
    };
    for _ in 0..2 {
        store
            .apply_operation("ws", &create)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let pre = store
        .insert_unmanaged_user("ws", None, &attrs("Grace@Example.com"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // The same userName in another letter case is the same user.
    assert!(
        store
            .insert_unmanaged_user("ws", None, &attrs("ADA@example.com"))
            .await
            .is_err()
    );
    let adopt = Operation::AdoptUser {
        okta_id: "00u2".into(),
        workspace_id: pre.clone(),
        matched_by: MatchKey::UserName,
        attributes: attrs("grace@example.com"),
    };
    store
        .apply_operation("ws", &adopt)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    store
        .apply_operation("ws", &adopt)
        .await
        .unwrap_or_else(|e| panic!("adopt is idempotent: {e}"));
    let steal = Operation::AdoptUser {
        okta_id: "00u3".into(),
        workspace_id: pre.clone(),
        matched_by: MatchKey::Email,
        attributes: attrs("x@example.com"),
    };
    assert!(
        store.apply_operation("ws", &steal).await.is_err(),
        "an adopted user cannot be adopted again by another Okta user"
    );

    let state = store
        .load_workspace("ws")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(state.users.len(), 2);
    let grace = state
        .users
        .iter()
        .find(|u| u.id == pre)
        .unwrap_or_else(|| panic!("adopted"));
    assert_eq!(grace.okta_id.as_deref(), Some("00u2"));
    assert_eq!(grace.attributes.user_name, "grace@example.com");
    assert!(
        store
            .load_workspace("other")
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .users
            .is_empty(),
        "keyed by workspace"
    );

    let group = Operation::CreateGroup {
        okta_group_id: "00g1".into(),
        display_name: "Eng".into(),
        adopt: None,
    };
    let add = Operation::AddMembers {
        okta_group_id: "00g1".into(),
        members: vec!["00u1".into(), "00u2".into(), "00u9".into()],
    };
    store
        .apply_operation("ws", &group)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    store
        .apply_operation("ws", &group)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let err = store
        .apply_operation("ws", &add)
        .await
        .err()
        .unwrap_or_else(|| panic!("00u9 is not in the workspace"));
    assert!(err.to_string().contains("00u9"), "{err}");
    let state = store
        .load_workspace("ws")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(state.groups.len(), 1);
    assert_eq!(
        state.groups[0].members.len(),
        2,
        "existing members added despite the missing one"
    );

    // A batch is one transaction; one failing operation in it keeps nothing of the batch,
    // then each operation is applied on its own: the failure is its own, the rest apply.
    let batch = [
        Operation::CreateUser {
            okta_id: "00u4".into(),
            attributes: attrs("linus@example.com"),
        },
        Operation::UpdateUser {
            okta_id: "00u404".into(),
            workspace_id: "gone".into(),
            from: attrs("x@example.com"),
            to: attrs("y@example.com"),
        },
        Operation::CreateGroup {
            okta_group_id: "00g2".into(),
            display_name: "Ops".into(),
            adopt: None,
        },
        Operation::AddMembers {
            okta_group_id: "00g2".into(),
            members: vec!["00u4".into()],
        },
    ];
    let refs: Vec<&Operation> = batch.iter().collect();
    let results = store.apply_operations("ws", &refs).await;
    let failed = failed_indices(&results);
    assert_eq!(failed, vec![1], "{results:?}");
    let whole = store.apply_operations("ws", &refs[2..]).await;
    assert!(
        whole.iter().all(Result::is_ok),
        "a batch replayed: {whole:?}"
    );
    let state = store
        .load_workspace("ws")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(state.users.len(), 3);
    let ops_group = state
        .groups
        .iter()
        .find(|g| g.display_name == "Ops")
        .unwrap_or_else(|| panic!("the batch's group: {state:?}"));
    assert_eq!(
        ops_group.members.len(),
        1,
        "created in the same batch as its member's add"
    );

    // Consecutive creates are written many a statement, meaning what they mean one at a
    // time: an Okta user already here is updated in place, one seen twice is one row.
    let ada = |state: &oktasync::model::WorkspaceState| {
        state
            .users
            .iter()
            .find(|u| u.okta_id.as_deref() == Some("00u1"))
            .map(|u| (u.id.clone(), u.attributes.user_name.clone()))
    };
    let ada_before = ada(&state).map(|(id, _)| id);
    let create_as = |okta_id: &str, name: &str| Operation::CreateUser {
        okta_id: okta_id.into(),
        attributes: attrs(name),
    };
    let creates = [
        create_as("00u1", "ada.lovelace@example.com"),
        create_as("00u5", "alan@example.com"),
        create_as("00u5", "alan.turing@example.com"),
        create_as("00u7", "edsger@example.com"),
    ];
    let refs: Vec<&Operation> = creates.iter().collect();
    let results = store.apply_operations("ws", &refs).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let state = store
        .load_workspace("ws")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        ada(&state),
        ada_before.map(|id| (id, "ada.lovelace@example.com".to_string())),
        "updated in place"
    );
    let alans: Vec<&str> = state
        .users
        .iter()
        .filter(|u| u.okta_id.as_deref() == Some("00u5"))
        .map(|u| u.attributes.user_name.as_str())
        .collect();
    assert_eq!(alans, vec!["alan.turing@example.com"]);
    assert_eq!(state.users.len(), 5);
    // A userName another user holds (in any letter case) fails that create alone.
    let creates = [
        create_as("00u8", "barbara@example.com"),
        create_as("00u9", "LINUS@example.com"),
        create_as("00u10", "donald@example.com"),
    ];
    let refs: Vec<&Operation> = creates.iter().collect();
    let results = store.apply_operations("ws", &refs).await;
    let failed = failed_indices(&results);
    assert_eq!(failed, vec![1], "{results:?}");
    let state = store
        .load_workspace("ws")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(state.users.len(), 7);

    // Consecutive group creates, then consecutive member adds (a plan's order) are written
    // many a statement, meaning what they mean one at a time: a group already linked is
    // renamed in place; an add naming a user not here keeps the members found and fails
    // alone, as does an add to a group not linked.
    let linked = |state: &oktasync::model::WorkspaceState, okta_group_id: &str| {
        state
            .groups
            .iter()
            .find(|g| g.okta_group_id.as_deref() == Some(okta_group_id))
            .map(|g| (g.id.clone(), g.display_name.clone(), g.members.len()))
            .unwrap_or_else(|| panic!("group {okta_group_id}: {state:?}"))
    };
    let (ops_id, _, ops_members) = linked(&state, "00g2");
    let groups_before = state.groups.len();
    let create_group = |okta_group_id: &str, name: &str| Operation::CreateGroup {
        okta_group_id: okta_group_id.into(),
        display_name: name.into(),
        adopt: None,
    };
    let add_to = |okta_group_id: &str, members: &[&str]| Operation::AddMembers {
        okta_group_id: okta_group_id.into(),
        members: members.iter().map(|m| (*m).to_owned()).collect(),
    };
    let batch = [
        create_group("00g2", "Ops Team"),
        create_group("00g3", "Design"),
        create_group("00g4", "Legal"),
        add_to("00g3", &["00u5", "00u7"]),
        add_to("00g4", &["00u7"]),
    ];
    let refs: Vec<&Operation> = batch.iter().collect();
    let results = store.apply_operations("ws", &refs).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let batch = [
        add_to("00g3", &["00u8"]),
        add_to("00g4", &["00u999", "00u10"]),
        add_to("00g404", &["00u5"]),
    ];
    let refs: Vec<&Operation> = batch.iter().collect();
    let results = store.apply_operations("ws", &refs).await;
    assert_eq!(failed_indices(&results), vec![1, 2], "{results:?}");
    let state = store
        .load_workspace("ws")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(state.groups.len(), groups_before + 2);
    assert_eq!(
        linked(&state, "00g2"),
        (ops_id, "Ops Team".to_string(), ops_members),
        "renamed in place"
    );
    assert_eq!(linked(&state, "00g3").2, 3);
    assert_eq!(
        linked(&state, "00g4").2,
        2,
        "00u7, and 00u10 despite 00u999"
    );

    // Journal: pending entries of an interrupted cycle are superseded by the next cycle.
    let cycle = store
        .begin_cycle("ws", false)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let ids = store
        .journal_pending(Some(cycle), "ws", &[create.clone(), add.clone()])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    store
        .journal_outcomes(&[(ids[0], None)])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let more = store
        .journal_pending(
            Some(cycle),
            "ws",
            &[create.clone(), add.clone(), group.clone()],
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    store
        .journal_outcomes(&[(more[0], None), (more[1], Some("members missing"))])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // Applied and journaled in one transaction: a success, a failure that keeps nothing,
    // and a partial add (the existing member kept, the entry failed).
    let journaled = |op: Operation| {
        let store = store.clone();
        async move {
            store
                .apply_journaled("ws", None, &op)
                .await
                .unwrap_or_else(|e| panic!("the journal: {e}"))
        }
    };
    let renamed = Operation::RenameGroup {
        okta_group_id: "00g2".into(),
        workspace_id: String::new(),
        from: "Ops".into(),
        to: "Operations".into(),
    };
    assert!(journaled(renamed).await.is_ok());
    let missing = Operation::DeactivateUser {
        okta_id: "00u404".into(),
        workspace_id: "gone".into(),
        reason: oktasync::reconcile::plan::DeactivationReason::Deleted,
    };
    assert!(journaled(missing).await.is_err());
    let partial = Operation::AddMembers {
        okta_group_id: "00g2".into(),
        members: vec!["00u1".into(), "00u405".into()],
    };
    assert!(journaled(partial).await.is_err());
    let state = store
        .load_workspace("ws")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let operations_group = state
        .groups
        .iter()
        .find(|g| g.display_name == "Operations")
        .unwrap_or_else(|| panic!("renamed: {state:?}"));
    assert_eq!(
        operations_group.members.len(),
        2,
        "00u1 added, 00u405 missing"
    );
    store
        .begin_cycle("ws", false)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let counts = store
        .journal_counts("ws")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        counts,
        vec![
            ("applied".to_string(), 3),
            ("failed".to_string(), 3),
            ("superseded".to_string(), 2)
        ]
    );

    // Okta reads: staged, promoted, replaced; the store keeps the promoted one and a staged
    // one at most.
    let org = "https://acme.okta.com";
    let snapshot = oktasync::model::OktaSnapshot {
        complete: true,
        ..Default::default()
    };
    for round in 0..3 {
        store
            .stage_okta_snapshot(org, "apps=a", &snapshot, "{}", true)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        if round > 0 {
            // A staged read replaced before it was promoted is deleted too.
            store
                .stage_okta_snapshot(org, "apps=a", &snapshot, "{}", true)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
        assert!(
            store
                .promote_okta_snapshot(org)
                .await
                .unwrap_or_else(|e| panic!("{e}"))
        );
        assert_eq!(
            store
                .stored_okta_reads(org)
                .await
                .unwrap_or_else(|e| panic!("{e}")),
            1,
            "round {round}"
        );
    }
    assert!(
        store
            .load_okta_snapshot(org)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .is_some_and(|s| s.complete)
    );
    assert!(
        store
            .okta_snapshot_info(org)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .is_some_and(|i| i.scope == "apps=a")
    );

    // Held plans: stable id per set, approval, consumption.
    let set = vec!["00u1".to_string(), "00u2".to_string()];
    let held = store
        .hold("ws", &set)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!held.approved);
    let reversed: Vec<String> = set.iter().rev().cloned().collect();
    assert_eq!(
        store
            .hold("ws", &reversed)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .id,
        held.id
    );
    assert!(
        store
            .approve_held_plan(&held.id)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    );
    assert!(
        store
            .hold("ws", &set)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .approved
    );
    store
        .consume_hold(&held.id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        !store
            .hold("ws", &set)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .approved,
        "an approval is used once"
    );
    store.close().await;
}

#[tokio::test]
async fn store_conformance_on_both_backends() {
    for backend in BACKENDS {
        conformance(backend).await;
    }
}

/// Single journaled writes arriving together (SCIM requests) each get their own outcome
/// and journal entry, however the store groups their commits: one taking a userName
/// another holds fails alone, the others are written.
async fn concurrent_journaled_writes(backend: Backend) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = migrated_store(backend, dir.path()).await;
    let push = |i: usize, name: String| {
        let store = store.clone();
        async move {
            let doc = serde_json::json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": name, "active": true,
            });
            let operation = Operation::PushUser(PushedObject {
                workspace_id: format!("user-{i}"),
                external_id: None,
                document: doc.to_string(),
                create: true,
                received_at: 1_700_000_000_000,
                expected_version: None,
            });
            store.apply_journaled("ws", None, &operation).await
        }
    };
    let since = oktasync::store::now_millis();
    let mut writes = tokio::task::JoinSet::new();
    for i in 0..24 {
        // Users 7 and 17 share a userName in different letter cases.
        let name = match i {
            17 => "USER7@example.com".to_string(),
            _ => format!("user{i}@example.com"),
        };
        writes.spawn(push(i, name));
    }
    let mut conflicts = 0;
    while let Some(result) = writes.join_next().await {
        match result.unwrap_or_else(|e| panic!("{e}")) {
            Ok(Ok(())) => {}
            Ok(Err(oktasync::store::StoreError::Conflict(_))) => conflicts += 1,
            other => panic!("{backend:?}: {other:?}"),
        }
    }
    assert_eq!(conflicts, 1, "{backend:?}");
    let state = store
        .load_workspace("ws")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(state.users.len(), 23, "{backend:?}");
    let journal = store
        .journal_since(since, 100)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let applied = journal.iter().filter(|j| j.status == "applied").count();
    let failed = journal.iter().filter(|j| j.status == "failed").count();
    assert_eq!((applied, failed), (23, 1), "{backend:?}: {journal:?}");
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_journaled_writes_on_both_backends() {
    for backend in BACKENDS {
        concurrent_journaled_writes(backend).await;
    }
}

/// SQLite commits never pay for a WAL checkpoint (the automatic one is off), yet the WAL
/// is checkpointed while the store is open: a copy of the database file alone, without
/// its WAL, soon holds what was committed.
#[tokio::test]
async fn sqlite_wal_is_checkpointed_in_the_background() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = migrated_store(Backend::Sqlite, dir.path()).await;
    for i in 0..50 {
        store
            .insert_unmanaged_user("ws", None, &attrs(&format!("user{i}@example.com")))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let copied = dir.path().join("copy");
    std::fs::create_dir_all(&copied).unwrap_or_else(|e| panic!("{e}"));
    let users_in_file_alone = || async {
        let path = copied.join("alone.db");
        let _ = std::fs::remove_file(copied.join("alone.db-wal"));
        std::fs::copy(dir.path().join("oktasync.db"), &path).unwrap_or_else(|e| panic!("{e}"));
        let alone = Store::connect(&format!("sqlite://{}", path.display()))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let users = alone
            .load_workspace("ws")
            .await
            .map(|w| w.users.len())
            .unwrap_or(0);
        alone.close().await;
        users
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut users = users_in_file_alone().await;
    while users < 50 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        users = users_in_file_alone().await;
    }
    assert_eq!(users, 50, "the database file holds every committed user");
    store.close().await;
}
