-- A stored Okta read is written in parts of at most 1 MB: inserting a 100k-user read as one
-- 20 MB value made the database driver and SQLite copy it twice more, at the moment the
-- cycle's memory peaks (the whole snapshot still held). A read stored whole before this keeps
-- its `okta_reads.snapshot`; a read stored in parts leaves that column empty.
CREATE TABLE okta_read_parts (
    read_id BIGINT  NOT NULL REFERENCES okta_reads (id) ON DELETE CASCADE,
    part    INTEGER NOT NULL,
    text    TEXT    NOT NULL,
    PRIMARY KEY (read_id, part)
);
