//! The JobQueue conformance suite against the embedded store (every test ends with the store's
//! invariants check), and the queue under concurrent claimers.

use neurocards_core::domain::{JobId, Lease, UserId, WorkerId};
use neurocards_core::ports::JobQueue;
use neurocards_core::queue_config::QueueConfig;
use neurocards_testkit::conformance::job_queue as suite;
use neurocards_testkit::invariants::assert_invariants_sqlite;
use neurocards_testkit::sqlite_fixtures::SqliteQueueFixture;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test]
        async fn $name() {
            let fixture = SqliteQueueFixture::new(QueueConfig::default()).await;
            suite::$name(&fixture).await;
            assert_invariants_sqlite(fixture.store()).await;
        }
    )*};
}

conformance!(
    place_order_charges_and_enqueues,
    repeated_order_key_places_one_order,
    insufficient_credits_write_nothing,
    order_for_unknown_user_is_not_found,
    each_job_is_claimed_once,
    lease_token_changes_on_every_claim,
    stale_token_writes_are_refused,
    steps_are_recorded_and_resumed,
    complete_finishes_a_batch_once,
    retry_is_durable_and_counted,
    snooze_counts_nothing,
    fail_refunds_exactly_once,
    cancel_refunds_queued_jobs_only,
    chosen_format_reaches_the_worker,
    cancel_queued_takes_only_unstarted_jobs_of_the_scope,
    cancel_queued_races_claims_without_double_outcomes,
    heartbeat_extends_and_reports_lost,
    rescue_requeues_then_fails_at_cap,
    begin_step_is_fenced,
    entered_step_survives_reclaim,
    withdraw_intent_clears_only_its_step,
    rescue_blames_the_latest_begun_job_of_each_dead_worker,
    sweeps_of_one_job_each_blame_a_death_once,
    a_step_outlived_by_a_heartbeat_is_not_blamed,
    a_blamed_job_pauses_before_it_runs_again,
    bystanders_are_requeued_without_limit,
    rescue_fails_a_job_past_the_deadline_with_refund_once,
    a_delivered_job_is_never_failed_by_a_rescue,
    claims_interleave_users,
    per_user_cap_limits_jobs_in_flight,
    release_requeues_without_counting,
    stats_count_by_state,
    new_order_wakes_waiting_worker,
    work_arriving_before_the_wait_is_not_missed,
    list_jobs_by_state_newest_first,
    cancel_queued_job_scope_takes_one_job,
    retry_failed_charges_a_new_job_once,
);

/// Eight tasks claim from one queue at once over 200 jobs of five users: every job is claimed
/// exactly once, and no user ever has more than the cap of jobs running.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_concurrent_claimers_take_each_job_once_within_the_cap() {
    let config = QueueConfig { per_user_cap: 7, ..QueueConfig::default() };
    let fixture = SqliteQueueFixture::new(config.clone()).await;
    let queue = Arc::new(fixture.queue.clone());
    for _ in 0..5 {
        let user = neurocards_testkit::sqlite_fixtures::funded_user(fixture.store(), 40).await;
        queue.place_order(&suite::order(user, 40, 1)).await.expect("order of 40");
    }

    // Jobs running per user, as the claimers see them: raised on claim, lowered just before
    // the completion, so it can only overstate what the store holds.
    let running: Arc<Mutex<HashMap<UserId, u32>>> = Arc::default();
    let mut claimers = Vec::new();
    for n in 0..8 {
        let (queue, running) = (queue.clone(), running.clone());
        let cap = config.per_user_cap;
        claimers.push(tokio::spawn(async move {
            let worker = WorkerId::new(format!("claimer-{n}"));
            let mut mine: Vec<JobId> = Vec::new();
            let mut idle = 0;
            loop {
                let jobs = queue.claim(&worker, 3).await.expect("claim");
                if jobs.is_empty() {
                    // Others may still hold jobs of capped users; stop once nothing is left.
                    idle += 1;
                    if idle > 50 {
                        return mine;
                    }
                    tokio::task::yield_now().await;
                    continue;
                }
                idle = 0;
                {
                    let mut running = running.lock().expect("running counts");
                    for job in &jobs {
                        let n = running.entry(job.user_id).or_default();
                        *n += 1;
                        assert!(*n <= cap, "user {} has {} jobs running", job.user_id, n);
                    }
                }
                tokio::task::yield_now().await;
                {
                    let mut running = running.lock().expect("running counts");
                    for job in &jobs {
                        *running.get_mut(&job.user_id).expect("counted") -= 1;
                    }
                }
                let leases: Vec<Lease> = jobs.iter().map(|j| j.lease).collect();
                let done = queue.complete(&leases).await.expect("complete");
                assert_eq!(done.len(), leases.len(), "nobody else may hold these leases");
                mine.extend(done);
            }
        }));
    }
    let mut seen: HashMap<JobId, usize> = HashMap::new();
    for c in claimers {
        for id in c.await.expect("claimer task") {
            *seen.entry(id).or_default() += 1;
        }
    }
    assert_eq!(seen.len(), 200, "every job was claimed and completed");
    assert!(seen.values().all(|n| *n == 1), "no job was claimed twice");
    let states: Vec<(String, i64)> =
        sqlx::query_as("SELECT state, count(*) FROM jobs GROUP BY state")
            .fetch_all(fixture.store().reader())
            .await
            .expect("count states");
    assert_eq!(states, vec![("succeeded".to_owned(), 200)]);
    assert_invariants_sqlite(fixture.store()).await;
}
