//! The storage ports a host needs, bundled: built on PostgreSQL by
//! [`postgres::stores`](crate::postgres::stores) or on the embedded store by
//! [`sqlite::stores`](crate::sqlite::stores). Services take the ports, never a backend, so the
//! same bot, pipeline and admin commands run on either.

use crate::ports::{
    Accounts, JobQueue, KeyBudgets, OrderProgressStore, Payments, Products, TaskSignals,
};
use std::sync::Arc;

/// The ports every process uses: the queue, accounts and products, the pipeline's own state
/// (order progress, provider task wake-ups), payments and the provider keys' shared state. All on one database, so that one
/// transaction can cover an order, its jobs and its ledger charge, or a payment and its credit.
#[derive(Clone)]
pub struct Stores {
    pub queue: Arc<dyn JobQueue>,
    pub accounts: Arc<dyn Accounts>,
    pub products: Arc<dyn Products>,
    pub progress: Arc<dyn OrderProgressStore>,
    pub signals: Arc<dyn TaskSignals>,
    pub payments: Arc<dyn Payments>,
    /// The provider keys' shared budgets, cool-downs, blocks and balances.
    pub keys: Arc<dyn KeyBudgets>,
}

impl std::fmt::Debug for Stores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stores").finish_non_exhaustive()
    }
}

/// The ports only the bot uses: dialogue state, the admin's statistics and users' order
/// history, the once-per-update claims, the per-user usage quota and the admin's broadcasts.
#[cfg(feature = "telegram")]
#[derive(Clone)]
pub struct BotStores {
    pub dialogues: Arc<crate::conversation::DialogueStorage>,
    pub sessions: Arc<dyn crate::conversation::SessionReader>,
    pub stats: Arc<dyn crate::conversation::StatsSource>,
    pub history: Arc<dyn crate::conversation::OrderHistory>,
    pub update_claims: Arc<dyn crate::conversation::UpdateClaims>,
    pub usage: Arc<dyn crate::conversation::UsageQuota>,
    pub broadcasts: Arc<dyn crate::conversation::broadcast::BroadcastStore>,
}

#[cfg(feature = "telegram")]
impl std::fmt::Debug for BotStores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BotStores").finish_non_exhaustive()
    }
}
