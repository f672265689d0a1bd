//! The `scim` target: a downstream SCIM 2.0 service provider (Bytebase, or any other),
//! provisioned with the requests Okta's own SCIM client sends: lookup by `userName eq`
//! before create, `externalId` = Okta id, GET then PUT (App Integration Wizard apps) or a
//! path-less PATCH replace (OIN apps), group push by displayName lookup, POST, PATCH
//! add / `members[value eq "id"]` remove (or a full PUT). The store mirrors the target under
//! the target's ids and keeps the Okta anchors; each full cycle reads the target back, so
//! out-of-band changes to managed objects show up in the plan and are corrected.

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use crate::config::ScimTargetSettings;
use crate::model::{UserAttributes, WorkspaceState};
use crate::reconcile::plan::Operation;
use crate::reconcile::ports::{TargetError, TargetErrorKind, WorkspaceTarget};
use crate::scim_wire::{self, GROUP_URN, PATCH_URN};
use crate::store::{Store, StoreError};

/// A response from the target: status and body (`Null` when there was none).
struct Answer {
    status: StatusCode,
    body: Value,
}

#[derive(Debug, thiserror::Error)]
#[error("{method} {path}: {message}")]
struct RequestError {
    method: &'static str,
    path: String,
    message: String,
    retry: bool,
    retry_after: Option<Duration>,
}

pub struct ScimTarget {
    http: reqwest::Client,
    base: String,
    token: SecretString,
    use_patch: bool,
    store: Store,
    max_in_flight: usize,
}

fn store_error(e: StoreError) -> TargetError {
    TargetError {
        message: e.to_string(),
        kind: TargetErrorKind::Transient,
    }
}

fn failed(e: RequestError) -> TargetError {
    TargetError {
        kind: if e.retry {
            TargetErrorKind::Transient
        } else {
            TargetErrorKind::Invalid
        },
        message: e.to_string(),
    }
}

fn invalid(message: String) -> TargetError {
    TargetError {
        message,
        kind: TargetErrorKind::Invalid,
    }
}

fn quote(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"")
}

/// A document as sent: without the server's `id` and `meta`.
fn outgoing(doc: &Value) -> Value {
    let mut doc = doc.clone();
    if let Some(obj) = doc.as_object_mut() {
        obj.remove("meta");
    }
    doc
}

impl ScimTarget {
    pub fn new(settings: &ScimTargetSettings, store: Store) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(settings.request_timeout)
            .pool_max_idle_per_host(settings.max_in_flight)
            .user_agent(concat!("oktasync/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self {
            http,
            base: settings.base_url.as_str().trim_end_matches('/').to_owned(),
            token: settings.token.clone(),
            use_patch: settings.use_patch,
            store,
            max_in_flight: settings.max_in_flight,
        })
    }

    async fn send_once(
        &self,
        method: &'static str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer, RequestError> {
        let error = |message: String, retry: bool, retry_after: Option<Duration>| RequestError {
            method,
            path: path.to_owned(),
            message,
            retry,
            retry_after,
        };
        let verb = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|e| error(e.to_string(), false, None))?;
        let mut request = self
            .http
            .request(verb, format!("{}{path}", self.base))
            .bearer_auth(self.token.expose_secret())
            .header("Accept", "application/scim+json");
        if let Some(body) = body {
            request = request
                .header("Content-Type", "application/scim+json")
                .body(body.to_string());
        }
        // A POST that failed after it was sent may have created its object: sent again, it
        // would create a second one. Only a 429 says the server did not take it; any other
        // failure fails the operation, and the next cycle finds the object by its name.
        let resend = method != "POST";
        let response = request
            .send()
            .await
            .map_err(|e| error(e.to_string(), resend, None))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let text = response
            .text()
            .await
            .map_err(|e| error(e.to_string(), resend, None))?;
        if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            let detail = text.chars().take(200).collect::<String>();
            let retry = resend || status == StatusCode::TOO_MANY_REQUESTS;
            return Err(error(
                format!("HTTP {status}: {detail}"),
                retry,
                retry_after,
            ));
        }
        let body = if text.trim().is_empty() {
            Value::Null
        } else {
            // A non-SCIM error page is kept as text for the message.
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Ok(Answer { status, body })
    }

    /// One request, retried on 429 (after `Retry-After`), 5xx and connection failures.
    async fn send(
        &self,
        method: &'static str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer, RequestError> {
        let backoff = ExponentialBuilder::default()
            .with_jitter()
            .with_min_delay(Duration::from_millis(100))
            .with_max_delay(Duration::from_secs(10))
            .with_max_times(4);
        (|| self.send_once(method, path, body))
            .retry(backoff)
            .when(|e| e.retry)
            .adjust(|e, delay| e.retry_after.or(delay).map(|d| d.min(Duration::from_secs(30))))
            .notify(|e, wait| tracing::info!(error = %e, retry_in_ms = wait.as_millis() as u64, "SCIM target busy, retrying"))
            .await
    }

    fn unexpected(method: &'static str, path: &str, answer: &Answer) -> TargetError {
        let detail = answer
            .body
            .get("detail")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| answer.body.to_string().chars().take(200).collect());
        invalid(format!("{method} {path}: HTTP {}: {detail}", answer.status))
    }

    /// `GET /Users?filter=userName eq "…"` (or a group by displayName): the first match.
    async fn lookup(&self, group: bool, value: &str) -> Result<Option<Value>, TargetError> {
        let (endpoint, attr) = if group {
            ("Groups", "displayName")
        } else {
            ("Users", "userName")
        };
        let filter = format!("{attr} eq \"{}\"", quote(value));
        let query: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("filter", &filter)
            .append_pair("startIndex", "1")
            .append_pair("count", "100")
            .finish();
        let path = format!("/{endpoint}?{query}");
        let answer = self.send("GET", &path, None).await.map_err(failed)?;
        if answer.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !answer.status.is_success() {
            return Err(Self::unexpected("GET", &path, &answer));
        }
        // Servers that ignore the filter (or compare case-sensitively) are double-checked.
        Ok(answer
            .body
            .get("Resources")
            .and_then(Value::as_array)
            .and_then(|all| {
                all.iter()
                    .find(|r| {
                        r.get(attr)
                            .and_then(Value::as_str)
                            .is_some_and(|v| v.eq_ignore_ascii_case(value))
                    })
                    .cloned()
            }))
    }

    fn id_of(resource: &Value) -> Option<String> {
        resource
            .get("id")
            .and_then(Value::as_str)
            .map(str::to_owned)
    }

    /// Writes a user document to an existing target user. Returns false on 404.
    async fn update_user(
        &self,
        id: &str,
        doc: &Value,
        attributes: Option<&UserAttributes>,
        active: bool,
        okta_id: &str,
    ) -> Result<bool, TargetError> {
        let path = format!("/Users/{id}");
        let answer = if self.use_patch {
            let mut value = json!({"active": active});
            if let Some(a) = attributes {
                let merged = scim_wire::merge_user(None, a, active, Some(okta_id));
                if let (Some(v), Some(m)) = (value.as_object_mut(), merged.as_object()) {
                    for key in ["userName", "name", "displayName", "emails", "externalId"] {
                        if let Some(x) = m.get(key) {
                            v.insert(key.into(), x.clone());
                        }
                    }
                }
            }
            let body =
                json!({"schemas": [PATCH_URN], "Operations": [{"op": "replace", "value": value}]});
            self.send("PATCH", &path, Some(&body))
                .await
                .map_err(failed)?
        } else {
            // Okta's App Integration Wizard apps: GET, then PUT the whole resource.
            let current = self.send("GET", &path, None).await.map_err(failed)?;
            if current.status == StatusCode::NOT_FOUND {
                return Ok(false);
            }
            if !current.status.is_success() {
                return Err(Self::unexpected("GET", &path, &current));
            }
            let base = if current.body.is_object() {
                current.body.clone()
            } else {
                doc.clone()
            };
            let mut merged = match attributes {
                Some(a) => scim_wire::merge_user(Some(&base), a, active, Some(okta_id)),
                None => base,
            };
            if let Some(obj) = merged.as_object_mut() {
                obj.insert("active".into(), json!(active));
            }
            self.send("PUT", &path, Some(&outgoing(&merged)))
                .await
                .map_err(failed)?
        };
        if answer.status == StatusCode::NOT_FOUND {
            return Ok(false);
        }
        if !answer.status.is_success() {
            return Err(Self::unexpected(
                if self.use_patch { "PATCH" } else { "PUT" },
                &path,
                &answer,
            ));
        }
        Ok(true)
    }

    /// Creates a user the way Okta does: lookup by userName, then POST; a 409 or a match
    /// means the user exists: it is linked and updated instead of duplicated.
    async fn create_user(
        &self,
        ws: &str,
        okta_id: &str,
        attributes: &UserAttributes,
    ) -> Result<(), TargetError> {
        let doc = scim_wire::merge_user(None, attributes, true, Some(okta_id));
        let existing = match self.lookup(false, &attributes.user_name).await? {
            Some(found) => Some(found),
            None => {
                let answer = self
                    .send("POST", "/Users", Some(&doc))
                    .await
                    .map_err(failed)?;
                match answer.status {
                    s if s.is_success() => match Self::id_of(&answer.body) {
                        Some(id) => {
                            self.store
                                .record_user(ws, &id, Some(okta_id), &doc)
                                .await
                                .map_err(store_error)?;
                            return Ok(());
                        }
                        // 200/204 without a body: find what was created.
                        None => self.lookup(false, &attributes.user_name).await?,
                    },
                    StatusCode::CONFLICT => self.lookup(false, &attributes.user_name).await?,
                    _ => return Err(Self::unexpected("POST", "/Users", &answer)),
                }
            }
        };
        let found = existing.ok_or_else(|| {
            invalid(format!(
                "user {} was not found after creating it",
                attributes.user_name
            ))
        })?;
        let id =
            Self::id_of(&found).ok_or_else(|| invalid("the target's user has no id".into()))?;
        if !self
            .update_user(&id, &found, Some(attributes), true, okta_id)
            .await?
        {
            return Err(TargetError {
                message: format!("user {id} vanished while being linked"),
                kind: TargetErrorKind::NotFound,
            });
        }
        self.store
            .record_user(ws, &id, Some(okta_id), &doc)
            .await
            .map_err(store_error)
    }

    /// Updates (or re-activates, or deactivates) the user mirrored for an Okta user; when
    /// the target answers 404 (the object vanished, or Bytebase hides deactivated users by
    /// id), it is looked up by userName and, failing that, created again: never duplicated.
    async fn write_managed(
        &self,
        ws: &str,
        okta_id: &str,
        attributes: Option<&UserAttributes>,
        active: bool,
    ) -> Result<(), TargetError> {
        let (id, doc) = self
            .store
            .mirrored(ws, false, okta_id)
            .await
            .map_err(store_error)?
            .ok_or_else(|| TargetError {
                message: format!("no managed user for Okta user {okta_id}"),
                kind: TargetErrorKind::NotFound,
            })?;
        if self
            .update_user(&id, &doc, attributes, active, okta_id)
            .await?
        {
            return Ok(());
        }
        if !active {
            // Gone or hidden: either way it cannot log in.
            return Ok(());
        }
        let user_name = attributes
            .map(|a| a.user_name.clone())
            .or_else(|| {
                doc.get("userName")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .unwrap_or_default();
        match self.lookup(false, &user_name).await? {
            Some(found) => {
                let new_id = Self::id_of(&found)
                    .ok_or_else(|| invalid("the target's user has no id".into()))?;
                self.update_user(&new_id, &found, attributes, active, okta_id)
                    .await?;
                self.store
                    .record_user(ws, &new_id, Some(okta_id), &found)
                    .await
                    .map_err(store_error)
            }
            None => {
                let (attrs, _, _) = scim_wire::user_columns(&doc);
                self.create_user(ws, okta_id, attributes.unwrap_or(&attrs))
                    .await
            }
        }
    }

    async fn group_members(
        &self,
        ws: &str,
        okta_ids: &[String],
    ) -> Result<(Vec<String>, Vec<String>), TargetError> {
        let mut ids = Vec::new();
        let mut missing = Vec::new();
        for okta_id in okta_ids {
            match self
                .store
                .mirrored(ws, false, okta_id)
                .await
                .map_err(store_error)?
            {
                Some((id, _)) => ids.push(id),
                None => missing.push(okta_id.clone()),
            }
        }
        Ok((ids, missing))
    }

    /// Changes a pushed group's name or members: a PATCH, or (put mode) GET then PUT.
    async fn change_group(
        &self,
        group_id: &str,
        rename: Option<&str>,
        add: &[String],
        remove: &[String],
    ) -> Result<(), TargetError> {
        let path = format!("/Groups/{group_id}");
        let answer = if self.use_patch {
            let mut ops = Vec::new();
            if let Some(name) = rename {
                ops.push(json!({"op": "replace", "value": {"id": group_id, "displayName": name}}));
            }
            for id in remove {
                ops.push(
                    json!({"op": "remove", "path": format!("members[value eq \"{}\"]", quote(id))}),
                );
            }
            if !add.is_empty() {
                let members: Vec<Value> = add.iter().map(|id| json!({"value": id})).collect();
                ops.push(json!({"op": "add", "path": "members", "value": members}));
            }
            self.send(
                "PATCH",
                &path,
                Some(&json!({"schemas": [PATCH_URN], "Operations": ops})),
            )
            .await
            .map_err(failed)?
        } else {
            let current = self.send("GET", &path, None).await.map_err(failed)?;
            if !current.status.is_success() {
                return Err(Self::unexpected("GET", &path, &current));
            }
            let mut doc = scim_wire::change_group_members(&current.body, add, remove);
            if let (Some(name), Some(obj)) = (rename, doc.as_object_mut()) {
                obj.insert("displayName".into(), json!(name));
            }
            self.send("PUT", &path, Some(&outgoing(&doc)))
                .await
                .map_err(failed)?
        };
        if answer.status.is_success() {
            Ok(())
        } else {
            Err(Self::unexpected(
                if self.use_patch { "PATCH" } else { "PUT" },
                &path,
                &answer,
            ))
        }
    }

    async fn execute_op(&self, ws: &str, op: &Operation) -> Result<(), TargetError> {
        let mirror = |op: &Operation| {
            let op = op.clone();
            async move {
                self.store
                    .apply_operation(ws, &op)
                    .await
                    .map_err(store_error)
            }
        };
        match op {
            Operation::CreateUser { okta_id, attributes } => self.create_user(ws, okta_id, attributes).await,
            Operation::AdoptUser { okta_id, workspace_id, attributes, .. } => {
                let doc = self.store.user_doc(ws, workspace_id).await.map_err(store_error)?.unwrap_or(Value::Null);
                if !self.update_user(workspace_id, &doc, Some(attributes), true, okta_id).await? {
                    return Err(TargetError { message: format!("user {workspace_id} to adopt is gone"), kind: TargetErrorKind::NotFound });
                }
                mirror(op).await
            }
            Operation::UpdateUser { okta_id, to, .. } => {
                self.write_managed(ws, okta_id, Some(to), true).await?;
                mirror(op).await
            }
            Operation::ReactivateUser { okta_id, attributes, .. } => {
                self.write_managed(ws, okta_id, Some(attributes), true).await?;
                mirror(op).await
            }
            Operation::DeactivateUser { okta_id, .. } => {
                self.write_managed(ws, okta_id, None, false).await?;
                mirror(op).await
            }
            Operation::CreateGroup { okta_group_id, display_name, adopt } => {
                if adopt.is_some() {
                    return mirror(op).await;
                }
                let found = self.lookup(true, display_name).await?;
                let (id, doc) = match found {
                    Some(group) => (Self::id_of(&group).ok_or_else(|| invalid("the target's group has no id".into()))?, group),
                    None => {
                        let doc = json!({"schemas": [GROUP_URN], "displayName": display_name, "members": []});
                        let answer = self.send("POST", "/Groups", Some(&doc)).await.map_err(failed)?;
                        if !answer.status.is_success() {
                            return Err(Self::unexpected("POST", "/Groups", &answer));
                        }
                        match Self::id_of(&answer.body) {
                            Some(id) => (id, doc),
                            None => {
                                let group = self.lookup(true, display_name).await?.ok_or_else(|| invalid(format!("group {display_name} not found after creating it")))?;
                                (Self::id_of(&group).unwrap_or_default(), group)
                            }
                        }
                    }
                };
                let doc = scim_wire::merge_group(Some(&doc), display_name);
                let members: Vec<String> = scim_wire::group_member_ids(&doc);
                let doc = scim_wire::change_group_members(&doc, &[], &members);
                self.store.record_group(ws, &id, Some(okta_group_id), &doc).await.map_err(store_error)?;
                if !members.is_empty() {
                    // Push semantics: a linked group's members are Okta's; the plan adds them.
                    self.change_group(&id, None, &[], &members).await?;
                }
                Ok(())
            }
            Operation::RenameGroup { okta_group_id, to, .. } => {
                let (id, _) = self.mirrored_group(ws, okta_group_id).await?;
                self.change_group(&id, Some(to), &[], &[]).await?;
                mirror(op).await
            }
            Operation::AddMembers { okta_group_id, members } => {
                let (id, _) = self.mirrored_group(ws, okta_group_id).await?;
                let (ids, missing) = self.group_members(ws, members).await?;
                if !ids.is_empty() {
                    self.change_group(&id, None, &ids, &[]).await?;
                }
                let result = mirror(op).await;
                if !missing.is_empty() {
                    return Err(TargetError { message: format!("members not in the workspace yet: {}", missing.join(", ")), kind: TargetErrorKind::NotFound });
                }
                result
            }
            Operation::RemoveMembers { okta_group_id, members } => {
                let (id, _) = self.mirrored_group(ws, okta_group_id).await?;
                let ids: Vec<String> = members.iter().map(|m| m.workspace_id.clone()).collect();
                self.change_group(&id, None, &[], &ids).await?;
                mirror(op).await
            }
            Operation::UnlinkGroup { okta_group_id, delete, .. } => {
                if *delete {
                    let (id, _) = self.mirrored_group(ws, okta_group_id).await?;
                    let path = format!("/Groups/{id}");
                    let answer = self.send("DELETE", &path, None).await.map_err(failed)?;
                    if !answer.status.is_success() && answer.status != StatusCode::NOT_FOUND {
                        return Err(Self::unexpected("DELETE", &path, &answer));
                    }
                }
                mirror(op).await
            }
            Operation::PushUser(_) | Operation::PushGroup(_) | Operation::DeleteUser { .. } | Operation::DeleteGroup { .. } => Err(invalid(
                "inbound SCIM writes to a workspace whose target is a downstream SCIM server are not supported yet".into(),
            )),
        }
    }

    async fn mirrored_group(
        &self,
        ws: &str,
        okta_group_id: &str,
    ) -> Result<(String, Value), TargetError> {
        self.store
            .mirrored(ws, true, okta_group_id)
            .await
            .map_err(store_error)?
            .ok_or_else(|| TargetError {
                message: format!("pushed group {okta_group_id} does not exist"),
                kind: TargetErrorKind::NotFound,
            })
    }

    /// Reads every user or group of the target (paged by startIndex/count) into the
    /// mirror. Servers that ignore paging (Bytebase) are detected by a repeated page.
    async fn read_back(&self, ws: &str, group: bool) -> Result<(), TargetError> {
        let endpoint = if group { "Groups" } else { "Users" };
        let mut listed: Vec<String> = Vec::new();
        let mut start = 1usize;
        let mut total = None;
        loop {
            let path = format!("/{endpoint}?startIndex={start}&count=100");
            let answer = self.send("GET", &path, None).await.map_err(failed)?;
            if !answer.status.is_success() {
                return Err(Self::unexpected("GET", &path, &answer));
            }
            let resources = answer
                .body
                .get("Resources")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            total = total.or(answer.body.get("totalResults").and_then(Value::as_u64));
            let mut new = 0;
            for resource in &resources {
                let Some(id) = Self::id_of(resource) else {
                    continue;
                };
                if listed.contains(&id) {
                    continue;
                }
                new += 1;
                let result = if group {
                    let mut doc = resource.clone();
                    // Servers that never return members (Bytebase) keep the mirror's.
                    if doc
                        .get("members")
                        .and_then(Value::as_array)
                        .is_none_or(Vec::is_empty)
                        && let Ok(Some(known)) = self
                            .store
                            .scim_get(scim_wire::ResourceType::Group, ws, &id)
                            .await
                        && let (Some(obj), Some(m)) =
                            (doc.as_object_mut(), known.doc.get("members"))
                    {
                        obj.insert("members".into(), m.clone());
                    }
                    self.store
                        .record_group(ws, &id, None, &outgoing(&doc))
                        .await
                } else {
                    self.store
                        .record_user(ws, &id, None, &outgoing(resource))
                        .await
                };
                if let Err(e) = result {
                    tracing::warn!(workspace = ws, id = %id, error = %e, "cannot mirror a target object");
                }
                listed.push(id);
            }
            if resources.is_empty() || new == 0 || total.is_some_and(|t| listed.len() as u64 >= t) {
                break;
            }
            start += resources.len();
        }
        // Only a complete listing proves what vanished; a server that lists nothing without
        // a filter (Bytebase) proves nothing.
        if !listed.is_empty() && total.is_none_or(|t| listed.len() as u64 >= t) {
            self.store
                .forget_missing(ws, group, &listed)
                .await
                .map_err(store_error)?;
        }
        Ok(())
    }
}

impl WorkspaceTarget for ScimTarget {
    fn max_in_flight(&self, _workspace_id: &str) -> usize {
        self.max_in_flight
    }

    async fn load(&self, workspace_id: &str) -> Result<WorkspaceState, TargetError> {
        self.read_back(workspace_id, false).await?;
        self.read_back(workspace_id, true).await?;
        self.store
            .load_workspace(workspace_id)
            .await
            .map_err(store_error)
    }

    async fn execute(&self, workspace_id: &str, operation: &Operation) -> Result<(), TargetError> {
        self.execute_op(workspace_id, operation).await
    }
}
