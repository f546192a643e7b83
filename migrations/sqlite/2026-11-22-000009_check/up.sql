-- The check's change feed. Every committed write that a check depends on leaves a row here, written
-- by triggers rather than by the code that writes, so no write path (the API, the command line, a
-- seed script, a later feature) can forget to tell the in-memory index. Each allot process replays
-- the rows after the last one it applied; `key` is the address or name a deleted row was indexed
-- under. Rows older than an hour are pruned by the processes themselves.
CREATE TABLE changes (
    seq  INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    id   TEXT NOT NULL,
    key  TEXT,
    at   TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now'))
);
CREATE INDEX changes_at ON changes (at);

-- Whether a check may enrol an address it has not seen on this customer's domains.
ALTER TABLE nodes ADD COLUMN auto_enrol BOOLEAN NOT NULL DEFAULT 1;

-- Only the columns a check reads fire the triggers: a mailbox's last_seen_at, written in batches
-- by the check itself, does not.
CREATE TRIGGER changes_nodes_insert AFTER INSERT ON nodes
BEGIN INSERT INTO changes (kind, id) VALUES ('node', NEW.id); END;
CREATE TRIGGER changes_nodes_update AFTER UPDATE OF parent_id, kind, status, deleted_at, auto_enrol ON nodes
BEGIN INSERT INTO changes (kind, id) VALUES ('node', NEW.id); END;

CREATE TRIGGER changes_allocations_insert AFTER INSERT ON allocations
BEGIN INSERT INTO changes (kind, id) VALUES ('node', NEW.node_id); END;
CREATE TRIGGER changes_allocations_update AFTER UPDATE ON allocations
BEGIN INSERT INTO changes (kind, id) VALUES ('node', NEW.node_id); END;

CREATE TRIGGER changes_usage_insert AFTER INSERT ON usage_counters
BEGIN INSERT INTO changes (kind, id) VALUES ('node', NEW.node_id); END;
CREATE TRIGGER changes_usage_update AFTER UPDATE ON usage_counters
BEGIN INSERT INTO changes (kind, id) VALUES ('node', NEW.node_id); END;

CREATE TRIGGER changes_domains_insert AFTER INSERT ON domains
BEGIN INSERT INTO changes (kind, id, key) VALUES ('domain', NEW.id, NEW.name); END;
CREATE TRIGGER changes_domains_update AFTER UPDATE OF node_id, name, status, verified_at ON domains
BEGIN INSERT INTO changes (kind, id, key) VALUES ('domain', NEW.id, NEW.name); END;
CREATE TRIGGER changes_domains_delete AFTER DELETE ON domains
BEGIN INSERT INTO changes (kind, id, key) VALUES ('domain', OLD.id, OLD.name); END;

CREATE TRIGGER changes_mailboxes_insert AFTER INSERT ON mailboxes
BEGIN INSERT INTO changes (kind, id, key) VALUES ('mailbox', NEW.id, NEW.address); END;
CREATE TRIGGER changes_mailboxes_update AFTER UPDATE OF node_id, domain_id, address, status, origin ON mailboxes
BEGIN INSERT INTO changes (kind, id, key) VALUES ('mailbox', NEW.id, NEW.address); END;
CREATE TRIGGER changes_mailboxes_delete AFTER DELETE ON mailboxes
BEGIN INSERT INTO changes (kind, id, key) VALUES ('mailbox', OLD.id, OLD.address); END;

CREATE TRIGGER changes_aliases_insert AFTER INSERT ON aliases
BEGIN INSERT INTO changes (kind, id, key) VALUES ('alias', NEW.id, NEW.address); END;
CREATE TRIGGER changes_aliases_update AFTER UPDATE OF mailbox_id, address ON aliases
BEGIN INSERT INTO changes (kind, id, key) VALUES ('alias', NEW.id, NEW.address); END;
CREATE TRIGGER changes_aliases_delete AFTER DELETE ON aliases
BEGIN INSERT INTO changes (kind, id, key) VALUES ('alias', OLD.id, OLD.address); END;

CREATE TRIGGER changes_api_keys_insert AFTER INSERT ON api_keys
BEGIN INSERT INTO changes (kind, id) VALUES ('api_key', NEW.id); END;
CREATE TRIGGER changes_api_keys_update AFTER UPDATE OF node_id, role, secret_hash, expires_at, revoked_at ON api_keys
BEGIN INSERT INTO changes (kind, id) VALUES ('api_key', NEW.id); END;
CREATE TRIGGER changes_api_keys_delete AFTER DELETE ON api_keys
BEGIN INSERT INTO changes (kind, id) VALUES ('api_key', OLD.id); END;

CREATE TRIGGER changes_accounts_insert AFTER INSERT ON accounts
BEGIN INSERT INTO changes (kind, id) VALUES ('account', NEW.id); END;
CREATE TRIGGER changes_accounts_update AFTER UPDATE OF node_id, role, disabled ON accounts
BEGIN INSERT INTO changes (kind, id) VALUES ('account', NEW.id); END;
CREATE TRIGGER changes_accounts_delete AFTER DELETE ON accounts
BEGIN INSERT INTO changes (kind, id) VALUES ('account', OLD.id); END;

CREATE TRIGGER changes_modules_insert AFTER INSERT ON modules
BEGIN INSERT INTO changes (kind, id) VALUES ('module', NEW.code); END;
CREATE TRIGGER changes_modules_update AFTER UPDATE ON modules
BEGIN INSERT INTO changes (kind, id) VALUES ('module', NEW.code); END;
CREATE TRIGGER changes_modules_delete AFTER DELETE ON modules
BEGIN INSERT INTO changes (kind, id) VALUES ('module', OLD.code); END;
