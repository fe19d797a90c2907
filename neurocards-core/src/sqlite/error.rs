//! Errors of the embedded store, and the mapping of sqlx's SQLite errors into the ports'
//! errors: a busy or locked database is "unavailable" (retrying later can help), everything
//! else is unexpected.

use crate::ports::{AccountsError, PipelineStoreError, QueueError};

/// Why the store could not be opened or migrated.
#[derive(Debug, thiserror::Error)]
pub enum SqliteError {
    /// The location is not a file path or `sqlite://` URL the store accepts.
    #[error("invalid SQLite location: {0}")]
    InvalidLocation(String),
    /// The directory of the file could not be created.
    #[error("cannot create the data directory {dir}: {source}")]
    Directory {
        dir: String,
        #[source]
        source: std::io::Error,
    },
    /// The file could not be opened or created (permissions, a full disk, not a database).
    #[error("cannot open the SQLite store {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: sqlx::Error,
    },
    /// A migration failed; the schema is left as it was before that migration.
    #[error("SQLite migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
}

/// Whether the error means "try again later": the file is locked by another process beyond the
/// busy timeout, the disk is full, or the pool could not hand out a connection in time.
pub(crate) fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        // SQLITE_BUSY (5), SQLITE_LOCKED (6), SQLITE_FULL (13), SQLITE_IOERR (10) and their
        // extended codes (the primary code is the low byte).
        sqlx::Error::Database(db) => db
            .code()
            .and_then(|c| c.parse::<i64>().ok())
            .is_some_and(|c| matches!(c & 0xff, 5 | 6 | 10 | 13)),
        _ => false,
    }
}

/// The queue port's error for `e`.
pub(crate) fn queue_error(e: sqlx::Error) -> QueueError {
    if is_unavailable(&e) {
        QueueError::Unavailable(format!("sqlite: {e}"))
    } else {
        QueueError::Unexpected(anyhow::Error::new(e).context("sqlite queue"))
    }
}

/// The accounts port's error for `e`.
pub(crate) fn accounts_error(e: sqlx::Error) -> AccountsError {
    if is_unavailable(&e) {
        AccountsError::Unavailable(format!("sqlite: {e}"))
    } else {
        AccountsError::Unexpected(anyhow::Error::new(e).context("sqlite accounts"))
    }
}

/// The pipeline stores' error for `e`.
pub(crate) fn pipeline_store_error(e: sqlx::Error) -> PipelineStoreError {
    if is_unavailable(&e) {
        PipelineStoreError::Unavailable(format!("sqlite: {e}"))
    } else {
        PipelineStoreError::Unexpected(anyhow::Error::new(e).context("sqlite pipeline store"))
    }
}

/// The key store's error for `e`.
pub(crate) fn key_store_error(e: sqlx::Error) -> crate::ports::KeyStoreError {
    if is_unavailable(&e) {
        crate::ports::KeyStoreError::Unavailable(format!("sqlite: {e}"))
    } else {
        crate::ports::KeyStoreError::Unexpected(anyhow::Error::new(e).context("sqlite key budgets"))
    }
}
