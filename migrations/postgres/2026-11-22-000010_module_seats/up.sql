-- Module seats: which mailbox holds which per-mailbox module, and which customer holds which
-- per-customer module. An assignment held by an active mailbox (other than a role address) or by
-- a customer takes one seat of the resource 'module:<code>', counted in usage_counters like users;
-- a disabled mailbox keeps its assignments but holds no seats until it is enabled again.
CREATE TABLE mailbox_modules (
    mailbox_id  TEXT NOT NULL REFERENCES mailboxes (id),
    module_code TEXT NOT NULL REFERENCES modules (code),
    created_at  TIMESTAMP NOT NULL,
    PRIMARY KEY (mailbox_id, module_code)
);
CREATE INDEX mailbox_modules_module ON mailbox_modules (module_code, mailbox_id);
CREATE TABLE node_modules (
    node_id     TEXT NOT NULL REFERENCES nodes (id),
    module_code TEXT NOT NULL REFERENCES modules (code),
    created_at  TIMESTAMP NOT NULL,
    PRIMARY KEY (node_id, module_code)
);
CREATE INDEX node_modules_module ON node_modules (module_code);

-- The catalogue is data people change: a version for ETag and If-Match.
ALTER TABLE modules ADD COLUMN version BIGINT NOT NULL DEFAULT 1;

-- Mailboxes that exist already get the auto-assigned modules (the base licence) that every new
-- mailbox gets, and every node counts them as it counts users: the seats an active mailbox takes.
INSERT INTO mailbox_modules (mailbox_id, module_code, created_at)
SELECT m.id, mo.code, now() AT TIME ZONE 'UTC'
FROM mailboxes m CROSS JOIN modules mo
WHERE mo.auto_assign AND NOT mo.retired AND m.origin <> 'role';
INSERT INTO usage_counters (node_id, resource, used)
SELECT u.node_id, 'module:' || mo.code, u.used
FROM usage_counters u CROSS JOIN modules mo
WHERE u.resource = 'users' AND mo.auto_assign AND NOT mo.retired;

-- And every node is granted module:base as it was granted users, line for line (unless this
-- installation granted module:base already): the limits stay what they were for every mailbox,
-- and the tree's invariant holds for module:base exactly as it holds for users.
INSERT INTO allocations (id, node_id, grantor_id, resource, amount, starts_on, ends_on, active,
                         description, version, created_at, updated_at)
SELECT gen_random_uuid()::text, node_id, grantor_id, 'module:base', amount, starts_on, ends_on, active,
       'The base licence for the users granted here (every mailbox takes both since module seats)', 1, now() AT TIME ZONE 'UTC', now() AT TIME ZONE 'UTC'
FROM allocations
WHERE resource = 'users'
  AND NOT EXISTS (SELECT 1 FROM allocations WHERE resource = 'module:base');

-- The check's change feed: an assignment changes what its mailbox or customer holds.
CREATE TRIGGER changes_mailbox_modules AFTER INSERT OR DELETE
    ON mailbox_modules FOR EACH ROW EXECUTE FUNCTION allot_record_change('mailbox', 'mailbox_id');
CREATE TRIGGER changes_node_modules AFTER INSERT OR DELETE
    ON node_modules FOR EACH ROW EXECUTE FUNCTION allot_record_change('node', 'node_id');
