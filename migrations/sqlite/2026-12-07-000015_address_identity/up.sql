-- Address identity. `address` stays the address as given (local part in NFC, domain in ASCII), for
-- display and for mail workers; `address_key` is what makes two addresses the same mailbox: the
-- local part lowercased unless the customer's `local_part_case` is `sensitive`. Unique across the
-- installation, with mailboxes and aliases checked against each other by the code under the
-- customer's lock. Keys are computed in Rust (SQL lower() is not Unicode-correct on SQLite): the
-- rows that exist get theirs at the first start after this migration (store::identity), where
-- colliding rows keep a key of their own and `allot verify` reports them; until then a NULL key
-- is read as the address.
ALTER TABLE nodes ADD COLUMN local_part_case TEXT NOT NULL DEFAULT 'insensitive'
    CHECK (local_part_case IN ('insensitive', 'sensitive'));
ALTER TABLE mailboxes ADD COLUMN address_key TEXT;
CREATE UNIQUE INDEX mailboxes_identity ON mailboxes (address_key);
ALTER TABLE aliases ADD COLUMN address_key TEXT;
CREATE UNIQUE INDEX aliases_identity ON aliases (address_key);

-- The check index keys mailboxes and aliases by their key and reads each customer's mode: the feed
-- carries the key a row was indexed under (the old one when it changed), and a change of mode.
DROP TRIGGER changes_nodes_update;
CREATE TRIGGER changes_nodes_update
AFTER UPDATE OF parent_id, kind, status, deleted_at, auto_enrol, inbound_recipients, role_recipient, local_part_case ON nodes
BEGIN INSERT INTO changes (kind, id) VALUES ('node', NEW.id); END;

DROP TRIGGER changes_mailboxes_insert;
DROP TRIGGER changes_mailboxes_update;
DROP TRIGGER changes_mailboxes_delete;
CREATE TRIGGER changes_mailboxes_insert AFTER INSERT ON mailboxes
BEGIN INSERT INTO changes (kind, id, key) VALUES ('mailbox', NEW.id, COALESCE(NEW.address_key, NEW.address)); END;
CREATE TRIGGER changes_mailboxes_update AFTER UPDATE OF node_id, domain_id, address, address_key, status, origin ON mailboxes
BEGIN INSERT INTO changes (kind, id, key) VALUES ('mailbox', OLD.id, COALESCE(OLD.address_key, OLD.address)); END;
CREATE TRIGGER changes_mailboxes_delete AFTER DELETE ON mailboxes
BEGIN INSERT INTO changes (kind, id, key) VALUES ('mailbox', OLD.id, COALESCE(OLD.address_key, OLD.address)); END;

DROP TRIGGER changes_aliases_insert;
DROP TRIGGER changes_aliases_update;
DROP TRIGGER changes_aliases_delete;
CREATE TRIGGER changes_aliases_insert AFTER INSERT ON aliases
BEGIN INSERT INTO changes (kind, id, key) VALUES ('alias', NEW.id, COALESCE(NEW.address_key, NEW.address)); END;
CREATE TRIGGER changes_aliases_update AFTER UPDATE OF mailbox_id, address, address_key ON aliases
BEGIN INSERT INTO changes (kind, id, key) VALUES ('alias', OLD.id, COALESCE(OLD.address_key, OLD.address)); END;
CREATE TRIGGER changes_aliases_delete AFTER DELETE ON aliases
BEGIN INSERT INTO changes (kind, id, key) VALUES ('alias', OLD.id, COALESCE(OLD.address_key, OLD.address)); END;
