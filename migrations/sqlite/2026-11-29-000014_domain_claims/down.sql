-- Fails while two customers claim one name: remove the extra claims first.
PRAGMA foreign_keys = OFF;
BEGIN;
CREATE TABLE domains_rebuilt (
    id                 TEXT PRIMARY KEY NOT NULL,
    node_id            TEXT NOT NULL REFERENCES nodes (id),
    name               TEXT NOT NULL UNIQUE,
    description        TEXT,
    -- The SMTP delivery route, all three set or none.
    route_host         TEXT,
    route_port         INTEGER CHECK (route_port BETWEEN 1 AND 65535),
    route_priority     INTEGER CHECK (route_priority BETWEEN 1 AND 100),
    status             TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
    -- Ownership: proven by a TXT record `_allot.<name>` holding the token.
    verification_token TEXT NOT NULL,
    verified_at        TIMESTAMP,
    version            BIGINT NOT NULL DEFAULT 1,
    created_at         TIMESTAMP NOT NULL,
    updated_at         TIMESTAMP NOT NULL,
    CHECK ((route_host IS NULL) = (route_port IS NULL) AND (route_host IS NULL) = (route_priority IS NULL))
);
INSERT INTO domains_rebuilt (id, node_id, name, description, route_host, route_port, route_priority,
                             status, verification_token, verified_at, version, created_at, updated_at)
SELECT id, node_id, name, description, route_host, route_port, route_priority,
       status, verification_token, verified_at, version, created_at, updated_at
FROM domains;
DROP TABLE domains;
ALTER TABLE domains_rebuilt RENAME TO domains;
CREATE INDEX domains_node ON domains (node_id);
CREATE TRIGGER changes_domains_insert AFTER INSERT ON domains
BEGIN INSERT INTO changes (kind, id, key) VALUES ('domain', NEW.id, NEW.name); END;
CREATE TRIGGER changes_domains_update
AFTER UPDATE OF node_id, name, status, verified_at, route_host, route_port, route_priority ON domains
BEGIN INSERT INTO changes (kind, id, key) VALUES ('domain', NEW.id, NEW.name); END;
CREATE TRIGGER changes_domains_delete AFTER DELETE ON domains
BEGIN INSERT INTO changes (kind, id, key) VALUES ('domain', OLD.id, OLD.name); END;
COMMIT;
PRAGMA foreign_keys = ON;
