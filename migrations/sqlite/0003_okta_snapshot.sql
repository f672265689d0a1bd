-- The last complete Okta read, kept so the next cycle reads only what changed since. One
-- row per Okta org. `scope` names the apps the read covered: a read for other apps starts
-- over with a full read. A new read is written to the pending columns and promoted by the
-- cycle once it has applied, so the watermarks advance only after a successful apply.
CREATE TABLE okta_snapshots (
    org                TEXT   PRIMARY KEY,
    scope              TEXT,
    snapshot           TEXT,
    checkpoint         TEXT,
    full_read_at       BIGINT,
    updated_at         BIGINT,
    pending_scope      TEXT,
    pending_snapshot   TEXT,
    pending_checkpoint TEXT,
    pending_full       BOOLEAN,
    pending_at         BIGINT
);
