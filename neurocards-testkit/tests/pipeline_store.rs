//! The pipeline's PostgreSQL stores: the single progress message and callback wake-ups.

use neurocards_core::domain::*;
use neurocards_core::ports::*;
use neurocards_core::postgres::{PgJobQueue, PgOrderProgress, PgTaskSignals};
use neurocards_testkit::stores::pg_database;
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;

async fn place(pool: &PgPool, count: u32) -> (PgJobQueue, PlacedOrder) {
    neurocards_testkit::pg::placed_order(pool, count).await
}

#[tokio::test]
async fn only_one_of_many_concurrent_workers_may_create_the_progress_message() {
    let Some(db) = pg_database().await else { return };
    let pool = db.pool.clone();
    let (_queue, placed) = place(&pool, 3).await;
    let store = Arc::new(PgOrderProgress::new(pool.clone()));
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.claim_stage(placed.order_id, 10).await })
        })
        .collect();
    let mut creates = 0;
    for t in tasks {
        match t.await.expect("task").expect("claim") {
            ProgressSlot::Create => creates += 1,
            ProgressSlot::Skip => {}
            ProgressSlot::Edit(_) => panic!("no message exists yet"),
        }
    }
    assert_eq!(creates, 1);

    let msg = MessageRef { chat_id: 1, message_id: 77 };
    store.set_message(placed.order_id, msg).await.expect("set message");
    assert_eq!(
        store.claim_stage(placed.order_id, 20).await.expect("claim"),
        ProgressSlot::Edit(msg)
    );
    // The same or an earlier stage is never shown again.
    assert_eq!(store.claim_stage(placed.order_id, 20).await.expect("claim"), ProgressSlot::Skip);
    assert_eq!(store.claim_stage(placed.order_id, 15).await.expect("claim"), ProgressSlot::Skip);
    // An order whose first job already started is not announced as queued.
    assert!(store.claim_unannounced(1, 10).await.expect("announce").is_empty());
}

#[tokio::test]
async fn order_status_counts_jobs_by_outcome() {
    let Some(db) = pg_database().await else { return };
    let pool = db.pool.clone();
    let (queue, placed) = place(&pool, 3).await;
    let store = PgOrderProgress::new(pool.clone());
    let claimed = queue.claim(&WorkerId::new("w"), 3).await.expect("claim");
    queue.complete(&[claimed[0].lease]).await.expect("complete");
    queue
        .fail(claimed[1].lease, &JobFailure { class: ErrorClass::Config, message: "x".into() })
        .await
        .expect("fail");
    let status = store.order_status(placed.order_id).await.expect("status");
    assert_eq!((status.total, status.succeeded, status.failed), (3, 1, 1));
    assert!(!status.is_finished());
    assert_eq!(status.price_per_video.get(), 1);
}

fn task(id: &str) -> ProviderTaskRef {
    ProviderTaskRef {
        task_id: id.into(),
        model: "m".into(),
        key_id: "k".into(),
        submitted_at: chrono::Utc::now(),
    }
}

async fn wakeup_rows(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM task_wakeups").fetch_one(pool).await.expect("count")
}

#[tokio::test]
async fn a_wakeup_for_the_jobs_own_task_wakes_its_waiter_once() {
    let Some(db) = pg_database().await else { return };
    let pool = db.pool.clone();
    let (queue, _placed) = place(&pool, 1).await;
    let job = queue.claim(&WorkerId::new("w"), 1).await.expect("claim").remove(0);
    let id = job.lease.job_id;
    queue
        .record_step(job.lease, &StepResult::Submitted { task: task("task-9") })
        .await
        .expect("step");

    let signals = Arc::new(PgTaskSignals::new(pool.clone()));
    let waiter = {
        let signals = Arc::clone(&signals);
        tokio::spawn(
            async move { signals.wait_wakeup(id, "task-9", Duration::from_secs(30)).await },
        )
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let receiver = PgTaskSignals::new(pool.clone());
    assert_eq!(
        receiver.record_wakeup(id, &WakeupTask::new("task-9")).await.expect("record"),
        WakeupOutcome::Recorded
    );
    let started = std::time::Instant::now();
    assert!(waiter.await.expect("task").expect("wait"), "woken");
    assert!(started.elapsed() < Duration::from_secs(10), "woken by the notification");

    // Consumed: the next wait times out, and a repeated callback wakes once more.
    assert!(!signals.wait_wakeup(id, "task-9", Duration::from_millis(10)).await.expect("wait"));
    assert_eq!(
        receiver.record_wakeup(id, &WakeupTask::new("task-9")).await.expect("again"),
        WakeupOutcome::Recorded
    );
    assert_eq!(
        receiver.record_wakeup(id, &WakeupTask::new("task-9")).await.expect("dup"),
        WakeupOutcome::Pending
    );
    assert_eq!(wakeup_rows(&pool).await, 1);
    assert!(signals.wait_wakeup(id, "task-9", Duration::from_millis(10)).await.expect("wait"));
}

#[tokio::test]
async fn wakeups_for_tasks_no_job_owns_store_nothing() {
    let Some(db) = pg_database().await else { return };
    let pool = db.pool.clone();
    let (queue, _placed) = place(&pool, 2).await;
    let mut jobs = queue.claim(&WorkerId::new("w"), 2).await.expect("claim");
    let (a, b) = (jobs.remove(0), jobs.remove(0));
    queue.record_step(a.lease, &StepResult::Submitted { task: task("t-a") }).await.expect("step");
    let signals = PgTaskSignals::new(pool.clone());

    let unowned = [(a.lease.job_id, "t-other"), (JobId(9_999_999), "t-a")];
    for (job, task_id) in unowned {
        assert_eq!(
            signals.record_wakeup(job, &WakeupTask::new(task_id)).await.expect("record"),
            WakeupOutcome::NotOwned
        );
    }
    // A finished job owns nothing any more.
    queue.complete(&[a.lease]).await.expect("complete");
    assert_eq!(
        signals.record_wakeup(a.lease.job_id, &WakeupTask::new("t-a")).await.expect("record"),
        WakeupOutcome::NotOwned
    );
    assert_eq!(wakeup_rows(&pool).await, 0, "nothing stored for strangers");

    // A job whose create answer is not recorded yet takes wake-ups for tasks it may own, but
    // only a few: whatever arrives, the table stays bounded.
    let b_id = b.lease.job_id;
    for i in 0..10 {
        let got = signals
            .record_wakeup(b_id, &WakeupTask::new(format!("orphan-{i}")))
            .await
            .expect("record");
        let expected = if i < MAX_PENDING_WAKEUPS as usize {
            WakeupOutcome::Recorded
        } else {
            WakeupOutcome::Pending
        };
        assert_eq!(got, expected, "wake-up {i}");
    }
    assert_eq!(wakeup_rows(&pool).await, i64::from(MAX_PENDING_WAKEUPS));
    let named = signals.wakeup_tasks(b_id).await.expect("tasks");
    assert_eq!(named.len(), MAX_PENDING_WAKEUPS as usize);
    assert_eq!(named[0].task_id, "orphan-0");
}

#[tokio::test]
async fn abandoning_a_task_is_fenced_by_the_lease() {
    let Some(db) = pg_database().await else { return };
    let pool = db.pool.clone();
    let (queue, _placed) = place(&pool, 1).await;
    let signals = PgTaskSignals::new(pool.clone());
    let job = queue.claim(&WorkerId::new("w"), 1).await.expect("claim").remove(0);
    queue
        .record_step(job.lease, &StepResult::Submitted { task: task("t1") })
        .await
        .expect("record");
    assert_eq!(
        signals.record_wakeup(job.lease.job_id, &WakeupTask::new("t1")).await.expect("wake"),
        WakeupOutcome::Recorded
    );
    signals.abandon_task(job.lease).await.expect("abandon");
    assert_eq!(wakeup_rows(&pool).await, 0, "the abandoned task's wake-ups are gone");
    let snapshot = queue.job(job.lease.job_id).await.expect("read").expect("job");
    assert_eq!(snapshot.progress.provider_task, None);
    let stale = Lease { job_id: job.lease.job_id, token: LeaseToken(job.lease.token.0 + 100) };
    assert!(matches!(signals.abandon_task(stale).await, Err(PipelineStoreError::LeaseLost(_))));
}
