-- Each stored Okta read in a row of its own, never updated: staging inserts one, promoting
-- moves a reference and deletes the read it replaces. Rewriting a row that held two
-- snapshots (tens of MB of JSON) made SQLite load them whole at every stage and promote.
-- Reads kept by 0003 are dropped: the next cycle reads Okta in full.
CREATE TABLE okta_reads (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    org      TEXT    NOT NULL,
    snapshot TEXT    NOT NULL
);
DELETE FROM okta_snapshots;
ALTER TABLE okta_snapshots DROP COLUMN snapshot;
ALTER TABLE okta_snapshots DROP COLUMN pending_snapshot;
ALTER TABLE okta_snapshots ADD COLUMN read_id BIGINT;
ALTER TABLE okta_snapshots ADD COLUMN pending_read_id BIGINT;
