-- patchward's store in PostgreSQL, version 1: every table of the embedded
-- store's layout (see store/fleet.rs), one row per record. JSON records are
-- jsonb (readable with SQL); a catalog record keeps its exact bytes, which
-- its source's digest covers.

CREATE TABLE catalog_source (
    name text PRIMARY KEY,
    state jsonb NOT NULL
);

CREATE TABLE catalog_patch (
    id text PRIMARY KEY,
    record bytea NOT NULL
);

-- When each rule first matched each patch: written once, never moved.
CREATE TABLE ledger (
    rule text NOT NULL,
    patch text NOT NULL,
    first_matched text NOT NULL,
    PRIMARY KEY (rule, patch)
);

-- Secrets are kept only as their sha256.
CREATE TABLE enrollment_token (
    hash text PRIMARY KEY,
    record jsonb NOT NULL
);

CREATE TABLE device (
    id text PRIMARY KEY,
    record jsonb NOT NULL
);

CREATE TABLE credential (
    hash text PRIMARY KEY,
    device text NOT NULL REFERENCES device (id)
);

CREATE TABLE event (
    device text NOT NULL REFERENCES device (id),
    seq bigint NOT NULL,
    record jsonb NOT NULL,
    PRIMARY KEY (device, seq)
);

-- Gap-free: a sequence number is taken from `counter` in the transaction
-- that writes the entry, so a rollback gives it back.
CREATE TABLE audit (
    seq bigint PRIMARY KEY,
    record jsonb NOT NULL
);

CREATE TABLE counter (
    name text PRIMARY KEY,
    value bigint NOT NULL
);
INSERT INTO counter (name, value) VALUES ('audit', 0);

CREATE TABLE desired (
    device text PRIMARY KEY,
    generation bigint NOT NULL,
    digest text NOT NULL
);

CREATE TABLE access_token (
    hash text PRIMARY KEY,
    record jsonb NOT NULL
);

CREATE TABLE engine_state (
    name text PRIMARY KEY,
    value jsonb NOT NULL
);

CREATE TABLE exposure (
    device text PRIMARY KEY,
    record jsonb NOT NULL
);
