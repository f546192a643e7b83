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
DROP TRIGGER changes_nodes ON nodes;
CREATE TRIGGER changes_nodes
    AFTER INSERT OR UPDATE OF parent_id, kind, status, deleted_at, auto_enrol, inbound_recipients, role_recipient
    ON nodes FOR EACH ROW EXECUTE FUNCTION allot_record_change('node', 'id');

DROP TRIGGER changes_domains ON domains;
CREATE TRIGGER changes_domains
    AFTER INSERT OR DELETE OR UPDATE OF node_id, name, status, verified_at, route_host, route_port, route_priority
    ON domains FOR EACH ROW EXECUTE FUNCTION allot_record_change('domain', 'id', 'name');
