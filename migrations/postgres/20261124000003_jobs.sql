-- Jobs: one video each. The claim path touches only queued rows through a partial index;
-- heartbeats change only lease_expires_at, which no index covers, so they can be HOT updates
-- (hence fillfactor 80).

CREATE TABLE jobs (
    id                     bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id               bigint      NOT NULL REFERENCES orders (id),
    user_id                bigint      NOT NULL,
    index_in_order         int         NOT NULL CHECK (index_in_order >= 1),
    state                  text        NOT NULL DEFAULT 'queued'
                           CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    -- Fair-queueing position: a user's k-th waiting job gets (queue head + k), so one user's
    -- burst interleaves with everyone else's single jobs instead of running ahead of them.
    fair_rank              bigint      NOT NULL DEFAULT 0,
    run_at                 timestamptz NOT NULL DEFAULT now(),
    attempt                int         NOT NULL DEFAULT 0,   -- claims so far
    temporary_retries      int         NOT NULL DEFAULT 0,
    rate_limit_retries     int         NOT NULL DEFAULT 0,
    rescues                int         NOT NULL DEFAULT 0,   -- lease expiries, capped separately
    lease_token            bigint      NOT NULL DEFAULT 0,   -- +1 on every claim (fencing)
    leased_by              text,
    lease_expires_at       timestamptz,                      -- deliberately not indexed
    -- Step results, recorded as they finish so that a resumed job skips what is done.
    image_url              text,
    prompt                 text,
    provider_task_id       text,
    provider_model         text,
    provider_key_id        text,
    provider_submitted_at  timestamptz,
    video_url              text,
    delivered_message_id   int,
    delivered_file_id      text,
    undeliverable_reason   text,
    error_class            text
                           CHECK (error_class IN ('user_violation', 'billing', 'rate_limit',
                                  'temporary', 'provider_paused', 'config', 'unknown')),
    error_message          text,
    created_at             timestamptz NOT NULL DEFAULT now(),
    first_claimed_at       timestamptz,
    finished_at            timestamptz,
    UNIQUE (order_id, index_in_order),
    -- Exactly the running jobs hold a lease: no job is both terminal and leased.
    CHECK ((state = 'running') = (leased_by IS NOT NULL AND lease_expires_at IS NOT NULL)),
    CHECK ((state IN ('succeeded', 'failed', 'cancelled')) = (finished_at IS NOT NULL))
) WITH (fillfactor = 80,
        autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 500,
        autovacuum_analyze_scale_factor = 0.02);

-- The claim scan: fair order, ready first. Terminal and running rows never enter it.
CREATE INDEX jobs_claim ON jobs (fair_rank, run_at, id) WHERE state = 'queued';
-- Per-user in-flight counts, a user's last queued rank, and the rescue sweep over running jobs.
CREATE INDEX jobs_active_user ON jobs (user_id, state) WHERE state IN ('queued', 'running');
-- Statistics windows.
CREATE INDEX jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX jobs_first_claimed ON jobs (first_claimed_at) WHERE first_claimed_at IS NOT NULL;
