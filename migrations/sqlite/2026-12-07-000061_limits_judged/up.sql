-- The day's moving limits (allocations starting or ending on it) judged for quota crossings:
-- set once, by whoever claims it first (service::seats::limits_moved).
ALTER TABLE usage_history_days ADD COLUMN limits_judged BOOLEAN NOT NULL DEFAULT FALSE;
