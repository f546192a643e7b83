DROP TRIGGER changes_mailbox_modules_insert;
DROP TRIGGER changes_mailbox_modules_delete;
DROP TRIGGER changes_node_modules_insert;
DROP TRIGGER changes_node_modules_delete;
DELETE FROM usage_counters WHERE resource LIKE 'module:%';
ALTER TABLE modules DROP COLUMN version;
DROP TABLE node_modules;
DROP TABLE mailbox_modules;
