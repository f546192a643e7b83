-- The outbox (issue 15): everything allot sends (webhook deliveries now, mail next), one row per
-- message to one target, written in the same transaction as the change that caused it, so a
-- change is never committed without its message nor a message without its change. A worker in
-- every instance claims due rows (src/outbox/), delivers them and records each attempt.
--
-- `node_id` is whose message it is (a webhook delivery: the subscription's node; a mail: the node
-- it is sent for): `GET /v1/nodes/{id}/outbox` lists a subtree's rows by it, so an admin sees the
-- deliveries to its own subtree's endpoints and never an ancestor's.
-- `ordering_key`: messages of one `target` with the same key are delivered in creation (id) order;
-- a webhook delivery's key is the node the event is about. NULL: no order.
-- `status`: pending → delivering (claimed, until `lease_until`; an expired lease is claimed
-- again, so a crashed instance's messages are retried) → delivered | failed; `claim` fences a
-- late finish by an instance whose lease was taken over. `attempts` counts claims.
CREATE TABLE outbox (
    id              TEXT PRIMARY KEY NOT NULL,
    kind            TEXT NOT NULL,
    node_id         TEXT NOT NULL REFERENCES nodes (id),
    target          TEXT NOT NULL,
    ordering_key    TEXT,
    topic           TEXT NOT NULL,
    payload         TEXT NOT NULL,
    status          TEXT NOT NULL,
    attempts        INTEGER NOT NULL,
    next_attempt_at TIMESTAMP NOT NULL,
    lease_until     TIMESTAMP,
    claim           TEXT,
    last_error      TEXT,
    created_at      TIMESTAMP NOT NULL,
    finished_at     TIMESTAMP
);
-- What the worker claims: due pending rows, expired leases.
CREATE INDEX outbox_due ON outbox (status, next_attempt_at);
-- A node's messages, newest first.
CREATE INDEX outbox_node ON outbox (node_id, id);
-- Whether an earlier message of the same target and key is still undelivered.
CREATE INDEX outbox_order ON outbox (target, ordering_key, id);
-- Retention: delivered rows by age.
CREATE INDEX outbox_finished ON outbox (status, finished_at);

-- One row per delivery attempt: when, how long, the HTTP status or the error.
CREATE TABLE outbox_attempts (
    id          TEXT PRIMARY KEY NOT NULL,
    message_id  TEXT NOT NULL REFERENCES outbox (id) ON DELETE CASCADE,
    at          TIMESTAMP NOT NULL,
    duration_ms BIGINT NOT NULL,
    status_code INTEGER,
    error       TEXT
);
CREATE INDEX outbox_attempts_message ON outbox_attempts (message_id, id);

-- Webhook subscriptions: an endpoint that hears about the events of a node's subtree. The
-- signing secret is sealed (src/secret.rs, bound to the row's id); after a rotation the previous
-- one keeps signing beside the new one until `previous_until`.
CREATE TABLE webhooks (
    id                     TEXT PRIMARY KEY NOT NULL,
    node_id                TEXT NOT NULL REFERENCES nodes (id),
    url                    TEXT NOT NULL,
    events                 TEXT NOT NULL,
    description            TEXT,
    secret                 BLOB NOT NULL,
    previous_secret        BLOB,
    previous_until         TIMESTAMP,
    version                BIGINT NOT NULL,
    created_at             TIMESTAMP NOT NULL,
    updated_at             TIMESTAMP NOT NULL
);
-- Every audited write looks up the subscriptions of its node's lineage.
CREATE INDEX webhooks_node ON webhooks (node_id, id);
