//! PostgreSQL adapter.

#[cfg(feature = "telegram")]
mod dialogues;
#[cfg(feature = "telegram")]
pub use dialogues::{DialogueStoreError, PgDialogueStorage};
