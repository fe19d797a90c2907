//! The settings every [`JobQueue`](crate::ports::JobQueue) adapter takes: lease, per-user cap,
//! rescue cap and job deadline.

use std::time::Duration;

/// Settings of a job queue, the same for every store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueConfig {
    /// How long a claim holds a job without a heartbeat. Default 60 s; workers heartbeat every
    /// third of it, so a dead worker's jobs run again elsewhere within about 1.5 leases.
    pub lease: Duration,
    /// Jobs of one user running at once, across all workers. Default 10: a user's order of 5 runs
    /// entirely in parallel, while an admin's bulk order of 100 cannot occupy every slot. Claims
    /// take turns (see `claim.rs`), so the cap holds exactly, across any number of processes.
    pub per_user_cap: u32,
    /// How many rescues a job may be *blamed* for (its worker died and it was the job on which
    /// that worker most recently began a step); the next blamed rescue fails it with refund as
    /// a poison job. Rescues of bystander jobs are not counted. Default 3.
    pub max_rescues: u32,
    /// The longest a job may stay unfinished after its first claim: a rescue of a job older than
    /// this fails it with refund (unless its delivery is recorded). Bounds the free rescues.
    /// Default 2 h.
    pub job_deadline: Duration,
    /// PostgreSQL only: the LISTEN/NOTIFY channel that wakes waiting workers. Default
    /// `neurocards_jobs`. The embedded store wakes its workers in process.
    pub notify_channel: String,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(60),
            per_user_cap: 10,
            max_rescues: 3,
            job_deadline: Duration::from_secs(2 * 3600),
            notify_channel: "neurocards_jobs".to_owned(),
        }
    }
}
