-- The live suspended nodes, in path order: a node's topmost suspended ancestor (itself included) is
-- found by scanning only these (store::nodes::suspended_by), on every guarded request.
CREATE INDEX nodes_suspended ON nodes (path) WHERE status = 'suspended' AND deleted_at IS NULL;
