-- The workspace as oktasync knows it (for the `local` target: the workspace itself), the
-- journal of operations, cycles and held plans. Timestamps are Unix epoch milliseconds.
CREATE TABLE workspace_users (
    workspace_id    TEXT    NOT NULL,
    id              TEXT    NOT NULL,
    okta_id         TEXT,
    external_id     TEXT,
    user_name       TEXT    NOT NULL,
    user_name_lower TEXT    NOT NULL,
    given_name      TEXT,
    family_name     TEXT,
    display_name    TEXT,
    email           TEXT,
    active          BOOLEAN NOT NULL,
    -- The user as a SCIM resource (without id and meta): the columns above are derived
    -- from it, so attributes a SCIM client sets but the engine does not map survive.
    doc             TEXT    NOT NULL,
    -- When a SCIM client last wrote this user: a pull whose Okta read started earlier
    -- must not revert that write.
    pushed_at       BIGINT,
    version         BIGINT  NOT NULL DEFAULT 1,
    created_at      BIGINT  NOT NULL,
    updated_at      BIGINT  NOT NULL,
    PRIMARY KEY (workspace_id, id)
);
CREATE UNIQUE INDEX workspace_users_okta_id ON workspace_users (workspace_id, okta_id) WHERE okta_id IS NOT NULL;
CREATE UNIQUE INDEX workspace_users_user_name ON workspace_users (workspace_id, user_name_lower);
CREATE INDEX workspace_users_external_id ON workspace_users (workspace_id, external_id);

CREATE TABLE workspace_groups (
    workspace_id  TEXT   NOT NULL,
    id            TEXT   NOT NULL,
    okta_group_id TEXT,
    external_id   TEXT,
    display_name  TEXT   NOT NULL,
    doc           TEXT   NOT NULL,
    pushed_at     BIGINT,
    version       BIGINT NOT NULL DEFAULT 1,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, id)
);
CREATE UNIQUE INDEX workspace_groups_okta_id ON workspace_groups (workspace_id, okta_group_id) WHERE okta_group_id IS NOT NULL;

-- Members are users, or groups when a SCIM client nests them; no foreign key to users
-- for that reason: deleting a user deletes its memberships explicitly.
CREATE TABLE workspace_group_members (
    workspace_id TEXT NOT NULL,
    group_id     TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    PRIMARY KEY (workspace_id, group_id, user_id),
    FOREIGN KEY (workspace_id, group_id) REFERENCES workspace_groups (workspace_id, id) ON DELETE CASCADE
);
CREATE INDEX workspace_group_members_member ON workspace_group_members (workspace_id, user_id);
CREATE INDEX workspace_groups_name ON workspace_groups (workspace_id, display_name);

CREATE TABLE cycles (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    workspace_id TEXT    NOT NULL,
    dry_run      BOOLEAN NOT NULL,
    started_at   BIGINT  NOT NULL,
    finished_at  BIGINT,
    outcome      TEXT,
    summary      TEXT
);

CREATE TABLE journal (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    -- NULL for operations received over inbound SCIM.
    cycle_id     BIGINT REFERENCES cycles (id),
    source       TEXT   NOT NULL,
    workspace_id TEXT   NOT NULL,
    seq          BIGINT NOT NULL,
    op           TEXT   NOT NULL,
    okta_id      TEXT   NOT NULL,
    detail       TEXT   NOT NULL,
    status       TEXT   NOT NULL,
    error        TEXT,
    created_at   BIGINT NOT NULL,
    finished_at  BIGINT
);
CREATE INDEX journal_pending ON journal (workspace_id, status);

CREATE TABLE held_plans (
    id            TEXT   PRIMARY KEY,
    workspace_id  TEXT   NOT NULL,
    deactivations TEXT   NOT NULL,
    created_at    BIGINT NOT NULL,
    approved_at   BIGINT,
    consumed_at   BIGINT
);
