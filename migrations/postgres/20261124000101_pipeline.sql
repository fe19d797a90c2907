-- The pipeline's own state: who owns each order's single progress message and which stage it
-- shows, and provider callbacks waiting for the worker that owns the task.

ALTER TABLE orders
    -- The latest progress stage granted (ranks only grow: queued < generating k < finished).
    ADD COLUMN progress_rank     bigint  NOT NULL DEFAULT 0,
    -- Someone holds (or used) the one right to send the progress message.
    ADD COLUMN progress_claimed  boolean NOT NULL DEFAULT false;

-- New orders nobody has announced yet; rows leave the index as soon as they are claimed.
CREATE INDEX orders_unannounced ON orders (created_at) WHERE NOT progress_claimed;

-- Final task states posted by the provider, received by any bot replica. The first final
-- state for a task wins; `NOTIFY neurocards_task_updates, <task_id>` wakes the waiting worker.
CREATE TABLE provider_callbacks (
    task_id      text        PRIMARY KEY,
    state        jsonb       NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX provider_callbacks_received ON provider_callbacks (received_at);
