-- The login throttle's counts (src/auth/throttle.rs), kept here so that every allot instance on
-- the database counts the same attempts: in each instance's memory, N instances behind a load
-- balancer allowed N times the guesses. One row per attempt and key (`user:<name>`, `ip:<address>`),
-- taken before the password is verified (`pending`), turned into a failure, or deleted when the
-- password was right or nothing was verified. A row counts until it is 15 minutes old, whatever its
-- state: a pending one whose verification never ended (the client hung up, the instance died)
-- counts as the failure it may have been. Rows past the window are deleted by every instance.
--
-- The key is stored as its SHA-256 (hex): people type passwords into the username field, and
-- those must not lie in a table.
CREATE TABLE login_attempts (
    attempt  TEXT NOT NULL,
    key_hash TEXT NOT NULL,
    at       TIMESTAMP NOT NULL,
    pending  BOOLEAN NOT NULL,
    PRIMARY KEY (attempt, key_hash)
);
-- A key's attempts in time order: what every login reads.
CREATE INDEX login_attempts_key ON login_attempts (key_hash, at);
-- The sweep of expired rows.
CREATE INDEX login_attempts_at ON login_attempts (at);
