//! The JobQueue conformance suite against PostgreSQL; every test ends with the invariants check.

use neurocards_core::postgres::QueueConfig;
use neurocards_testkit::conformance::job_queue as suite;
use neurocards_testkit::invariants::assert_invariants;
use neurocards_testkit::pg::PgQueueFixture;
use neurocards_testkit::stores::pg_database;

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test]
        async fn $name() {
            let Some(db) = pg_database().await else { return };
            let pool = db.pool.clone();
            let fixture = PgQueueFixture::new(pool.clone(), QueueConfig::default());
            suite::$name(&fixture).await;
            assert_invariants(&pool).await;
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
