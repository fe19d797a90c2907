//! PostgreSQL adapter: the [`JobQueue`](crate::ports::JobQueue), [`Accounts`](crate::ports::Accounts)
//! and [`Products`](crate::ports::Products) ports on one database.
//!
//! The schema lives in the workspace's `migrations/`; [`migrate`] applies it and both binaries
//! call it at start. Every query is a static SQL string run with sqlx's runtime API.

mod accounts;
mod codec;
mod error;
mod order_progress;
mod products;
mod queue;
mod task_signals;

pub use accounts::PgAccounts;
pub use order_progress::PgOrderProgress;
pub use products::PgProducts;
pub use queue::{PgJobQueue, PgQueueConfig};
pub use task_signals::PgTaskSignals;

#[cfg(feature = "telegram")]
mod dialogues;
#[cfg(feature = "telegram")]
pub use dialogues::{DialogueStoreError, PgDialogueStorage};

mod polling_lock;
pub use polling_lock::{PollingLock, POLLING_LOCK_KEY};

#[cfg(feature = "telegram")]
mod bot_queries;
#[cfg(feature = "telegram")]
pub use bot_queries::PgBotQueries;

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
    PgPoolOptions::new()
        .max_connections(max_connections.max(1))
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options)
        .await
        .map_err(ConnectError::Unreachable)
}

/// Applies the workspace's migrations that are not applied yet. Safe to run from several
/// processes at once (sqlx takes an advisory lock).
pub async fn migrate(pool: &PgPool) -> Result<(), ConnectError> {
    sqlx::migrate!("../migrations").run(pool).await?;
    Ok(())
}
