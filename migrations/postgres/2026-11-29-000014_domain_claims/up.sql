-- Domain claims. A registration is a claim on a name until its TXT record proves it: any number of
-- customers may claim one name, at most one per customer, and the first to prove it wins it (the
-- others' claims are removed then). Only a verified domain holds its name against everyone: that
-- uniqueness stays in the database, so two proofs racing cannot both win.
ALTER TABLE domains DROP CONSTRAINT domains_name_key;
CREATE UNIQUE INDEX domains_verified_name ON domains (name) WHERE verified_at IS NOT NULL;
-- Also how the claims of one name are found.
CREATE UNIQUE INDEX domains_claim ON domains (name, node_id);
-- The expiry sweep's scan: unproven claims, oldest first.
CREATE INDEX domains_pending ON domains (created_at) WHERE verified_at IS NULL;
