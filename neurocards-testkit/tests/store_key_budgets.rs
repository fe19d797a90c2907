//! The KeyBudgets conformance suite on both stores and in memory: the embedded store and the
//! in-memory budgets always, PostgreSQL when `DATABASE_URL` is set. On the stores, the two
//! handles of each test are two adapters on two pools, as two processes hold them.

use neurocards_core::kie::MemoryKeyBudgets;
use neurocards_core::ports::KeyBudgets;
use neurocards_testkit::conformance::key_budgets as suite;
use neurocards_testkit::stores::{pg_database, TempSqlite};
use std::sync::Arc;

macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {
        /// The embedded store.
        mod sqlite {
            use super::*;
            use neurocards_core::sqlite::{SqliteKeyBudgets, SqliteStore};
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let db = TempSqlite::new().await;
                    let second = SqliteStore::open_in(db.dir()).await.expect("second handle");
                    let a: Arc<dyn KeyBudgets> = Arc::new(SqliteKeyBudgets::new(&db.store));
                    let b: Arc<dyn KeyBudgets> = Arc::new(SqliteKeyBudgets::new(&second));
                    suite::$name((a, b)).await;
                }
            )*
        }

        /// PostgreSQL; skipped (with one line on the terminal) without `DATABASE_URL`.
        mod postgres {
            use super::*;
            use neurocards_core::postgres::PgKeyBudgets;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(db) = pg_database().await else { return };
                    let second = sqlx::postgres::PgPoolOptions::new()
                        .max_connections(4)
                        .connect_with(db.connect_options())
                        .await
                        .expect("second pool");
                    let a: Arc<dyn KeyBudgets> = Arc::new(PgKeyBudgets::new(db.pool.clone()));
                    let b: Arc<dyn KeyBudgets> = Arc::new(PgKeyBudgets::new(second.clone()));
                    suite::$name((a, b)).await;
                    second.close().await;
                }
            )*
        }

        /// In memory, one process: both handles are the same budgets.
        mod memory {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let a: Arc<dyn KeyBudgets> = Arc::new(MemoryKeyBudgets::new());
                    suite::$name((a.clone(), a)).await;
                }
            )*
        }
    };
}

on_every_backend!(
    permits_within_the_limit_are_granted_then_wait,
    budgets_are_per_key_and_per_kind,
    a_place_frees_up_after_the_wait,
    concurrent_takers_never_exceed_the_limit,
    an_off_key_refuses_creates_but_not_status_checks,
    a_shorter_off_never_shortens_a_longer_one,
    lifting_puts_keys_back_into_rotation,
    paused_checks_wait_while_creates_go_on,
    an_expired_off_is_over,
    registered_keys_are_listed,
    balance_reads_are_claimed_once_per_period,
    noted_errors_leave_the_key_in_rotation,
);
