//! The [`Accounts`] conformance suite. Each function states one guarantee and panics when it
//! does not hold. A backend's tests build a fresh [`AccountsFixture`] per test and call them.

use neurocards_core::domain::{Credits, JobStatus, Language, LedgerReason, OrderId, UserId};
use neurocards_core::ports::{Accounts, AccountsError, NewUser};
use std::sync::atomic::{AtomicI64, Ordering};

/// What the suite needs besides the accounts store: orders to list, and a way to try a debit
/// the port itself never offers (charges belong to the queue).
#[async_trait::async_trait]
pub trait AccountsFixture: Send + Sync {
    type Accounts: Accounts;

    fn accounts(&self) -> &Self::Accounts;

    /// Places an order of `count` videos at `price` each for `user` (charged in the same
    /// transaction, one `charge` ledger entry naming the order), with its first `succeeded`
    /// jobs succeeded and the others queued.
    async fn charged_order(&self, user: UserId, count: u32, price: i64, succeeded: u32) -> OrderId;

    /// Tries to take `amount` credits from the user with a `charge` ledger entry written
    /// directly; `true` when the store accepted it.
    async fn try_debit(&self, user: UserId, amount: i64) -> bool;
}

static NEXT_USER: AtomicI64 = AtomicI64::new(50_000);

/// A user id no other call of this suite hands out.
pub fn fresh_user_id() -> UserId {
    UserId(NEXT_USER.fetch_add(1, Ordering::Relaxed))
}

/// A new user as the bot first meets them.
pub fn new_user(id: UserId, username: &str) -> NewUser {
    NewUser {
        id,
        username: Some(username.to_owned()),
        first_name: Some("Ann".to_owned()),
        language: Language::Ru,
    }
}

fn credits(n: i64) -> Credits {
    Credits::new(n).expect("non-negative")
}

/// Registers a fresh user with no start credits.
async fn registered<A: Accounts>(accounts: &A) -> UserId {
    let id = fresh_user_id();
    accounts.register(&new_user(id, "someone"), Credits::ZERO).await.expect("register");
    id
}

/// Registering twice creates the user once, credits the start credits once (one `welcome`
/// entry), refreshes the username, and every read shows the ledger's balance.
pub async fn register_is_idempotent_and_credits_start_once<F: AccountsFixture>(f: &F) {
    let accounts = f.accounts();
    let id = fresh_user_id();
    let (user, created) = accounts.register(&new_user(id, "ann"), credits(3)).await.expect("reg");
    assert!(created);
    assert_eq!(user.id, id);
    assert_eq!(user.username.as_deref(), Some("ann"));
    assert_eq!(user.consent_at, None);
    assert!(!user.banned);
    assert_eq!(user.blocked_bot_at, None);
    assert_eq!(user.balance, credits(3), "the returned user includes the start credits");
    let (user, created) =
        accounts.register(&new_user(id, "ann_new"), credits(3)).await.expect("reg again");
    assert!(!created);
    assert_eq!(user.username.as_deref(), Some("ann_new"));
    assert_eq!(user.balance, credits(3), "start credits are given once");
    let read = accounts.user(id).await.expect("read").expect("registered");
    assert_eq!(read.balance, credits(3), "a read user carries the ledger's balance");
    assert_eq!(read.username.as_deref(), Some("ann_new"));
    assert_eq!(accounts.balance(id).await.expect("balance"), credits(3));
    let ledger = accounts.ledger(id).await.expect("ledger");
    assert_eq!(ledger.len(), 1);
    assert_eq!((ledger[0].delta, ledger[0].reason), (3, LedgerReason::Welcome));
}

/// Registering with zero start credits writes no ledger entry.
pub async fn zero_start_credits_write_no_entry<F: AccountsFixture>(f: &F) {
    let accounts = f.accounts();
    let id = fresh_user_id();
    let (user, created) =
        accounts.register(&new_user(id, "zed"), Credits::ZERO).await.expect("reg");
    assert!(created);
    assert_eq!(user.balance, Credits::ZERO);
    assert!(accounts.ledger(id).await.expect("ledger").is_empty());
}

/// Many concurrent registrations of one new user create it once and credit the start credits
/// once.
pub async fn concurrent_registrations_credit_once<F: AccountsFixture>(f: &F) {
    let accounts = f.accounts();
    let id = fresh_user_id();
    let user = new_user(id, "race");
    let results = futures::future::join_all(
        (0..12).map(|_| accounts.register(&user, credits(5))).collect::<Vec<_>>(),
    )
    .await;
    let created = results.into_iter().map(|r| r.expect("register").1).filter(|c| *c).count();
    assert_eq!(created, 1, "exactly one registration creates the user");
    assert_eq!(accounts.balance(id).await.expect("balance"), credits(5));
    assert_eq!(accounts.ledger(id).await.expect("ledger").len(), 1);
}

/// A grant is one ledger entry with its reason and note, and returns the new balance.
pub async fn credit_writes_one_ledger_entry<F: AccountsFixture>(f: &F) {
    let accounts = f.accounts();
    let id = registered(accounts).await;
    let balance =
        accounts.credit(id, credits(5), LedgerReason::Grant, "promo").await.expect("grant");
    assert_eq!(balance, credits(5));
    let balance =
        accounts.credit(id, credits(2), LedgerReason::Grant, "bonus").await.expect("grant");
    assert_eq!(balance, credits(7));
    assert_eq!(accounts.balance(id).await.expect("balance"), credits(7));
    let ledger = accounts.ledger(id).await.expect("ledger");
    assert_eq!(ledger.len(), 2);
    assert_eq!((ledger[0].delta, ledger[0].reason), (5, LedgerReason::Grant));
    assert_eq!(ledger[0].note.as_deref(), Some("promo"));
    assert_eq!((ledger[0].order_id, ledger[0].job_id), (None, None));
    assert_eq!((ledger[1].delta, ledger[1].reason), (2, LedgerReason::Grant));
    assert_eq!(ledger[1].note.as_deref(), Some("bonus"));
    assert!(ledger[0].created_at <= ledger[1].created_at, "oldest first");
}

/// Concurrent credits all land: the balance is their sum, one entry each.
pub async fn concurrent_credits_all_land<F: AccountsFixture>(f: &F) {
    let accounts = f.accounts();
    let id = registered(accounts).await;
    let results = futures::future::join_all(
        (0..20)
            .map(|_| accounts.credit(id, credits(1), LedgerReason::Grant, "drip"))
            .collect::<Vec<_>>(),
    )
    .await;
    let mut seen: Vec<i64> = results.into_iter().map(|r| r.expect("credit").get()).collect();
    seen.sort_unstable();
    assert_eq!(seen, (1..=20).collect::<Vec<_>>(), "each credit returns its own new balance");
    assert_eq!(accounts.balance(id).await.expect("balance"), credits(20));
    assert_eq!(accounts.ledger(id).await.expect("ledger").len(), 20);
}

/// `credit` takes only grants: every other reason (purchases, refunds and bonuses come with
/// their payment) is refused and writes nothing.
pub async fn credit_refuses_other_reasons<F: AccountsFixture>(f: &F) {
    let accounts = f.accounts();
    let id = registered(accounts).await;
    for reason in [
        LedgerReason::Charge,
        LedgerReason::Refund,
        LedgerReason::Welcome,
        LedgerReason::Purchase,
        LedgerReason::PurchaseRefund,
        LedgerReason::Referral,
    ] {
        assert!(
            accounts.credit(id, credits(1), reason, "x").await.is_err(),
            "{reason:?} is refused"
        );
    }
    assert_eq!(accounts.balance(id).await.expect("balance"), Credits::ZERO);
    assert!(accounts.ledger(id).await.expect("ledger").is_empty());
}

/// A debit beyond the balance is refused by the store and writes nothing: the balance never
/// goes negative. A debit within it is one entry.
pub async fn overdraw_is_refused_and_writes_nothing<F: AccountsFixture>(f: &F) {
    let accounts = f.accounts();
    let id = registered(accounts).await;
    accounts.credit(id, credits(3), LedgerReason::Grant, "funds").await.expect("grant");
    assert!(!f.try_debit(id, 4).await, "an overdraw is refused");
    assert_eq!(accounts.balance(id).await.expect("balance"), credits(3));
    assert_eq!(accounts.ledger(id).await.expect("ledger").len(), 1, "nothing written");
    assert!(f.try_debit(id, 3).await, "a debit of the whole balance is accepted");
    assert_eq!(accounts.balance(id).await.expect("balance"), Credits::ZERO);
    assert!(!f.try_debit(id, 1).await, "nothing left to take");
    let ledger = accounts.ledger(id).await.expect("ledger");
    assert_eq!(ledger.len(), 2);
    assert_eq!((ledger[1].delta, ledger[1].reason), (-3, LedgerReason::Charge));
    assert_eq!(ledger.iter().map(|e| e.delta).sum::<i64>(), 0, "the balance is the ledger's sum");
}

/// Calls about a user that does not exist: reads find nothing, writes are `UnknownUser`,
/// `set_banned` says `false`, and nothing is created.
pub async fn unknown_users_are_typed_errors<F: AccountsFixture>(f: &F) {
    let accounts = f.accounts();
    let id = fresh_user_id();
    assert!(accounts.user(id).await.expect("read").is_none());
    assert!(matches!(accounts.balance(id).await, Err(AccountsError::UnknownUser(u)) if u == id));
    assert!(matches!(
        accounts.credit(id, credits(1), LedgerReason::Grant, "x").await,
        Err(AccountsError::UnknownUser(u)) if u == id
    ));
    assert!(matches!(accounts.record_consent(id).await, Err(AccountsError::UnknownUser(_))));
    assert!(matches!(
        accounts.set_language(id, Language::En).await,
        Err(AccountsError::UnknownUser(_))
    ));
    assert!(matches!(accounts.set_bot_blocked(id, true).await, Err(AccountsError::UnknownUser(_))));
    assert!(!accounts.set_banned(id, true, "spam").await.expect("ban unknown"));
    assert!(accounts.user(id).await.expect("read").is_none(), "nothing was created");
    assert!(accounts.ledger(id).await.expect("ledger").is_empty());
    assert!(accounts.recent_orders(id, 10).await.expect("orders").is_empty());
}

/// Consent is recorded once: the first time is kept.
pub async fn consent_keeps_the_first_time<F: AccountsFixture>(f: &F) {
    let accounts = f.accounts();
    let id = registered(accounts).await;
    accounts.record_consent(id).await.expect("consent");
    let first = accounts.user(id).await.expect("read").expect("exists").consent_at;
    assert!(first.is_some());
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    accounts.record_consent(id).await.expect("consent again");
    assert_eq!(accounts.user(id).await.expect("read").expect("exists").consent_at, first);
}

/// The chosen language is stored and survives a later registration.
pub async fn language_survives_registration<F: AccountsFixture>(f: &F) {
    let accounts = f.accounts();
    let id = registered(accounts).await;
    accounts.set_language(id, Language::En).await.expect("language");
    let (user, _) = accounts.register(&new_user(id, "back"), credits(3)).await.expect("again");
    assert_eq!(user.language, Language::En, "a returning user keeps the language they chose");
    assert_eq!(accounts.user(id).await.expect("read").expect("exists").language, Language::En);
    assert_eq!(user.balance, Credits::ZERO, "no start credits for a returning user");
}

/// Banning and unbanning are stored; a banned user is not reachable.
pub async fn ban_and_unban<F: AccountsFixture>(f: &F) {
    let accounts = f.accounts();
    let id = registered(accounts).await;
    assert_eq!(accounts.ban_reason(id).await.expect("no reason yet"), None);
    assert!(accounts.set_banned(id, true, "  chargebacks ").await.expect("ban"));
    assert!(accounts.user(id).await.expect("read").expect("exists").banned);
    assert_eq!(accounts.ban_reason(id).await.expect("reason").as_deref(), Some("chargebacks"));
    assert!(!accounts
        .reachable_users(Some(UserId(id.get() - 1)), 10)
        .await
        .expect("page")
        .contains(&id));
    let long = "я".repeat(600);
    assert!(accounts.set_banned(id, true, &long).await.expect("ban twice"), "the user exists");
    let kept = accounts.ban_reason(id).await.expect("reason").expect("kept");
    assert_eq!(kept.chars().count(), 500, "cut at 500 characters");
    assert!(accounts.set_banned(id, false, "").await.expect("unban"));
    assert!(!accounts.user(id).await.expect("read").expect("exists").banned);
    assert_eq!(accounts.ban_reason(id).await.expect("cleared"), None);
    assert!(accounts
        .reachable_users(Some(UserId(id.get() - 1)), 10)
        .await
        .expect("page")
        .contains(&id));
}

/// A user who blocked the bot is recorded with the first time and is not reachable; coming
/// back clears it.
pub async fn blocked_bot_is_recorded_and_cleared<F: AccountsFixture>(f: &F) {
    let accounts = f.accounts();
    let id = registered(accounts).await;
    accounts.set_bot_blocked(id, true).await.expect("blocked");
    let first = accounts.user(id).await.expect("read").expect("exists").blocked_bot_at;
    assert!(first.is_some());
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    accounts.set_bot_blocked(id, true).await.expect("blocked again");
    assert_eq!(accounts.user(id).await.expect("read").expect("exists").blocked_bot_at, first);
    accounts.set_bot_blocked(id, false).await.expect("back");
    assert_eq!(accounts.user(id).await.expect("read").expect("exists").blocked_bot_at, None);
}

/// Reachable users (not banned, not blocked) come in id order, paged by `after` and `limit`.
pub async fn reachable_users_page_in_id_order<F: AccountsFixture>(f: &F) {
    let accounts = f.accounts();
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(registered(accounts).await);
    }
    accounts.set_bot_blocked(ids[1], true).await.expect("blocked");
    accounts.set_banned(ids[3], true, "").await.expect("banned");
    let before_all = Some(UserId(ids[0].get() - 1));
    let page = accounts.reachable_users(before_all, 100).await.expect("page");
    let mine: Vec<UserId> = page.into_iter().filter(|u| ids.contains(u)).collect();
    assert_eq!(mine, vec![ids[0], ids[2], ids[4]]);
    assert_eq!(accounts.reachable_users(before_all, 1).await.expect("page"), vec![ids[0]]);
    assert_eq!(accounts.reachable_users(Some(ids[0]), 1).await.expect("page"), vec![ids[2]]);
    assert_eq!(accounts.reachable_users(Some(ids[2]), 1).await.expect("page"), vec![ids[4]]);
    let all = accounts.reachable_users(None, 1000).await.expect("page");
    assert!(all.windows(2).all(|w| w[0] < w[1]), "ascending ids");
    accounts.set_bot_blocked(ids[1], false).await.expect("back");
    assert_eq!(accounts.reachable_users(Some(ids[0]), 1).await.expect("page"), vec![ids[1]]);
}

/// Recent orders come newest first, with what each was charged and its jobs by status, up to
/// the limit; the ledger lists the welcome and each order's charge, oldest first.
pub async fn recent_orders_show_jobs_by_status_newest_first<F: AccountsFixture>(f: &F) {
    let accounts = f.accounts();
    let id = fresh_user_id();
    accounts.register(&new_user(id, "fay"), credits(10)).await.expect("register");
    let first = f.charged_order(id, 3, 1, 1).await;
    let second = f.charged_order(id, 1, 2, 0).await;
    assert_eq!(accounts.balance(id).await.expect("balance"), credits(5));

    let orders = accounts.recent_orders(id, 10).await.expect("orders");
    assert_eq!(orders.len(), 2);
    assert_eq!(orders[0].order_id, second);
    assert_eq!(orders[0].charged, credits(2));
    assert_eq!(orders[0].jobs, vec![(JobStatus::Queued, 1)]);
    assert_eq!(orders[1].order_id, first);
    assert_eq!(orders[1].charged, credits(3));
    assert_eq!(orders[1].template, "ugc");
    let total: u32 = orders[1].jobs.iter().map(|(_, n)| n).sum();
    assert_eq!(total, 3);
    assert!(orders[1].jobs.contains(&(JobStatus::Succeeded, 1)));
    assert!(orders[1].jobs.contains(&(JobStatus::Queued, 2)));
    assert!(orders[0].created_at >= orders[1].created_at);
    let newest = accounts.recent_orders(id, 1).await.expect("orders");
    assert_eq!(newest.len(), 1);
    assert_eq!(newest[0].order_id, second);

    let ledger = accounts.ledger(id).await.expect("ledger");
    let reasons: Vec<LedgerReason> = ledger.iter().map(|e| e.reason).collect();
    assert_eq!(reasons, vec![LedgerReason::Welcome, LedgerReason::Charge, LedgerReason::Charge]);
    assert_eq!((ledger[1].delta, ledger[1].order_id), (-3, Some(first)));
    assert_eq!((ledger[2].delta, ledger[2].order_id), (-2, Some(second)));
}
