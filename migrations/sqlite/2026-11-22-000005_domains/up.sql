-- Customers' domains. A name is unique across the whole installation; it is stored in its ASCII
-- (punycode) lowercase form, so the unique index compares what DNS compares. Deleting a domain
-- removes the row (its name may be registered again); the audit trail keeps its history.
CREATE TABLE domains (
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
CREATE INDEX domains_node ON domains (node_id);
