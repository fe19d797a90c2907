//! The real worker binary survives its database: every connection cut while jobs are in
//! flight (twice), and still every job ends succeeded with its video delivered exactly once,
//! and the process never exits.
//!
//! The restart is simulated by terminating every backend of the test's database, which is
//! exactly what a restart does to a client (restarting the server would break parallel tests).

use neurocards_core::domain::JobStatus;
use neurocards_testkit::fake_kie::Scenario;
use neurocards_testkit::pg::terminate_backends;
use neurocards_testkit::stores::pg_database;
use neurocards_testkit::system::{SystemOptions, TestSystem};
use std::time::Duration;

const JOBS: usize = 16;

#[tokio::test]
async fn jobs_in_flight_when_the_database_restarts_are_each_delivered_once() {
    let Some(db) = pg_database().await else { return };
    let pool = db.pool.clone();
    let options = SystemOptions { concurrency: JOBS as u32, ..SystemOptions::default() };
    let system = TestSystem::start_with(pool.clone(), options).await;
    // Generation takes a few status checks (the worker checks every 3 s at first), so most
    // jobs are waiting on the provider when the connections are cut.
    system.kie.script(Scenario::SucceedAfter(2));
    // One process: its KIE limiter then matches the fake's per-key limits.
    let mut worker = system.spawn_worker_binary();
    let mut users = Vec::new();
    let mut jobs = Vec::new();
    for _ in 0..JOBS {
        let (user, order) = system.user_with_order(1, 1).await;
        users.push(user);
        jobs.extend(order.jobs);
    }

    // Cut once most jobs have a provider task, and once more a few seconds later.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while system.kie.tasks_created() < JOBS / 2 {
        assert!(tokio::time::Instant::now() < deadline, "jobs were submitted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let first = terminate_backends(&pool).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let second = terminate_backends(&pool).await;
    println!("cut {first} and {second} connections");
    assert!(first > 2 && second > 2, "the workers' connections were cut");

    let snaps = system.wait_jobs(&jobs, Duration::from_secs(120)).await;
    let mut videos = Vec::new();
    for user in &users {
        // The last notices may still be on their way when the job row turns terminal.
        system
            .telegram
            .wait_until(Duration::from_secs(5), |t| !t.videos_to(user.get()).is_empty())
            .await;
        videos.push(system.videos_to(*user).len());
    }
    let succeeded = snaps.iter().filter(|j| j.status == JobStatus::Succeeded).count();
    println!(
        "{{\"jobs\":{JOBS},\"succeeded\":{succeeded},\"videos\":{},\"tasks\":{}}}",
        videos.iter().sum::<usize>(),
        system.kie.tasks_created()
    );
    assert_eq!(succeeded, JOBS, "every job succeeded: {snaps:?}");
    let attempts: u32 = snaps.iter().map(|j| j.attempt).sum();
    let tasks = system.kie.tasks_created() as u32;
    assert!(tasks <= attempts, "at most one KIE task per attempt: {tasks} for {attempts}");
    assert!(videos.iter().all(|n| *n == 1), "each job's video exactly once: {videos:?}");
    assert!(worker.try_wait().expect("status").is_none(), "the worker kept running");
    system.assert_invariants().await;
    let _ = worker.start_kill();
    let _ = worker.wait().await;
}
