//! `copy-to-postgres`: a seller's embedded store carried into an empty PostgreSQL database —
//! balances, ledger, orders, jobs in every state, dialogue state, purchases, payment charges,
//! referrals and reconciliation cursors — keeping every id, with the invariants holding on the
//! destination and its queue and payments continuing where the file left off.

use neurocards_core::conversation::State;
use neurocards_core::domain::{Credits, ErrorClass, PackId, PurchaseId, Rail, UserId, WorkerId};
use neurocards_core::ports::{
    Charge, ChargeOutcome, ChargeSource, JobFailure, NewPurchase, Payments, Purchase, RefundCheck,
    RefundOutcome,
};
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
    for table in [
        "users",
        "ledger",
        "products",
        "orders",
        "jobs",
        "bot_dialogues",
        "purchases",
        "payment_charges",
        "referrals",
        "payment_cursors",
    ] {
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

/// Opens a Stars pack of `credits` for `credits * 10` Stars.
async fn open_pack(payments: &dyn Payments, user: UserId, credits: i64) -> Purchase {
    let new = NewPurchase {
        id: PurchaseId::new(),
        user_id: user,
        rail: Rail::Stars,
        pack: PackId::parse("pack10").expect("pack id"),
        credits: Credits::new(credits).expect("credits"),
        amount: credits * 10,
        currency: "XTR".to_owned(),
    };
    payments.open_purchase(&new).await.expect("open a purchase")
}

/// The payment of `purchase` under `charge_id`.
fn paying(purchase: &Purchase, charge_id: &str) -> Charge {
    Charge {
        rail: purchase.rail,
        charge_id: charge_id.to_owned(),
        purchase_id: purchase.id,
        user_id: purchase.user_id,
        amount: purchase.amount,
        currency: purchase.currency.clone(),
        source: ChargeSource::Update,
    }
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
    let dialogues = from.bot_stores().dialogues;
    Arc::clone(&dialogues)
        .update_dialogue(ChatId(user.get()), State::AwaitingPhoto)
        .await
        .expect("dialogue");

    // Payments: a friend referred by the user buys a pack (the user earns the bonus), buys a
    // second one that is refunded, a mismatched payment is flagged, and a YooKassa purchase
    // waits with its provider payment.
    let bonus = Credits::new(3).expect("credits");
    let pay = stores.payments.as_ref();
    let friend = funded_user(&temp.store, 0).await;
    assert!(pay.record_referral(friend, user).await.expect("referral"));
    let first = open_pack(pay, friend, 10).await;
    let outcome = pay.record_charge(&paying(&first, "ch_first"), bonus).await.expect("charge");
    assert!(matches!(outcome, ChargeOutcome::Credited { referral: Some(_), .. }), "{outcome:?}");
    let second = open_pack(pay, friend, 5).await;
    pay.record_charge(&paying(&second, "ch_second"), bonus).await.expect("charge");
    let refund = pay.record_refund(Rail::Stars, "ch_second").await.expect("refund");
    assert!(matches!(refund, RefundOutcome::Recorded { .. }), "{refund:?}");
    let wrong = Charge { amount: 1, ..paying(&first, "ch_wrong") };
    pay.record_charge(&wrong, bonus).await.expect("flagged");
    let waiting = pay
        .open_purchase(&NewPurchase {
            id: PurchaseId::new(),
            user_id: friend,
            rail: Rail::YooKassa,
            pack: PackId::parse("pack50").expect("pack id"),
            credits: Credits::new(50).expect("credits"),
            amount: 49_000,
            currency: "RUB".to_owned(),
        })
        .await
        .expect("open");
    pay.set_provider_payment(waiting.id, "yk-1", "https://pay.example/yk-1").await.expect("set");
    pay.set_reconcile_cursor(Rail::Stars, 42).await.expect("cursor");
    let friend_balance = stores.accounts.balance(friend).await.expect("balance");
    let balance_before = stores.accounts.balance(user).await.expect("balance");
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

    // Payments read the same on both stores.
    assert_eq!(pg.accounts.balance(friend).await.expect("balance"), friend_balance);
    for purchase in [first.id, second.id, waiting.id] {
        let a = stores.payments.purchase(purchase).await.expect("read");
        let b = pg.payments.purchase(purchase).await.expect("read");
        assert!(a.is_some());
        assert_eq!(a, b, "purchase {purchase}");
    }
    for charge_id in ["ch_first", "ch_second", "ch_wrong"] {
        let a = stores.payments.charge(Rail::Stars, charge_id).await.expect("read");
        let b = pg.payments.charge(Rail::Stars, charge_id).await.expect("read");
        assert!(a.is_some());
        assert_eq!(a, b, "charge {charge_id}");
    }
    assert_eq!(
        pg.payments.refund_check(Rail::Stars, "ch_second").await.expect("check"),
        RefundCheck::AlreadyRefunded
    );
    assert_eq!(
        pg.payments.referral_summary(user).await.expect("summary"),
        stores.payments.referral_summary(user).await.expect("summary")
    );
    assert_eq!(pg.payments.reconcile_cursor(Rail::Stars).await.expect("cursor"), 42);
    let since = chrono::Utc::now() - chrono::Duration::hours(1);
    assert_eq!(
        pg.payments.tally_since(since).await.expect("tally"),
        stores.payments.tally_since(since).await.expect("tally")
    );
    let polled = pg.payments.open_purchases(Rail::YooKassa, since, 10).await.expect("list");
    assert_eq!(polled.iter().map(|p| p.id).collect::<Vec<_>>(), vec![waiting.id]);
    // A copied charge is still recorded once; new charges follow the copied ids.
    assert_eq!(
        pg.payments.record_charge(&paying(&first, "ch_first"), bonus).await.expect("repeat"),
        ChargeOutcome::AlreadyRecorded
    );
    let third = open_pack(pg.payments.as_ref(), friend, 2).await;
    let outcome = pg.payments.record_charge(&paying(&third, "ch_third"), bonus).await.expect("new");
    assert!(matches!(outcome, ChargeOutcome::Credited { referral: None, .. }), "{outcome:?}");

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
    assert!(matches!(again, CopyError::DestinationNotEmpty(2)), "{again}");
}
