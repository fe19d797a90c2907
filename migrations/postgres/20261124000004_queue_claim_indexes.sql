-- Cheaper claims and completions.
--
-- jobs_active_user (user_id, state) over queued AND running rows made every claim's per-user
-- running count scan the whole index, queued backlog included, because `state` is its second
-- column. Two partial indexes hold the same rows (each row is in at most one of them, so writes
-- cost the same) and each query reads only its own part:
--   * jobs_running_user: per-user running counts at claim time, the running total and the rescue
--     sweep read only running rows (at most the fleet's job slots);
--   * jobs_queued_user: a user's last queued fair rank when an order is placed.
CREATE INDEX jobs_running_user ON jobs (user_id) WHERE state = 'running';
CREATE INDEX jobs_queued_user ON jobs (user_id, fair_rank) WHERE state = 'queued';
DROP INDEX jobs_active_user;

-- jobs_first_claimed only served the statistics' wait window, yet every claim and completion
-- paid an index insert for it. A job first claimed inside the window is either still active
-- (queued or running) or finished inside the window (finished_at >= first_claimed_at), so the
-- statistics read it through jobs_running_user/jobs_queued_user and jobs_finished instead.
DROP INDEX jobs_first_claimed;
