-- Quota notices (issue 15): which thresholds of `notifications.quota_thresholds` each node's use
-- of each resource has reached, so a crossing is noticed once (one mail, one
-- `quota.threshold_crossed` event), not on every request past it. A row is written when the use
-- reaches the threshold and deleted when it falls back below (re-armed), so a threshold crossed,
-- left and crossed again is noticed twice. Kept by `service::seats`, the one place every seat
-- taken or freed and every limit changed passes.
CREATE TABLE quota_crossings (
    node_id    TEXT NOT NULL REFERENCES nodes (id) ON DELETE CASCADE,
    resource   TEXT NOT NULL,
    threshold  INTEGER NOT NULL,
    crossed_at TIMESTAMP NOT NULL,
    PRIMARY KEY (node_id, resource, threshold)
);
