-- Fails while two customers claim one name: remove the extra claims first.
DROP INDEX domains_pending;
DROP INDEX domains_claim;
DROP INDEX domains_verified_name;
ALTER TABLE domains ADD CONSTRAINT domains_name_key UNIQUE (name);
