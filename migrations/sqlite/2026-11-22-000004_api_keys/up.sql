-- Machines' credentials. The key is shown once as `allot_<id>_<secret>`; only the SHA-256 of the
-- secret is kept (a fast hash is right for 32 random bytes: nothing to guess, and checking one
-- must not cost an argon2 run per request).
CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY NOT NULL,
    node_id      TEXT NOT NULL REFERENCES nodes (id),
    name         TEXT NOT NULL,
    role         TEXT NOT NULL CHECK (role IN ('admin', 'manager', 'viewer', 'check')),
    secret_hash  TEXT NOT NULL,
    expires_at   TIMESTAMP,
    last_used_at TIMESTAMP,
    -- Revoked keys are kept (with the time) for the audit trail; they never authenticate again.
    revoked_at   TIMESTAMP,
    created_at   TIMESTAMP NOT NULL
);
CREATE INDEX api_keys_node ON api_keys (node_id);
