-- Aliases: more addresses for a mailbox, on any of its customer's domains. An address is unique
-- across mailboxes and aliases together; both are only ever written under the customer's lock (a
-- domain belongs to one customer), so the check in the write transaction is race-free.
CREATE TABLE aliases (
    id         TEXT PRIMARY KEY NOT NULL,
    mailbox_id TEXT NOT NULL REFERENCES mailboxes (id),
    node_id    TEXT NOT NULL REFERENCES nodes (id),
    domain_id  TEXT NOT NULL REFERENCES domains (id),
    local_part TEXT NOT NULL,
    address    TEXT NOT NULL UNIQUE,
    created_at TIMESTAMP NOT NULL
);
CREATE INDEX aliases_mailbox ON aliases (mailbox_id);
CREATE INDEX aliases_domain ON aliases (domain_id);

-- A customer setting: how many aliases one mailbox may have.
ALTER TABLE nodes ADD COLUMN max_aliases_per_mailbox INTEGER NOT NULL DEFAULT 10
    CHECK (max_aliases_per_mailbox BETWEEN 0 AND 1000);
