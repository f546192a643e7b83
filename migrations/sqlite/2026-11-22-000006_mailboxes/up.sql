-- Mailboxes (users): an address on one of its customer's domains. The stored address is
-- `local@ascii-domain`, unique across the installation. Role addresses (postmaster@, abuse@) are
-- created with their domain, consume no seat, and go only with it.
CREATE TABLE mailboxes (
    id            TEXT PRIMARY KEY NOT NULL,
    node_id       TEXT NOT NULL REFERENCES nodes (id),
    domain_id     TEXT NOT NULL REFERENCES domains (id),
    local_part    TEXT NOT NULL,
    address       TEXT NOT NULL UNIQUE,
    display_name  TEXT,
    first_name    TEXT,
    last_name     TEXT,
    contact_email TEXT,
    status        TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
    origin        TEXT NOT NULL CHECK (origin IN ('manual', 'import', 'check', 'role')),
    first_seen_at TIMESTAMP,
    last_seen_at  TIMESTAMP,
    version       BIGINT NOT NULL DEFAULT 1,
    created_at    TIMESTAMP NOT NULL,
    updated_at    TIMESTAMP NOT NULL
);
CREATE INDEX mailboxes_node ON mailboxes (node_id);
CREATE INDEX mailboxes_domain ON mailboxes (domain_id);
