-- Domain claims. A registration is a claim on a name until its TXT record proves it: any number of
-- customers may claim one name, at most one per customer, and the first to prove it wins it (the
-- others' claims are removed then). Only a verified domain holds its name against everyone: that
-- uniqueness stays in the database, so two proofs racing cannot both win.
--
-- SQLite cannot drop a column's UNIQUE constraint, so the table is rebuilt (SQLite's documented
-- twelve steps): outside diesel's transaction (metadata.toml), because foreign keys can only be
-- switched off outside one, and mailboxes and aliases refer to the table being replaced.
PRAGMA foreign_keys = OFF;
BEGIN;
CREATE TABLE domains_rebuilt (
    id                 TEXT PRIMARY KEY NOT NULL,
    node_id            TEXT NOT NULL REFERENCES nodes (id),
    name               TEXT NOT NULL,
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
CREATE UNIQUE INDEX domains_verified_name ON domains (name) WHERE verified_at IS NOT NULL;
-- Also how the claims of one name are found.
CREATE UNIQUE INDEX domains_claim ON domains (name, node_id);
-- The expiry sweep's scan: unproven claims, oldest first.
CREATE INDEX domains_pending ON domains (created_at) WHERE verified_at IS NULL;
-- Dropping the table dropped its change-feed triggers: the same again (as of *_mail_flow).
CREATE TRIGGER changes_domains_insert AFTER INSERT ON domains
BEGIN INSERT INTO changes (kind, id, key) VALUES ('domain', NEW.id, NEW.name); END;
CREATE TRIGGER changes_domains_update
AFTER UPDATE OF node_id, name, status, verified_at, route_host, route_port, route_priority ON domains
BEGIN INSERT INTO changes (kind, id, key) VALUES ('domain', NEW.id, NEW.name); END;
CREATE TRIGGER changes_domains_delete AFTER DELETE ON domains
BEGIN INSERT INTO changes (kind, id, key) VALUES ('domain', OLD.id, OLD.name); END;
COMMIT;
PRAGMA foreign_keys = ON;
