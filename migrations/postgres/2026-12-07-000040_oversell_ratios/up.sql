-- Overselling (issue 16): how many times its own limit a node may grant its children, per
-- resource, in thousandths (1000 = 1.0; 1000 to 100000). An integer so both backends store and
-- compare it exactly. No row: 1.0, no overselling. Set by an admin strictly above the node.
CREATE TABLE oversell_ratios (
    node_id  TEXT NOT NULL REFERENCES nodes (id) ON DELETE CASCADE,
    resource TEXT NOT NULL,
    permille BIGINT NOT NULL CHECK (permille BETWEEN 1000 AND 100000),
    PRIMARY KEY (node_id, resource)
);
