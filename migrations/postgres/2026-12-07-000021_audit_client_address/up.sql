-- Who made a change, by address (issue 17): the client's address as allot resolved it (the
-- connection's peer, or behind a trusted proxy the forwarded one; src/edge/client.rs), written
-- by store::audit::record. Text, as the trail shows it, for both families. NULL for changes the
-- service made itself and for every event written before this migration: no address was kept.
ALTER TABLE audit_events ADD COLUMN client_address TEXT;
