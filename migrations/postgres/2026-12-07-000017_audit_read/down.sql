DROP INDEX audit_events_at;
DROP INDEX audit_events_node_at;
CREATE INDEX audit_events_node_at ON audit_events (node_id, at);
ALTER TABLE audit_events DROP COLUMN node_name;
ALTER TABLE audit_events DROP COLUMN actor_name;
