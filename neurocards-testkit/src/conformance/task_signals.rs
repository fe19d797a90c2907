//! The [`TaskSignals`] conformance suite. Each function states one guarantee and panics when it
//! does not hold. A backend's tests build a fresh [`SignalsFixture`] per test and call them.

use neurocards_core::domain::{JobId, Lease, LeaseToken};
use neurocards_core::ports::{
    PipelineStoreError, TaskSignals, WakeupOutcome, WakeupTask, MAX_PENDING_WAKEUPS,
};
use std::time::{Duration, Instant};

/// What the suite needs besides the signals: jobs in the states that decide ownership (a
/// backend decides how; the queue port may do it), and a look at the stored rows.
#[async_trait::async_trait]
pub trait SignalsFixture: Send + Sync {
    type Signals: TaskSignals;

    /// The waiting side (the pipeline's instance).
    fn signals(&self) -> &Self::Signals;

    /// Another instance on the same store, as the component receiving callbacks holds it.
    fn other_signals(&self) -> Self::Signals;

    /// A queued job of a new order, with no provider task.
    async fn queued_job(&self) -> JobId;

    /// A job of a new order running under a lease, with no provider task recorded yet.
    async fn running_job(&self) -> Lease;

    /// Records `task_id` as the running job's provider task, with the job at its `wait` step
    /// (what a worker records through the queue when it submitted the task).
    async fn record_task(&self, lease: Lease, task_id: &str);

    /// Finishes the running job (succeeded).
    async fn finish_job(&self, lease: Lease);

    /// The job's recorded provider task and current step.
    async fn job_task(&self, job: JobId) -> (Option<String>, Option<String>);

    /// Pending wake-up rows, over every job.
    async fn pending_wakeups(&self) -> i64;
}

/// Long enough that a waiter woken by its notification is told apart from one that timed out.
const LONG: Duration = Duration::from_secs(30);

async fn job_with_task<F: SignalsFixture>(f: &F, task_id: &str) -> Lease {
    let lease = f.running_job().await;
    f.record_task(lease, task_id).await;
    lease
}

/// A wake-up for the job's own task, recorded by another instance while the worker waits,
/// wakes it at once.
pub async fn a_wakeup_wakes_the_waiting_worker<F: SignalsFixture>(f: &F) {
    let lease = job_with_task(f, "task-9").await;
    let id = lease.job_id;
    let receiver = f.other_signals();
    let started = Instant::now();
    let (woken, recorded) = tokio::join!(f.signals().wait_wakeup(id, "task-9", LONG), async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        receiver.record_wakeup(id, &WakeupTask::new("task-9")).await
    });
    assert_eq!(recorded.expect("record"), WakeupOutcome::Recorded);
    assert!(woken.expect("wait"), "woken");
    assert!(started.elapsed() < Duration::from_secs(10), "woken by the notification");
    assert_eq!(f.pending_wakeups().await, 0, "waking consumed it");
}

/// A wake-up recorded before the wait began is found at once: nothing is lost between a poll
/// and the wait.
pub async fn a_wakeup_recorded_before_the_wait_is_not_missed<F: SignalsFixture>(f: &F) {
    let lease = job_with_task(f, "task-early").await;
    let receiver = f.other_signals();
    assert_eq!(
        receiver.record_wakeup(lease.job_id, &WakeupTask::new("task-early")).await.expect("rec"),
        WakeupOutcome::Recorded
    );
    let started = Instant::now();
    assert!(f.signals().wait_wakeup(lease.job_id, "task-early", LONG).await.expect("wait"));
    assert!(started.elapsed() < Duration::from_secs(10), "found without waiting");
}

/// Waking consumes the wake-up: the next wait times out; a repeated callback wakes once more,
/// and a duplicate of a pending one stores nothing new.
pub async fn waking_consumes_the_wakeup<F: SignalsFixture>(f: &F) {
    let lease = job_with_task(f, "task-1").await;
    let id = lease.job_id;
    let receiver = f.other_signals();
    receiver.record_wakeup(id, &WakeupTask::new("task-1")).await.expect("record");
    assert!(f.signals().wait_wakeup(id, "task-1", LONG).await.expect("wait"));
    assert!(!f.signals().wait_wakeup(id, "task-1", Duration::from_millis(20)).await.expect("wait"));
    assert_eq!(
        receiver.record_wakeup(id, &WakeupTask::new("task-1")).await.expect("again"),
        WakeupOutcome::Recorded
    );
    assert_eq!(
        receiver.record_wakeup(id, &WakeupTask::new("task-1")).await.expect("dup"),
        WakeupOutcome::Pending
    );
    assert_eq!(f.pending_wakeups().await, 1);
    assert!(f.signals().wait_wakeup(id, "task-1", Duration::from_millis(20)).await.expect("wait"));
    assert_eq!(f.pending_wakeups().await, 0);
}

/// Without a wake-up the wait returns `false` at its timeout, not before and not much later.
pub async fn a_wait_without_wakeup_returns_at_the_timeout<F: SignalsFixture>(f: &F) {
    let lease = job_with_task(f, "task-quiet").await;
    let started = Instant::now();
    let woken = f
        .signals()
        .wait_wakeup(lease.job_id, "task-quiet", Duration::from_millis(300))
        .await
        .expect("wait");
    let waited = started.elapsed();
    assert!(!woken);
    assert!(waited >= Duration::from_millis(290), "waited the timeout ({waited:?})");
    assert!(waited < Duration::from_secs(10), "returned at the timeout ({waited:?})");
}

/// Wake-ups for other jobs, or for another task of the same job, do not end a wait: the waiter
/// re-checks its own row and waits on to its timeout.
pub async fn other_wakeups_do_not_end_a_wait<F: SignalsFixture>(f: &F) {
    let mine = f.running_job().await;
    let other = job_with_task(f, "task-other").await;
    let receiver = f.other_signals();
    let started = Instant::now();
    let (woken, ()) = tokio::join!(
        f.signals().wait_wakeup(mine.job_id, "task-mine", Duration::from_millis(1_500)),
        async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let r = receiver.record_wakeup(other.job_id, &WakeupTask::new("task-other")).await;
            assert_eq!(r.expect("record"), WakeupOutcome::Recorded);
            // The waiting job has no task recorded: a callback naming another task is kept
            // for adoption, but it is not the awaited task.
            let r = receiver.record_wakeup(mine.job_id, &WakeupTask::new("task-orphan")).await;
            assert_eq!(r.expect("record"), WakeupOutcome::Recorded);
        }
    );
    assert!(!woken.expect("wait"), "not woken by someone else's wake-up");
    assert!(started.elapsed() >= Duration::from_millis(1_400));
    assert_eq!(f.pending_wakeups().await, 2, "the other wake-ups are still pending");
}

/// Several workers waiting at once are each woken by their own job's wake-up.
pub async fn concurrent_waiters_are_each_woken<F: SignalsFixture>(f: &F) {
    let mut leases = Vec::new();
    for i in 0..4 {
        leases.push(job_with_task(f, &format!("task-{i}")).await);
    }
    let receiver = f.other_signals();
    let started = Instant::now();
    let waits = futures::future::join_all(
        leases
            .iter()
            .enumerate()
            .map(|(i, l)| async move {
                f.signals().wait_wakeup(l.job_id, &format!("task-{i}"), LONG).await
            })
            .collect::<Vec<_>>(),
    );
    let records = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        for (i, l) in leases.iter().enumerate().rev() {
            let r = receiver.record_wakeup(l.job_id, &WakeupTask::new(format!("task-{i}"))).await;
            assert_eq!(r.expect("record"), WakeupOutcome::Recorded);
        }
    };
    let (woken, ()) = tokio::join!(waits, records);
    for w in woken {
        assert!(w.expect("wait"), "every waiter is woken");
    }
    assert!(started.elapsed() < Duration::from_secs(10), "woken by notifications");
    assert_eq!(f.pending_wakeups().await, 0);
}

/// A wake-up is refused (`NotOwned`, nothing stored) for a task the job does not own, a job
/// that does not exist, and a finished job.
pub async fn wakeups_for_tasks_no_job_owns_store_nothing<F: SignalsFixture>(f: &F) {
    let lease = job_with_task(f, "t-a").await;
    let signals = f.signals();
    let refused = [(lease.job_id, "t-other"), (JobId(9_999_999), "t-a")];
    for (job, task_id) in refused {
        assert_eq!(
            signals.record_wakeup(job, &WakeupTask::new(task_id)).await.expect("record"),
            WakeupOutcome::NotOwned,
            "job {job}, task {task_id}"
        );
    }
    f.finish_job(lease).await;
    assert_eq!(
        signals.record_wakeup(lease.job_id, &WakeupTask::new("t-a")).await.expect("record"),
        WakeupOutcome::NotOwned,
        "a finished job owns nothing any more"
    );
    assert_eq!(f.pending_wakeups().await, 0, "nothing stored for strangers");
}

/// A job whose create answer is not recorded yet (queued, or running without a task) takes
/// wake-ups for tasks it may own.
pub async fn a_job_without_a_task_takes_wakeups<F: SignalsFixture>(f: &F) {
    let queued = f.queued_job().await;
    let running = f.running_job().await;
    for job in [queued, running.job_id] {
        assert_eq!(
            f.signals().record_wakeup(job, &WakeupTask::new("maybe-mine")).await.expect("record"),
            WakeupOutcome::Recorded
        );
    }
    assert_eq!(f.pending_wakeups().await, 2);
}

/// At most [`MAX_PENDING_WAKEUPS`] are pending per job: whatever arrives, stored state stays
/// bounded; the named tasks come back oldest first with their hints.
pub async fn pending_wakeups_are_bounded_per_job<F: SignalsFixture>(f: &F) {
    let lease = f.running_job().await;
    let id = lease.job_id;
    let signals = f.signals();
    for i in 0..10 {
        let task = WakeupTask {
            task_id: format!("orphan-{i}"),
            key_id: Some(format!("key-{i}")),
            model: Some("veo3_fast".to_owned()),
        };
        let got = signals.record_wakeup(id, &task).await.expect("record");
        let expected = if i < MAX_PENDING_WAKEUPS as usize {
            WakeupOutcome::Recorded
        } else {
            WakeupOutcome::Pending
        };
        assert_eq!(got, expected, "wake-up {i}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(f.pending_wakeups().await, i64::from(MAX_PENDING_WAKEUPS));
    let named = signals.wakeup_tasks(id).await.expect("tasks");
    let ids: Vec<&str> = named.iter().map(|t| t.task_id.as_str()).collect();
    let expected: Vec<String> = (0..MAX_PENDING_WAKEUPS).map(|i| format!("orphan-{i}")).collect();
    assert_eq!(ids, expected.iter().map(String::as_str).collect::<Vec<_>>(), "oldest first");
    assert_eq!(named[0].key_id.as_deref(), Some("key-0"));
    assert_eq!(named[0].model.as_deref(), Some("veo3_fast"));
    // Another job is not affected by this job's cap.
    let other = f.running_job().await;
    assert_eq!(
        signals.record_wakeup(other.job_id, &WakeupTask::new("t")).await.expect("record"),
        WakeupOutcome::Recorded
    );
    assert!(signals.wakeup_tasks(other.job_id).await.expect("tasks").len() == 1);
}

/// Concurrent callbacks for one job never store more than the cap.
pub async fn concurrent_wakeups_stay_bounded<F: SignalsFixture>(f: &F) {
    let lease = f.running_job().await;
    let receivers: Vec<F::Signals> = (0..4).map(|_| f.other_signals()).collect();
    let results = futures::future::join_all((0..24).map(|i| {
        let task = WakeupTask::new(format!("burst-{i}"));
        let receiver = &receivers[i % receivers.len()];
        async move { receiver.record_wakeup(lease.job_id, &task).await }
    }))
    .await;
    let recorded = results
        .into_iter()
        .filter(|r| *r.as_ref().expect("record") == WakeupOutcome::Recorded)
        .count();
    assert_eq!(recorded, MAX_PENDING_WAKEUPS as usize);
    assert_eq!(f.pending_wakeups().await, i64::from(MAX_PENDING_WAKEUPS));
}

/// Abandoning the task clears it, its `wait` step and the job's pending wake-ups; it is
/// fenced by the lease.
pub async fn abandoning_a_task_is_fenced_by_the_lease<F: SignalsFixture>(f: &F) {
    let lease = job_with_task(f, "t1").await;
    let signals = f.signals();
    assert_eq!(
        signals.record_wakeup(lease.job_id, &WakeupTask::new("t1")).await.expect("wake"),
        WakeupOutcome::Recorded
    );
    let stale = Lease { job_id: lease.job_id, token: LeaseToken(lease.token.0 + 100) };
    assert!(
        matches!(signals.abandon_task(stale).await, Err(PipelineStoreError::LeaseLost(j)) if j == lease.job_id)
    );
    assert_eq!(
        f.job_task(lease.job_id).await.0.as_deref(),
        Some("t1"),
        "a stale lease changes nothing"
    );
    assert_eq!(f.pending_wakeups().await, 1);

    signals.abandon_task(lease).await.expect("abandon");
    assert_eq!(f.job_task(lease.job_id).await, (None, None), "task and wait step cleared");
    assert_eq!(f.pending_wakeups().await, 0, "the abandoned task's wake-ups are gone");
    // The job takes a wake-up for its next task at once.
    assert_eq!(
        signals.record_wakeup(lease.job_id, &WakeupTask::new("t2")).await.expect("wake"),
        WakeupOutcome::Recorded
    );
    f.finish_job(lease).await;
    assert!(matches!(signals.abandon_task(lease).await, Err(PipelineStoreError::LeaseLost(_))));
}
