//! Okta's JSON, as the Management API sends it, and its translation into the domain model.
//! Only the fields oktasync reads are declared; unknown fields are ignored (Okta adds
//! properties at any time) and nullable ones are `Option`.

use serde::Deserialize;

use crate::model::{AssignmentScope, OktaGroup, OktaProfile, OktaUser, OktaUserStatus};

#[derive(Debug, Deserialize)]
pub struct User {
    pub id: String,
    pub status: String,
    pub profile: UserProfile,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserProfile {
    pub login: String,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub first_name: Option<String>,
    #[serde(default)]
    pub last_name: Option<String>,
    #[serde(default)]
    pub display_name: Option<String>,
}

impl From<User> for OktaUser {
    fn from(u: User) -> Self {
        OktaUser {
            id: u.id,
            status: OktaUserStatus::parse(&u.status),
            profile: OktaProfile {
                login: u.profile.login,
                email: u.profile.email,
                first_name: u.profile.first_name,
                last_name: u.profile.last_name,
                display_name: u.profile.display_name,
            },
        }
    }
}

/// A member as listed by `/groups/{id}/users`: only the id matters there.
#[derive(Debug, Deserialize)]
pub struct Member {
    pub id: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Group {
    pub id: String,
    pub profile: GroupProfile,
    /// Moves on every membership change (`lastUpdated` follows the profile only).
    #[serde(default)]
    pub last_membership_updated: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct GroupProfile {
    pub name: String,
}

impl From<Group> for OktaGroup {
    fn from(g: Group) -> Self {
        OktaGroup {
            id: g.id,
            name: g.profile.name,
        }
    }
}

/// `AppUser`: `id` is the Okta user id; `scope` is USER or GROUP.
#[derive(Debug, Deserialize)]
pub struct AppUser {
    pub id: String,
    pub scope: String,
}

impl AppUser {
    pub fn assignment_scope(&self) -> AssignmentScope {
        if self.scope.eq_ignore_ascii_case("GROUP") {
            AssignmentScope::Group
        } else {
            AssignmentScope::User
        }
    }
}

/// `ApplicationGroupAssignment`: `id` is the Okta group id.
#[derive(Debug, Deserialize)]
pub struct AppGroup {
    pub id: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupPushMapping {
    pub source_group_id: String,
    pub status: String,
}

/// A System Log event (`LogEvent`): only what says which objects to re-read.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogEvent {
    pub event_type: String,
    #[serde(default)]
    pub target: Option<Vec<LogTarget>>,
}

#[derive(Debug, Deserialize)]
pub struct LogTarget {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
}

impl LogEvent {
    /// The ids of the event's targets of one type (`User`, `UserGroup`, `AppInstance`).
    pub fn targets<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.target
            .iter()
            .flatten()
            .filter(move |t| t.kind == kind)
            .map(|t| t.id.as_str())
    }
}

/// Okta's error body. Only `errorCode` is meant for control flow.
#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    #[serde(default)]
    pub error_code: Option<String>,
    #[serde(default)]
    pub error_summary: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_spec_example_user_with_nulls_and_unknown_fields() {
        let body = r#"[{"id":"00u118oQYT4TBTemp0g4","status":"ACTIVE","created":"2022-04-04T15:56:05.000Z",
          "activated":null,"statusChanged":null,"lastLogin":"2022-05-04T19:50:52.000Z",
          "lastUpdated":"2022-05-05T18:15:44.000Z","passwordChanged":"2022-04-04T16:00:22.000Z",
          "type":{"id":"oty1162QAr8hJjTaq0g4"},
          "profile":{"firstName":"Alice","lastName":"Smith","mobilePhone":null,"secondEmail":null,
                     "login":"alice.smith@example.com","email":"alice.smith@example.com"},
          "credentials":{"password":{},"provider":{"type":"OKTA","name":"OKTA"}},
          "_links":{"self":{"href":"https://x/api/v1/users/00u118oQYT4TBGuay0g4"}}}]"#;
        let users: Vec<User> = match serde_json::from_str(body) {
            Ok(u) => u,
            Err(e) => panic!("parse: {e}"),
        };
        let user = OktaUser::from(
            users
                .into_iter()
                .next()
                .unwrap_or_else(|| panic!("one user")),
        );
        assert_eq!(user.status, OktaUserStatus::Active);
        assert_eq!(user.profile.login, "alice.smith@example.com");
        assert_eq!(user.profile.display_name, None);
        assert_eq!(user.profile.first_name.as_deref(), Some("Alice"));
    }

    #[test]
    fn a_user_without_login_is_rejected() {
        let body = r#"{"id":"00u1","status":"ACTIVE","profile":{"email":"a@b.c"}}"#;
        assert!(serde_json::from_str::<User>(body).is_err());
    }
}
