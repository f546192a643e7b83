ALTER TABLE nodes DROP COLUMN max_aliases_per_mailbox;
DROP TABLE aliases;
