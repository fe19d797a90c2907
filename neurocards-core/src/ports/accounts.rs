//! Users, the credit ledger, consent, bans, and the products users save.

use crate::domain::{
    Credits, ImageMime, JobStatus, Language, LedgerReason, OrderId, ProductId, UserId,
};
use chrono::{DateTime, Utc};

/// A Telegram user as the bot first meets them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUser {
    pub id: UserId,
    pub username: Option<String>,
    pub first_name: Option<String>,
    pub language: Language,
}

/// A stored user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    pub username: Option<String>,
    pub first_name: Option<String>,
    pub language: Language,
    /// When the user accepted the terms; asked once.
    pub consent_at: Option<DateTime<Utc>>,
    pub banned: bool,
    /// Set when Telegram answered 403 "bot was blocked by the user".
    pub blocked_bot_at: Option<DateTime<Utc>>,
    /// The balance when the user was read (the ledger's sum at that moment).
    pub balance: Credits,
    pub created_at: DateTime<Utc>,
}

/// The longest ban reason kept (longer ones are cut at a character boundary).
pub const MAX_BAN_REASON_CHARS: usize = 500;

/// A ban reason as stored: trimmed, cut to [`MAX_BAN_REASON_CHARS`], `None` when empty.
pub fn ban_reason_to_store(reason: &str) -> Option<String> {
    let reason: String = reason.trim().chars().take(MAX_BAN_REASON_CHARS).collect();
    (!reason.is_empty()).then_some(reason)
}

/// One ledger entry. The ledger is append-only; the balance is the sum of `delta`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    pub delta: i64,
    pub reason: LedgerReason,
    pub order_id: Option<OrderId>,
    pub job_id: Option<crate::domain::JobId>,
    pub note: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// An order as the user's account page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderSummary {
    pub order_id: OrderId,
    pub template: String,
    pub created_at: DateTime<Utc>,
    pub charged: Credits,
    /// Jobs of the order by status.
    pub jobs: Vec<(JobStatus, u32)>,
}

/// Errors of the accounts store.
#[derive(Debug, thiserror::Error)]
pub enum AccountsError {
    #[error("user {0} not found")]
    UnknownUser(UserId),
    /// The database could not be reached or timed out: retrying later can help. A balance that
    /// cannot be read is this error, never a zero.
    #[error("accounts storage unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl AccountsError {
    /// Whether retrying the same call later can succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, AccountsError::Unavailable(_))
    }
}

/// Users and their credits.
#[mockall::automock]
#[async_trait::async_trait]
pub trait Accounts: Send + Sync {
    /// Creates the user on first contact (crediting `start_credits` once, ever, as a `welcome`
    /// ledger entry) or refreshes their username. Returns the user and whether it was created.
    async fn register(
        &self,
        user: &NewUser,
        start_credits: Credits,
    ) -> Result<(User, bool), AccountsError>;

    async fn user(&self, id: UserId) -> Result<Option<User>, AccountsError>;

    /// The balance: the sum of the user's ledger entries.
    async fn balance(&self, id: UserId) -> Result<Credits, AccountsError>;

    /// Adds credits as an admin `grant` with a note; returns the new balance. Any other reason
    /// is refused and writes nothing: bought credits, refunded packs and referral bonuses are
    /// written only with their payment, by [`Payments`](super::Payments).
    async fn credit(
        &self,
        id: UserId,
        amount: Credits,
        reason: LedgerReason,
        note: &str,
    ) -> Result<Credits, AccountsError>;

    /// Records consent to the terms now, if not recorded before (the first time is kept).
    async fn record_consent(&self, id: UserId) -> Result<(), AccountsError>;

    async fn set_language(&self, id: UserId, language: Language) -> Result<(), AccountsError>;

    /// Bans (keeping `reason`, at most [`MAX_BAN_REASON_CHARS`] characters, for admins) or
    /// unbans (clearing the reason); returns `false` when the user does not exist.
    async fn set_banned(
        &self,
        id: UserId,
        banned: bool,
        reason: &str,
    ) -> Result<bool, AccountsError>;

    /// Why the user was banned; `None` when not banned (or banned without a reason).
    async fn ban_reason(&self, id: UserId) -> Result<Option<String>, AccountsError>;

    /// Records that the user blocked the bot (or clears it when they come back).
    async fn set_bot_blocked(&self, id: UserId, blocked: bool) -> Result<(), AccountsError>;

    /// The user's most recent orders, newest first.
    async fn recent_orders(
        &self,
        id: UserId,
        limit: u32,
    ) -> Result<Vec<OrderSummary>, AccountsError>;

    /// The user's ledger, oldest first.
    async fn ledger(&self, id: UserId) -> Result<Vec<LedgerEntry>, AccountsError>;

    /// Ids of users who have not blocked the bot and are not banned, after `after` (paging).
    async fn reachable_users(
        &self,
        after: Option<UserId>,
        limit: u32,
    ) -> Result<Vec<UserId>, AccountsError>;
}

/// A product photo as Telegram holds it; re-fetchable by file id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhotoRef {
    pub telegram_file_id: String,
    pub mime: ImageMime,
}

/// A product to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewProduct {
    pub user_id: UserId,
    pub photo: Option<PhotoRef>,
    /// A marketplace link (Wildberries, Ozon, Yandex Market) given instead of or beside a photo.
    pub marketplace_url: Option<String>,
    pub description: String,
}

/// A stored product: what orders point to, reusable days later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    pub id: ProductId,
    pub user_id: UserId,
    pub photo: Option<PhotoRef>,
    pub marketplace_url: Option<String>,
    pub description: String,
    pub created_at: DateTime<Utc>,
}

/// Stored products.
#[mockall::automock]
#[async_trait::async_trait]
pub trait Products: Send + Sync {
    async fn create(&self, product: &NewProduct) -> Result<ProductId, AccountsError>;

    /// The product, if it exists and belongs to `owner`.
    async fn get(&self, id: ProductId, owner: UserId) -> Result<Option<Product>, AccountsError>;

    /// Updates the description (the user edited it).
    async fn set_description(
        &self,
        id: ProductId,
        owner: UserId,
        description: &str,
    ) -> Result<bool, AccountsError>;
}
