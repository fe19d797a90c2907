//! `jobs list | retry | cancel`: the queue port ([`JobQueue`]).

use crate::Store;
use clap::{Subcommand, ValueEnum};
use neurocards_core::domain::{JobId, JobStatus};
use neurocards_core::ports::{
    CancelScope, JobFilter, JobQueue, JobSnapshot, QueueError, RetryOutcome,
};

#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// Jobs by state, newest first.
    List {
        /// Only jobs in this state (all jobs when not given).
        #[arg(long, value_enum)]
        state: Option<StateArg>,
        /// At most this many jobs.
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        limit: u32,
    },
    /// Run a failed job again: a new job for the same video, charged to the user again
    /// (the failed job was refunded); nothing is charged if it was retried before.
    Retry {
        /// The failed job's id.
        job_id: i64,
    },
    /// Cancel a waiting job that has not started generating, refunding its credit.
    Cancel {
        /// The job's id.
        job_id: i64,
    },
}

/// The states `jobs list --state` takes.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum StateArg {
    /// Waiting in the queue (including those waiting for a retry).
    Queued,
    /// Held by a worker now.
    Running,
    /// Waiting in the queue again after at least one run (retry, snooze, rescue, release).
    Retrying,
    Succeeded,
    Failed,
    Cancelled,
}

impl StateArg {
    fn filter(self) -> JobFilter {
        match self {
            StateArg::Queued => JobFilter::Status(JobStatus::Queued),
            StateArg::Running => JobFilter::Status(JobStatus::Running),
            StateArg::Retrying => JobFilter::Retrying,
            StateArg::Succeeded => JobFilter::Status(JobStatus::Succeeded),
            StateArg::Failed => JobFilter::Status(JobStatus::Failed),
            StateArg::Cancelled => JobFilter::Status(JobStatus::Cancelled),
        }
    }
}

pub async fn run(store: &Store, command: JobsCommand) -> anyhow::Result<()> {
    let queue = store.stores.queue.as_ref();
    match command {
        JobsCommand::List { state, limit } => list(queue, state, limit).await,
        JobsCommand::Retry { job_id } => retry(queue, job_id).await,
        JobsCommand::Cancel { job_id } => cancel(queue, job_id).await,
    }
}

async fn list(queue: &dyn JobQueue, state: Option<StateArg>, limit: u32) -> anyhow::Result<()> {
    let filter = state.map(StateArg::filter).unwrap_or(JobFilter::Any);
    let jobs = queue.list_jobs(filter, limit).await?;
    if jobs.is_empty() {
        println!("no jobs");
        return Ok(());
    }
    for job in &jobs {
        println!("{}", job_line(job));
    }
    println!("{} jobs", jobs.len());
    Ok(())
}

fn job_line(j: &JobSnapshot) -> String {
    let mut line = format!(
        "job {}  {}  order {}  user {}  template {}  attempt {}  created {}",
        j.id,
        j.status,
        j.order_id,
        j.user_id,
        j.spec.template.as_str(),
        j.attempt,
        j.created_at.format("%Y-%m-%d %H:%M:%S UTC"),
    );
    if j.status == JobStatus::Queued && j.attempt > 0 {
        line.push_str(&format!("  next run {}", j.run_at.format("%H:%M:%S UTC")));
    }
    if let Some(worker) = &j.leased_by {
        line.push_str(&format!("  worker {worker}"));
    }
    if let Some(class) = j.error_class {
        let message = j.error_message.as_deref().unwrap_or("");
        line.push_str(&format!("  error {class}: {message}"));
    }
    if j.refunded {
        line.push_str("  refunded");
    }
    line
}

fn job_id(raw: i64) -> anyhow::Result<JobId> {
    anyhow::ensure!(raw > 0, "a job id is a positive number (got {raw})");
    Ok(JobId(raw))
}

async fn retry(queue: &dyn JobQueue, raw: i64) -> anyhow::Result<()> {
    let job = job_id(raw)?;
    match queue.retry_failed(job).await {
        Ok(RetryOutcome::Queued { order_id, job: new, charged, balance_after }) => {
            let user = queue.job(new).await?.map(|j| j.user_id.to_string());
            let user = user.unwrap_or_else(|| "?".to_owned());
            println!(
                "job {job} retried as job {new} (order {order_id}): charged {charged} credits, \
                 user {user} balance {balance_after}"
            );
            Ok(())
        }
        Ok(RetryOutcome::AlreadyRetried { order_id, job: new }) => {
            println!(
                "job {job} was already retried as job {new} (order {order_id}): nothing charged"
            );
            Ok(())
        }
        Ok(RetryOutcome::NotFailed(state)) => anyhow::bail!(
            "job {job} is {state}: only a failed job can be retried; nothing was written"
        ),
        Ok(RetryOutcome::NotFound) => anyhow::bail!("job {job} not found"),
        Err(QueueError::InsufficientCredits { needed, available }) => anyhow::bail!(
            "job {job} not retried: the retry costs {needed} credits and the user has \
             {available}; grant credits first (neurocards-admin grant <user_id> <credits>)"
        ),
        Err(e) => Err(e.into()),
    }
}

async fn cancel(queue: &dyn JobQueue, raw: i64) -> anyhow::Result<()> {
    let job = job_id(raw)?;
    let cancelled = match queue.cancel_queued(CancelScope::Job(job)).await {
        Ok(c) => c,
        Err(QueueError::NotFound(_)) => anyhow::bail!("job {job} not found"),
        Err(e) => return Err(e.into()),
    };
    if cancelled.jobs.contains(&job) {
        let user = queue.job(job).await?.map(|j| j.user_id.to_string());
        let user = user.unwrap_or_else(|| "?".to_owned());
        println!(
            "job {job} cancelled: refunded {} credits, user {user} balance {}",
            cancelled.refunded, cancelled.balance_after
        );
        return Ok(());
    }
    let Some(snapshot) = queue.job(job).await? else {
        anyhow::bail!("job {job} not found");
    };
    match snapshot.status {
        JobStatus::Queued => anyhow::bail!(
            "job {job} is waiting for a retry after its generation started: it cannot be \
             cancelled (it will finish, or fail with refund)"
        ),
        JobStatus::Running => anyhow::bail!(
            "job {job} is running: only a waiting job can be cancelled (it will finish, or fail \
             with refund)"
        ),
        state => anyhow::bail!("job {job} is already {state}: nothing to cancel"),
    }
}
