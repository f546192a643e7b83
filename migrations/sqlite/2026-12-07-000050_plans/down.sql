DROP TABLE plan_grants;
DROP TABLE node_plans;
DROP TABLE plan_versions;
DROP TABLE plans;
