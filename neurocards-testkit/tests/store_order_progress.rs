//! The OrderProgressStore conformance suite on both stores: the embedded store always, PostgreSQL when
//! `DATABASE_URL` is set. Every test ends with the database invariants check.

use neurocards_testkit::conformance::order_progress as suite;
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
    one_of_many_concurrent_callers_creates_the_message,
    a_stored_message_is_edited,
    ranks_only_grow,
    a_stage_is_granted_once_across_concurrent_callers,
    a_message_being_created_is_not_created_twice,
    unknown_orders_are_typed_errors,
    unannounced_orders_are_claimed_once,
    only_waiting_recent_orders_are_announced,
    order_status_counts_jobs_by_outcome,
    queue_position_counts_work_ahead,
    queue_position_follows_the_fair_claim_order,
);
