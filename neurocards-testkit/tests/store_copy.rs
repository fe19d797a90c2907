//! `copy-to-postgres`: a seller's embedded store carried into an empty PostgreSQL database —
//! balances, ledger, orders, jobs in every state and dialogue state — keeping every id, with
//! the invariants holding on the destination and its queue continuing where the file left off.

use neurocards_core::conversation::State;
use neurocards_core::domain::{ErrorClass, WorkerId};
use neurocards_core::ports::JobFailure;
use neurocards_core::queue_config::QueueConfig;
use neurocards_core::store_copy::{copy_sqlite_to_postgres, CopyError};
use neurocards_testkit::conformance::job_queue::order;
use neurocards_testkit::invariants::{assert_invariants, assert_invariants_sqlite};
use neurocards_testkit::sqlite_fixtures::funded_user;
use neurocards_testkit::stores::{pg_database, StoreUnderTest, TempSqlite};
use std::sync::Arc;
use teloxide::types::ChatId;

/// Rows per table, for comparing the two stores.
async fn counts(store: &StoreUnderTest) -> Vec<(String, i64)> {
    let mut out = Vec::new();
    for table in ["users", "ledger", "products", "orders", "jobs", "bot_dialogues"] {
        let sql = format!("SELECT count(*) FROM {table}");
        let n: i64 = match store {
            StoreUnderTest::Postgres(pool) => sqlx::query_scalar(&sql).fetch_one(pool).await,
            StoreUnderTest::Sqlite(s) => sqlx::query_scalar(&sql).fetch_one(s.reader()).await,
        }
        .expect("count rows");
        out.push((table.to_owned(), n));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_store_moves_to_postgres_with_every_fact_and_id() {
    let Some(db) = pg_database().await else { return };
    let temp = TempSqlite::new().await;
    let from = StoreUnderTest::Sqlite(temp.store.clone());
    let stores = from.stores(QueueConfig::default());

    // A user with history: one job delivered, one failed with refund, one still queued.
    let user = funded_user(&temp.store, 10).await;
    let placed = stores.queue.place_order(&order(user, 3, 2)).await.expect("order");
    let worker = WorkerId::new("w");
    let claimed = stores.queue.claim(&worker, 2).await.expect("claim");
    assert_eq!(claimed.len(), 2);
    stores.queue.complete(&[claimed[0].lease]).await.expect("complete");
    let failure = JobFailure { class: ErrorClass::Temporary, message: "gave up".to_owned() };
    stores.queue.fail(claimed[1].lease, &failure).await.expect("fail with refund");
    let balance_before = stores.accounts.balance(user).await.expect("balance");
    let dialogues = from.bot_stores().dialogues;
    Arc::clone(&dialogues)
        .update_dialogue(ChatId(user.get()), State::AwaitingPhoto)
        .await
        .expect("dialogue");
    assert_invariants_sqlite(&temp.store).await;

    let report = copy_sqlite_to_postgres(&temp.store, &db.pool).await.expect("copy");
    let to = StoreUnderTest::Postgres(db.pool.clone());
    assert_eq!(counts(&from).await, counts(&to).await, "every row copied: {report}");
    assert_invariants(&db.pool).await;

    let pg = to.stores(QueueConfig::default());
    assert_eq!(pg.accounts.balance(user).await.expect("balance"), balance_before);
    for job in &placed.jobs {
        let a = stores.queue.job(*job).await.expect("read").expect("exists");
        let b = pg.queue.job(*job).await.expect("read").expect("same id on PostgreSQL");
        assert_eq!((a.status, a.refunded), (b.status, b.refunded), "job {job}");
    }
    let state = to.bot_stores().dialogues.get_dialogue(ChatId(user.get())).await.expect("read");
    assert_eq!(state, Some(State::AwaitingPhoto));

    // The queue continues: the queued job is claimable, and new ids follow the copied ones.
    let next = pg.queue.claim(&worker, 5).await.expect("claim on PostgreSQL");
    assert_eq!(next.len(), 1);
    assert!(placed.jobs.contains(&next[0].lease.job_id));
    let later = pg.queue.place_order(&order(user, 1, 1)).await.expect("a new order");
    assert!(later.order_id.get() > placed.order_id.get());
    assert!(later.jobs[0].get() > placed.jobs.iter().map(|j| j.get()).max().unwrap_or(0));
    assert_invariants(&db.pool).await;

    // A database that already holds a shop is refused, and nothing is written.
    let again = copy_sqlite_to_postgres(&temp.store, &db.pool).await.expect_err("refused");
    assert!(matches!(again, CopyError::DestinationNotEmpty(1)), "{again}");
}
