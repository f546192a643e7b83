DROP INDEX mailboxes_last_seen_at;
DROP TABLE active_user_history;
DROP TABLE usage_history_days;
DROP TABLE usage_history;
