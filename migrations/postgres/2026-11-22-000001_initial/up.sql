-- The tree, the people who log in, the installation's own settings, and the audit trail.
-- Ids are UUID text (the same representation on both backends, so one diesel schema serves both).
-- Timestamps are UTC in `timestamp` columns (without zone: the application only ever writes UTC).

CREATE TABLE nodes (
    id            TEXT PRIMARY KEY NOT NULL,
    parent_id     TEXT REFERENCES nodes (id),
    -- Materialised path of ids from the root, '/<root>/<...>/<id>/': a subtree is one range scan
    -- (path >= '/a/b/' AND path < '/a/b0'), a move rewrites the moved subtree's prefix. COLLATE "C"
    -- makes that range byte order, whatever the database's default collation.
    path          TEXT COLLATE "C" NOT NULL UNIQUE,
    kind          TEXT NOT NULL CHECK (kind IN ('owner', 'reseller', 'customer')),
    name          TEXT NOT NULL,
    description   TEXT,
    contact_phone TEXT,
    contact_email TEXT,
    status        TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended')),
    version       BIGINT NOT NULL DEFAULT 1,
    created_at    TIMESTAMP NOT NULL,
    updated_at    TIMESTAMP NOT NULL,
    -- Only the owner is parentless, and only the owner may be.
    CHECK ((kind = 'owner') = (parent_id IS NULL))
);
-- The owner exists once.
CREATE UNIQUE INDEX nodes_one_owner ON nodes (kind) WHERE kind = 'owner';
CREATE INDEX nodes_parent ON nodes (parent_id);

CREATE TABLE accounts (
    id            TEXT PRIMARY KEY NOT NULL,
    node_id       TEXT NOT NULL REFERENCES nodes (id),
    username      TEXT NOT NULL UNIQUE,
    email         TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('admin', 'manager', 'viewer', 'check')),
    -- argon2id PHC string; the password itself is never stored.
    password_hash TEXT NOT NULL,
    disabled      BOOLEAN NOT NULL DEFAULT FALSE,
    version       BIGINT NOT NULL DEFAULT 1,
    created_at    TIMESTAMP NOT NULL,
    updated_at    TIMESTAMP NOT NULL
);
CREATE INDEX accounts_node ON accounts (node_id);

-- Values the installation generates for itself on first start (the embedded JWT signing key).
CREATE TABLE settings (
    name  TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);

-- Appended, never changed. `before`/`after` are JSON documents without secrets (text, not jsonb,
-- so both backends share one schema).
CREATE TABLE audit_events (
    id          TEXT PRIMARY KEY NOT NULL,
    at          TIMESTAMP NOT NULL,
    -- 'account:<id>', 'api_key:<id>' or 'system' (start-up, the command line).
    actor       TEXT NOT NULL,
    node_id     TEXT NOT NULL,
    action      TEXT NOT NULL,
    target_kind TEXT NOT NULL,
    target_id   TEXT NOT NULL,
    before      TEXT,
    after       TEXT,
    request_id  TEXT
);
-- Deliberately no foreign key to nodes: the trail outlives what it describes.
CREATE INDEX audit_events_node_at ON audit_events (node_id, at);
