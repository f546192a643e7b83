ALTER TABLE nodes DROP COLUMN oversell_version;
