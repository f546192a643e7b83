DROP TRIGGER changes_mailbox_modules_insert;
DROP TRIGGER changes_mailbox_modules_delete;
DROP TRIGGER changes_node_modules_insert;
DROP TRIGGER changes_node_modules_delete;
DELETE FROM usage_counters WHERE resource LIKE 'module:%';
DELETE FROM allocations WHERE resource = 'module:base' AND description = 'The base licence for the users granted here (every mailbox takes both since module seats)';
ALTER TABLE modules DROP COLUMN version;
DROP TABLE node_modules;
DROP TABLE mailbox_modules;
