//! Okta's wire shapes: borrowed `Serialize` views of the world's records, written straight
//! into the response body while the read lock is held, so serving a page never clones the
//! records it shows.

use serde::Serialize;

use crate::clock::{Ts, TsMillis, TsNoMillis};
use crate::ids;
use crate::syslog::{ACTOR_ID, ACTOR_LOGIN, Event, Target};
use crate::world::{App, AppUser, Group, GroupAssignment, PushMapping, User, World};

#[derive(Serialize)]
pub struct Href {
    href: String,
}

fn href(s: String) -> Href {
    Href { href: s }
}

#[derive(Serialize)]
pub struct SelfLinks {
    #[serde(rename = "self")]
    self_: Href,
}

#[derive(Serialize)]
struct TypeRef {
    id: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct UserProfile<'a> {
    first_name: Option<&'a str>,
    last_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    display_name: Option<&'a str>,
    mobile_phone: Option<&'a str>,
    second_email: Option<&'a str>,
    login: &'a str,
    email: &'a str,
}

#[derive(Serialize)]
struct Empty {}

#[derive(Serialize)]
struct Provider {
    #[serde(rename = "type")]
    kind: &'static str,
    name: &'static str,
}

#[derive(Serialize)]
struct Credentials {
    #[serde(skip_serializing_if = "Option::is_none")]
    password: Option<Empty>,
    provider: Provider,
}

/// The `User` object as list and get endpoints return it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserJson<'a> {
    id: &'a str,
    status: &'static str,
    created: Ts,
    activated: Option<Ts>,
    status_changed: Option<Ts>,
    last_login: Option<Ts>,
    last_updated: Ts,
    password_changed: Option<Ts>,
    #[serde(rename = "type")]
    user_type: TypeRef,
    profile: UserProfile<'a>,
    credentials: Credentials,
    #[serde(rename = "_links")]
    links: SelfLinks,
}

pub fn user<'a>(base: &str, u: &'a User) -> UserJson<'a> {
    UserJson {
        id: &u.id,
        status: u.status.as_str(),
        created: Ts(u.created),
        activated: u.activated.map(Ts),
        status_changed: u.status_changed.map(Ts),
        last_login: u.last_login.map(Ts),
        last_updated: Ts(u.last_updated),
        password_changed: u.password_changed.map(Ts),
        user_type: TypeRef {
            id: ids::USER_TYPE_ID,
        },
        profile: UserProfile {
            first_name: u.first_name.as_deref(),
            last_name: u.last_name.as_deref(),
            display_name: u.display_name.as_deref(),
            mobile_phone: None,
            second_email: None,
            login: &u.login,
            email: &u.email,
        },
        credentials: Credentials {
            // A user who never set a password (STAGED/PROVISIONED) has none.
            password: u.password_changed.map(|_| Empty {}),
            provider: Provider {
                kind: "OKTA",
                name: "OKTA",
            },
        },
        links: SelfLinks {
            self_: href(format!("{base}/api/v1/users/{}", u.id)),
        },
    }
}

#[derive(Serialize)]
struct GroupProfile<'a> {
    name: &'a str,
    description: Option<&'a str>,
}

#[derive(Serialize)]
struct Logo {
    name: &'static str,
    href: String,
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Serialize)]
struct GroupLinks {
    logo: [Logo; 2],
    users: Href,
    apps: Href,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GroupStats {
    users_count: usize,
    apps_count: usize,
    group_push_mappings_count: usize,
    /// Okta's spelling.
    has_admin_privlege: bool,
}

#[derive(Serialize)]
struct GroupEmbedded {
    stats: GroupStats,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupJson<'a> {
    id: &'a str,
    created: Ts,
    last_updated: Ts,
    last_membership_updated: Ts,
    object_class: [&'static str; 1],
    #[serde(rename = "type")]
    kind: &'static str,
    profile: GroupProfile<'a>,
    #[serde(rename = "_embedded", skip_serializing_if = "Option::is_none")]
    embedded: Option<GroupEmbedded>,
    #[serde(rename = "_links")]
    links: GroupLinks,
}

/// A group; `world` is given when `expand=stats` asks for `_embedded.stats`.
pub fn group<'a>(base: &str, g: &'a Group, stats_from: Option<&World>) -> GroupJson<'a> {
    GroupJson {
        id: &g.id,
        created: Ts(g.created),
        last_updated: Ts(g.last_updated),
        last_membership_updated: Ts(g.last_membership_updated),
        object_class: ["okta:user_group"],
        kind: "OKTA_GROUP",
        profile: GroupProfile {
            name: &g.name,
            description: g.description.as_deref(),
        },
        embedded: stats_from.map(|w| GroupEmbedded {
            stats: GroupStats {
                users_count: g.members.len(),
                apps_count: g.apps.len(),
                group_push_mappings_count: w
                    .apps
                    .values()
                    .filter(|a| a.mapping_for_group(&g.id).is_some())
                    .count(),
                has_admin_privlege: false,
            },
        }),
        links: GroupLinks {
            logo: [
                Logo {
                    name: "medium",
                    href: format!("{base}/img/logos/groups/okta-medium.png"),
                    kind: "image/png",
                },
                Logo {
                    name: "large",
                    href: format!("{base}/img/logos/groups/okta-large.png"),
                    kind: "image/png",
                },
            ],
            users: href(format!("{base}/api/v1/groups/{}/users", g.id)),
            apps: href(format!("{base}/api/v1/groups/{}/apps", g.id)),
        },
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AppUserCredentials<'a> {
    user_name: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AppUserProfile<'a> {
    email: &'a str,
    first_name: Option<&'a str>,
    last_name: Option<&'a str>,
    display_name: String,
}

#[derive(Serialize)]
struct AppUserLinks {
    app: Href,
    user: Href,
    #[serde(skip_serializing_if = "Option::is_none")]
    group: Option<Href>,
}

#[derive(Serialize)]
struct AppUserEmbedded<'a> {
    user: UserJson<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AppUserJson<'a> {
    id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    external_id: Option<String>,
    created: Ts,
    last_updated: Ts,
    scope: &'static str,
    status: &'static str,
    status_changed: Ts,
    password_changed: Option<Ts>,
    sync_state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_sync: Option<Ts>,
    credentials: AppUserCredentials<'a>,
    profile: AppUserProfile<'a>,
    #[serde(rename = "_embedded", skip_serializing_if = "Option::is_none")]
    embedded: Option<AppUserEmbedded<'a>>,
    #[serde(rename = "_links")]
    links: AppUserLinks,
}

pub fn app_user<'a>(
    base: &str,
    app: &App,
    u: &'a User,
    au: &AppUser,
    expand_user: bool,
) -> AppUserJson<'a> {
    let scope = if au.direct { "USER" } else { "GROUP" };
    // Link the first assigned group that grants the app, as Okta does for GROUP scope.
    let group = (!au.direct)
        .then(|| u.groups.iter().find(|g| app.groups.contains_key(*g)))
        .flatten()
        .map(|g| href(format!("{base}/api/v1/groups/{g}")));
    AppUserJson {
        id: &u.id,
        external_id: au
            .provisioned
            .then(|| format!("ext{}", u.id.get(3..).unwrap_or(&u.id))),
        created: Ts(au.created),
        last_updated: Ts(au.last_updated),
        scope,
        status: if au.provisioned {
            "PROVISIONED"
        } else {
            "ACTIVE"
        },
        status_changed: Ts(au.status_changed),
        password_changed: None,
        sync_state: if au.provisioned {
            "SYNCHRONIZED"
        } else {
            "DISABLED"
        },
        last_sync: au.provisioned.then_some(Ts(au.last_updated)),
        credentials: AppUserCredentials {
            user_name: &u.login,
        },
        profile: AppUserProfile {
            email: &u.email,
            first_name: u.first_name.as_deref(),
            last_name: u.last_name.as_deref(),
            display_name: u.display_name.clone().unwrap_or_else(|| u.full_name()),
        },
        embedded: expand_user.then(|| AppUserEmbedded {
            user: user(base, u),
        }),
        links: AppUserLinks {
            app: href(format!("{base}/api/v1/apps/{}", app.id)),
            user: href(format!("{base}/api/v1/users/{}", u.id)),
            group,
        },
    }
}

#[derive(Serialize)]
struct AppGroupLinks {
    app: Href,
    #[serde(rename = "self")]
    self_: Href,
    group: Href,
}

#[derive(Serialize)]
struct AppGroupEmbedded<'a> {
    group: GroupJson<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AppGroupJson<'a> {
    id: &'a str,
    last_updated: Ts,
    priority: u32,
    profile: Empty,
    #[serde(rename = "_embedded", skip_serializing_if = "Option::is_none")]
    embedded: Option<AppGroupEmbedded<'a>>,
    #[serde(rename = "_links")]
    links: AppGroupLinks,
}

pub fn app_group<'a>(
    base: &str,
    app: &App,
    gid: &'a str,
    ga: &GroupAssignment,
    expand: Option<&'a Group>,
) -> AppGroupJson<'a> {
    AppGroupJson {
        id: gid,
        last_updated: Ts(ga.last_updated),
        priority: ga.priority,
        profile: Empty {},
        embedded: expand.map(|g| AppGroupEmbedded {
            group: group(base, g, None),
        }),
        links: AppGroupLinks {
            app: href(format!("{base}/api/v1/apps/{}", app.id)),
            self_: href(format!("{base}/api/v1/apps/{}/groups/{gid}", app.id)),
            group: href(format!("{base}/api/v1/groups/{gid}")),
        },
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PushLinks {
    app: Href,
    source_group: Href,
    target_group: Href,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PushMappingJson<'a> {
    created: TsNoMillis,
    error_summary: &'static str,
    id: &'a str,
    last_push: Option<TsNoMillis>,
    last_updated: TsNoMillis,
    source_group_id: &'a str,
    status: &'static str,
    target_group_id: &'a str,
    #[serde(rename = "_links")]
    links: PushLinks,
}

pub fn push_mapping<'a>(base: &str, app_id: &str, m: &'a PushMapping) -> PushMappingJson<'a> {
    PushMappingJson {
        created: TsNoMillis(m.created),
        error_summary: "",
        id: &m.id,
        last_push: m.last_push.map(TsNoMillis),
        last_updated: TsNoMillis(m.last_updated),
        source_group_id: &m.source_group_id,
        status: m.status.as_str(),
        target_group_id: &m.target_group_id,
        links: PushLinks {
            app: href(format!("{base}/api/v1/apps/{app_id}")),
            source_group: href(format!("{base}/api/v1/groups/{}", m.source_group_id)),
            target_group: href(format!("{base}/api/v1/groups/{}", m.target_group_id)),
        },
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Actor {
    id: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
    alternate_id: &'static str,
    display_name: &'static str,
    detail_entry: Option<()>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TargetJson<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    alternate_id: &'a str,
    display_name: &'a str,
    detail_entry: Option<()>,
}

#[derive(Serialize)]
struct Outcome {
    result: &'static str,
    reason: Option<()>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct UserAgent {
    raw_user_agent: &'static str,
    os: &'static str,
    browser: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Client {
    user_agent: UserAgent,
    zone: &'static str,
    device: &'static str,
    id: Option<()>,
    ip_address: &'static str,
}

#[derive(Serialize)]
struct Transaction {
    #[serde(rename = "type")]
    kind: &'static str,
    id: String,
    detail: Empty,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DebugData {
    request_id: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DebugContext {
    debug_data: DebugData,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventJson<'a> {
    uuid: &'a str,
    published: TsMillis,
    event_type: &'static str,
    version: &'static str,
    severity: &'static str,
    display_message: &'static str,
    legacy_event_type: Option<()>,
    actor: Actor,
    client: Client,
    outcome: Outcome,
    transaction: Transaction,
    debug_context: DebugContext,
    target: Vec<TargetJson<'a>>,
}

fn target(t: &Target) -> TargetJson<'_> {
    TargetJson {
        id: &t.id,
        kind: t.kind,
        alternate_id: &t.alternate_id,
        display_name: &t.display_name,
        detail_entry: None,
    }
}

/// A rendered value with every `null` member left out (`Options::omit_log_nulls`).
pub fn without_nulls(value: Result<serde_json::Value, serde_json::Error>) -> serde_json::Value {
    fn strip(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(map) => {
                map.retain(|_, v| !v.is_null());
                map.values_mut().for_each(strip);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let mut value = value.unwrap_or_default();
    strip(&mut value);
    value
}

pub fn event(e: &Event) -> EventJson<'_> {
    let tx = format!("W{}", e.uuid.replace('-', ""));
    EventJson {
        uuid: &e.uuid,
        published: TsMillis(e.published_ms),
        event_type: e.event_type.name(),
        version: "0",
        severity: "INFO",
        display_message: e.event_type.display_message(),
        legacy_event_type: None,
        actor: Actor {
            id: ACTOR_ID,
            kind: "User",
            alternate_id: ACTOR_LOGIN,
            display_name: "Fake Admin",
            detail_entry: None,
        },
        client: Client {
            user_agent: UserAgent {
                raw_user_agent: "oktasync-fake-okta",
                os: "Unknown",
                browser: "UNKNOWN",
            },
            zone: "null",
            device: "Unknown",
            id: None,
            ip_address: "127.0.0.1",
        },
        outcome: Outcome {
            result: "SUCCESS",
            reason: None,
        },
        debug_context: DebugContext {
            debug_data: DebugData {
                request_id: tx.clone(),
            },
        },
        transaction: Transaction {
            kind: "WEB",
            id: tx,
            detail: Empty {},
        },
        target: e.targets.iter().map(target).collect(),
    }
}
