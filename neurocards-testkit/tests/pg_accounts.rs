//! Accounts and products on PostgreSQL.

use neurocards_core::domain::{
    Credits, ImageMime, JobStatus, Language, LedgerReason, UserId, WorkerId,
};
use neurocards_core::ports::{
    Accounts, AccountsError, JobQueue, NewProduct, NewUser, PhotoRef, Products,
};
use neurocards_core::postgres::{PgAccounts, PgJobQueue, PgProducts, QueueConfig};
use neurocards_testkit::conformance::job_queue::order;
use neurocards_testkit::invariants::assert_invariants;
use neurocards_testkit::stores::pg_database;

fn new_user(id: i64, username: &str) -> NewUser {
    NewUser {
        id: UserId(id),
        username: Some(username.to_owned()),
        first_name: Some("Ann".to_owned()),
        language: Language::Ru,
    }
}

fn credits(n: i64) -> Credits {
    Credits::new(n).expect("non-negative")
}

#[tokio::test]
async fn registering_twice_gives_start_credits_once_and_refreshes_username() {
    let Some(db) = pg_database().await else { return };
    let pool = db.pool.clone();
    let accounts = PgAccounts::new(pool.clone());
    let (user, created) = accounts.register(&new_user(7, "ann"), credits(3)).await.expect("reg");
    assert!(created);
    assert_eq!(user.username.as_deref(), Some("ann"));
    assert_eq!(user.consent_at, None);
    assert_eq!(user.balance, credits(3), "the returned user includes the start credits");
    let (user, created) =
        accounts.register(&new_user(7, "ann_new"), credits(3)).await.expect("reg again");
    assert!(!created);
    assert_eq!(user.username.as_deref(), Some("ann_new"));
    assert_eq!(user.balance, credits(3));
    let read = accounts.user(UserId(7)).await.expect("read").expect("registered");
    assert_eq!(read.balance, credits(3), "a read user carries the ledger's balance");
    assert_eq!(accounts.balance(UserId(7)).await.expect("balance"), credits(3));
    let ledger = accounts.ledger(UserId(7)).await.expect("ledger");
    assert_eq!(ledger.len(), 1);
    assert_eq!(ledger[0].reason, LedgerReason::Welcome);
    assert_invariants(&pool).await;
}

#[tokio::test]
async fn grants_are_noted_in_the_ledger_and_unknown_users_are_errors() {
    let Some(db) = pg_database().await else { return };
    let pool = db.pool.clone();
    let accounts = PgAccounts::new(pool.clone());
    accounts.register(&new_user(8, "bob"), Credits::ZERO).await.expect("register");
    let balance =
        accounts.credit(UserId(8), credits(5), LedgerReason::Grant, "promo").await.expect("grant");
    assert_eq!(balance, credits(5));
    let ledger = accounts.ledger(UserId(8)).await.expect("ledger");
    assert_eq!(ledger.len(), 1);
    assert_eq!((ledger[0].delta, ledger[0].reason), (5, LedgerReason::Grant));
    assert_eq!(ledger[0].note.as_deref(), Some("promo"));
    assert!(matches!(
        accounts.balance(UserId(9)).await,
        Err(AccountsError::UnknownUser(UserId(9)))
    ));
    assert!(matches!(
        accounts.credit(UserId(9), credits(1), LedgerReason::Grant, "x").await,
        Err(AccountsError::UnknownUser(_))
    ));
    assert!(accounts.credit(UserId(8), credits(1), LedgerReason::Refund, "x").await.is_err());
    assert_invariants(&pool).await;
}

#[tokio::test]
async fn consent_language_ban_and_block_are_stored() {
    let Some(db) = pg_database().await else { return };
    let pool = db.pool.clone();
    let accounts = PgAccounts::new(pool.clone());
    let id = UserId(10);
    accounts.register(&new_user(10, "cid"), Credits::ZERO).await.expect("register");
    accounts.record_consent(id).await.expect("consent");
    let first = accounts.user(id).await.expect("read").expect("exists").consent_at;
    assert!(first.is_some());
    accounts.record_consent(id).await.expect("consent again");
    assert_eq!(accounts.user(id).await.expect("read").expect("exists").consent_at, first);

    accounts.set_language(id, Language::En).await.expect("language");
    accounts.register(&new_user(10, "cid"), Credits::ZERO).await.expect("register again");
    let user = accounts.user(id).await.expect("read").expect("exists");
    assert_eq!(user.language, Language::En, "a returning user keeps the language they chose");

    assert!(accounts.set_banned(id, true).await.expect("ban"));
    assert!(!accounts.set_banned(UserId(11), true).await.expect("ban unknown"));
    assert!(accounts.user(id).await.expect("read").expect("exists").banned);

    accounts.register(&new_user(12, "dan"), Credits::ZERO).await.expect("register");
    accounts.register(&new_user(13, "eve"), Credits::ZERO).await.expect("register");
    accounts.set_bot_blocked(UserId(12), true).await.expect("blocked");
    assert!(accounts
        .user(UserId(12))
        .await
        .expect("read")
        .expect("exists")
        .blocked_bot_at
        .is_some());
    assert_eq!(accounts.reachable_users(None, 10).await.expect("page"), vec![UserId(13)]);
    accounts.set_bot_blocked(UserId(12), false).await.expect("unblocked");
    assert_eq!(accounts.reachable_users(None, 1).await.expect("page"), vec![UserId(12)]);
    assert_eq!(
        accounts.reachable_users(Some(UserId(12)), 10).await.expect("page"),
        vec![UserId(13)]
    );
    assert!(matches!(
        accounts.record_consent(UserId(99)).await,
        Err(AccountsError::UnknownUser(_))
    ));
    assert!(accounts.user(UserId(99)).await.expect("read").is_none());
}

#[tokio::test]
async fn recent_orders_show_jobs_by_status_newest_first() {
    let Some(db) = pg_database().await else { return };
    let pool = db.pool.clone();
    let accounts = PgAccounts::new(pool.clone());
    let queue = PgJobQueue::new(pool.clone(), QueueConfig::default());
    accounts.register(&new_user(20, "fay"), credits(10)).await.expect("register");
    let first = queue.place_order(&order(UserId(20), 3, 1)).await.expect("order");
    let second = queue.place_order(&order(UserId(20), 1, 2)).await.expect("order");
    let job = queue.claim(&WorkerId::new("w"), 10).await.expect("claim");
    let done: Vec<_> =
        job.iter().filter(|j| j.order_id == first.order_id).take(1).map(|j| j.lease).collect();
    queue.complete(&done).await.expect("complete");

    let orders = accounts.recent_orders(UserId(20), 10).await.expect("orders");
    assert_eq!(orders.len(), 2);
    assert_eq!(orders[0].order_id, second.order_id);
    assert_eq!(orders[0].charged, credits(2));
    assert_eq!(orders[1].order_id, first.order_id);
    assert_eq!(orders[1].charged, credits(3));
    assert_eq!(orders[1].template, "ugc");
    let total: u32 = orders[1].jobs.iter().map(|(_, n)| n).sum();
    assert_eq!(total, 3);
    assert!(orders[1].jobs.contains(&(JobStatus::Succeeded, 1)));
    assert_eq!(accounts.recent_orders(UserId(20), 1).await.expect("orders").len(), 1);
    let ledger = accounts.ledger(UserId(20)).await.expect("ledger");
    let reasons: Vec<LedgerReason> = ledger.iter().map(|e| e.reason).collect();
    assert_eq!(reasons, vec![LedgerReason::Welcome, LedgerReason::Charge, LedgerReason::Charge]);
    assert_eq!(ledger[1].order_id, Some(first.order_id));
    assert_invariants(&pool).await;
}

#[tokio::test]
async fn products_belong_to_their_owner() {
    let Some(db) = pg_database().await else { return };
    let pool = db.pool.clone();
    let accounts = PgAccounts::new(pool.clone());
    let products = PgProducts::new(pool.clone());
    accounts.register(&new_user(30, "gus"), Credits::ZERO).await.expect("register");
    accounts.register(&new_user(31, "hal"), Credits::ZERO).await.expect("register");
    let photo = PhotoRef { telegram_file_id: "AgAC-file".to_owned(), mime: ImageMime::Png };
    let id = products
        .create(&NewProduct {
            user_id: UserId(30),
            photo: Some(photo.clone()),
            marketplace_url: Some("https://www.wildberries.ru/catalog/1/detail.aspx".to_owned()),
            description: "A lamp".to_owned(),
        })
        .await
        .expect("create");
    let got = products.get(id, UserId(30)).await.expect("get").expect("exists");
    assert_eq!(got.photo, Some(photo));
    assert_eq!(got.description, "A lamp");
    assert!(products.get(id, UserId(31)).await.expect("get").is_none(), "not someone else's");
    assert!(!products.set_description(id, UserId(31), "mine now").await.expect("update"));
    assert!(products.set_description(id, UserId(30), "A brass lamp").await.expect("update"));
    let got = products.get(id, UserId(30)).await.expect("get").expect("exists");
    assert_eq!(got.description, "A brass lamp");

    let bare = products
        .create(&NewProduct {
            user_id: UserId(31),
            photo: None,
            marketplace_url: None,
            description: String::new(),
        })
        .await
        .expect("create without photo");
    assert_eq!(products.get(bare, UserId(31)).await.expect("get").expect("exists").photo, None);
    let unknown = products
        .create(&NewProduct {
            user_id: UserId(404),
            photo: None,
            marketplace_url: None,
            description: String::new(),
        })
        .await;
    assert!(matches!(unknown, Err(AccountsError::UnknownUser(UserId(404)))));
}
