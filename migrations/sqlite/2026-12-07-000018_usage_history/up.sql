-- Usage over time (issue 14). One row per node, resource and day from the day allot first counted
-- that node's use of that resource: the limit in force that day, the highest the (subtree's) usage
-- reached, and where it ended. Kept in the write transaction that changes usage_counters, for the
-- node and each ancestor (store::history::record); days without a change are carried forward when
-- the next day opens (store::history::open_day). No row: allot did not count that day.
CREATE TABLE usage_history (
    node_id   TEXT NOT NULL,
    resource  TEXT NOT NULL,
    day       DATE NOT NULL,
    day_limit BIGINT NOT NULL,
    peak      BIGINT NOT NULL,
    used      BIGINT NOT NULL,
    -- Node and day first: a node's days (the history report) and a node's rows of one day (the
    -- statistics of a past day) are both prefixes of the key.
    PRIMARY KEY (node_id, day, resource)
);

-- Opening a day reads the day before, across every node.
CREATE INDEX usage_history_day ON usage_history (day);

-- The days the history has been opened for; `closed` once the next day opened and this day's
-- limits and active users were settled.
CREATE TABLE usage_history_days (
    day    DATE PRIMARY KEY,
    closed BOOLEAN NOT NULL DEFAULT FALSE
);

-- Active users of a closed day per node (the subtree's mailboxes last seen by an outbound check in
-- the 30 days up to it). Only non-zero counts are kept: a closed day without a row had none.
CREATE TABLE active_user_history (
    node_id      TEXT NOT NULL,
    day          DATE NOT NULL,
    active_users BIGINT NOT NULL,
    PRIMARY KEY (node_id, day)
);

-- Active users are counted from last_seen_at over a 30-day window: a range scan, not every mailbox.
CREATE INDEX mailboxes_last_seen_at ON mailboxes (last_seen_at);
