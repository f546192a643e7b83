DROP TABLE audit_events;
DROP TABLE settings;
DROP TABLE accounts;
DROP TABLE nodes;
