//! The Payments conformance suite on both stores: the embedded store always, PostgreSQL when
//! `DATABASE_URL` is set. Every test ends with the database invariants check (payments
//! included).

use neurocards_testkit::conformance::payments as suite;
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
    open_purchase_is_idempotent,
    a_charge_is_credited_once,
    concurrent_deliveries_credit_once,
    a_second_charge_of_a_purchase_credits_again,
    mismatched_charges_are_flagged_and_credit_nothing,
    the_referral_bonus_is_paid_once_on_the_first_purchase,
    a_zero_bonus_pays_nothing,
    referrals_are_recorded_only_when_allowed,
    refund_check_tells_every_case,
    a_refund_is_recorded_once,
    concurrent_refunds_take_back_once,
    provider_payment_and_cancel,
    open_purchases_are_the_pollers_work,
    the_tally_counts_credited_charges,
    the_reconcile_cursor_never_moves_back,
    the_ledger_sums_to_the_balance_after_everything,
);

/// The payment invariants see a broken fact: a credited charge without its `purchase` entry
/// (written with SQL, past the store); a flagged charge without one is fine.
mod the_invariants_catch {
    use neurocards_testkit::invariants::{check_invariants, check_invariants_sqlite, Violation};
    use neurocards_testkit::stores::{pg_database, StoreUnderTest, TempSqlite};

    const BROKEN: &[&str] = &[
        "INSERT INTO payment_charges (rail, charge_id, purchase_id, user_id, amount, currency, \
                                      source, credits) \
         VALUES ('stars', 'lost_credit', '00000000000000000000000000000001', 1, 10, 'XTR', \
                 'update', 5)",
        "INSERT INTO payment_charges (rail, charge_id, purchase_id, user_id, amount, currency, \
                                      source, credits, mismatch) \
         VALUES ('stars', 'flagged', '00000000000000000000000000000002', 1, 10, 'XTR', \
                 'update', 0, 'amount')",
    ];

    fn assert_caught(found: &[Violation]) {
        let text: Vec<String> = found.iter().map(|v| v.0.clone()).collect();
        assert_eq!(found.len(), 1, "{text:#?}");
        assert!(text[0].contains("one purchase entry"), "{text:#?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        let temp = TempSqlite::new().await;
        let store = StoreUnderTest::Sqlite(temp.store.clone());
        for sql in BROKEN {
            store.execute(sql).await;
        }
        assert_caught(&check_invariants_sqlite(&temp.store).await.expect("check"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        let Some(db) = pg_database().await else { return };
        let store = StoreUnderTest::Postgres(db.pool.clone());
        for sql in BROKEN {
            store.execute(sql).await;
        }
        assert_caught(&check_invariants(&db.pool).await.expect("check"));
    }
}
