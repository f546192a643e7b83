-- A key's own request budget, in requests per minute (src/auth/rate_limit.rs); NULL: the default
-- of its role (`ALLOT_RATE_LIMIT`, or `ALLOT_CHECK_RATE_LIMIT` for `check` keys).
ALTER TABLE api_keys ADD COLUMN rate_limit BIGINT CHECK (rate_limit BETWEEN 1 AND 100000000);
-- Keys can now be changed (`PATCH /v1/api-keys/{id}`): a version for ETag and If-Match.
ALTER TABLE api_keys ADD COLUMN version BIGINT NOT NULL DEFAULT 1;

-- The check resolves keys from its in-memory index and counts their requests there, so the index
-- must see a changed budget: the trigger now also fires on it.
DROP TRIGGER changes_api_keys_update;
CREATE TRIGGER changes_api_keys_update AFTER UPDATE OF node_id, role, secret_hash, expires_at, revoked_at, rate_limit ON api_keys
BEGIN INSERT INTO changes (kind, id) VALUES ('api_key', NEW.id); END;
