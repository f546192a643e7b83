ALTER TABLE usage_history_days DROP COLUMN limits_judged;
