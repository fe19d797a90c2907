//! End to end: crashed workers, duplicate and late callbacks, and many jobs through two
//! workers under random provider faults.

use neurocards_core::domain::JobStatus;
use neurocards_core::ports::WakeupOutcome;
use neurocards_testkit::fake_kie::{CallbackMode, Endpoint, Failure, Scenario};
use neurocards_testkit::stores::pg_database;
use neurocards_testkit::system::{SystemOptions, TestSystem};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn a_worker_killed_while_waiting_is_replaced_without_a_second_task() {
    let Some(db) = pg_database().await else { return };
    let pool = db.pool.clone();
    let mut sys = TestSystem::start(pool).await;
    sys.kie.script(Scenario::SucceedAfterTime(Duration::from_secs(2)));
    let (user, order) = sys.user_with_order(5, 1).await;
    let first = sys.start_worker();
    let task = sys.wait_task_of(order.jobs[0], WAIT).await;

    sys.crash_worker(first);
    sys.start_worker();
    let jobs = sys.wait_order(&order, WAIT).await;

    assert_eq!(jobs[0].status, JobStatus::Succeeded);
    assert_eq!(jobs[0].rescues, 1, "the expired lease sent the job back once");
    let creates = sys.kie.create_requests();
    assert_eq!(creates.len(), 1, "the second worker polled the recorded task");
    assert_eq!(creates[0].task_id.as_deref(), Some(task.as_str()));
    assert!(sys.telegram.wait_until(WAIT, |t| t.videos_to(user.get()).len() == 1).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sys.videos_to(user).len(), 1, "one video");
    assert_eq!(sys.balance(user).await, 4);
    sys.assert_invariants().await;
}

#[tokio::test]
async fn a_killed_worker_process_is_replaced_without_a_second_task() {
    let Some(db) = pg_database().await else { return };
    let pool = db.pool.clone();
    let mut sys = TestSystem::start(pool).await;
    sys.kie.script(Scenario::SucceedAfterTime(Duration::from_secs(2)));
    let (user, order) = sys.user_with_order(5, 1).await;
    let mut process = sys.spawn_worker_binary();
    let task = sys.wait_task_of(order.jobs[0], Duration::from_secs(15)).await;

    process.start_kill().expect("kill the worker process");
    let _ = process.wait().await;
    sys.start_worker();
    let jobs = sys.wait_order(&order, WAIT).await;

    assert_eq!(jobs[0].status, JobStatus::Succeeded);
    let creates = sys.kie.create_requests();
    assert_eq!(creates.len(), 1, "exactly one createTask for the attempt");
    assert_eq!(creates[0].task_id.as_deref(), Some(task.as_str()));
    assert!(sys.telegram.wait_until(WAIT, |t| t.videos_to(user.get()).len() == 1).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sys.videos_to(user).len(), 1);
    sys.assert_invariants().await;
}

#[tokio::test]
async fn duplicate_and_late_callbacks_change_nothing() {
    let Some(db) = pg_database().await else { return };
    let pool = db.pool.clone();
    let options = SystemOptions { callbacks: true, ..SystemOptions::default() };
    let mut sys = TestSystem::start_with(pool, options).await;
    // Polls are the slow fallback here: the callback (sent twice, as KIE may) ends the wait.
    sys.kie.script(Scenario::SucceedAfterTime(Duration::from_millis(300)));
    sys.kie.auto_callbacks(CallbackMode::Twice, None);
    let (user, order) = sys.user_with_order(5, 1).await;
    sys.start_worker();
    let jobs = sys.wait_order(&order, WAIT).await;
    assert_eq!(jobs[0].status, JobStatus::Succeeded);
    let task = jobs[0].progress.provider_task.clone().expect("task").task_id;
    assert!(sys.telegram.wait_until(WAIT, |t| t.videos_to(user.get()).len() == 1).await);
    assert_eq!(sys.kie.task(&task).expect("task").callbacks_sent, 2);

    // Late: the same callback again finds no job that owns the task any more.
    assert_eq!(sys.deliver_callback(&task).await, WakeupOutcome::NotOwned);
    tokio::time::sleep(Duration::from_millis(500)).await;

    let job = sys.job(order.jobs[0]).await;
    assert_eq!(job.status, JobStatus::Succeeded);
    assert!(!job.refunded);
    assert_eq!(sys.videos_to(user).len(), 1);
    assert!(!sys.telegram.texts_to(user.get()).iter().any(|t| t.starts_with('❌')));
    assert_eq!(sys.kie.create_requests().len(), 1);
    assert_eq!(sys.balance(user).await, 4);
    sys.assert_invariants().await;
}

#[tokio::test]
async fn two_hundred_jobs_through_two_workers_with_faults_all_end_once() {
    let Some(db) = pg_database().await else { return };
    let pool = db.pool.clone();
    let options = SystemOptions {
        kie_keys: (1..=10).map(|i| format!("kie-chaos-key-{i}")).collect(),
        concurrency: 24,
        ..SystemOptions::default()
    };
    let mut sys = TestSystem::start_with(pool, options).await;
    sys.kie.script(Scenario::SucceedAfter(2));
    // Faults spread over the run: failed creates, status checks and uploads, unreadable
    // answers after a task was created, and a few tasks that fail at the provider.
    sys.kie.fail_next(Endpoint::Create, 25, Failure::server_error());
    sys.kie.fail_next(Endpoint::Status, 25, Failure::maintenance());
    sys.kie.fail_next(Endpoint::Upload, 10, Failure::server_error());
    sys.kie.malformed_next(Endpoint::Create, 3);

    let mut users = Vec::new();
    let mut jobs = Vec::new();
    for _ in 0..40 {
        let (user, order) = sys.user_with_order(10, 5).await;
        users.push(user);
        jobs.extend(order.jobs);
    }
    sys.start_worker();
    let second = sys.start_worker();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    sys.kie.script(Scenario::FailAfter {
        checks: 1,
        fail_code: "500".into(),
        fail_msg: "Internal Error, please try again later.".into(),
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    sys.kie.script(Scenario::SucceedAfter(2));
    // One worker dies mid-run; a fresh one takes its place.
    sys.crash_worker(second);
    sys.start_worker();

    let snaps = sys.wait_jobs(&jobs, Duration::from_secs(150)).await;
    assert_eq!(sys.open_jobs().await, 0);
    let succeeded = snaps.iter().filter(|j| j.status == JobStatus::Succeeded).count();
    assert!(succeeded >= 150, "most jobs survive transient faults: {succeeded}");
    // Let the last notices go out, then compare what users got with what the database says.
    let expected = succeeded;
    // A video whose send the crash cut off is offered ("Send the video") instead of sent
    // again: each succeeded job reaches its user as the video or as the offer (or both, when
    // the cut-off send had arrived), never as two videos.
    sys.telegram
        .wait_until(WAIT, |t| {
            let sent = t.calls("sendVideo").iter().filter(|c| c.answered_ok).count();
            let offered: usize = users.iter().map(|u| t.video_offers_to(u.get()).len()).sum();
            sent + offered >= expected
        })
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    for user in &users {
        let delivered =
            snaps.iter().filter(|j| j.user_id == *user && j.status == JobStatus::Succeeded).count();
        let videos = sys.videos_to(*user).len();
        let offered = sys.telegram.video_offers_to(user.get());
        let distinct: std::collections::HashSet<&i64> = offered.iter().collect();
        assert!(videos <= delivered, "user {user}: no video twice ({videos} of {delivered})");
        assert_eq!(distinct.len(), offered.len(), "user {user}: one offer per job at most");
        assert!(videos + offered.len() >= delivered, "user {user}: every video or its offer");
        let failed =
            snaps.iter().filter(|j| j.user_id == *user && j.status == JobStatus::Failed).count();
        assert_eq!(sys.balance(*user).await, 5 + failed as i64, "user {user}: refunds");
    }
    // At most one provider task per attempt: no two jobs share a task, and no job has more
    // tasks than attempts.
    let creates = sys.kie.create_requests();
    let tasks = creates.iter().filter(|c| c.task_id.is_some()).count() as u32;
    let attempts: u32 = snaps.iter().map(|j| j.attempt).sum();
    assert!(tasks <= attempts, "{tasks} tasks for {attempts} attempts");
    sys.assert_invariants().await;
}

#[tokio::test]
async fn the_worker_process_serves_health_and_metrics() {
    let Some(db) = pg_database().await else { return };
    let pool = db.pool.clone();
    let sys = TestSystem::start(pool).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut process = sys.spawn_worker_binary_with(&[("WORKER_HTTP_ADDR", addr.as_str())]);
    let (user, order) = sys.user_with_order(5, 1).await;
    sys.wait_order(&order, Duration::from_secs(60)).await;
    assert!(sys.telegram.wait_until(WAIT, |t| t.videos_to(user.get()).len() == 1).await);

    let http = reqwest::Client::new();
    let health = http.get(format!("http://{addr}/healthz")).send().await.expect("healthz");
    assert!(health.status().is_success());
    // The job's outcome is counted when its task ends, just after the last progress edit.
    let mut metrics = String::new();
    for _ in 0..50 {
        metrics = http
            .get(format!("http://{addr}/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics body");
        if metrics.contains("neurocards_jobs_total{outcome=\"succeeded\"") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(metrics.contains("neurocards_jobs_total{outcome=\"succeeded\""), "{metrics}");
    assert!(!metrics.contains("kie-test-key-1"), "no key in metrics");
    process.start_kill().expect("kill");
    let _ = process.wait().await;
    sys.assert_invariants().await;
}
