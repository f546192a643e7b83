-- A customer's groups of mailboxes. Names are unique within the customer.
CREATE TABLE mailbox_groups (
    id         TEXT PRIMARY KEY NOT NULL,
    node_id    TEXT NOT NULL REFERENCES nodes (id),
    name       TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    UNIQUE (node_id, name)
);
CREATE TABLE group_members (
    group_id   TEXT NOT NULL REFERENCES mailbox_groups (id),
    mailbox_id TEXT NOT NULL REFERENCES mailboxes (id),
    PRIMARY KEY (group_id, mailbox_id)
);
CREATE INDEX group_members_mailbox ON group_members (mailbox_id);
