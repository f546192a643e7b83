-- Every access token carries the credential version of its account at issue, and a token of any
-- other version is refused. A password change, an admin's reset and a disable raise it, so each
-- revokes every token issued before it (a delete removes the row, which does too). Tokens are
-- otherwise stateless: this one number per account is what revocation costs.
ALTER TABLE accounts ADD COLUMN credential_version BIGINT NOT NULL DEFAULT 1;
-- Set when an admin sets someone else's password (the admin knows it), cleared when the account
-- changes its own: until then a login gets a token good only for that change.
ALTER TABLE accounts ADD COLUMN password_change_required BOOLEAN NOT NULL DEFAULT FALSE;

-- The check resolves account tokens from its in-memory index, which must see the version too:
-- the trigger now also fires on it.
DROP TRIGGER changes_accounts_update;
CREATE TRIGGER changes_accounts_update AFTER UPDATE OF node_id, role, disabled, credential_version ON accounts
BEGIN INSERT INTO changes (kind, id) VALUES ('account', NEW.id); END;
