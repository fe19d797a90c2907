//! The Accounts conformance suite on both stores: the embedded store always, PostgreSQL when
//! `DATABASE_URL` is set. Every test ends with the database invariants check.

use neurocards_testkit::conformance::accounts as suite;
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
    register_is_idempotent_and_credits_start_once,
    zero_start_credits_write_no_entry,
    concurrent_registrations_credit_once,
    credit_writes_one_ledger_entry,
    concurrent_credits_all_land,
    credit_refuses_other_reasons,
    overdraw_is_refused_and_writes_nothing,
    unknown_users_are_typed_errors,
    consent_keeps_the_first_time,
    language_survives_registration,
    ban_and_unban,
    blocked_bot_is_recorded_and_cleared,
    reachable_users_page_in_id_order,
    recent_orders_show_jobs_by_status_newest_first,
);
