//! The [`Payments`] conformance suite. Each function states one guarantee and panics when it
//! does not hold. A backend's tests build a fresh [`PaymentsFixture`] per test (one database
//! of its own) and call them; every function ends with the fixture's invariants check.

use super::accounts::{fresh_user_id, new_user, AccountsFixture};
use chrono::{DateTime, Duration, Utc};
use neurocards_core::domain::{Credits, LedgerReason, PackId, PurchaseId, Rail, UserId};
use neurocards_core::ports::{
    Accounts, AccountsError, Charge, ChargeOutcome, ChargeSource, Mismatch, NewPurchase, Payments,
    Purchase, PurchaseStatus, PurchaseTally, ReferralPaid, ReferralSummary, RefundCheck,
    RefundOutcome,
};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// What the suite needs besides the payments store: the accounts store on the same database
/// (users, balances, the ledger, and a debit through [`AccountsFixture::try_debit`]), a way to
/// age a purchase, and the database invariants.
#[async_trait::async_trait]
pub trait PaymentsFixture: AccountsFixture {
    /// Cloned into concurrent tasks: every clone is the same store, and concurrent calls use
    /// their own connections where the store has several.
    type Payments: Payments + Clone + 'static;

    fn payments(&self) -> &Self::Payments;

    /// Sets the purchase's creation time (the poller selects purchases by age).
    async fn backdate_purchase(&self, id: PurchaseId, created_at: DateTime<Utc>);

    /// Panics, listing every violation, when a database invariant does not hold.
    async fn assert_invariants(&self);
}

/// The referral bonus the suite pays unless a test says otherwise.
const BONUS: i64 = 3;

static NEXT_CHARGE: AtomicU64 = AtomicU64::new(1);

/// A provider charge id no other call of this suite hands out.
fn fresh_charge_id(prefix: &str) -> String {
    format!("{prefix}_{}", NEXT_CHARGE.fetch_add(1, Ordering::Relaxed))
}

fn credits(n: i64) -> Credits {
    Credits::new(n).expect("non-negative")
}

fn pack(id: &str) -> PackId {
    PackId::parse(id).expect("a valid pack id")
}

/// Registers a fresh user with `balance` credits granted.
async fn user_with<F: PaymentsFixture>(f: &F, balance: i64) -> UserId {
    let id = fresh_user_id();
    f.accounts().register(&new_user(id, "buyer"), Credits::ZERO).await.expect("register");
    if balance > 0 {
        f.accounts()
            .credit(id, credits(balance), LedgerReason::Grant, "funds")
            .await
            .expect("grant");
    }
    id
}

/// A pack of `n` credits for `amount` on `rail`, for `user`.
fn new_purchase(user: UserId, rail: Rail, pack_id: &str, n: i64, amount: i64) -> NewPurchase {
    NewPurchase {
        id: PurchaseId::new(),
        user_id: user,
        rail,
        pack: pack(pack_id),
        credits: credits(n),
        amount,
        currency: rail.currency().to_owned(),
    }
}

/// Opens a Stars pack of `n` credits for `n * 10` Stars.
async fn open_stars<F: PaymentsFixture>(f: &F, user: UserId, n: i64) -> Purchase {
    f.payments()
        .open_purchase(&new_purchase(user, Rail::Stars, "pack", n, n * 10))
        .await
        .expect("open a purchase")
}

/// The payment that matches `purchase` exactly, under a new charge id.
fn paying(purchase: &Purchase) -> Charge {
    Charge {
        rail: purchase.rail,
        charge_id: fresh_charge_id("ch"),
        purchase_id: purchase.id,
        user_id: purchase.user_id,
        amount: purchase.amount,
        currency: purchase.currency.clone(),
        source: ChargeSource::Update,
    }
}

async fn balance<F: PaymentsFixture>(f: &F, user: UserId) -> i64 {
    f.accounts().balance(user).await.expect("balance").get()
}

/// The user's ledger entries with `reason`, as deltas.
async fn entries<F: PaymentsFixture>(f: &F, user: UserId, reason: LedgerReason) -> Vec<i64> {
    let ledger = f.accounts().ledger(user).await.expect("ledger");
    ledger.iter().filter(|e| e.reason == reason).map(|e| e.delta).collect()
}

/// The balance equals the ledger's sum for each of `users`.
async fn assert_ledgers_sum<F: PaymentsFixture>(f: &F, users: &[UserId]) {
    for user in users {
        let ledger = f.accounts().ledger(*user).await.expect("ledger");
        let sum: i64 = ledger.iter().map(|e| e.delta).sum();
        assert_eq!(sum, balance(f, *user).await, "user {user}: the balance is the ledger's sum");
    }
}

/// Records a charge that must be credited; returns the payer's balance and the bonus paid.
async fn credited<F: PaymentsFixture>(
    f: &F,
    charge: &Charge,
    bonus: i64,
) -> (i64, Option<ReferralPaid>) {
    match f.payments().record_charge(charge, credits(bonus)).await.expect("record the charge") {
        ChargeOutcome::Credited { balance, referral, .. } => (balance.get(), referral),
        other => panic!("expected the charge to be credited, got {other:?}"),
    }
}

/// Opening a purchase stores it open, with its price; opening the same id again returns the
/// stored purchase unchanged; a purchase for an unknown user is `UnknownUser` and stores
/// nothing.
pub async fn open_purchase_is_idempotent<F: PaymentsFixture>(f: &F) {
    let payments = f.payments();
    let user = user_with(f, 0).await;
    let new = new_purchase(user, Rail::YooKassa, "pack50", 50, 49_000);
    let opened = payments.open_purchase(&new).await.expect("open");
    assert_eq!(opened.id, new.id);
    assert_eq!(opened.user_id, user);
    assert_eq!((opened.rail, opened.pack.as_str()), (Rail::YooKassa, "pack50"));
    assert_eq!((opened.credits, opened.amount), (credits(50), 49_000));
    assert_eq!(opened.currency, "RUB");
    assert_eq!(opened.status, PurchaseStatus::Open);
    assert_eq!(
        (opened.provider_payment_id.as_deref(), opened.confirmation_url.as_deref()),
        (None, None)
    );
    let retried =
        NewPurchase { pack: pack("other"), credits: credits(1), amount: 1, ..new.clone() };
    let again = payments.open_purchase(&retried).await.expect("open again");
    assert_eq!(again, opened, "a retried open returns the stored purchase unchanged");
    assert_eq!(payments.purchase(new.id).await.expect("read"), Some(opened));
    assert_eq!(payments.purchase(PurchaseId::new()).await.expect("read"), None);

    let stranger = fresh_user_id();
    let orphan = new_purchase(stranger, Rail::Stars, "pack10", 10, 100);
    assert!(matches!(
        payments.open_purchase(&orphan).await,
        Err(AccountsError::UnknownUser(u)) if u == stranger
    ));
    assert_eq!(payments.purchase(orphan.id).await.expect("read"), None, "nothing stored");
    f.assert_invariants().await;
}

/// A matching payment is credited once: the pack's credits as one `purchase` entry, the
/// purchase paid, the charge stored; the same charge again (a redelivered update, a
/// notification, reconciliation) is `AlreadyRecorded` and writes nothing.
pub async fn a_charge_is_credited_once<F: PaymentsFixture>(f: &F) {
    let payments = f.payments();
    let user = user_with(f, 2).await;
    let purchase = open_stars(f, user, 10).await;
    let charge = paying(&purchase);
    let outcome = payments.record_charge(&charge, credits(BONUS)).await.expect("record");
    assert_eq!(
        outcome,
        ChargeOutcome::Credited {
            user_id: user,
            pack: purchase.pack.clone(),
            credits: credits(10),
            balance: credits(12),
            referral: None,
        }
    );
    for source in [ChargeSource::Update, ChargeSource::Reconciliation, ChargeSource::Poll] {
        let repeat = Charge { source, ..charge.clone() };
        assert_eq!(
            payments.record_charge(&repeat, credits(BONUS)).await.expect("repeat"),
            ChargeOutcome::AlreadyRecorded
        );
    }
    assert_eq!(balance(f, user).await, 12, "credited once");
    assert_eq!(entries(f, user, LedgerReason::Purchase).await, vec![10]);
    let stored = payments.purchase(purchase.id).await.expect("read").expect("stored");
    assert_eq!(stored.status, PurchaseStatus::Paid);
    let record =
        payments.charge(Rail::Stars, &charge.charge_id).await.expect("read").expect("kept");
    assert_eq!((record.rail, record.purchase_id, record.user_id), (Rail::Stars, purchase.id, user));
    assert_eq!((record.amount, record.currency.as_str()), (100, "XTR"));
    assert_eq!((record.source, record.credits), (ChargeSource::Update, credits(10)));
    assert_eq!((record.mismatch, record.refunded_at), (None, None));
    assert_eq!(
        payments.charge(Rail::YooKassa, &charge.charge_id).await.expect("read"),
        None,
        "charge ids are per rail"
    );
    assert_ledgers_sum(f, &[user]).await;
    f.assert_invariants().await;
}

/// Twenty concurrent deliveries of one charge, from separate tasks, credit it exactly once:
/// one `Credited`, nineteen `AlreadyRecorded`, the balance up by the pack once.
pub async fn concurrent_deliveries_credit_once<F: PaymentsFixture>(f: &F) {
    let user = user_with(f, 0).await;
    let purchase = open_stars(f, user, 7).await;
    let charge = paying(&purchase);
    let start = Arc::new(tokio::sync::Barrier::new(20));
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let payments = f.payments().clone();
            let charge = charge.clone();
            let start = Arc::clone(&start);
            tokio::spawn(async move {
                start.wait().await;
                payments.record_charge(&charge, credits(BONUS)).await
            })
        })
        .collect();
    let mut credited_n = 0;
    let mut repeats = 0;
    for task in tasks {
        match task.await.expect("task").expect("record the charge") {
            ChargeOutcome::Credited { balance, .. } => {
                credited_n += 1;
                assert_eq!(balance, credits(7));
            }
            ChargeOutcome::AlreadyRecorded => repeats += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((credited_n, repeats), (1, 19), "exactly one delivery credits");
    assert_eq!(balance(f, user).await, 7);
    assert_eq!(entries(f, user, LedgerReason::Purchase).await, vec![7]);
    f.assert_invariants().await;
}

/// A second payment of an already paid purchase (a re-opened invoice), under its own charge
/// id, is real money and is credited again.
pub async fn a_second_charge_of_a_purchase_credits_again<F: PaymentsFixture>(f: &F) {
    let user = user_with(f, 0).await;
    let purchase = open_stars(f, user, 5).await;
    assert_eq!(credited(f, &paying(&purchase), BONUS).await.0, 5);
    assert_eq!(credited(f, &paying(&purchase), BONUS).await.0, 10);
    assert_eq!(entries(f, user, LedgerReason::Purchase).await, vec![5, 5]);
    let stored = f.payments().purchase(purchase.id).await.expect("read").expect("stored");
    assert_eq!(stored.status, PurchaseStatus::Paid);
    f.assert_invariants().await;
}

/// Each kind of mismatch — unknown purchase, other rail, other user, other amount, other
/// currency — is stored flagged with its kind, credits nothing, leaves the purchase open, and
/// its repeat is `AlreadyRecorded` (never credited later).
pub async fn mismatched_charges_are_flagged_and_credit_nothing<F: PaymentsFixture>(f: &F) {
    let payments = f.payments();
    let owner = user_with(f, 1).await;
    let payer = user_with(f, 1).await;
    let purchase = open_stars(f, owner, 10).await;
    let exact = paying(&purchase);
    let cases = [
        (Charge { purchase_id: PurchaseId::new(), ..exact.clone() }, Mismatch::UnknownPurchase),
        (
            Charge { rail: Rail::YooKassa, currency: "RUB".to_owned(), ..exact.clone() },
            Mismatch::OtherRail,
        ),
        (Charge { user_id: payer, ..exact.clone() }, Mismatch::OtherUser),
        (Charge { amount: exact.amount - 1, ..exact.clone() }, Mismatch::Amount),
        (Charge { currency: "RUB".to_owned(), ..exact.clone() }, Mismatch::Amount),
        // The first failing check names the mismatch.
        (
            Charge { user_id: payer, amount: 1, rail: Rail::YooKassa, ..exact.clone() },
            Mismatch::OtherRail,
        ),
        (Charge { user_id: payer, amount: 1, ..exact.clone() }, Mismatch::OtherUser),
    ];
    for (case, expected) in cases {
        let charge = Charge { charge_id: fresh_charge_id("bad"), ..case };
        assert_eq!(
            payments.record_charge(&charge, credits(BONUS)).await.expect("record"),
            ChargeOutcome::Flagged(expected),
            "{charge:?}"
        );
        assert_eq!(
            payments.record_charge(&charge, credits(BONUS)).await.expect("repeat"),
            ChargeOutcome::AlreadyRecorded,
            "a flagged charge stays flagged"
        );
        let record =
            payments.charge(charge.rail, &charge.charge_id).await.expect("read").expect("kept");
        assert_eq!((record.mismatch, record.credits), (Some(expected), Credits::ZERO));
        assert_eq!((record.user_id, record.amount), (charge.user_id, charge.amount));
    }
    assert_eq!((balance(f, owner).await, balance(f, payer).await), (1, 1), "nothing credited");
    assert!(entries(f, owner, LedgerReason::Purchase).await.is_empty());
    let stored = payments.purchase(purchase.id).await.expect("read").expect("stored");
    assert_eq!(stored.status, PurchaseStatus::Open);
    // The exact payment is still credited.
    assert_eq!(credited(f, &exact, BONUS).await.0, 11);
    f.assert_invariants().await;
}

/// A referred user's first credited purchase pays the referrer's bonus once, in the same
/// transaction; their second purchase pays none.
pub async fn the_referral_bonus_is_paid_once_on_the_first_purchase<F: PaymentsFixture>(f: &F) {
    let payments = f.payments();
    let referrer = user_with(f, 0).await;
    let friend = user_with(f, 0).await;
    assert!(payments.record_referral(friend, referrer).await.expect("refer"));
    assert_eq!(
        payments.referral_summary(referrer).await.expect("summary"),
        ReferralSummary { invited: 1, paid: 0 }
    );
    // A flagged payment of the friend's is not a purchase: no bonus.
    let first = open_stars(f, friend, 10).await;
    let wrong = Charge { amount: 1, ..paying(&first) };
    assert_eq!(
        payments.record_charge(&wrong, credits(BONUS)).await.expect("record"),
        ChargeOutcome::Flagged(Mismatch::Amount)
    );
    assert_eq!(balance(f, referrer).await, 0);
    let (friend_balance, referral) = credited(f, &paying(&first), BONUS).await;
    assert_eq!(friend_balance, 10);
    assert_eq!(referral, Some(ReferralPaid { referrer, bonus: credits(BONUS) }));
    assert_eq!(balance(f, referrer).await, BONUS);
    assert_eq!(entries(f, referrer, LedgerReason::Referral).await, vec![BONUS]);
    let second = open_stars(f, friend, 5).await;
    let (_, referral) = credited(f, &paying(&second), BONUS).await;
    assert_eq!(referral, None, "only the first purchase pays the bonus");
    let (_, referral) = credited(f, &paying(&first), BONUS).await;
    assert_eq!(referral, None, "nor a second payment of the first purchase");
    assert_eq!(balance(f, referrer).await, BONUS);
    assert_eq!(
        payments.referral_summary(referrer).await.expect("summary"),
        ReferralSummary { invited: 1, paid: 1 }
    );
    assert_eq!(
        payments.referral_summary(friend).await.expect("summary"),
        ReferralSummary::default()
    );
    assert_ledgers_sum(f, &[referrer, friend]).await;
    f.assert_invariants().await;
}

/// With a bonus of zero nothing is paid, and the referral does not pay on a later purchase
/// either: the first purchase has passed.
pub async fn a_zero_bonus_pays_nothing<F: PaymentsFixture>(f: &F) {
    let payments = f.payments();
    let referrer = user_with(f, 0).await;
    let friend = user_with(f, 0).await;
    assert!(payments.record_referral(friend, referrer).await.expect("refer"));
    let (_, referral) = credited(f, &paying(&open_stars(f, friend, 10).await), 0).await;
    assert_eq!(referral, None);
    let (_, referral) = credited(f, &paying(&open_stars(f, friend, 10).await), BONUS).await;
    assert_eq!(referral, None, "a later purchase is not the first");
    assert_eq!(balance(f, referrer).await, 0);
    assert!(f.accounts().ledger(referrer).await.expect("ledger").is_empty());
    assert_eq!(
        payments.referral_summary(referrer).await.expect("summary"),
        ReferralSummary { invited: 1, paid: 0 }
    );
    f.assert_invariants().await;
}

/// A referral is recorded once per user, never to oneself, only between existing users, and
/// only before the user's first credited purchase (a flagged payment does not count).
pub async fn referrals_are_recorded_only_when_allowed<F: PaymentsFixture>(f: &F) {
    let payments = f.payments();
    let referrer = user_with(f, 0).await;
    let other = user_with(f, 0).await;
    let user = user_with(f, 0).await;
    assert!(!payments.record_referral(user, user).await.expect("self"), "not to oneself");
    assert!(!payments.record_referral(user, fresh_user_id()).await.expect("unknown referrer"));
    assert!(!payments.record_referral(fresh_user_id(), referrer).await.expect("unknown user"));
    assert!(payments.record_referral(user, referrer).await.expect("refer"));
    assert!(!payments.record_referral(user, referrer).await.expect("again"), "once per user");
    assert!(!payments.record_referral(user, other).await.expect("second referrer"));
    assert_eq!(payments.referral_summary(referrer).await.expect("summary").invited, 1);
    assert_eq!(payments.referral_summary(other).await.expect("summary").invited, 0);

    let buyer = user_with(f, 0).await;
    let purchase = open_stars(f, buyer, 10).await;
    let wrong = Charge { amount: 1, ..paying(&purchase) };
    payments.record_charge(&wrong, credits(BONUS)).await.expect("flagged");
    let late = user_with(f, 0).await;
    let late_purchase = open_stars(f, late, 10).await;
    credited(f, &paying(&late_purchase), BONUS).await;
    assert!(
        !payments.record_referral(late, referrer).await.expect("after a purchase"),
        "not after the first credited purchase"
    );
    assert!(
        payments.record_referral(buyer, referrer).await.expect("after a flagged payment"),
        "a flagged payment is not a purchase"
    );
    assert_eq!(payments.referral_summary(referrer).await.expect("summary").invited, 2);
    assert_eq!(balance(f, referrer).await, 0, "recording a referral pays nothing");
    f.assert_invariants().await;
}

/// The refund check reads every case: unknown charge, flagged charge, refundable (the user
/// holds the pack), spent (they used part of it), and already refunded.
pub async fn refund_check_tells_every_case<F: PaymentsFixture>(f: &F) {
    let payments = f.payments();
    assert_eq!(
        payments.refund_check(Rail::Stars, "no_such_charge").await.expect("check"),
        RefundCheck::Unknown
    );
    let user = user_with(f, 0).await;
    let purchase = open_stars(f, user, 10).await;
    let wrong = Charge { amount: 1, ..paying(&purchase) };
    payments.record_charge(&wrong, credits(BONUS)).await.expect("flagged");
    assert_eq!(
        payments.refund_check(Rail::Stars, &wrong.charge_id).await.expect("check"),
        RefundCheck::NotCredited
    );
    let charge = paying(&purchase);
    credited(f, &charge, BONUS).await;
    assert_eq!(
        payments.refund_check(Rail::Stars, &charge.charge_id).await.expect("check"),
        RefundCheck::Refundable {
            user_id: user,
            credits: credits(10),
            amount: 100,
            currency: "XTR".to_owned()
        }
    );
    assert!(f.try_debit(user, 4).await, "the user spends 4 credits");
    assert_eq!(
        payments.refund_check(Rail::Stars, &charge.charge_id).await.expect("check"),
        RefundCheck::Spent { user_id: user, credits: credits(10), balance: credits(6) }
    );
    assert_eq!(
        payments.refund_check(Rail::YooKassa, &charge.charge_id).await.expect("check"),
        RefundCheck::Unknown,
        "charge ids are per rail"
    );
    payments.record_refund(Rail::Stars, &charge.charge_id).await.expect("refund");
    assert_eq!(
        payments.refund_check(Rail::Stars, &charge.charge_id).await.expect("check"),
        RefundCheck::AlreadyRefunded
    );
    f.assert_invariants().await;
}

/// A refund takes the pack back once: one `purchase_refund` entry and the charge marked
/// refunded; again is `AlreadyRefunded`. When the user spent credits meanwhile, only the
/// balance is taken and the rest is the shortfall (balances never go negative). Flagged and
/// unknown charges take nothing.
pub async fn a_refund_is_recorded_once<F: PaymentsFixture>(f: &F) {
    let payments = f.payments();
    let user = user_with(f, 1).await;
    let purchase = open_stars(f, user, 10).await;
    let charge = paying(&purchase);
    credited(f, &charge, BONUS).await;
    assert_eq!(
        payments.record_refund(Rail::Stars, &charge.charge_id).await.expect("refund"),
        RefundOutcome::Recorded {
            user_id: user,
            debited: credits(10),
            shortfall: Credits::ZERO,
            balance: credits(1),
        }
    );
    assert_eq!(
        payments.record_refund(Rail::Stars, &charge.charge_id).await.expect("again"),
        RefundOutcome::AlreadyRefunded
    );
    assert_eq!(balance(f, user).await, 1);
    assert_eq!(entries(f, user, LedgerReason::PurchaseRefund).await, vec![-10]);
    let record =
        payments.charge(Rail::Stars, &charge.charge_id).await.expect("read").expect("kept");
    assert!(record.refunded_at.is_some());
    assert_eq!(record.credits, credits(10), "the charge keeps what it gave");

    // Spent between the check and the refund: the balance is taken, the rest is shortfall.
    let spender = user_with(f, 0).await;
    let spent = paying(&open_stars(f, spender, 10).await);
    credited(f, &spent, BONUS).await;
    assert!(f.try_debit(spender, 7).await);
    assert_eq!(
        payments.record_refund(Rail::Stars, &spent.charge_id).await.expect("refund"),
        RefundOutcome::Recorded {
            user_id: spender,
            debited: credits(3),
            shortfall: credits(7),
            balance: Credits::ZERO,
        }
    );
    // Everything spent: nothing to take, the refund is still recorded once.
    let broke = user_with(f, 0).await;
    let gone = paying(&open_stars(f, broke, 2).await);
    credited(f, &gone, BONUS).await;
    assert!(f.try_debit(broke, 2).await);
    assert_eq!(
        payments.record_refund(Rail::Stars, &gone.charge_id).await.expect("refund"),
        RefundOutcome::Recorded {
            user_id: broke,
            debited: Credits::ZERO,
            shortfall: credits(2),
            balance: Credits::ZERO,
        }
    );
    assert_eq!(
        payments.record_refund(Rail::Stars, &gone.charge_id).await.expect("again"),
        RefundOutcome::AlreadyRefunded
    );

    let wrong = Charge { amount: 1, ..paying(&purchase) };
    payments.record_charge(&wrong, credits(BONUS)).await.expect("flagged");
    assert_eq!(
        payments.record_refund(Rail::Stars, &wrong.charge_id).await.expect("flagged"),
        RefundOutcome::NotCredited
    );
    assert_eq!(
        payments.record_refund(Rail::Stars, "no_such_charge").await.expect("unknown"),
        RefundOutcome::Unknown
    );
    assert_ledgers_sum(f, &[user, spender, broke]).await;
    f.assert_invariants().await;
}

/// Concurrent refunds of one charge take the pack back once.
pub async fn concurrent_refunds_take_back_once<F: PaymentsFixture>(f: &F) {
    let user = user_with(f, 0).await;
    let charge = paying(&open_stars(f, user, 6).await);
    credited(f, &charge, BONUS).await;
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let payments = f.payments().clone();
            let id = charge.charge_id.clone();
            tokio::spawn(async move { payments.record_refund(Rail::Stars, &id).await })
        })
        .collect();
    let mut recorded = 0;
    for task in tasks {
        match task.await.expect("task").expect("refund") {
            RefundOutcome::Recorded { debited, .. } => {
                recorded += 1;
                assert_eq!(debited, credits(6));
            }
            RefundOutcome::AlreadyRefunded => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(recorded, 1);
    assert_eq!(balance(f, user).await, 0);
    f.assert_invariants().await;
}

/// The provider's payment id and confirmation URL are recorded once (the same values again
/// are a no-op, a different id is refused); cancelling changes only an open purchase, and a
/// paid one stays paid.
pub async fn provider_payment_and_cancel<F: PaymentsFixture>(f: &F) {
    let payments = f.payments();
    let user = user_with(f, 0).await;
    let purchase = payments
        .open_purchase(&new_purchase(user, Rail::YooKassa, "pack50", 50, 49_000))
        .await
        .expect("open");
    assert!(!payments.set_provider_payment(PurchaseId::new(), "p", "u").await.expect("unknown"));
    let url = "https://yoomoney.ru/checkout/payments/v2/contract?orderId=2c5";
    assert!(payments.set_provider_payment(purchase.id, "2c5-000f", url).await.expect("set"));
    assert!(payments.set_provider_payment(purchase.id, "2c5-000f", url).await.expect("same"));
    assert!(
        payments.set_provider_payment(purchase.id, "other-id", url).await.is_err(),
        "a purchase never changes to another provider payment"
    );
    let stored = payments.purchase(purchase.id).await.expect("read").expect("stored");
    assert_eq!(stored.provider_payment_id.as_deref(), Some("2c5-000f"));
    assert_eq!(stored.confirmation_url.as_deref(), Some(url));
    assert_eq!(stored.status, PurchaseStatus::Open);

    assert!(payments.cancel_purchase(purchase.id).await.expect("cancel"));
    assert!(!payments.cancel_purchase(purchase.id).await.expect("again"));
    assert!(!payments.cancel_purchase(PurchaseId::new()).await.expect("unknown"));
    let stored = payments.purchase(purchase.id).await.expect("read").expect("stored");
    assert_eq!(stored.status, PurchaseStatus::Canceled);

    let paid = open_stars(f, user, 3).await;
    credited(f, &paying(&paid), BONUS).await;
    assert!(!payments.cancel_purchase(paid.id).await.expect("cancel paid"));
    let stored = payments.purchase(paid.id).await.expect("read").expect("stored");
    assert_eq!(stored.status, PurchaseStatus::Paid, "a paid purchase stays paid");
    f.assert_invariants().await;
}

/// The poller's work: open purchases of the rail that have a provider payment id and were
/// created after the given time, oldest first, at most `limit`.
pub async fn open_purchases_are_the_pollers_work<F: PaymentsFixture>(f: &F) {
    let payments = f.payments();
    let user = user_with(f, 0).await;
    let now = Utc::now();
    let at = |hours: i64| now - Duration::hours(hours);
    let mut made = Vec::new();
    // (hours ago, rail, with a provider payment id, then: 0 open, 1 canceled, 2 paid)
    for (i, (hours, rail, with_id, then)) in [
        (4, Rail::YooKassa, true, 0),
        (3, Rail::YooKassa, true, 0),
        (2, Rail::YooKassa, true, 0),
        (1, Rail::YooKassa, true, 0),
        (1, Rail::YooKassa, false, 0),
        (2, Rail::YooKassa, true, 1),
        (2, Rail::YooKassa, true, 2),
        (2, Rail::Stars, true, 0),
    ]
    .into_iter()
    .enumerate()
    {
        let p =
            payments.open_purchase(&new_purchase(user, rail, "pack", 5, 500)).await.expect("open");
        if with_id {
            let id = format!("pay-{i}-{}", p.id);
            payments.set_provider_payment(p.id, &id, "https://pay.example/").await.expect("set");
        }
        match then {
            1 => assert!(payments.cancel_purchase(p.id).await.expect("cancel")),
            2 => {
                credited(f, &paying(&p), BONUS).await;
            }
            _ => {}
        }
        f.backdate_purchase(p.id, at(hours)).await;
        made.push(p.id);
    }
    let cutoff = now - Duration::minutes(210);
    let found: Vec<PurchaseId> = payments
        .open_purchases(Rail::YooKassa, cutoff, 10)
        .await
        .expect("list")
        .into_iter()
        .map(|p| p.id)
        .collect();
    assert_eq!(found, vec![made[1], made[2], made[3]], "open, with an id, newer, oldest first");
    let limited = payments.open_purchases(Rail::YooKassa, cutoff, 2).await.expect("list");
    assert_eq!(limited.iter().map(|p| p.id).collect::<Vec<_>>(), vec![made[1], made[2]]);
    let stars = payments.open_purchases(Rail::Stars, cutoff, 10).await.expect("list");
    assert_eq!(stars.iter().map(|p| p.id).collect::<Vec<_>>(), vec![made[7]]);
    assert!(payments.open_purchases(Rail::YooKassa, now, 10).await.expect("list").is_empty());
    let all = payments.open_purchases(Rail::YooKassa, at(5), 10).await.expect("list");
    assert_eq!(all.len(), 4);
    assert!(all.iter().all(|p| p.status == PurchaseStatus::Open));
    f.assert_invariants().await;
}

/// The tally counts credited charges since a moment by rail, pack and currency; flagged
/// charges are not counted.
pub async fn the_tally_counts_credited_charges<F: PaymentsFixture>(f: &F) {
    let payments = f.payments();
    let user = user_with(f, 0).await;
    let before = Utc::now() - Duration::seconds(5);
    let small = payments
        .open_purchase(&new_purchase(user, Rail::Stars, "pack10", 10, 100))
        .await
        .expect("open");
    let big = payments
        .open_purchase(&new_purchase(user, Rail::YooKassa, "pack50", 50, 49_000))
        .await
        .expect("open");
    credited(f, &paying(&small), BONUS).await;
    credited(f, &paying(&small), BONUS).await;
    credited(f, &paying(&big), BONUS).await;
    let flagged = Charge { amount: 1, ..paying(&big) };
    payments.record_charge(&flagged, credits(BONUS)).await.expect("flagged");
    let unknown = Charge { purchase_id: PurchaseId::new(), ..paying(&small) };
    payments.record_charge(&unknown, credits(BONUS)).await.expect("flagged");
    let tally = payments.tally_since(before).await.expect("tally");
    assert_eq!(
        tally,
        vec![
            PurchaseTally {
                rail: Rail::Stars,
                pack: pack("pack10"),
                currency: "XTR".to_owned(),
                count: 2,
                amount: 200,
            },
            PurchaseTally {
                rail: Rail::YooKassa,
                pack: pack("pack50"),
                currency: "RUB".to_owned(),
                count: 1,
                amount: 49_000,
            },
        ]
    );
    let later = Utc::now() + Duration::seconds(5);
    assert!(payments.tally_since(later).await.expect("tally").is_empty());
    f.assert_invariants().await;
}

/// The reconciliation cursor starts at 0, moves forward, never back, per rail.
pub async fn the_reconcile_cursor_never_moves_back<F: PaymentsFixture>(f: &F) {
    let payments = f.payments();
    assert_eq!(payments.reconcile_cursor(Rail::Stars).await.expect("read"), 0);
    payments.set_reconcile_cursor(Rail::Stars, 5).await.expect("set");
    assert_eq!(payments.reconcile_cursor(Rail::Stars).await.expect("read"), 5);
    payments.set_reconcile_cursor(Rail::Stars, 3).await.expect("set back");
    assert_eq!(payments.reconcile_cursor(Rail::Stars).await.expect("read"), 5, "never back");
    payments.set_reconcile_cursor(Rail::Stars, 9).await.expect("set");
    assert_eq!(payments.reconcile_cursor(Rail::Stars).await.expect("read"), 9);
    assert_eq!(payments.reconcile_cursor(Rail::YooKassa).await.expect("read"), 0, "per rail");
    let tasks: Vec<_> = (10..30)
        .map(|n| {
            let payments = f.payments().clone();
            tokio::spawn(async move { payments.set_reconcile_cursor(Rail::YooKassa, n).await })
        })
        .collect();
    for task in tasks {
        task.await.expect("task").expect("set");
    }
    assert_eq!(payments.reconcile_cursor(Rail::YooKassa).await.expect("read"), 29);
    f.assert_invariants().await;
}

/// After every kind of payment event — grants, purchases, a repeat, flagged charges, a
/// referral bonus, spending and refunds — each balance is its ledger's sum.
pub async fn the_ledger_sums_to_the_balance_after_everything<F: PaymentsFixture>(f: &F) {
    let payments = f.payments();
    let referrer = user_with(f, 2).await;
    let friend = user_with(f, 1).await;
    assert!(payments.record_referral(friend, referrer).await.expect("refer"));
    let first = open_stars(f, friend, 10).await;
    let charge = paying(&first);
    credited(f, &charge, BONUS).await;
    assert_eq!(
        payments.record_charge(&charge, credits(BONUS)).await.expect("repeat"),
        ChargeOutcome::AlreadyRecorded
    );
    let again = paying(&first);
    credited(f, &again, BONUS).await;
    payments
        .record_charge(&Charge { amount: 7, ..paying(&first) }, credits(BONUS))
        .await
        .expect("flagged");
    assert!(f.try_debit(friend, 15).await);
    payments.record_refund(Rail::Stars, &charge.charge_id).await.expect("refund");
    payments.record_refund(Rail::Stars, &again.charge_id).await.expect("refund");
    assert_eq!(balance(f, friend).await, 0, "21 in, 15 spent, 6 taken back");
    assert_eq!(balance(f, referrer).await, 2 + BONUS, "the bonus stays paid");
    assert_ledgers_sum(f, &[referrer, friend]).await;
    f.assert_invariants().await;
}
