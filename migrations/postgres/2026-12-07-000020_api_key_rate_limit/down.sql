DROP TRIGGER changes_api_keys ON api_keys;
CREATE TRIGGER changes_api_keys AFTER INSERT OR DELETE OR UPDATE OF node_id, role, secret_hash, expires_at, revoked_at
    ON api_keys FOR EACH ROW EXECUTE FUNCTION allot_record_change('api_key', 'id');
ALTER TABLE api_keys DROP COLUMN version;
ALTER TABLE api_keys DROP COLUMN rate_limit;
