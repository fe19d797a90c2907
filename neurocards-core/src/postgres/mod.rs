//! PostgreSQL adapter.

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
