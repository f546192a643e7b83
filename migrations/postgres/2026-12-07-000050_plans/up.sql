-- Plans (issue 16): named bundles a node (the owner or a reseller) defines for its subtree and
-- applies to customers below it. `plans` is the plan itself: its code (unique per defining node),
-- its name and description (not versioned), whether it is retired (then applied anew nowhere), the
-- number of its current content version, and `version`, the ETag's (raised by every change).
CREATE TABLE plans (
    id              TEXT PRIMARY KEY NOT NULL,
    node_id         TEXT NOT NULL REFERENCES nodes (id),
    code            TEXT NOT NULL,
    name            TEXT NOT NULL,
    description     TEXT,
    retired         BOOLEAN NOT NULL,
    current_version BIGINT NOT NULL,
    version         BIGINT NOT NULL,
    created_at      TIMESTAMP NOT NULL,
    updated_at      TIMESTAMP NOT NULL,
    UNIQUE (node_id, code)
);

-- Every content version of a plan, kept: customers stay on theirs until synced.
-- `resources`: JSON object resource -> amount; `modules`: JSON array of per-customer module codes;
-- the customer settings it sets (NULL: it does not set that one); `term_months` NULL: open-ended.
CREATE TABLE plan_versions (
    plan_id                 TEXT NOT NULL REFERENCES plans (id) ON DELETE CASCADE,
    number                  BIGINT NOT NULL,
    resources               TEXT NOT NULL,
    modules                 TEXT NOT NULL,
    max_aliases_per_mailbox INTEGER,
    auto_enrol              BOOLEAN,
    inbound_recipients      TEXT,
    term_months             INTEGER,
    created_at              TIMESTAMP NOT NULL,
    PRIMARY KEY (plan_id, number)
);

-- The plan a customer is on (at most one), at which version, since when, and the allocations it
-- granted (`plan_grants`), which the next application or the removal ends.
CREATE TABLE node_plans (
    node_id      TEXT PRIMARY KEY NOT NULL REFERENCES nodes (id),
    plan_id      TEXT NOT NULL REFERENCES plans (id),
    plan_version BIGINT NOT NULL,
    starts_on    DATE NOT NULL,
    applied_at   TIMESTAMP NOT NULL
);
CREATE INDEX node_plans_plan ON node_plans (plan_id, plan_version);

CREATE TABLE plan_grants (
    allocation_id TEXT PRIMARY KEY NOT NULL REFERENCES allocations (id),
    node_id       TEXT NOT NULL REFERENCES nodes (id)
);
CREATE INDEX plan_grants_node ON plan_grants (node_id);
