-- Admin broadcasts, resumable: the text, the last user reached (users are reached in id order)
-- and the counts so far. The process running a broadcast holds it (`holder`) until
-- `lease_until`, renewing the lease with every message; a broadcast whose lease ran out is
-- taken up again, from `cursor_user_id`, by another bot process or the restarted one.
CREATE TABLE broadcasts (
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    admin_chat      bigint      NOT NULL,
    language        text        NOT NULL CHECK (language IN ('ru', 'en')),
    text            text        NOT NULL CHECK (length(text) BETWEEN 1 AND 4096),
    cursor_user_id  bigint,
    sent            bigint      NOT NULL DEFAULT 0 CHECK (sent >= 0),
    blocked         bigint      NOT NULL DEFAULT 0 CHECK (blocked >= 0),
    failed          bigint      NOT NULL DEFAULT 0 CHECK (failed >= 0),
    holder          text,
    lease_until     timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz
);

CREATE INDEX broadcasts_unfinished ON broadcasts (id) WHERE finished_at IS NULL;
