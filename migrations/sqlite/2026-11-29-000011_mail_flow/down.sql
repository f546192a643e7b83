DROP TRIGGER changes_domains_update;
CREATE TRIGGER changes_domains_update AFTER UPDATE OF node_id, name, status, verified_at ON domains
BEGIN INSERT INTO changes (kind, id, key) VALUES ('domain', NEW.id, NEW.name); END;

DROP TRIGGER changes_nodes_update;
CREATE TRIGGER changes_nodes_update AFTER UPDATE OF parent_id, kind, status, deleted_at, auto_enrol ON nodes
BEGIN INSERT INTO changes (kind, id) VALUES ('node', NEW.id); END;

ALTER TABLE nodes DROP COLUMN role_recipient;
ALTER TABLE nodes DROP COLUMN inbound_recipients;
