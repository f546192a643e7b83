DROP TRIGGER changes_api_keys_update;
CREATE TRIGGER changes_api_keys_update AFTER UPDATE OF node_id, role, secret_hash, expires_at, revoked_at ON api_keys
BEGIN INSERT INTO changes (kind, id) VALUES ('api_key', NEW.id); END;
ALTER TABLE api_keys DROP COLUMN version;
ALTER TABLE api_keys DROP COLUMN rate_limit;
