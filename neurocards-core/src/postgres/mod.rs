//! PostgreSQL adapter: the [`JobQueue`](crate::ports::JobQueue), [`Accounts`](crate::ports::Accounts),
//! [`Products`](crate::ports::Products) and [`Payments`](crate::ports::Payments) ports on one
//! database.
//!
//! The schema lives in the workspace's `migrations/`; [`migrate`] applies it and both binaries
//! call it at start. Every query is a static SQL string run with sqlx's runtime API.

mod accounts;
mod codec;
mod error;
mod key_budgets;
mod order_progress;
mod payments;
mod products;
mod queue;
mod task_signals;

pub use accounts::PgAccounts;
pub use key_budgets::PgKeyBudgets;
pub use order_progress::PgOrderProgress;
pub use payments::PgPayments;
pub use products::PgProducts;
pub use queue::{PgJobQueue, QueueConfig};
pub use task_signals::PgTaskSignals;

#[cfg(feature = "telegram")]
mod dialogues;
/// The dialogue store's error, shared with the embedded store.
#[cfg(feature = "telegram")]
pub use crate::conversation::DialogueStoreError;
#[cfg(feature = "telegram")]
pub use dialogues::PgDialogueStorage;

mod polling_lock;
pub use polling_lock::{PollingLock, POLLING_LOCK_KEY};

mod dead_connections;
pub use dead_connections::discard_dead_idle;

#[cfg(test)]
mod test_db;

#[cfg(feature = "telegram")]
mod bot_queries;
#[cfg(feature = "telegram")]
pub use bot_queries::PgBotQueries;

#[cfg(feature = "telegram")]
mod update_claims;
#[cfg(feature = "telegram")]
pub use update_claims::{PgUpdateClaims, PgUsageQuota};

#[cfg(feature = "telegram")]
mod broadcasts;
#[cfg(feature = "telegram")]
pub use broadcasts::PgBroadcasts;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use std::str::FromStr;
use std::time::Duration;

/// Why the database could not be opened or migrated.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// `DATABASE_URL` is not a valid PostgreSQL URL; retrying cannot help.
    #[error("invalid database URL: {0}")]
    InvalidUrl(String),
    /// The server could not be reached or refused the connection; retrying later can help.
    #[error("cannot connect to the database: {0}")]
    Unreachable(#[source] sqlx::Error),
    /// A migration failed; the schema is left as it was before that migration.
    #[error("database migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
}

/// Opens a pool of at most `max_connections` connections and checks that the server answers.
///
/// Every session gets `idle_in_transaction_session_timeout` (so a stuck transaction cannot hold
/// queue rows or the vacuum horizon for long) and a `statement_timeout`.
pub async fn connect(url: &str, max_connections: u32) -> Result<PgPool, ConnectError> {
    let options = PgConnectOptions::from_str(url)
        // The URL may carry a password: report only that it is malformed.
        .map_err(|_| ConnectError::InvalidUrl("cannot parse the postgres:// URL".to_owned()))?
        .application_name("neurocards")
        .options([("idle_in_transaction_session_timeout", "30s"), ("statement_timeout", "30s")]);
    pool_options(max_connections).connect_with(options).await.map_err(ConnectError::Unreachable)
}

/// The pool settings [`connect`] uses, for hosts that build their own connect options.
///
/// - At most `max_connections` (at least 1); waiting for a free connection gives up after
///   10 s.
/// - A connection is not pinged before each use. The ping is a full round trip, as costly as
///   the query it guards, and it cannot prevent the failure it looks for (the server may go
///   away right after it). A connection the server closed fails its next query with an error
///   every caller already handles — the bot answers "try again", the worker retries the step
///   — and the pool then replaces it.
pub fn pool_options(max_connections: u32) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(max_connections.max(1))
        .acquire_timeout(Duration::from_secs(10))
        .test_before_acquire(false)
}

/// Applies the workspace's migrations that are not applied yet. Safe to run from several
/// processes at once (sqlx takes an advisory lock).
pub async fn migrate(pool: &PgPool) -> Result<(), ConnectError> {
    sqlx::migrate!("../migrations/postgres").run(pool).await?;
    Ok(())
}

/// Every storage port on PostgreSQL, over `pool`, with the queue configured by `config`.
pub fn stores(pool: &PgPool, config: QueueConfig) -> crate::stores::Stores {
    crate::stores::Stores {
        queue: std::sync::Arc::new(PgJobQueue::new(pool.clone(), config)),
        accounts: std::sync::Arc::new(PgAccounts::new(pool.clone())),
        products: std::sync::Arc::new(PgProducts::new(pool.clone())),
        progress: std::sync::Arc::new(PgOrderProgress::new(pool.clone())),
        signals: std::sync::Arc::new(PgTaskSignals::new(pool.clone())),
        payments: std::sync::Arc::new(PgPayments::new(pool.clone())),
        keys: std::sync::Arc::new(PgKeyBudgets::new(pool.clone())),
    }
}

/// The bot's own storage ports on PostgreSQL, over `pool`.
#[cfg(feature = "telegram")]
pub fn bot_stores(pool: &PgPool) -> crate::stores::BotStores {
    use std::sync::Arc;
    let queries = Arc::new(PgBotQueries::new(pool.clone()));
    crate::stores::BotStores {
        dialogues: PgDialogueStorage::erased(pool.clone()),
        sessions: Arc::new(PgDialogueStorage::new(pool.clone())),
        stats: queries.clone(),
        history: queries,
        update_claims: Arc::new(PgUpdateClaims::new(pool.clone())),
        usage: Arc::new(PgUsageQuota::new(pool.clone())),
        broadcasts: Arc::new(PgBroadcasts::new(pool.clone())),
    }
}
