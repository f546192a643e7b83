DROP TRIGGER changes_mailbox_modules ON mailbox_modules;
DROP TRIGGER changes_node_modules ON node_modules;
DELETE FROM usage_counters WHERE resource LIKE 'module:%';
ALTER TABLE modules DROP COLUMN version;
DROP TABLE node_modules;
DROP TABLE mailbox_modules;
