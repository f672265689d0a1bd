//! How plans and cycle reports look to people (text: counts first, grouped) and to machines
//! (the contract's JSON). The journal stores operations in the same JSON form.

use std::fmt::Write as _;

use serde_json::{Value, json};

use crate::model::UserAttributes;
use crate::reconcile::cycle::{CycleReport, WorkspaceReport};
use crate::reconcile::desired::Exclusion;
use crate::reconcile::plan::{DeactivationReason, OpKind, Operation};
use crate::reconcile::safety::HoldReason;

fn attributes_json(a: &UserAttributes) -> Value {
    json!({
        "userName": a.user_name,
        "givenName": a.given_name,
        "familyName": a.family_name,
        "displayName": a.display_name,
        "email": a.email,
    })
}

fn reason_str(reason: &DeactivationReason) -> String {
    match reason {
        DeactivationReason::Deleted => "deleted in Okta".into(),
        DeactivationReason::Excluded(Exclusion::NotAssigned) => "not assigned to the app".into(),
        DeactivationReason::Excluded(Exclusion::Status(s)) => format!("status {}", s.as_str()),
    }
}

pub fn operation_json(op: &Operation) -> Value {
    let mut v = json!({ "op": op.kind().as_str(), "okta_id": op.okta_id() });
    let extra = match op {
        Operation::CreateUser { attributes, .. } => {
            json!({ "attributes": attributes_json(attributes) })
        }
        Operation::AdoptUser {
            workspace_id,
            matched_by,
            attributes,
            ..
        } => json!({
            "workspace_id": workspace_id, "matched_by": matched_by.as_str(),
            "attributes": attributes_json(attributes),
        }),
        Operation::UpdateUser {
            workspace_id,
            from,
            to,
            ..
        } => json!({
            "workspace_id": workspace_id, "from": attributes_json(from), "to": attributes_json(to),
        }),
        Operation::DeactivateUser {
            workspace_id,
            reason,
            ..
        } => json!({
            "workspace_id": workspace_id, "reason": reason_str(reason),
        }),
        Operation::ReactivateUser {
            workspace_id,
            attributes,
            ..
        } => json!({
            "workspace_id": workspace_id, "attributes": attributes_json(attributes),
        }),
        Operation::CreateGroup {
            display_name,
            adopt,
            ..
        } => json!({
            "display_name": display_name, "adopt_workspace_id": adopt,
        }),
        Operation::RenameGroup {
            workspace_id,
            from,
            to,
            ..
        } => json!({
            "workspace_id": workspace_id, "from": from, "to": to,
        }),
        Operation::AddMembers { members, .. } => json!({ "members": members }),
        Operation::RemoveMembers { members, .. } => json!({
            "members": members.iter().map(|m| json!({"workspace_id": m.workspace_id, "okta_id": m.okta_id})).collect::<Vec<_>>(),
        }),
        Operation::UnlinkGroup {
            workspace_id,
            display_name,
            delete,
            ..
        } => json!({
            "workspace_id": workspace_id, "display_name": display_name, "delete": delete,
        }),
        Operation::PushUser(p) | Operation::PushGroup(p) => json!({
            "workspace_id": p.workspace_id, "create": p.create,
            "document": serde_json::from_str::<Value>(&p.document).unwrap_or(Value::Null),
        }),
        Operation::DeleteUser { workspace_id } | Operation::DeleteGroup { workspace_id } => {
            json!({ "workspace_id": workspace_id })
        }
    };
    if let (Some(obj), Value::Object(more)) = (v.as_object_mut(), extra) {
        obj.extend(more);
    }
    v
}

fn summary_json<'a>(ops: impl Iterator<Item = &'a Operation> + Clone) -> Value {
    let mut summary = serde_json::Map::new();
    for kind in OpKind::ALL {
        let n: usize = ops
            .clone()
            .filter(|o| o.kind() == kind)
            .map(Operation::weight)
            .sum();
        summary.insert(kind.as_str().into(), json!(n));
    }
    Value::Object(summary)
}

fn hold_reason_str(reason: &HoldReason) -> String {
    match reason {
        HoldReason::IncompleteRead => {
            "the Okta read was incomplete: removals wait for a complete read".into()
        }
        HoldReason::OverThreshold {
            deactivations,
            managed_active,
            max_deactivations,
            max_deactivation_ratio,
        } => format!(
            "{deactivations} deactivations of {managed_active} managed users exceed \
             max_deactivations = {max_deactivations} or max_deactivation_ratio = {max_deactivation_ratio}"
        ),
    }
}

/// `planned`: the plan (for `plan`, `sync --dry-run`); otherwise what was applied.
pub fn report_json(report: &CycleReport, planned: bool) -> Value {
    let workspaces: Vec<Value> = report
        .workspaces
        .iter()
        .map(|ws| {
            let ops: Vec<&Operation> = if planned {
                ws.planned.operations.iter().collect()
            } else {
                ws.applied.iter().collect()
            };
            json!({
                "id": ws.workspace_id,
                "complete_read": ws.complete_read,
                "held": !ws.held.is_empty(),
                "held_plan_id": ws.held_plan_id,
                "hold_reason": ws.hold_reason.as_ref().map(hold_reason_str),
                "summary": summary_json(ops.iter().copied()),
                "operations": ops.iter().map(|o| operation_json(o)).collect::<Vec<_>>(),
                "held_operations": ws.held.iter().map(operation_json).collect::<Vec<_>>(),
                "failed": ws.failed.iter().map(|(op, error)| {
                    let mut v = operation_json(op);
                    if let Some(obj) = v.as_object_mut() {
                        obj.insert("error".into(), json!(error));
                    }
                    v
                }).collect::<Vec<_>>(),
                "read_failures": ws.read_failures,
                "error": ws.error,
            })
        })
        .collect();
    json!({ "workspaces": workspaces })
}

fn describe(op: &Operation) -> String {
    match op {
        Operation::CreateUser {
            okta_id,
            attributes,
        } => {
            format!("{} ({okta_id})", attributes.user_name)
        }
        Operation::AdoptUser {
            okta_id,
            workspace_id,
            matched_by,
            attributes,
        } => format!(
            "{} ({okta_id}) adopts existing {workspace_id}, matched by {}",
            attributes.user_name,
            matched_by.as_str()
        ),
        Operation::UpdateUser {
            okta_id, from, to, ..
        } => {
            let mut changes = Vec::new();
            let mut diff = |name: &str, a: Option<&str>, b: Option<&str>| {
                if a != b {
                    changes.push(format!(
                        "{name}: {} -> {}",
                        a.unwrap_or("-"),
                        b.unwrap_or("-")
                    ));
                }
            };
            diff("userName", Some(&from.user_name), Some(&to.user_name));
            diff(
                "givenName",
                from.given_name.as_deref(),
                to.given_name.as_deref(),
            );
            diff(
                "familyName",
                from.family_name.as_deref(),
                to.family_name.as_deref(),
            );
            diff(
                "displayName",
                Some(&from.display_name),
                Some(&to.display_name),
            );
            diff("email", from.email.as_deref(), to.email.as_deref());
            format!("{} ({okta_id}): {}", to.user_name, changes.join(", "))
        }
        Operation::DeactivateUser {
            okta_id,
            workspace_id,
            reason,
        } => {
            format!("{workspace_id} ({okta_id}): {}", reason_str(reason))
        }
        Operation::ReactivateUser {
            okta_id,
            attributes,
            ..
        } => {
            format!("{} ({okta_id})", attributes.user_name)
        }
        Operation::CreateGroup {
            okta_group_id,
            display_name,
            adopt,
        } => match adopt {
            Some(id) => format!("{display_name} ({okta_group_id}) links existing group {id}"),
            None => format!("{display_name} ({okta_group_id})"),
        },
        Operation::RenameGroup {
            okta_group_id,
            from,
            to,
            ..
        } => {
            format!("{from} -> {to} ({okta_group_id})")
        }
        Operation::AddMembers {
            okta_group_id,
            members,
        } => {
            format!(
                "{okta_group_id}: +{} ({})",
                members.len(),
                preview(members.iter())
            )
        }
        Operation::RemoveMembers {
            okta_group_id,
            members,
        } => format!(
            "{okta_group_id}: -{} ({})",
            members.len(),
            preview(
                members
                    .iter()
                    .map(|m| m.okta_id.as_ref().unwrap_or(&m.workspace_id))
            )
        ),
        Operation::UnlinkGroup {
            okta_group_id,
            display_name,
            delete,
            ..
        } => format!(
            "{display_name} ({okta_group_id}): {}",
            if *delete {
                "workspace group deleted"
            } else {
                "workspace group kept"
            }
        ),
        Operation::PushUser(p) | Operation::PushGroup(p) => format!(
            "{} ({})",
            p.workspace_id,
            if p.create {
                "created over SCIM"
            } else {
                "written over SCIM"
            }
        ),
        Operation::DeleteUser { workspace_id } | Operation::DeleteGroup { workspace_id } => {
            format!("{workspace_id} (deleted over SCIM)")
        }
    }
}

fn preview<'a>(ids: impl Iterator<Item = &'a String>) -> String {
    let all: Vec<&String> = ids.collect();
    let shown: Vec<&str> = all.iter().take(5).map(|s| s.as_str()).collect();
    if all.len() > shown.len() {
        format!("{}, … {} more", shown.join(", "), all.len() - shown.len())
    } else {
        shown.join(", ")
    }
}

/// Lists at most this many operations of each kind in text output; the rest are counted.
const TEXT_LIMIT_PER_KIND: usize = 20;

fn section(out: &mut String, title: &str, ops: &[&Operation]) {
    let total: usize = ops.iter().map(|o| o.weight()).sum();
    let _ = writeln!(out, "  {title}: {total}");
    for kind in OpKind::ALL {
        let of_kind: Vec<&&Operation> = ops.iter().filter(|o| o.kind() == kind).collect();
        if of_kind.is_empty() {
            continue;
        }
        let weight: usize = of_kind.iter().map(|o| o.weight()).sum();
        let _ = writeln!(out, "    {} {weight}", kind.as_str());
        for op in of_kind.iter().take(TEXT_LIMIT_PER_KIND) {
            let _ = writeln!(out, "      {}", describe(op));
        }
        if of_kind.len() > TEXT_LIMIT_PER_KIND {
            let _ = writeln!(
                out,
                "      … {} more (see --format json)",
                of_kind.len() - TEXT_LIMIT_PER_KIND
            );
        }
    }
}

fn workspace_text(out: &mut String, ws: &WorkspaceReport, planned: bool) {
    let _ = writeln!(
        out,
        "workspace {}: Okta read {}",
        ws.workspace_id,
        if ws.complete_read {
            "complete"
        } else {
            "INCOMPLETE"
        }
    );
    for failure in &ws.read_failures {
        let _ = writeln!(out, "  read failure: {failure}");
    }
    if let Some(error) = &ws.error {
        let _ = writeln!(out, "  error: {error}");
    }
    if planned {
        let ops: Vec<&Operation> = ws.planned.operations.iter().collect();
        if ops.is_empty() {
            let _ = writeln!(out, "  nothing to do");
        } else {
            section(out, "planned", &ops);
        }
    } else {
        let applied: Vec<&Operation> = ws.applied.iter().collect();
        if applied.is_empty() && ws.failed.is_empty() && ws.held.is_empty() {
            let _ = writeln!(out, "  nothing to do");
        }
        if !applied.is_empty() {
            section(out, "applied", &applied);
        }
        if !ws.failed.is_empty() {
            let _ = writeln!(out, "  failed: {}", ws.failed.len());
            for (op, error) in ws.failed.iter().take(TEXT_LIMIT_PER_KIND) {
                let _ = writeln!(out, "    {} {}: {error}", op.kind().as_str(), op.okta_id());
            }
        }
    }
    if let Some(reason) = &ws.hold_reason {
        let held: Vec<&Operation> = ws.held.iter().collect();
        section(out, "HELD", &held);
        let _ = writeln!(out, "  held because {}", hold_reason_str(reason));
        if let Some(id) = &ws.held_plan_id {
            let _ = writeln!(
                out,
                "  review, then apply with `oktasync plan --approve {id}` and the next sync (or `sync --force`)"
            );
        }
    }
}

pub fn report_text(report: &CycleReport, planned: bool) -> String {
    let mut out = String::new();
    for ws in &report.workspaces {
        workspace_text(&mut out, ws, planned);
    }
    out
}
