-- The embedded store's schema: the same facts as the PostgreSQL schema (migrations/postgres),
-- in SQLite's terms.
--
-- Conventions:
--   * every time is INTEGER milliseconds since the Unix epoch, UTC (`now_ms` below is the
--     expression for "now"); comparisons and arithmetic stay integer;
--   * booleans are INTEGER 0/1; JSON is TEXT;
--   * ids are INTEGER PRIMARY KEY AUTOINCREMENT, so an id is never reused, even after a delete;
--   * foreign keys are enforced (the connection turns `foreign_keys` on).
--
-- now_ms: CAST(unixepoch('subsec') * 1000 AS INTEGER)

-- Users and their append-only credit ledger. users.balance is a cache of sum(ledger.delta),
-- kept by the trigger below inside the inserting transaction; the CHECK makes "balance never
-- negative" a database fact.
CREATE TABLE users (
    id              INTEGER PRIMARY KEY,                 -- Telegram user id
    username        TEXT,
    first_name      TEXT,
    language        TEXT    NOT NULL DEFAULT 'ru' CHECK (language IN ('ru', 'en')),
    consent_at      INTEGER,
    banned          INTEGER NOT NULL DEFAULT 0 CHECK (banned IN (0, 1)),
    blocked_bot_at  INTEGER,
    balance         INTEGER NOT NULL DEFAULT 0 CHECK (balance >= 0),
    created_at      INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000 AS INTEGER))
) STRICT;

CREATE TABLE ledger (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id     INTEGER NOT NULL REFERENCES users (id),
    delta       INTEGER NOT NULL,
    reason      TEXT    NOT NULL
                CHECK (reason IN ('welcome', 'grant', 'purchase', 'charge', 'refund')),
    order_id    INTEGER,
    job_id      INTEGER,
    note        TEXT,
    created_at  INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000 AS INTEGER)),
    -- Charges take credits away, everything else gives them.
    CHECK ((reason = 'charge') = (delta < 0) OR delta = 0),
    CHECK (reason <> 'refund' OR job_id IS NOT NULL)
) STRICT;

CREATE INDEX ledger_user ON ledger (user_id, id);
-- A job's charge is refunded at most once, ever.
CREATE UNIQUE INDEX ledger_one_refund_per_job ON ledger (job_id) WHERE reason = 'refund';
-- The start credits are given once per user.
CREATE UNIQUE INDEX ledger_one_welcome_per_user ON ledger (user_id) WHERE reason = 'welcome';

CREATE TRIGGER ledger_apply_to_balance AFTER INSERT ON ledger
BEGIN
    UPDATE users SET balance = balance + NEW.delta WHERE id = NEW.user_id;
END;

-- Append-only: history is corrected with a new entry, never by editing an old one.
CREATE TRIGGER ledger_no_update BEFORE UPDATE ON ledger
BEGIN
    SELECT RAISE(ABORT, 'the ledger is append-only');
END;

CREATE TRIGGER ledger_no_delete BEFORE DELETE ON ledger
BEGIN
    SELECT RAISE(ABORT, 'the ledger is append-only');
END;

-- Products users save.
CREATE TABLE products (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id          INTEGER NOT NULL REFERENCES users (id),
    photo_file_id    TEXT,
    photo_mime       TEXT    CHECK (photo_mime IN ('jpeg', 'png', 'webp')),
    marketplace_url  TEXT,
    description      TEXT    NOT NULL DEFAULT '',
    created_at       INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000 AS INTEGER)),
    CHECK ((photo_file_id IS NULL) = (photo_mime IS NULL))
) STRICT;

CREATE INDEX products_user ON products (user_id, id);

-- Orders: one tap on "Start", N jobs, charged in one transaction.
CREATE TABLE orders (
    id                   INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id              INTEGER NOT NULL REFERENCES users (id),
    order_key            TEXT    NOT NULL,
    count                INTEGER NOT NULL CHECK (count BETWEEN 1 AND 1000),
    price_per_video      INTEGER NOT NULL CHECK (price_per_video >= 0),
    template             TEXT    NOT NULL,
    product_id           INTEGER REFERENCES products (id),
    wishes               TEXT,
    user_prompt          TEXT,
    aspect               TEXT    NOT NULL CHECK (aspect IN ('portrait', 'landscape', 'square')),
    duration_secs        INTEGER NOT NULL CHECK (duration_secs > 0),
    language             TEXT    NOT NULL CHECK (language IN ('ru', 'en')),
    -- The worker's single progress message for the order, once it has sent one.
    progress_chat_id     INTEGER,
    progress_message_id  INTEGER,
    -- The latest progress stage granted (ranks only grow: queued < generating k < finished).
    progress_rank        INTEGER NOT NULL DEFAULT 0,
    -- Someone holds (or used) the one right to send the progress message.
    progress_claimed     INTEGER NOT NULL DEFAULT 0 CHECK (progress_claimed IN (0, 1)),
    created_at           INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000 AS INTEGER)),
    -- A double tap or a redelivered update places the order once.
    UNIQUE (user_id, order_key)
) STRICT;

CREATE INDEX orders_user_recent ON orders (user_id, created_at DESC, id DESC);
CREATE INDEX orders_unannounced ON orders (created_at) WHERE progress_claimed = 0;

-- Jobs: one video each. See the PostgreSQL schema for the meaning of every column; the
-- CHECKs are the same.
CREATE TABLE jobs (
    id                     INTEGER PRIMARY KEY AUTOINCREMENT,
    order_id               INTEGER NOT NULL REFERENCES orders (id),
    user_id                INTEGER NOT NULL,
    index_in_order         INTEGER NOT NULL CHECK (index_in_order >= 1),
    state                  TEXT    NOT NULL DEFAULT 'queued'
                           CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    -- Fair-queueing position: a user's k-th waiting job gets (queue head + k).
    fair_rank              INTEGER NOT NULL DEFAULT 0,
    run_at                 INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000 AS INTEGER)),
    attempt                INTEGER NOT NULL DEFAULT 0,
    temporary_retries      INTEGER NOT NULL DEFAULT 0,
    rate_limit_retries     INTEGER NOT NULL DEFAULT 0,
    rescues                INTEGER NOT NULL DEFAULT 0,
    lease_token            INTEGER NOT NULL DEFAULT 0,
    leased_by              TEXT,
    lease_expires_at       INTEGER,
    image_url              TEXT,
    prompt                 TEXT,
    provider_task_id       TEXT,
    provider_model         TEXT,
    provider_key_id        TEXT,
    provider_submitted_at  INTEGER,
    video_url              TEXT,
    delivered_message_id   INTEGER,
    delivered_file_id      TEXT,
    undeliverable_reason   TEXT,
    error_class            TEXT
                           CHECK (error_class IN ('user_violation', 'billing', 'rate_limit',
                                  'temporary', 'provider_paused', 'config', 'unknown')),
    error_message          TEXT,
    created_at             INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000 AS INTEGER)),
    first_claimed_at       INTEGER,
    finished_at            INTEGER,
    -- The last step begun under any lease (kept across claims), the step sequence number of
    -- the last step begun under the current lease since the last heartbeat, and the rescues
    -- this job was blamed for (the cap counts these).
    current_step           TEXT    CHECK (current_step IN ('upload', 'prompt', 'submit', 'wait',
                                                           'deliver')),
    step_seq               INTEGER,
    blamed_rescues         INTEGER NOT NULL DEFAULT 0,
    UNIQUE (order_id, index_in_order),
    CHECK ((state = 'running') = (leased_by IS NOT NULL AND lease_expires_at IS NOT NULL)),
    CHECK ((state IN ('succeeded', 'failed', 'cancelled')) = (finished_at IS NOT NULL))
) STRICT;

CREATE INDEX jobs_claim ON jobs (fair_rank, run_at, id) WHERE state = 'queued';
CREATE INDEX jobs_running_user ON jobs (user_id) WHERE state = 'running';
CREATE INDEX jobs_queued_user ON jobs (user_id, fair_rank) WHERE state = 'queued';
CREATE INDEX jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX jobs_order ON jobs (order_id);

-- Named counters (the PostgreSQL schema's sequences): `job_step` orders the steps begun by
-- any worker.
CREATE TABLE counters (
    name   TEXT    PRIMARY KEY,
    value  INTEGER NOT NULL
) STRICT;

INSERT INTO counters (name, value) VALUES ('job_step', 0);

-- Provider callbacks are wake-ups, never the truth: at most a few rows per job, deleted when
-- the waiting worker wakes.
CREATE TABLE task_wakeups (
    job_id       INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    task_id      TEXT    NOT NULL CHECK (length(task_id) BETWEEN 1 AND 128),
    key_id       TEXT    CHECK (length(key_id) <= 64),
    model        TEXT    CHECK (length(model) <= 128),
    received_at  INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000 AS INTEGER)),
    PRIMARY KEY (job_id, task_id)
) STRICT;

CREATE INDEX task_wakeups_received ON task_wakeups (received_at);

-- Telegram dialogue state, one row per chat.
CREATE TABLE bot_dialogues (
    chat_id     INTEGER PRIMARY KEY,
    state       TEXT    NOT NULL,
    updated_at  INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000 AS INTEGER))
) STRICT;

-- Telegram updates taken for handling (a redelivered update is handled once); pruned after
-- the retention window.
CREATE TABLE telegram_update_claims (
    bot_id      INTEGER NOT NULL,
    update_id   INTEGER NOT NULL,
    claimed_at  INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000 AS INTEGER)),
    PRIMARY KEY (bot_id, update_id)
) STRICT;

CREATE INDEX telegram_update_claims_claimed_at ON telegram_update_claims (claimed_at);

-- Uses of costly actions per user, counted in a sliding window.
CREATE TABLE usage_events (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id  INTEGER NOT NULL,
    action   TEXT    NOT NULL,
    used_at  INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000 AS INTEGER))
) STRICT;

CREATE INDEX usage_events_user_action ON usage_events (user_id, action, used_at);
