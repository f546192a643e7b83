DROP TRIGGER changes_mailbox_modules ON mailbox_modules;
DROP TRIGGER changes_node_modules ON node_modules;
DELETE FROM usage_counters WHERE resource LIKE 'module:%';
DELETE FROM allocations WHERE resource = 'module:base' AND description = 'The base licence for the users granted here (every mailbox takes both since module seats)';
ALTER TABLE modules DROP COLUMN version;
DROP TABLE node_modules;
DROP TABLE mailbox_modules;
