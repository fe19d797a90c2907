//! A `createTask` whose answer is lost (it times out after KIE created the task) is not paid
//! twice: the job's retry waits for KIE's callback naming the task, confirms it with
//! `recordInfo`, and adopts it. The real worker binary against FakeKie.

use neurocards_core::domain::JobStatus;
use neurocards_testkit::fake_kie::{CallbackMode, Endpoint, Scenario};
use neurocards_testkit::stores::pg_database;
use neurocards_testkit::system::{SystemOptions, TestSystem};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn a_task_created_by_a_timed_out_call_is_adopted_not_bought_again() {
    let Some(db) = pg_database().await else { return };
    let pool = db.pool.clone();
    let options = SystemOptions { callbacks: true, ..SystemOptions::default() };
    let system = TestSystem::start_with(pool, options).await;
    system.kie.script(Scenario::SucceedAfterTime(Duration::from_secs(3)));
    system.kie.auto_callbacks(CallbackMode::Once, None);
    // Every createTask answer comes after the worker has given up on it: the task exists, the
    // worker does not know its id.
    system.kie.delay(Endpoint::Create, Duration::from_secs(4));
    let (user, order) = system.user_with_order(5, 1).await;
    let mut worker = system.spawn_worker_binary_with(&[("KIE_REQUEST_TIMEOUT", "1s")]);

    let jobs = system.wait_order(&order, WAIT).await;
    let _ = worker.start_kill();
    let _ = worker.wait().await;

    assert_eq!(jobs[0].status, JobStatus::Succeeded);
    let creates = system.kie.create_requests();
    assert_eq!(creates.len(), 1, "one paid task: the lost one was adopted");
    let adopted = jobs[0].progress.provider_task.clone().expect("a task recorded").task_id;
    assert_eq!(creates[0].task_id.as_deref(), Some(adopted.as_str()));
    assert!(jobs[0].temporary_retries >= 1, "the timed-out call was retried");
    assert!(system.telegram.wait_until(WAIT, |t| t.videos_to(user.get()).len() == 1).await);
    assert_eq!(system.balance(user).await, 4, "charged once, not refunded");
    system.assert_invariants().await;
}

#[tokio::test]
async fn without_callbacks_a_timed_out_create_is_made_again_once() {
    let Some(db) = pg_database().await else { return };
    let pool = db.pool.clone();
    let system = TestSystem::start(pool).await;
    system.kie.script(Scenario::SucceedAfter(1));
    // Only the first answer is late; the retry's create is answered in time.
    system.kie.delay(Endpoint::Create, Duration::from_secs(3));
    let (user, order) = system.user_with_order(5, 1).await;
    let mut worker = system.spawn_worker_binary_with(&[("KIE_REQUEST_TIMEOUT", "1s")]);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    system.kie.delay(Endpoint::Create, Duration::ZERO);

    let jobs = system.wait_order(&order, WAIT).await;
    let _ = worker.start_kill();
    let _ = worker.wait().await;

    assert_eq!(jobs[0].status, JobStatus::Succeeded);
    assert_eq!(system.kie.create_requests().len(), 2, "nothing to adopt from: one new task");
    assert!(system.telegram.wait_until(WAIT, |t| t.videos_to(user.get()).len() == 1).await);
    assert_eq!(system.balance(user).await, 4);
    system.assert_invariants().await;
}
