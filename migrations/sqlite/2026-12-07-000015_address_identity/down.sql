DROP TRIGGER changes_aliases_insert;
DROP TRIGGER changes_aliases_update;
DROP TRIGGER changes_aliases_delete;
CREATE TRIGGER changes_aliases_insert AFTER INSERT ON aliases
BEGIN INSERT INTO changes (kind, id, key) VALUES ('alias', NEW.id, NEW.address); END;
CREATE TRIGGER changes_aliases_update AFTER UPDATE OF mailbox_id, address ON aliases
BEGIN INSERT INTO changes (kind, id, key) VALUES ('alias', NEW.id, NEW.address); END;
CREATE TRIGGER changes_aliases_delete AFTER DELETE ON aliases
BEGIN INSERT INTO changes (kind, id, key) VALUES ('alias', OLD.id, OLD.address); END;
DROP TRIGGER changes_mailboxes_insert;
DROP TRIGGER changes_mailboxes_update;
DROP TRIGGER changes_mailboxes_delete;
CREATE TRIGGER changes_mailboxes_insert AFTER INSERT ON mailboxes
BEGIN INSERT INTO changes (kind, id, key) VALUES ('mailbox', NEW.id, NEW.address); END;
CREATE TRIGGER changes_mailboxes_update AFTER UPDATE OF node_id, domain_id, address, status, origin ON mailboxes
BEGIN INSERT INTO changes (kind, id, key) VALUES ('mailbox', NEW.id, NEW.address); END;
CREATE TRIGGER changes_mailboxes_delete AFTER DELETE ON mailboxes
BEGIN INSERT INTO changes (kind, id, key) VALUES ('mailbox', OLD.id, OLD.address); END;
DROP TRIGGER changes_nodes_update;
CREATE TRIGGER changes_nodes_update
AFTER UPDATE OF parent_id, kind, status, deleted_at, auto_enrol, inbound_recipients, role_recipient ON nodes
BEGIN INSERT INTO changes (kind, id) VALUES ('node', NEW.id); END;
DROP INDEX aliases_identity;
ALTER TABLE aliases DROP COLUMN address_key;
DROP INDEX mailboxes_identity;
ALTER TABLE mailboxes DROP COLUMN address_key;
ALTER TABLE nodes DROP COLUMN local_part_case;
