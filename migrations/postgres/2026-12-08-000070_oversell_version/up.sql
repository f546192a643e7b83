-- The version of a node's oversell ratios as a set (issue 16): the ETag of
-- GET /v1/nodes/{id}/oversell, and what If-Match on its PUT is compared with. Raised by one
-- each time the ratio workflow (service::oversell::replace) changes the set; never otherwise.
ALTER TABLE nodes ADD COLUMN oversell_version BIGINT NOT NULL DEFAULT 0;
