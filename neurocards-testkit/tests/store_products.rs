//! The Products conformance suite on both stores: the embedded store always, PostgreSQL when
//! `DATABASE_URL` is set. Every test ends with the database invariants check.

use neurocards_testkit::conformance::products as suite;
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
    saved_product_reads_back,
    photos_and_bare_products_round_trip,
    products_get_distinct_ids,
    products_belong_to_their_owner,
    unknown_products_find_nothing,
    product_for_unknown_user_is_refused,
);
