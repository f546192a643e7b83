-- The check's change feed. Every committed write that a check depends on leaves a row here, written
-- by triggers rather than by the code that writes, so no write path (the API, the command line, a
-- seed script, a later feature) can forget to tell the in-memory index. Each allot process replays
-- the rows after the last one it applied; `key` is the address or name a deleted row was indexed
-- under. Sequence numbers are taken before commit, so concurrent transactions can commit out of
-- order: readers treat a missing number as a gap to look at again (see src/check/feed.rs).
-- Rows older than an hour are pruned by the processes themselves.
CREATE TABLE changes (
    seq  BIGSERIAL PRIMARY KEY,
    kind TEXT NOT NULL,
    id   TEXT NOT NULL,
    key  TEXT,
    at   TIMESTAMP NOT NULL DEFAULT (now() AT TIME ZONE 'UTC')
);
CREATE INDEX changes_at ON changes (at);

-- Whether a check may enrol an address it has not seen on this customer's domains.
ALTER TABLE nodes ADD COLUMN auto_enrol BOOLEAN NOT NULL DEFAULT TRUE;

-- One trigger function for every table: the kind, and which columns hold the id and the key.
CREATE FUNCTION allot_record_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    row_data jsonb;
BEGIN
    IF TG_OP = 'DELETE' THEN
        row_data := to_jsonb(OLD);
    ELSE
        row_data := to_jsonb(NEW);
    END IF;
    INSERT INTO changes (kind, id, key)
    VALUES (TG_ARGV[0], row_data ->> TG_ARGV[1],
            CASE WHEN TG_NARGS > 2 THEN row_data ->> TG_ARGV[2] END);
    RETURN NULL;
END;
$$;

-- Only the columns a check reads fire the triggers: a mailbox's last_seen_at, written in batches
-- by the check itself, does not.
CREATE TRIGGER changes_nodes AFTER INSERT OR UPDATE OF parent_id, kind, status, deleted_at, auto_enrol
    ON nodes FOR EACH ROW EXECUTE FUNCTION allot_record_change('node', 'id');
CREATE TRIGGER changes_allocations AFTER INSERT OR UPDATE
    ON allocations FOR EACH ROW EXECUTE FUNCTION allot_record_change('node', 'node_id');
CREATE TRIGGER changes_usage AFTER INSERT OR UPDATE
    ON usage_counters FOR EACH ROW EXECUTE FUNCTION allot_record_change('node', 'node_id');
CREATE TRIGGER changes_domains AFTER INSERT OR DELETE OR UPDATE OF node_id, name, status, verified_at
    ON domains FOR EACH ROW EXECUTE FUNCTION allot_record_change('domain', 'id', 'name');
CREATE TRIGGER changes_mailboxes AFTER INSERT OR DELETE OR UPDATE OF node_id, domain_id, address, status, origin
    ON mailboxes FOR EACH ROW EXECUTE FUNCTION allot_record_change('mailbox', 'id', 'address');
CREATE TRIGGER changes_aliases AFTER INSERT OR DELETE OR UPDATE OF mailbox_id, address
    ON aliases FOR EACH ROW EXECUTE FUNCTION allot_record_change('alias', 'id', 'address');
CREATE TRIGGER changes_api_keys AFTER INSERT OR DELETE OR UPDATE OF node_id, role, secret_hash, expires_at, revoked_at
    ON api_keys FOR EACH ROW EXECUTE FUNCTION allot_record_change('api_key', 'id');
CREATE TRIGGER changes_accounts AFTER INSERT OR DELETE OR UPDATE OF node_id, role, disabled
    ON accounts FOR EACH ROW EXECUTE FUNCTION allot_record_change('account', 'id');
CREATE TRIGGER changes_modules AFTER INSERT OR DELETE OR UPDATE
    ON modules FOR EACH ROW EXECUTE FUNCTION allot_record_change('module', 'code');
