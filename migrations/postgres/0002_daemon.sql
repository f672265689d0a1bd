-- The daemon's bookkeeping on top of the cycles table: which run a cycle belonged to (one
-- run reconciles every pulled workspace under the cycle lock), what started it, on which
-- instance, and whether the scheduler meant it as a full sweep. Cycles recorded before this
-- migration keep NULLs and count as full sweeps (every read was full then).
ALTER TABLE cycles ADD COLUMN run_id TEXT;
ALTER TABLE cycles ADD COLUMN triggered_by TEXT;
ALTER TABLE cycles ADD COLUMN instance TEXT;
ALTER TABLE cycles ADD COLUMN full_sweep BOOLEAN NOT NULL DEFAULT TRUE;
CREATE INDEX cycles_started ON cycles (started_at);
-- `history --since` reads the journal by time; `status` finds each object's latest entries.
CREATE INDEX journal_created ON journal (created_at);
CREATE INDEX journal_object ON journal (workspace_id, okta_id, id);
