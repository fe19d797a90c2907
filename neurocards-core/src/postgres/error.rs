//! Mapping sqlx errors into the ports' errors: connection trouble and timeouts are
//! "unavailable" (retrying later can help), everything else is unexpected.

use crate::ports::{AccountsError, QueueError};

/// Whether the error is about reaching the database rather than about the query.
pub(crate) fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            // 08: connection exception; 53: insufficient resources; 57014: statement timeout;
            // 57P01..03: server shutting down; 40001/40P01: serialization failure, deadlock.
            code.starts_with("08")
                || code.starts_with("53")
                || matches!(
                    code.as_ref(),
                    "57014" | "57P01" | "57P02" | "57P03" | "40001" | "40P01"
                )
        }),
        _ => false,
    }
}

/// The SQLSTATE of a database error, if it is one.
pub(crate) fn sqlstate(e: &sqlx::Error) -> Option<String> {
    match e {
        sqlx::Error::Database(db) => db.code().map(|c| c.into_owned()),
        _ => None,
    }
}

impl From<sqlx::Error> for QueueError {
    fn from(e: sqlx::Error) -> Self {
        if is_unavailable(&e) {
            QueueError::Unavailable(format!("postgres: {e}"))
        } else {
            QueueError::Unexpected(anyhow::Error::new(e).context("postgres queue"))
        }
    }
}

impl From<sqlx::Error> for AccountsError {
    fn from(e: sqlx::Error) -> Self {
        if is_unavailable(&e) {
            AccountsError::Unavailable(format!("postgres: {e}"))
        } else {
            AccountsError::Unexpected(anyhow::Error::new(e).context("postgres accounts"))
        }
    }
}
