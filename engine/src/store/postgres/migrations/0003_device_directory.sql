-- Version 3: the device directory (store::directory) catches up with the
-- rows other replicas wrote.

-- The transaction that last wrote the row. A replica reads the rows
-- written by transactions at least as new as the oldest one still running
-- at its previous read, so a write committed late is never skipped.
ALTER TABLE device ADD COLUMN written_by xid8 NOT NULL DEFAULT pg_current_xact_id();
CREATE INDEX device_by_written_by ON device (written_by);
