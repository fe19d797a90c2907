//! "Only one process polls Telegram at a time", on either store.
//!
//! On PostgreSQL it is a session advisory lock on a dedicated connection: it goes with the
//! connection when the server restarts, and a standby takes it when the holder dies. The
//! embedded store serves exactly one process (the bot holds the store's file lock for its whole
//! life, see `main.rs`), so its polling lock is always held.

use neurocards_core::postgres::{discard_dead_idle, PollingLock};
use sqlx::PgPool;
use std::future::Future;
use std::time::Duration;

/// A way to take the polling lock.
#[async_trait::async_trait]
pub(crate) trait PollingLocks: Send + Sync {
    /// Takes the lock if it is free; `Ok(None)` when another process holds it.
    async fn try_acquire(&self) -> Result<Option<Box<dyn HeldLock>>, String>;

    /// Called after a held lock was lost, before it is taken again.
    async fn after_loss(&self) {}
}

/// A held polling lock.
#[async_trait::async_trait]
pub(crate) trait HeldLock: Send {
    /// Whether the lock is still held; `false` means: stop polling now.
    async fn is_held(&mut self) -> bool;

    /// Gives the lock back.
    async fn release(self: Box<Self>);
}

/// Waits for the lock, trying every `retry_every`; `None` when `stop` completes first. Errors
/// while waiting are logged and retried.
pub(crate) async fn acquire(
    locks: &dyn PollingLocks,
    retry_every: Duration,
    stop: impl Future<Output = ()>,
) -> Option<Box<dyn HeldLock>> {
    tokio::pin!(stop);
    let mut announced = false;
    loop {
        match locks.try_acquire().await {
            Ok(Some(lock)) => return Some(lock),
            Ok(None) if !announced => {
                tracing::info!("another process is polling Telegram; standing by");
                announced = true;
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "polling lock unavailable; retrying"),
        }
        tokio::select! {
            _ = &mut stop => return None,
            _ = tokio::time::sleep(retry_every) => {}
        }
    }
}

/// The PostgreSQL advisory lock.
pub(crate) struct PgPollingLocks(pub PgPool);

#[async_trait::async_trait]
impl PollingLocks for PgPollingLocks {
    async fn try_acquire(&self) -> Result<Option<Box<dyn HeldLock>>, String> {
        match PollingLock::try_acquire(&self.0).await {
            Ok(Some(lock)) => Ok(Some(Box::new(lock))),
            Ok(None) => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Sweeps the pool of the connections the server dropped.
    async fn after_loss(&self) {
        discard_dead_idle(&self.0).await;
    }
}

#[async_trait::async_trait]
impl HeldLock for PollingLock {
    async fn is_held(&mut self) -> bool {
        PollingLock::is_held(self).await
    }

    async fn release(self: Box<Self>) {
        PollingLock::release(*self).await;
    }
}

/// The embedded store's lock: the process already holds the store's file for its whole life.
pub(crate) struct SoleProcess;

struct SoleProcessLock;

#[async_trait::async_trait]
impl PollingLocks for SoleProcess {
    async fn try_acquire(&self) -> Result<Option<Box<dyn HeldLock>>, String> {
        Ok(Some(Box::new(SoleProcessLock)))
    }
}

#[async_trait::async_trait]
impl HeldLock for SoleProcessLock {
    async fn is_held(&mut self) -> bool {
        true
    }

    async fn release(self: Box<Self>) {}
}
