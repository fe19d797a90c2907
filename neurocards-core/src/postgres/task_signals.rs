//! [`TaskSignals`] on PostgreSQL: callbacks are rows of `provider_callbacks` (first final
//! state wins) announced with `NOTIFY neurocards_task_updates, <task_id>`. One `LISTEN`
//! connection per process wakes every local waiter of that task; a missed notification only
//! delays the waiter until its next poll, because it re-reads the table when it wakes. After a
//! lost connection (a server restart) the listener reconnects every second until the server
//! answers, and wakes every waiter once it listens again.

use super::order_progress::store_error;
use crate::domain::{ErrorClass, Lease};
use crate::ports::{PipelineStoreError, ProviderError, TaskSignals, TaskState, TaskUpdate};
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgListener;
use sqlx::{PgPool, Row};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

const CHANNEL: &str = "neurocards_task_updates";

/// A final task state as stored in `provider_callbacks.state`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
enum StoredState {
    Succeeded { video_urls: Vec<String> },
    Failed { class: ErrorClass, message: String, code: Option<String>, retry_after_ms: Option<u64> },
}

impl StoredState {
    fn from_state(state: &TaskState) -> Option<Self> {
        match state {
            TaskState::Pending { .. } => None,
            TaskState::Succeeded { video_urls } => {
                Some(StoredState::Succeeded { video_urls: video_urls.clone() })
            }
            TaskState::Failed(e) => Some(StoredState::Failed {
                class: e.class,
                message: e.message.clone(),
                code: e.code.clone(),
                retry_after_ms: e.retry_after.map(|d| d.as_millis() as u64),
            }),
        }
    }

    fn into_state(self) -> TaskState {
        match self {
            StoredState::Succeeded { video_urls } => TaskState::Succeeded { video_urls },
            StoredState::Failed { class, message, code, retry_after_ms } => {
                TaskState::Failed(ProviderError {
                    class,
                    message,
                    code,
                    retry_after: retry_after_ms.map(Duration::from_millis),
                })
            }
        }
    }
}

type Waiters = Arc<Mutex<HashMap<String, Arc<Notify>>>>;

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The PostgreSQL [`TaskSignals`]. Its listener starts with the first wait and stops when the
/// value is dropped. The listener needs a session-level `LISTEN`, so it cannot go through
/// PgBouncer in transaction mode.
#[derive(Debug)]
pub struct PgTaskSignals {
    pool: PgPool,
    waiters: Waiters,
    listener: Mutex<Option<JoinHandle<()>>>,
}

impl PgTaskSignals {
    pub fn new(pool: PgPool) -> Self {
        Self { pool, waiters: Arc::default(), listener: Mutex::new(None) }
    }

    fn ensure_listener(&self) {
        let mut listener = locked(&self.listener);
        if listener.is_none() {
            let handle = tokio::spawn(listen(self.pool.clone(), Arc::clone(&self.waiters)));
            *listener = Some(handle);
        }
    }

    async fn stored(&self, task_id: &str) -> Result<Option<TaskState>, PipelineStoreError> {
        let row = sqlx::query("SELECT state FROM provider_callbacks WHERE task_id = $1")
            .bind(task_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(store_error)?;
        let Some(row) = row else { return Ok(None) };
        let value: serde_json::Value = row.try_get("state").map_err(store_error)?;
        let stored: StoredState = serde_json::from_value(value)
            .map_err(|e| PipelineStoreError::Unexpected(anyhow::Error::new(e)))?;
        Ok(Some(stored.into_state()))
    }
}

impl Drop for PgTaskSignals {
    fn drop(&mut self) {
        if let Some(handle) = locked(&self.listener).take() {
            handle.abort();
        }
    }
}

async fn listen(pool: PgPool, waiters: Waiters) {
    let wake_all = || {
        for n in locked(&waiters).values() {
            n.notify_waiters();
        }
    };
    loop {
        match PgListener::connect_with(&pool).await {
            Ok(mut listener) => {
                // A lost connection ends this session instead of sqlx reconnecting inside
                // `try_recv`: the pool is swept of the connections the server dropped with it,
                // and waiters are woken once the new connection listens, not before.
                listener.eager_reconnect(false);
                match listener.listen(CHANNEL).await {
                    Ok(()) => {
                        // Whatever was sent while we were not listening is lost: let waiters look.
                        wake_all();
                        loop {
                            match listener.try_recv().await {
                                Ok(Some(n)) => {
                                    if let Some(w) = locked(&waiters).get(n.payload()) {
                                        w.notify_waiters();
                                    }
                                }
                                Ok(None) => {
                                    tracing::warn!(
                                        "callback listener lost its connection; reconnecting"
                                    );
                                    break;
                                }
                                Err(e) => {
                                    tracing::warn!(error = %e, "callback listener failed; reconnecting");
                                    break;
                                }
                            }
                        }
                        // The server dropped us, most likely every other connection too.
                        super::discard_dead_idle(&pool).await;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "callback listener cannot LISTEN; retrying")
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "callback listener cannot connect; retrying"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Removes a task's waiter entry when its last local waiter leaves.
struct WaiterGuard<'a> {
    waiters: &'a Waiters,
    task_id: &'a str,
}

impl Drop for WaiterGuard<'_> {
    fn drop(&mut self) {
        let mut waiters = locked(self.waiters);
        if waiters.get(self.task_id).is_some_and(|n| Arc::strong_count(n) <= 1) {
            waiters.remove(self.task_id);
        }
    }
}

#[async_trait::async_trait]
impl TaskSignals for PgTaskSignals {
    async fn record_update(&self, update: &TaskUpdate) -> Result<bool, PipelineStoreError> {
        let Some(stored) = StoredState::from_state(&update.state) else {
            return Ok(false);
        };
        let value = serde_json::to_value(&stored)
            .map_err(|e| PipelineStoreError::Unexpected(anyhow::Error::new(e)))?;
        let row = sqlx::query(
            "WITH ins AS ( \
                 INSERT INTO provider_callbacks (task_id, state) VALUES ($1, $2) \
                 ON CONFLICT (task_id) DO NOTHING RETURNING task_id \
             ) \
             SELECT pg_notify($3, task_id) FROM ins",
        )
        .bind(&update.task_id)
        .bind(value)
        .bind(CHANNEL)
        .fetch_optional(&self.pool)
        .await
        .map_err(store_error)?;
        if fastrand::u8(..) == 0 {
            // Results expire at the provider after a day; old rows are only history.
            let _ = sqlx::query(
                "DELETE FROM provider_callbacks WHERE received_at < now() - interval '7 days'",
            )
            .execute(&self.pool)
            .await;
        }
        Ok(row.is_some())
    }

    async fn wait_update(
        &self,
        task_id: &str,
        timeout: Duration,
    ) -> Result<Option<TaskState>, PipelineStoreError> {
        self.ensure_listener();
        let deadline = tokio::time::Instant::now() + timeout;
        let notify = Arc::clone(locked(&self.waiters).entry(task_id.to_owned()).or_default());
        let _guard = WaiterGuard { waiters: &self.waiters, task_id };
        loop {
            // Registered before reading, so an update stored after the read still wakes us.
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(state) = self.stored(task_id).await? {
                return Ok(Some(state));
            }
            // A wake-up without a row (the listener reconnected) just waits on.
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Ok(None);
            }
        }
    }

    async fn abandon_task(&self, lease: Lease) -> Result<(), PipelineStoreError> {
        let done = sqlx::query(
            "UPDATE jobs SET provider_task_id = NULL, provider_model = NULL, \
                    provider_key_id = NULL, provider_submitted_at = NULL \
             WHERE id = $1 AND lease_token = $2 AND state = 'running'",
        )
        .bind(lease.job_id.get())
        .bind(lease.token.0)
        .execute(&self.pool)
        .await
        .map_err(store_error)?;
        if done.rows_affected() == 0 {
            return Err(PipelineStoreError::LeaseLost(lease.job_id));
        }
        Ok(())
    }
}
