//! The slot pool of one process: claims jobs in batches as slots free up, runs each in its own
//! task, keeps every held lease alive with one heartbeat call, sweeps expired leases, announces
//! new orders, and on shutdown hands unfinished jobs back to the queue.
//!
//! Shutdown: claiming stops at once; jobs waiting on the provider stop at once (their task is
//! recorded, another claim polls it); jobs in other steps get the grace period to reach their
//! next recorded point. After it, jobs that never made a side-effect call in this claim are
//! aborted and handed back; a job inside or past `createTask`/`sendVideo` is never aborted (see
//! [`super::side_effects`]) and is waited for, bounded by that call's own timeouts. An idle
//! worker stops at once.

use super::job::{self, JobOutcome};
use super::side_effects::SideEffects;
use super::{progress, Inner};
use crate::domain::{ClaimedJob, JobId, Lease};
use crate::ports::{FailureNotice, Recipient};
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::Instant;

/// What one run of the pipeline did, for logs and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunReport {
    /// Jobs claimed by this process.
    pub claimed: u64,
    /// Job runs that ended (completed, retried, failed, or stopped).
    pub finished: u64,
    /// Jobs handed back to the queue at shutdown.
    pub released: u64,
}

/// A lease held by this process, with the task working on it.
struct HeldJob {
    lease: Lease,
    task: AbortHandle,
    side_effects: SideEffects,
}

/// Leases held by this process, by job.
type Held = Arc<Mutex<HashMap<JobId, HeldJob>>>;

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn jittered(d: Duration) -> Duration {
    d.mul_f64(0.8 + fastrand::f64() * 0.4)
}

pub(crate) async fn run(inner: Arc<Inner>, shutdown: impl Future<Output = ()>) -> RunReport {
    let config = &inner.config;
    let worker = config.worker_id.clone();
    let concurrency = config.concurrency.max(1);
    tracing::info!(worker = %worker, concurrency, "pipeline started");

    let (stop_tx, stop_rx) = watch::channel(false);
    let held: Held = Arc::default();
    let mut tasks: JoinSet<(Lease, JobOutcome)> = JoinSet::new();
    let mut report = RunReport::default();
    let mut to_release: Vec<Lease> = Vec::new();

    // Aborted when this future ends or is dropped: a host that drops the run must not leave
    // heartbeats extending leases of jobs nobody works on.
    let _background = AbortOnDrop(vec![
        tokio::spawn(heartbeat_loop(Arc::clone(&inner), Arc::clone(&held))),
        tokio::spawn(rescue_loop(Arc::clone(&inner))),
        tokio::spawn(announce_loop(Arc::clone(&inner))),
    ]);

    tokio::pin!(shutdown);
    // Whether the last claim may have left ready work behind (it returned a full batch, or a
    // wake-up or poll came since).
    let mut work_maybe_ready = true;
    let mut next_poll = Instant::now() + config.poll_interval;
    let mut last_claim: Option<Instant> = None;

    loop {
        while let Some(done) = tasks.try_join_next_with_id() {
            reap(&inner, done, &held, &mut report, &mut to_release);
        }
        let free = concurrency.saturating_sub(tasks.len());
        if free > 0 && work_maybe_ready {
            // Bursts of notifications become one batch claim.
            if let Some(at) = last_claim {
                let earliest = at + config.claim_min_gap;
                tokio::select! {
                    () = &mut shutdown => break,
                    () = tokio::time::sleep_until(earliest) => {}
                }
            }
            let free = concurrency.saturating_sub(tasks.len());
            let want = u32::try_from(free).unwrap_or(u32::MAX).min(config.claim_batch_max.max(1));
            last_claim = Some(Instant::now());
            match inner.deps.queue.claim(&worker, want).await {
                Ok(jobs) => {
                    work_maybe_ready = jobs.len() as u32 >= want;
                    for job in jobs {
                        report.claimed += 1;
                        spawn_job(&inner, &mut tasks, &held, job, stop_rx.clone());
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "claim failed; waiting for the next poll");
                    work_maybe_ready = false;
                }
            }
            if work_maybe_ready && concurrency > tasks.len() {
                continue;
            }
        }

        let free = concurrency.saturating_sub(tasks.len());
        let now = Instant::now();
        if now >= next_poll {
            next_poll = now + config.poll_interval;
            work_maybe_ready = true;
            continue;
        }
        let queue = Arc::clone(&inner.deps.queue);
        let wait_for_work = async move {
            if free == 0 {
                return std::future::pending().await;
            }
            match queue.wait_for_work(next_poll.saturating_duration_since(Instant::now())).await {
                Ok(()) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "wake-up channel failed; polling");
                    tokio::time::sleep_until(next_poll).await;
                }
            }
        };
        tokio::select! {
            () = &mut shutdown => break,
            Some(done) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                reap(&inner, done, &held, &mut report, &mut to_release);
            }
            () = wait_for_work => work_maybe_ready = true,
            () = tokio::time::sleep_until(next_poll) => {}
        }
    }

    // Shutdown: stop claiming, let running steps reach a recorded point, release the rest.
    tracing::info!(in_flight = tasks.len(), "shutting down; finishing running steps");
    let _ = stop_tx.send(true);
    let grace = tokio::time::sleep(config.shutdown_grace);
    tokio::pin!(grace);
    loop {
        tokio::select! {
            () = &mut grace => break,
            done = tasks.join_next_with_id() => match done {
                Some(done) => reap(&inner, done, &held, &mut report, &mut to_release),
                None => break,
            },
        }
    }
    if !tasks.is_empty() {
        // Aborted jobs stop at an await point; whatever they held goes back to the queue. A
        // job inside or past a side-effect call is left to finish (see the module docs).
        let mut aborted = 0usize;
        let mut in_call = 0usize;
        for held in locked(&held).values() {
            if held.side_effects.must_not_abort() {
                in_call += usize::from(held.side_effects.in_call());
                continue;
            }
            to_release.push(held.lease);
            held.task.abort();
            aborted += 1;
        }
        let waiting = tasks.len().saturating_sub(aborted);
        tracing::warn!(
            aborted,
            waiting,
            in_call,
            "grace period over; handing jobs back, waiting for side-effect calls to finish"
        );
        while let Some(done) = tasks.join_next_with_id().await {
            reap(&inner, done, &held, &mut report, &mut to_release);
        }
    }
    to_release.sort_by_key(|l| l.job_id);
    to_release.dedup();
    if !to_release.is_empty() {
        match inner.deps.queue.release(&to_release).await {
            Ok(n) => report.released = n,
            Err(e) => tracing::error!(error = %e, "release failed; leases will expire instead"),
        }
    }
    tracing::info!(?report, "pipeline stopped");
    report
}

struct AbortOnDrop(Vec<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

fn job_id_of(held: &Held, task: tokio::task::Id) -> JobId {
    locked(held)
        .iter()
        .find(|(_, h)| h.task.id() == task)
        .map(|(id, _)| *id)
        .unwrap_or(JobId(i64::MIN))
}

fn spawn_job(
    inner: &Arc<Inner>,
    tasks: &mut JoinSet<(Lease, JobOutcome)>,
    held: &Held,
    job: ClaimedJob,
    stop: watch::Receiver<bool>,
) {
    let lease = job.lease;
    let inner = Arc::clone(inner);
    let side_effects = SideEffects::default();
    let handle =
        tasks.spawn(side_effects.scope(async move { (lease, job::run(inner, job, stop).await) }));
    locked(held).insert(lease.job_id, HeldJob { lease, task: handle, side_effects });
}

fn reap(
    inner: &Inner,
    done: Result<(tokio::task::Id, (Lease, JobOutcome)), tokio::task::JoinError>,
    held: &Held,
    report: &mut RunReport,
    to_release: &mut Vec<Lease>,
) {
    report.finished += 1;
    match done {
        Ok((_, (lease, outcome))) => {
            locked(held).remove(&lease.job_id);
            inner.take_settled(lease.job_id);
            if outcome == JobOutcome::Stopped {
                to_release.push(lease);
            }
        }
        Err(e) => {
            let id = job_id_of(held, e.id());
            locked(held).remove(&id);
            inner.take_settled(id);
            if e.is_panic() {
                // Not released: the lease expires and a rescue sends the job back; the job
                // deadline ends one that keeps panicking.
                tracing::error!(job_id = %id, "job task panicked");
            }
        }
    }
}

/// Extends every held lease in one call; jobs whose lease was lost are stopped at once.
async fn heartbeat_loop(inner: Arc<Inner>, held: Held) {
    let mut tick = tokio::time::interval(inner.config.heartbeat_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let leases: Vec<Lease> = locked(&held).values().map(|h| h.lease).collect();
        if leases.is_empty() {
            inner.heartbeat_ok();
            continue;
        }
        match inner.deps.queue.heartbeat(&inner.config.worker_id, &leases).await {
            Ok(lost) => {
                inner.heartbeat_ok();
                let mut held = locked(&held);
                for id in lost {
                    if inner.is_settled(id) {
                        // Finished here; only its notices are still on their way.
                        continue;
                    }
                    if let Some(job) = held.remove(&id) {
                        tracing::warn!(job_id = %id, "lease lost; stopping the job");
                        job.task.abort();
                    }
                }
            }
            Err(e) => {
                inner.heartbeat_failed();
                tracing::warn!(error = %e, "heartbeat failed; retrying next tick");
            }
        }
    }
}

/// Sends expired leases back to the queue (any worker may; the queue makes it safe) and tells
/// the users of jobs the sweep failed (poison jobs, jobs past the deadline). The queue hands
/// each failed job to exactly one sweep, so each notice is sent by one process, once.
async fn rescue_loop(inner: Arc<Inner>) {
    loop {
        tokio::time::sleep(jittered(inner.config.rescue_interval)).await;
        let report = match inner.deps.queue.rescue_expired(100).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "rescue sweep failed");
                continue;
            }
        };
        inner.metrics.rescue_sweep(&report);
        if !report.requeued.is_empty() {
            tracing::info!(jobs = ?report.requeued, blamed = ?report.blamed, "expired leases sent back to the queue");
        }
        for id in &report.failed {
            notify_rescue_failure(&inner, *id, report.past_deadline.contains(id)).await;
        }
        for id in &report.completed {
            rescue_completed(&inner, *id).await;
        }
    }
}

/// A rescued job whose delivery was recorded was completed by the rescue: its order's progress
/// message moves on as if its worker had completed it.
async fn rescue_completed(inner: &Inner, id: JobId) {
    match inner.deps.queue.job(id).await {
        Ok(Some(job)) => {
            progress::job_finished(inner, job.order_id, job.user_id, job.spec.language).await;
        }
        Ok(None) => {}
        Err(e) => {
            tracing::warn!(job_id = %id, error = %e, "completed job not found for its progress")
        }
    }
}

async fn notify_rescue_failure(inner: &Inner, id: JobId, past_deadline: bool) {
    let job = match inner.deps.queue.job(id).await {
        Ok(Some(job)) => job,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(job_id = %id, error = %e, "failed job not found for its notice");
            return;
        }
    };
    let price = match inner.deps.progress.order_status(job.order_id).await {
        Ok(status) => status.price_per_video,
        Err(_) => crate::domain::Credits::ZERO,
    };
    if past_deadline {
        tracing::warn!(job_id = %id, order_id = %job.order_id, user_id = %job.user_id, "job failed: past the job deadline");
    } else {
        tracing::error!(job_id = %id, order_id = %job.order_id, user_id = %job.user_id, message = ?job.error_message, "poison job failed: blamed for too many worker deaths");
    }
    let notice = FailureNotice {
        order_id: job.order_id,
        job_id: id,
        class: job.error_class.unwrap_or(crate::domain::ErrorClass::Unknown),
        refunded: if job.refunded { price } else { crate::domain::Credits::ZERO },
        product_id: job.spec.product_id,
        detail: None,
        photo_problem: None,
    };
    let to = Recipient { user_id: job.user_id, language: job.spec.language };
    super::failure::notify_failure(inner, to, &notice).await;
    progress::job_finished(inner, job.order_id, job.user_id, job.spec.language).await;
}

/// Tells users of new orders where they stand in the queue.
async fn announce_loop(inner: Arc<Inner>) {
    loop {
        tokio::time::sleep(inner.config.announce_interval).await;
        while progress::announce_new_orders(&inner, 20).await == 20 {}
    }
}
