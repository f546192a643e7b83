DROP TRIGGER changes_domains ON domains;
CREATE TRIGGER changes_domains AFTER INSERT OR DELETE OR UPDATE OF node_id, name, status, verified_at
    ON domains FOR EACH ROW EXECUTE FUNCTION allot_record_change('domain', 'id', 'name');

DROP TRIGGER changes_nodes ON nodes;
CREATE TRIGGER changes_nodes AFTER INSERT OR UPDATE OF parent_id, kind, status, deleted_at, auto_enrol
    ON nodes FOR EACH ROW EXECUTE FUNCTION allot_record_change('node', 'id');

ALTER TABLE nodes DROP COLUMN role_recipient;
ALTER TABLE nodes DROP COLUMN inbound_recipients;
