DROP TRIGGER changes_aliases ON aliases;
CREATE TRIGGER changes_aliases AFTER INSERT OR DELETE OR UPDATE OF mailbox_id, address
    ON aliases FOR EACH ROW EXECUTE FUNCTION allot_record_change('alias', 'id', 'address');
DROP TRIGGER changes_mailboxes ON mailboxes;
CREATE TRIGGER changes_mailboxes AFTER INSERT OR DELETE OR UPDATE OF node_id, domain_id, address, status, origin
    ON mailboxes FOR EACH ROW EXECUTE FUNCTION allot_record_change('mailbox', 'id', 'address');
DROP FUNCTION allot_record_address_change();
DROP TRIGGER changes_nodes ON nodes;
CREATE TRIGGER changes_nodes
    AFTER INSERT OR UPDATE OF parent_id, kind, status, deleted_at, auto_enrol, inbound_recipients, role_recipient
    ON nodes FOR EACH ROW EXECUTE FUNCTION allot_record_change('node', 'id');
DROP INDEX aliases_identity;
ALTER TABLE aliases DROP COLUMN address_key;
DROP INDEX mailboxes_identity;
ALTER TABLE mailboxes DROP COLUMN address_key;
ALTER TABLE nodes DROP COLUMN local_part_case;
