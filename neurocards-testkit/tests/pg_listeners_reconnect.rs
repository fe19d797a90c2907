//! The `LISTEN` connections survive a database restart: the queue's wake-ups and the callback
//! inbox reconnect, and wake their waiters once they listen again (a notification sent while
//! they were disconnected is lost, so a woken waiter looks for itself).
//!
//! The restart is simulated by terminating every backend of the test's database, which is what
//! a restart or failover does to a client (a real restart would break parallel tests).

use neurocards_core::ports::{JobQueue, TaskSignals, WakeupOutcome, WakeupTask};
use neurocards_core::postgres::{PgJobQueue, PgTaskSignals, QueueConfig};
use neurocards_testkit::pg::terminate_backends;
use neurocards_testkit::stores::pg_database;
use neurocards_testkit::system::TestSystem;
use std::sync::Arc;
use std::time::{Duration, Instant};

const LONG: Duration = Duration::from_secs(60);

/// Waits for `handle` at most `limit`; returns how long it took from `since`.
async fn finished_within<T>(
    handle: tokio::task::JoinHandle<T>,
    since: Instant,
    limit: Duration,
) -> Option<(T, Duration)> {
    let out = tokio::time::timeout(limit, handle).await.ok()?.ok()?;
    Some((out, since.elapsed()))
}

#[tokio::test]
async fn queue_waiters_wake_after_a_restart_and_new_orders_wake_them_again() {
    let Some(db) = pg_database().await else { return };
    let pool = db.pool.clone();
    let sys = TestSystem::start(pool.clone()).await;
    let queue = Arc::new(PgJobQueue::new(pool.clone(), QueueConfig::default()));
    // Starts the listener; its first LISTEN wakes this wait, and the next one takes note.
    queue.wait_for_work(Duration::from_secs(5)).await.expect("wait");
    queue.wait_for_work(Duration::from_millis(10)).await.expect("wait");

    let q = queue.clone();
    let waiter = tokio::spawn(async move { q.wait_for_work(LONG).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiter.is_finished(), "nothing to wake it yet");

    let cut = Instant::now();
    assert!(terminate_backends(&pool).await > 0);
    let (_, took) = finished_within(waiter, cut, Duration::from_secs(15))
        .await
        .expect("the waiter is woken once the listener listens again");
    println!("queue waiter woken {took:?} after the cut");

    // Listening again: a new order wakes the next waiter at once, not at its timeout.
    queue.wait_for_work(Duration::from_millis(10)).await.expect("wait");
    let q = queue.clone();
    let waiter = tokio::spawn(async move { q.wait_for_work(LONG).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiter.is_finished());
    // The listener swept the pool of the connections the server dropped: plain queries work.
    let user = sys.funded_user(1).await;
    let product = sys.product(user).await;
    let placed = Instant::now();
    sys.order(user, product, 1).await;
    let (_, took) = finished_within(waiter, placed, Duration::from_secs(10))
        .await
        .expect("the new order's notification wakes the waiter");
    println!("queue waiter woken {took:?} after the order");
    assert!(took < Duration::from_secs(10));
}

#[tokio::test]
async fn callback_waiters_find_a_wakeup_stored_while_their_listener_was_down() {
    let Some(db) = pg_database().await else { return };
    let pool = db.pool.clone();
    let sys = TestSystem::start(pool.clone()).await;
    let (_, first) = sys.user_with_order(1, 1).await;
    let (_, second) = sys.user_with_order(1, 1).await;
    let (job, later_job) = (first.jobs[0], second.jobs[0]);
    let waiting = Arc::new(PgTaskSignals::new(pool.clone()));
    // Starts the listener.
    let warmup = waiting.wait_wakeup(job, "task-warmup", Duration::from_millis(300)).await;
    assert!(matches!(warmup, Ok(false)));

    let w = waiting.clone();
    let waiter = tokio::spawn(async move { w.wait_wakeup(job, "task-during-restart", LONG).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiter.is_finished());

    let cut = Instant::now();
    assert!(terminate_backends(&pool).await > 0);
    // Stored at once, while the listener is still reconnecting: its NOTIFY reaches nobody.
    let writer = PgTaskSignals::new(pool.clone());
    let mut stored = None;
    for _ in 0..50 {
        if let Ok(outcome) =
            writer.record_wakeup(job, &WakeupTask::new("task-during-restart")).await
        {
            stored = Some(outcome);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(stored, Some(WakeupOutcome::Recorded), "the database answers again");
    let (woken, took) = finished_within(waiter, cut, Duration::from_secs(15))
        .await
        .expect("the waiter is woken once the listener listens again, and finds the wake-up");
    println!("callback waiter done {took:?} after the cut");
    match woken {
        Ok(true) => {}
        // The waiter's own re-read may land on a connection the server dropped; the pipeline
        // then polls the provider instead. It must not be stuck until its timeout either way.
        Err(e) => println!("the waiter's read failed after the cut: {e}"),
        Ok(false) => panic!("the wake-up stored during the outage was not found"),
    }

    // Listening again: a wake-up now reaches its waiter at once.
    let w = waiting.clone();
    let waiter =
        tokio::spawn(async move { w.wait_wakeup(later_job, "task-after-restart", LONG).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent = Instant::now();
    let outcome = writer
        .record_wakeup(later_job, &WakeupTask::new("task-after-restart"))
        .await
        .expect("record");
    assert_eq!(outcome, WakeupOutcome::Recorded);
    let (woken, took) = finished_within(waiter, sent, Duration::from_secs(10))
        .await
        .expect("the wake-up reaches its waiter");
    assert!(matches!(woken, Ok(true)), "{woken:?}");
    println!("callback waiter woken {took:?} after the wake-up");
}
