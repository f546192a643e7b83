DROP TABLE usage_counters;
DROP TABLE module_excludes;
DROP TABLE module_requires;
DROP TABLE modules;
DROP TABLE allocations;
DROP INDEX nodes_sibling_name;
ALTER TABLE nodes DROP COLUMN deleted_at;
