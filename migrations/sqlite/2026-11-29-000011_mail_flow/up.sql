-- The check in real mail flow. A customer says whether allot's mailbox list is authoritative for
-- its inbound mail (`known`: an unknown recipient is refused) or its own server decides (`domain`:
-- any address on its verified, active domains is accepted). `domain` is the default, and what
-- existing customers get: only a sender is ever enrolled now, so a customer whose mailboxes are
-- not imported yet would otherwise have all its inbound mail refused.
ALTER TABLE nodes ADD COLUMN inbound_recipients TEXT NOT NULL DEFAULT 'domain'
    CHECK (inbound_recipients IN ('domain', 'known'));
-- Where mail to the postmaster@ of each of the customer's domains goes (the `alias` socketmap).
ALTER TABLE nodes ADD COLUMN role_recipient TEXT;

-- The index holds both, and each domain's route (the `transport` socketmap): their changes must
-- reach the change feed too.
DROP TRIGGER changes_nodes_update;
CREATE TRIGGER changes_nodes_update
AFTER UPDATE OF parent_id, kind, status, deleted_at, auto_enrol, inbound_recipients, role_recipient ON nodes
BEGIN INSERT INTO changes (kind, id) VALUES ('node', NEW.id); END;

DROP TRIGGER changes_domains_update;
CREATE TRIGGER changes_domains_update
AFTER UPDATE OF node_id, name, status, verified_at, route_host, route_port, route_priority ON domains
BEGIN INSERT INTO changes (kind, id, key) VALUES ('domain', NEW.id, NEW.name); END;
