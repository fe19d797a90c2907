//! Purchases of credit packs, the payments that pay them, refunds and referrals.
//!
//! Money is a database fact here: a payment is credited by [`Payments::record_charge`], which
//! writes the charge row (unique per rail and provider charge id) and its `purchase` ledger entry
//! in one transaction, so a redelivered update, a repeated notification, a reconciliation pass and
//! a second bot replica all meet the same unique row and credit once.

use super::AccountsError;
use crate::domain::{Credits, PackId, PurchaseId, Rail, UserId};
use chrono::{DateTime, Utc};

/// A purchase to open: the user chose a pack on a rail. The price is fixed here, from the
/// catalogue at that moment; a payment must match it to be credited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPurchase {
    pub id: PurchaseId,
    pub user_id: UserId,
    pub rail: Rail,
    pub pack: PackId,
    pub credits: Credits,
    /// In the rail's minor unit: whole Stars for `XTR`, kopecks for `RUB`. Always > 0.
    pub amount: i64,
    /// `XTR` or `RUB` ([`Rail::currency`]).
    pub currency: String,
}

/// Where a purchase stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PurchaseStatus {
    /// Waiting for a payment.
    Open,
    /// At least one payment for it was credited.
    Paid,
    /// The provider said it will never be paid (YooKassa `canceled`), or it expired unpaid.
    Canceled,
}

impl PurchaseStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PurchaseStatus::Open => "open",
            PurchaseStatus::Paid => "paid",
            PurchaseStatus::Canceled => "canceled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "open" => Some(PurchaseStatus::Open),
            "paid" => Some(PurchaseStatus::Paid),
            "canceled" => Some(PurchaseStatus::Canceled),
            _ => None,
        }
    }
}

/// A stored purchase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Purchase {
    pub id: PurchaseId,
    pub user_id: UserId,
    pub rail: Rail,
    pub pack: PackId,
    pub credits: Credits,
    pub amount: i64,
    pub currency: String,
    pub status: PurchaseStatus,
    /// The provider's payment id once one was created (YooKassa); `None` for Stars.
    pub provider_payment_id: Option<String>,
    /// Where the user pays (YooKassa's confirmation URL), once created.
    pub confirmation_url: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// A payment as the provider reports it (or as re-read from the provider: never from an
/// unauthenticated message body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charge {
    pub rail: Rail,
    /// Telegram's `telegram_payment_charge_id`, or YooKassa's payment id. At most 128 bytes.
    pub charge_id: String,
    /// The purchase the payment names (the invoice payload, or YooKassa's metadata).
    pub purchase_id: PurchaseId,
    /// Who paid.
    pub user_id: UserId,
    pub amount: i64,
    pub currency: String,
    /// How we learnt of it: `update` (successful_payment), `notification` (YooKassa),
    /// `reconciliation` (getStarTransactions) or `poll` (re-checking a pending purchase).
    pub source: ChargeSource,
}

impl Charge {
    /// Why this charge cannot be credited to `purchase` (the purchase it names, `None` when no
    /// such purchase exists), checked in this order: unknown purchase, other rail, other user,
    /// then amount or currency. `None` when it matches and is credited.
    pub fn mismatch_with(&self, purchase: Option<&Purchase>) -> Option<Mismatch> {
        let Some(purchase) = purchase else {
            return Some(Mismatch::UnknownPurchase);
        };
        if purchase.rail != self.rail {
            Some(Mismatch::OtherRail)
        } else if purchase.user_id != self.user_id {
            Some(Mismatch::OtherUser)
        } else if purchase.amount != self.amount || purchase.currency != self.currency {
            Some(Mismatch::Amount)
        } else {
            None
        }
    }
}

/// How a charge reached us; kept with the charge row for the operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChargeSource {
    Update,
    Notification,
    Reconciliation,
    Poll,
}

impl ChargeSource {
    pub fn as_str(self) -> &'static str {
        match self {
            ChargeSource::Update => "update",
            ChargeSource::Notification => "notification",
            ChargeSource::Reconciliation => "reconciliation",
            ChargeSource::Poll => "poll",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "update" => Some(ChargeSource::Update),
            "notification" => Some(ChargeSource::Notification),
            "reconciliation" => Some(ChargeSource::Reconciliation),
            "poll" => Some(ChargeSource::Poll),
            _ => None,
        }
    }
}

/// Why a charge could not be credited. The charge is kept, flagged, for an operator (and is
/// never credited later by a repeat of the same charge).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mismatch {
    /// No purchase with the named id.
    UnknownPurchase,
    /// The purchase is on another rail.
    OtherRail,
    /// The purchase belongs to another user than the payer.
    OtherUser,
    /// The amount or currency differs from the purchase's price.
    Amount,
}

impl Mismatch {
    pub fn as_str(self) -> &'static str {
        match self {
            Mismatch::UnknownPurchase => "unknown_purchase",
            Mismatch::OtherRail => "other_rail",
            Mismatch::OtherUser => "other_user",
            Mismatch::Amount => "amount",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "unknown_purchase" => Some(Mismatch::UnknownPurchase),
            "other_rail" => Some(Mismatch::OtherRail),
            "other_user" => Some(Mismatch::OtherUser),
            "amount" => Some(Mismatch::Amount),
            _ => None,
        }
    }
}

/// A referral bonus paid together with a credited charge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReferralPaid {
    pub referrer: UserId,
    pub bonus: Credits,
}

/// What [`Payments::record_charge`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChargeOutcome {
    /// Credited now: the `purchase` ledger entry was written with the charge row.
    Credited {
        user_id: UserId,
        pack: PackId,
        credits: Credits,
        /// The payer's balance after the credit.
        balance: Credits,
        /// The referrer's bonus, when this was the payer's first credited purchase and they
        /// were referred (paid in the same transaction, once per referred user, ever).
        referral: Option<ReferralPaid>,
    },
    /// This charge was recorded before (credited, flagged or refunded); nothing was written.
    AlreadyRecorded,
    /// The charge does not match an open or paid purchase; it is stored as flagged and nothing
    /// was credited.
    Flagged(Mismatch),
}

/// A recorded charge, as an operator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargeRecord {
    pub rail: Rail,
    pub charge_id: String,
    pub purchase_id: PurchaseId,
    pub user_id: UserId,
    pub amount: i64,
    pub currency: String,
    pub source: ChargeSource,
    /// Credits given for it (0 when flagged).
    pub credits: Credits,
    /// Set when the charge was flagged instead of credited.
    pub mismatch: Option<Mismatch>,
    /// When the payment was refunded and its credits taken back.
    pub refunded_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// Whether a charge can be refunded now (read before asking the provider to refund).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefundCheck {
    /// Credited, not refunded, and the user still holds the credits.
    Refundable {
        user_id: UserId,
        credits: Credits,
        amount: i64,
        currency: String,
    },
    /// The user spent part of the pack: refusing keeps the ledger whole (the policy: a refund
    /// takes back the whole pack or nothing).
    Spent {
        user_id: UserId,
        credits: Credits,
        balance: Credits,
    },
    AlreadyRefunded,
    /// A flagged charge: no credits were given; refund it at the provider by hand.
    NotCredited,
    Unknown,
}

/// What [`Payments::record_refund`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefundOutcome {
    /// The `purchase_refund` ledger entry is written. `debited` is the pack's credits, or the
    /// balance when the user spent credits between the check and the refund (`shortfall` is the
    /// difference, never taken: balances never go negative).
    Recorded {
        user_id: UserId,
        debited: Credits,
        shortfall: Credits,
        balance: Credits,
    },
    AlreadyRefunded,
    NotCredited,
    Unknown,
}

/// One user's referral figures for their account page.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReferralSummary {
    /// Users who started the bot with this user's link.
    pub invited: u64,
    /// Of those, users whose first purchase was credited (and earned the bonus).
    pub paid: u64,
}

/// Purchases credited since a moment, grouped for `/stats` and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurchaseTally {
    pub rail: Rail,
    pub pack: PackId,
    pub currency: String,
    /// Credited charges.
    pub count: u64,
    /// Their amounts summed, in the currency's minor unit.
    pub amount: i64,
}

/// Purchases, charges, refunds and referrals. Every implementation must pass the testkit's
/// payments conformance suite.
#[mockall::automock]
#[async_trait::async_trait]
pub trait Payments: Send + Sync {
    /// Stores a new open purchase. Opening the same id again returns the stored purchase
    /// unchanged (a retried tap never makes a second one). The user must exist.
    async fn open_purchase(&self, purchase: &NewPurchase) -> Result<Purchase, AccountsError>;

    async fn purchase(&self, id: PurchaseId) -> Result<Option<Purchase>, AccountsError>;

    /// Records the provider's payment id and confirmation URL (YooKassa) on an open purchase.
    /// Returns `false` when the purchase does not exist. Setting the same values again is a
    /// no-op; a purchase never changes to a different provider payment id.
    async fn set_provider_payment(
        &self,
        id: PurchaseId,
        provider_payment_id: &str,
        confirmation_url: &str,
    ) -> Result<bool, AccountsError>;

    /// Marks an open purchase canceled (the provider will never pay it). A paid purchase stays
    /// paid. Returns whether it changed.
    async fn cancel_purchase(&self, id: PurchaseId) -> Result<bool, AccountsError>;

    /// Credits a payment exactly once per `(rail, charge_id)`. In one transaction: the charge
    /// row (unique), the `purchase` ledger entry for the pack's credits, the purchase marked
    /// paid, and — when it is the payer's first credited charge and they were referred — the
    /// referrer's `referral` entry of `referral_bonus` (skipped when zero). A charge that does
    /// not match its purchase (unknown, other rail or user, different amount or currency) is
    /// stored flagged and credits nothing. A second payment of an already paid purchase (a
    /// re-opened invoice) is real money and is credited again under its own charge id.
    async fn record_charge(
        &self,
        charge: &Charge,
        referral_bonus: Credits,
    ) -> Result<ChargeOutcome, AccountsError>;

    /// The recorded charge, if any.
    async fn charge(
        &self,
        rail: Rail,
        charge_id: &str,
    ) -> Result<Option<ChargeRecord>, AccountsError>;

    /// Whether the charge can be refunded now; reads only.
    async fn refund_check(&self, rail: Rail, charge_id: &str)
        -> Result<RefundCheck, AccountsError>;

    /// Takes a refunded payment's credits back, once: the `purchase_refund` ledger entry and
    /// the charge marked refunded, in one transaction. Call it after the provider confirmed the
    /// refund; calling it again is [`RefundOutcome::AlreadyRefunded`].
    async fn record_refund(
        &self,
        rail: Rail,
        charge_id: &str,
    ) -> Result<RefundOutcome, AccountsError>;

    /// Open purchases on `rail` that have a provider payment id and were created after
    /// `created_after`, oldest first, at most `limit` (the pending-payment poller's work).
    async fn open_purchases(
        &self,
        rail: Rail,
        created_after: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Purchase>, AccountsError>;

    /// Records that `user` came with `referrer`'s link. Only once per user, never to oneself,
    /// only to an existing referrer, and only before the user's first credited purchase.
    /// Returns whether it was recorded.
    async fn record_referral(&self, user: UserId, referrer: UserId) -> Result<bool, AccountsError>;

    async fn referral_summary(&self, user: UserId) -> Result<ReferralSummary, AccountsError>;

    /// Credited charges since `since` (not counting flagged ones), by rail, pack and currency.
    async fn tally_since(&self, since: DateTime<Utc>) -> Result<Vec<PurchaseTally>, AccountsError>;

    /// The reconciliation position for a rail (how many provider transactions were fully
    /// read); 0 at first.
    async fn reconcile_cursor(&self, rail: Rail) -> Result<u64, AccountsError>;

    /// Moves the reconciliation position; it never moves back.
    async fn set_reconcile_cursor(&self, rail: Rail, position: u64) -> Result<(), AccountsError>;
}
