-- Settings inherited down the tree (src/domain/settings.rs): one row per node and group the node
-- has set. Not the `settings` table, which holds the installation's own values (its token key).
--
-- `own_values` is the JSON of the values the node sets (a member absent: not set). The secrets
-- (a mail server's password, a Graph client secret) are kept apart in `secrets`, a JSON object of
-- field -> base64 of the value sealed (src/secret.rs) for `settings:<node>:<group>.<field>`: a
-- sealed value copied to another row or field does not open there.
--
-- Clearing a group keeps its row, emptied, with its version raised: a client holding the ETag of
-- the values before the clearing must not see it match values set again afterwards.
CREATE TABLE node_settings (
    node_id        TEXT NOT NULL REFERENCES nodes (id),
    settings_group TEXT NOT NULL CHECK (settings_group IN ('mail_server', 'support', 'notifications')),
    own_values     TEXT NOT NULL,
    secrets        TEXT NOT NULL,
    version        BIGINT NOT NULL,
    updated_at     TIMESTAMP NOT NULL,
    PRIMARY KEY (node_id, settings_group)
);
