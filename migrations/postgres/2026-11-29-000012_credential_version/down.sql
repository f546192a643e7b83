DROP TRIGGER changes_accounts ON accounts;
CREATE TRIGGER changes_accounts AFTER INSERT OR DELETE OR UPDATE OF node_id, role, disabled
    ON accounts FOR EACH ROW EXECUTE FUNCTION allot_record_change('account', 'id');
ALTER TABLE accounts DROP COLUMN password_change_required;
ALTER TABLE accounts DROP COLUMN credential_version;
