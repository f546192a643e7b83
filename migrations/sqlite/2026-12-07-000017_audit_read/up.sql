-- The audit trail, readable (issue 14): each event names its actor and its node as they were when
-- it was written, so a renamed node or a deleted account still reads as it did. Recorded by
-- store::audit::record; NULL only where this backfill found nothing (an account deleted before
-- this migration).
ALTER TABLE audit_events ADD COLUMN actor_name TEXT;
ALTER TABLE audit_events ADD COLUMN node_name TEXT;

-- Existing events: the names as they are now, the nearest to "as they were" there is.
UPDATE audit_events SET node_name = (SELECT name FROM nodes WHERE nodes.id = audit_events.node_id);
UPDATE audit_events SET actor_name = CASE
    WHEN actor = 'system' THEN 'system'
    WHEN actor LIKE 'account:%' THEN
        (SELECT username FROM accounts WHERE accounts.id = substr(audit_events.actor, 9))
    WHEN actor LIKE 'api_key:%' THEN
        (SELECT name FROM api_keys WHERE api_keys.id = substr(audit_events.actor, 9))
END;

-- A node's trail is read newest first, (at, id) descending, per node of its subtree; retention
-- deletes the oldest by `at` across all nodes.
DROP INDEX audit_events_node_at;
CREATE INDEX audit_events_node_at ON audit_events (node_id, at, id);
CREATE INDEX audit_events_at ON audit_events (at, id);
