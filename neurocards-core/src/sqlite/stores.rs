//! The storage port bundles on the embedded store.

use super::{
    SqliteAccounts, SqliteJobQueue, SqliteKeyBudgets, SqliteOrderProgress, SqlitePayments,
    SqliteProducts, SqliteStore, SqliteTaskSignals,
};
use crate::queue_config::QueueConfig;
use crate::stores::Stores;
use std::sync::Arc;

/// Every storage port on the embedded store, with the queue configured by `config`. Adapters
/// built from clones of one [`SqliteStore`] share its in-process wake-ups, so the bot's callback
/// route and the pipeline reach each other whichever bundle each was given.
pub fn stores(store: &SqliteStore, config: QueueConfig) -> Stores {
    Stores {
        queue: Arc::new(SqliteJobQueue::new(store, config)),
        accounts: Arc::new(SqliteAccounts::new(store)),
        products: Arc::new(SqliteProducts::new(store)),
        progress: Arc::new(SqliteOrderProgress::new(store)),
        signals: Arc::new(SqliteTaskSignals::new(store)),
        payments: Arc::new(SqlitePayments::new(store)),
        keys: Arc::new(SqliteKeyBudgets::new(store)),
    }
}

/// The bot's own storage ports on the embedded store.
#[cfg(feature = "telegram")]
pub fn bot_stores(store: &SqliteStore) -> crate::stores::BotStores {
    use super::{
        SqliteBotQueries, SqliteBroadcasts, SqliteDialogueStorage, SqliteUpdateClaims,
        SqliteUsageQuota,
    };
    let queries = Arc::new(SqliteBotQueries::new(store));
    crate::stores::BotStores {
        dialogues: SqliteDialogueStorage::erased(store),
        sessions: Arc::new(SqliteDialogueStorage::new(store)),
        stats: queries.clone(),
        history: queries,
        update_claims: Arc::new(SqliteUpdateClaims::new(store)),
        usage: Arc::new(SqliteUsageQuota::new(store)),
        broadcasts: Arc::new(SqliteBroadcasts::new(store)),
    }
}
