//! What `/readyz` answers for a bot process: not ready while it is not serving Telegram updates
//! (a poller without the polling lock, a webhook not yet registered), nor while its database
//! does not answer.

use super::Readiness;
use std::sync::{Arc, Mutex};

/// Whether this process serves Telegram updates right now. Whoever runs the dispatcher or the
/// webhook sets it; every clone shares one state.
#[derive(Debug, Clone)]
pub struct ServingStatus {
    not_serving: Arc<Mutex<Option<String>>>,
}

impl ServingStatus {
    /// Not serving yet, for `reason` (short and secret-free: `/readyz` shows it).
    pub fn starting(reason: &str) -> Self {
        Self { not_serving: Arc::new(Mutex::new(Some(reason.to_owned()))) }
    }

    /// Updates are being served.
    pub fn serving(&self) {
        *self.lock() = None;
    }

    /// Updates are not being served, for `reason` (short and secret-free).
    pub fn not_serving(&self, reason: &str) {
        *self.lock() = Some(reason.to_owned());
    }

    /// `None` while serving; otherwise why not.
    pub fn reason(&self) -> Option<String> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        self.not_serving.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A bot process's readiness: serving updates, and the database answering.
pub struct ServingReadiness {
    pub serving: ServingStatus,
    pub database: Arc<dyn Readiness>,
}

impl std::fmt::Debug for ServingReadiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServingReadiness").field("serving", &self.serving).finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl Readiness for ServingReadiness {
    async fn check(&self) -> Result<(), String> {
        if let Some(reason) = self.serving.reason() {
            return Err(reason);
        }
        self.database.check().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Database(Result<(), String>);

    #[async_trait::async_trait]
    impl Readiness for Database {
        async fn check(&self) -> Result<(), String> {
            self.0.clone()
        }
    }

    #[tokio::test]
    async fn ready_only_while_serving_with_the_database_answering() {
        let serving = ServingStatus::starting("waiting for the polling lock");
        let ready =
            ServingReadiness { serving: serving.clone(), database: Arc::new(Database(Ok(()))) };
        assert_eq!(ready.check().await, Err("waiting for the polling lock".to_owned()));
        serving.serving();
        assert_eq!(ready.check().await, Ok(()));
        serving.not_serving("polling lock lost");
        assert_eq!(ready.check().await, Err("polling lock lost".to_owned()));

        serving.serving();
        let down = ServingReadiness {
            serving,
            database: Arc::new(Database(Err("database unreachable".to_owned()))),
        };
        assert_eq!(down.check().await, Err("database unreachable".to_owned()));
    }
}
