ALTER TABLE audit_events DROP COLUMN client_address;
