-- The state of each KIE key: cool-downs and blocks, paused status checks, counters and the last
-- balance read; and the permits granted in the current window of each budget (rows older than
-- the window are deleted as permits are taken). Keys are named by a hash prefix, never by the
-- key itself. The same facts as migrations/postgres/20261202000301_kie_keys.sql.
CREATE TABLE kie_keys (
    key_id                 TEXT PRIMARY KEY CHECK (length(key_id) BETWEEN 1 AND 64),
    creates                INTEGER NOT NULL DEFAULT 0,
    checks                 INTEGER NOT NULL DEFAULT 0,
    off_kind               TEXT CHECK (off_kind IN ('cooling', 'blocked')),
    off_until_ms           INTEGER,
    off_class              TEXT,
    checks_paused_until_ms INTEGER,
    last_error             TEXT,
    last_error_at_ms       INTEGER,
    credits                REAL,
    credits_at_ms          INTEGER,
    credits_error          TEXT CHECK (length(credits_error) <= 300),
    balance_claimed_at_ms  INTEGER,
    first_seen_at_ms       INTEGER NOT NULL,
    CHECK ((off_kind IS NULL) = (off_until_ms IS NULL))
) STRICT;

CREATE TABLE kie_key_permits (
    key_id  TEXT NOT NULL REFERENCES kie_keys (key_id) ON DELETE CASCADE,
    kind    TEXT NOT NULL CHECK (kind IN ('create', 'status')),
    sent_ms INTEGER NOT NULL
) STRICT;
CREATE INDEX kie_key_permits_window ON kie_key_permits (key_id, kind, sent_ms);
