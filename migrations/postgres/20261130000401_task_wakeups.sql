-- Provider callbacks are wake-ups, never the truth: a callback only tells the worker that owns
-- the task to ask the provider (`recordInfo`) now instead of at its next poll. Nothing of the
-- callback body is stored. A row exists only for a task a job owns (or, while the job's
-- createTask answer is not recorded yet, a task named in a callback addressed to that job), at
-- most a few per job, and the waiting worker deletes it when it wakes.

DROP TABLE provider_callbacks;

CREATE TABLE task_wakeups (
    job_id       bigint      NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    task_id      text        NOT NULL CHECK (length(task_id) BETWEEN 1 AND 128),
    -- Which of our keys and which model the task was created with, as the callback URL we
    -- gave the provider says: a task whose create call's answer was lost is checked (and
    -- adopted) with them. Only hints: the provider's answer to that check decides.
    key_id       text        CHECK (length(key_id) <= 64),
    model        text        CHECK (length(model) <= 128),
    received_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, task_id)
);

CREATE INDEX task_wakeups_received ON task_wakeups (received_at);
