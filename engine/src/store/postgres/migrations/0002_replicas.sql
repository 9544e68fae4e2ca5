-- Version 2: several replicas on one database.

-- The leader's lease: one row. The epoch goes up at every change of
-- holder and is the fencing token every leader write checks; expiry is by
-- the database's clock, never a replica's.
-- `address` is where the holder's API answers: followers relay the
-- admin's reads of the plan there.
CREATE TABLE leader_lease (
    name text PRIMARY KEY,
    holder text,
    address text,
    epoch bigint NOT NULL,
    expires_at timestamptz NOT NULL
);
INSERT INTO leader_lease (name, holder, address, epoch, expires_at) VALUES ('engine', NULL, NULL, 0, '-infinity');

-- Every device's signed desired state as served, so every replica answers
-- the same ETag and bytes. `seq` orders publications: a replica catches up
-- with what was published after the last one it applied.
CREATE TABLE signed_desired (
    device text PRIMARY KEY,
    generation bigint NOT NULL,
    etag text NOT NULL,
    body bytea NOT NULL,
    issued_at text NOT NULL,
    expires_at text NOT NULL,
    digest text NOT NULL,
    seq bigint NOT NULL
);
CREATE INDEX signed_desired_by_seq ON signed_desired (seq);
INSERT INTO counter (name, value) VALUES ('desired', 0);
