-- Admin broadcasts, resumable: the same facts as migrations/postgres/
-- 20261201000301_broadcasts.sql, in SQLite's terms (times in integer milliseconds).
CREATE TABLE broadcasts (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    admin_chat      INTEGER NOT NULL,
    language        TEXT    NOT NULL CHECK (language IN ('ru', 'en')),
    text            TEXT    NOT NULL CHECK (length(text) BETWEEN 1 AND 4096),
    cursor_user_id  INTEGER,
    sent            INTEGER NOT NULL DEFAULT 0 CHECK (sent >= 0),
    blocked         INTEGER NOT NULL DEFAULT 0 CHECK (blocked >= 0),
    failed          INTEGER NOT NULL DEFAULT 0 CHECK (failed >= 0),
    holder          TEXT,
    lease_until     INTEGER,
    created_at      INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000 AS INTEGER)),
    finished_at     INTEGER
) STRICT;

CREATE INDEX broadcasts_unfinished ON broadcasts (id) WHERE finished_at IS NULL;
