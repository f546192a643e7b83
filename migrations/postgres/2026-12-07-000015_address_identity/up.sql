-- Address identity. `address` stays the address as given (local part in NFC, domain in ASCII), for
-- display and for mail workers; `address_key` is what makes two addresses the same mailbox: the
-- local part lowercased unless the customer's `local_part_case` is `sensitive`. Unique across the
-- installation, with mailboxes and aliases checked against each other by the code under the
-- customer's lock. Keys are computed in Rust (the same rules on both backends): the rows that
-- exist get theirs at the first start after this migration (store::identity), where colliding rows
-- keep a key of their own and `allot verify` reports them; until then a NULL key is read as the
-- address.
ALTER TABLE nodes ADD COLUMN local_part_case TEXT NOT NULL DEFAULT 'insensitive'
    CHECK (local_part_case IN ('insensitive', 'sensitive'));
ALTER TABLE mailboxes ADD COLUMN address_key TEXT;
CREATE UNIQUE INDEX mailboxes_identity ON mailboxes (address_key);
ALTER TABLE aliases ADD COLUMN address_key TEXT;
CREATE UNIQUE INDEX aliases_identity ON aliases (address_key);

-- The check index keys mailboxes and aliases by their key and reads each customer's mode: the feed
-- carries the key a row was indexed under (the old one when it changed), and a change of mode.
DROP TRIGGER changes_nodes ON nodes;
CREATE TRIGGER changes_nodes
    AFTER INSERT OR UPDATE OF parent_id, kind, status, deleted_at, auto_enrol, inbound_recipients, role_recipient, local_part_case
    ON nodes FOR EACH ROW EXECUTE FUNCTION allot_record_change('node', 'id');

CREATE FUNCTION allot_record_address_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    row_data jsonb;
BEGIN
    IF TG_OP = 'INSERT' THEN
        row_data := to_jsonb(NEW);
    ELSE
        row_data := to_jsonb(OLD);
    END IF;
    INSERT INTO changes (kind, id, key)
    VALUES (TG_ARGV[0], row_data ->> 'id',
            COALESCE(row_data ->> 'address_key', row_data ->> 'address'));
    RETURN NULL;
END;
$$;

DROP TRIGGER changes_mailboxes ON mailboxes;
CREATE TRIGGER changes_mailboxes
    AFTER INSERT OR DELETE OR UPDATE OF node_id, domain_id, address, address_key, status, origin
    ON mailboxes FOR EACH ROW EXECUTE FUNCTION allot_record_address_change('mailbox');
DROP TRIGGER changes_aliases ON aliases;
CREATE TRIGGER changes_aliases AFTER INSERT OR DELETE OR UPDATE OF mailbox_id, address, address_key
    ON aliases FOR EACH ROW EXECUTE FUNCTION allot_record_address_change('alias');
