//! What every database-backed dialogue store shares: its error, and the rule that a stored
//! state which no longer parses counts as absent.

use super::state::State;

/// Why a database-backed dialogue store failed.
#[derive(Debug, thiserror::Error)]
pub enum DialogueStoreError {
    /// The database could not be reached or refused the query: retrying later can help.
    #[error("dialogue storage unavailable: {0}")]
    Database(#[from] sqlx::Error),
    /// A stored state does not parse (written by an incompatible version).
    #[error("stored dialogue state is unreadable: {0}")]
    Corrupt(#[from] serde_json::Error),
}

/// A stored state, or `None` (logged) when it no longer parses: the chat starts over at the
/// menu rather than the user being locked out.
pub(crate) fn readable_state(chat: i64, parsed: Result<State, serde_json::Error>) -> Option<State> {
    match parsed {
        Ok(state) => Some(state),
        Err(e) => {
            tracing::warn!(chat_id = chat, error = %e, "stored dialogue unreadable; reset");
            None
        }
    }
}
