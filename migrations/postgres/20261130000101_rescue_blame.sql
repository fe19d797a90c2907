-- Which step each job is in, and which job a dead worker is blamed for.
--
-- A worker's death is blamed on one job only: among the jobs it held, the one on which it most
-- recently began a step (unless it heartbeated since). Only blamed rescues count toward
-- MAX_RESCUES; every other rescue of the dead worker's jobs is free. `jobs.rescues` keeps
-- counting every rescue (blamed or not).
--
-- None of these columns is indexed, so writing them keeps heartbeat-style HOT updates.

-- One sequence for all jobs: a larger value means a step begun later, by any worker.
CREATE SEQUENCE job_step_seq AS bigint;

ALTER TABLE jobs
    -- The last step begun under any lease; kept across claims (the next worker sees the intent).
    ADD COLUMN current_step    text
                               CHECK (current_step IN ('upload', 'prompt', 'submit', 'wait',
                                                       'deliver')),
    -- nextval(job_step_seq) at the last step begun under the current lease since the worker's
    -- last heartbeat: claims and heartbeats clear it, and a rescue clears it on a dead worker's
    -- other jobs once that death has been blamed.
    ADD COLUMN step_seq        bigint,
    -- Rescues this job was blamed for (the cap counts these).
    ADD COLUMN blamed_rescues  int NOT NULL DEFAULT 0;
