//! The TaskSignals conformance suite on both stores: the embedded store always, PostgreSQL when
//! `DATABASE_URL` is set. Every test ends with the database invariants check.

use neurocards_testkit::conformance::task_signals as suite;
use neurocards_testkit::invariants::{assert_invariants, assert_invariants_sqlite};
use neurocards_testkit::pg_pipeline_fixtures::PgPipelineFixture;
use neurocards_testkit::sqlite_pipeline_fixtures::SqlitePipelineFixture;

macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        /// The embedded store.
        mod sqlite {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let fixture = SqlitePipelineFixture::new().await;
                    suite::$name(&fixture).await;
                    assert_invariants_sqlite(fixture.store()).await;
                }
            )*
        }

        /// PostgreSQL; skipped (with one line on the terminal) without `DATABASE_URL`.
        mod postgres {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(fixture) = PgPipelineFixture::new().await else { return };
                    suite::$name(&fixture).await;
                    assert_invariants(fixture.pool()).await;
                }
            )*
        }
    };
}

on_both_stores!(
    a_wakeup_wakes_the_waiting_worker,
    a_wakeup_recorded_before_the_wait_is_not_missed,
    waking_consumes_the_wakeup,
    a_wait_without_wakeup_returns_at_the_timeout,
    other_wakeups_do_not_end_a_wait,
    concurrent_waiters_are_each_woken,
    wakeups_for_tasks_no_job_owns_store_nothing,
    a_job_without_a_task_takes_wakeups,
    pending_wakeups_are_bounded_per_job,
    concurrent_wakeups_stay_bounded,
    abandoning_a_task_is_fenced_by_the_lease,
);
