DROP TRIGGER changes_accounts_update;
CREATE TRIGGER changes_accounts_update AFTER UPDATE OF node_id, role, disabled ON accounts
BEGIN INSERT INTO changes (kind, id) VALUES ('account', NEW.id); END;
ALTER TABLE accounts DROP COLUMN password_change_required;
ALTER TABLE accounts DROP COLUMN credential_version;
