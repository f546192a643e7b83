-- The tree's allocations, the module catalogue (the resources besides users and domains), and the
-- per-customer usage counters the invariant reads.

-- Nodes are never removed: a deleted node keeps its id (never reused) and its history, and only
-- disappears from the API. Sibling names are unique among live nodes.
ALTER TABLE nodes ADD COLUMN deleted_at TIMESTAMP;
CREATE UNIQUE INDEX nodes_sibling_name ON nodes (parent_id, name) WHERE deleted_at IS NULL;

-- A grant of `amount` units of `resource` to `node_id` from `grantor_id`, valid on the days
-- [starts_on, ends_on) (open-ended when ends_on is NULL) while `active`. The grantor is stored
-- rather than derived from the tree so that a move keeps history right: the grants from the old
-- parent end, those from the new one begin. The owner's bulk licence is its grants with no grantor.
-- Never deleted: ending a grant is an update, and the audit trail keeps every version.
CREATE TABLE allocations (
    id          TEXT PRIMARY KEY NOT NULL,
    node_id     TEXT NOT NULL REFERENCES nodes (id),
    grantor_id  TEXT REFERENCES nodes (id),
    resource    TEXT NOT NULL,
    amount      BIGINT NOT NULL CHECK (amount >= 0),
    starts_on   DATE NOT NULL,
    ends_on     DATE CHECK (ends_on IS NULL OR ends_on > starts_on),
    active      BOOLEAN NOT NULL DEFAULT TRUE,
    description TEXT,
    version     BIGINT NOT NULL DEFAULT 1,
    created_at  TIMESTAMP NOT NULL,
    updated_at  TIMESTAMP NOT NULL
);
-- A node's limit: its grants. What a node has allocated: the grants it made.
CREATE INDEX allocations_node ON allocations (node_id, resource);
CREATE INDEX allocations_grantor ON allocations (grantor_id, resource);

-- The catalogue of add-on modules. Each is the resource 'module:<code>'.
CREATE TABLE modules (
    code        TEXT PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    unit        TEXT NOT NULL CHECK (unit IN ('per_mailbox', 'per_customer')),
    auto_assign BOOLEAN NOT NULL DEFAULT FALSE,
    -- A retired module grants no new seats; it is kept because seats may still exist.
    retired     BOOLEAN NOT NULL DEFAULT FALSE,
    created_at  TIMESTAMP NOT NULL
);
CREATE TABLE module_requires (
    module_code   TEXT NOT NULL REFERENCES modules (code),
    required_code TEXT NOT NULL REFERENCES modules (code),
    PRIMARY KEY (module_code, required_code)
);
CREATE TABLE module_excludes (
    module_code   TEXT NOT NULL REFERENCES modules (code),
    excluded_code TEXT NOT NULL REFERENCES modules (code),
    PRIMARY KEY (module_code, excluded_code)
);

-- The service catalogue of the source documents. Exclusions are stored both ways.
INSERT INTO modules (code, name, description, unit, auto_assign, created_at) VALUES
    ('base', 'Base service', 'The basic service licence, added to every mailbox.', 'per_mailbox', TRUE, CURRENT_TIMESTAMP),
    ('certificate', 'Certificate', 'A personal S/MIME certificate for the mailbox.', 'per_mailbox', FALSE, CURRENT_TIMESTAMP),
    ('sign_only', 'Sign only', 'Outgoing mail is signed.', 'per_mailbox', FALSE, CURRENT_TIMESTAMP),
    ('sign_encrypt', 'Sign and encrypt', 'Outgoing mail is signed and encrypted.', 'per_mailbox', FALSE, CURRENT_TIMESTAMP),
    ('lft', 'Large file transfer', 'Large attachments are sent as download links.', 'per_mailbox', FALSE, CURRENT_TIMESTAMP),
    ('filter_inbound', 'Inbound filter', 'Spam and malware filtering of incoming mail.', 'per_customer', FALSE, CURRENT_TIMESTAMP),
    ('filter_outbound', 'Outbound filter', 'Filtering of outgoing mail.', 'per_customer', FALSE, CURRENT_TIMESTAMP),
    ('m365', 'Microsoft 365 integration', 'Mail flows through Microsoft 365.', 'per_customer', FALSE, CURRENT_TIMESTAMP),
    ('branding', 'Branding', 'The customer''s own branding on notifications and portals.', 'per_customer', FALSE, CURRENT_TIMESTAMP),
    ('sandbox', 'Sandboxing', 'Attachments are opened in a sandbox before delivery.', 'per_mailbox', FALSE, CURRENT_TIMESTAMP);
INSERT INTO module_requires (module_code, required_code) VALUES
    ('sign_only', 'certificate'),
    ('sign_encrypt', 'certificate');
INSERT INTO module_excludes (module_code, excluded_code) VALUES
    ('sign_only', 'sign_encrypt'),
    ('sign_encrypt', 'sign_only'),
    ('m365', 'filter_inbound'),
    ('filter_inbound', 'm365'),
    ('m365', 'filter_outbound'),
    ('filter_outbound', 'm365');

-- Units of each resource in use now: for a customer what it uses (mailboxes, domains, module
-- seats), for a reseller or the owner the sum over its subtree, so that any node's usage is one
-- read. Kept in the same transaction as the rows they count, along the whole lineage; a move shifts
-- the moved subtree's sums from the old ancestors to the new. `allot verify` recomputes them.
CREATE TABLE usage_counters (
    node_id  TEXT NOT NULL REFERENCES nodes (id),
    resource TEXT NOT NULL,
    used     BIGINT NOT NULL CHECK (used >= 0),
    PRIMARY KEY (node_id, resource)
);
