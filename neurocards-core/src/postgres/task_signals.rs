//! [`TaskSignals`] on PostgreSQL: a wake-up is a row of `task_wakeups` (job, task), stored only
//! when the job owns the task, announced with `NOTIFY neurocards_task_updates, <job id>`. One
//! `LISTEN` connection per process wakes every local waiter of that job; a missed notification
//! only delays the waiter until its next poll, because it re-reads the table when it wakes. After
//! a lost connection (a server restart) the listener reconnects every second until the server
//! answers, and wakes every waiter once it listens again.

use super::order_progress::store_error;
use crate::domain::{JobId, Lease};
use crate::ports::{
    PipelineStoreError, TaskSignals, WakeupOutcome, WakeupTask, MAX_PENDING_WAKEUPS,
};
use sqlx::postgres::PgListener;
use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

const CHANNEL: &str = "neurocards_task_updates";

/// Stores the wake-up when the job owns the task (it is queued or running and has this task
/// recorded, or none yet) and the job has fewer than the cap pending. `owned` and `recorded`
/// tell the three outcomes apart.
const RECORD: &str = "\
WITH owner AS ( \
    SELECT id FROM jobs \
    WHERE id = $1 AND state IN ('queued', 'running') \
      AND (provider_task_id = $2 OR provider_task_id IS NULL) \
), ins AS ( \
    INSERT INTO task_wakeups (job_id, task_id, key_id, model) \
    SELECT id, $2, $4, $5 FROM owner \
    WHERE (SELECT count(*) FROM task_wakeups WHERE job_id = $1) < $3 \
    ON CONFLICT (job_id, task_id) DO NOTHING \
    RETURNING job_id \
) \
SELECT EXISTS (SELECT 1 FROM owner), EXISTS (SELECT 1 FROM ins)";

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

    /// Consumes a pending wake-up of the job's task; `true` when there was one.
    async fn take(&self, job: JobId, task_id: &str) -> Result<bool, PipelineStoreError> {
        let done = sqlx::query("DELETE FROM task_wakeups WHERE job_id = $1 AND task_id = $2")
            .bind(job.get())
            .bind(task_id)
            .execute(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(done.rows_affected() > 0)
    }

    /// One attempt at [`TaskSignals::record_wakeup`].
    async fn record_once(
        &self,
        job: JobId,
        task: &WakeupTask,
    ) -> Result<WakeupOutcome, PipelineStoreError> {
        let mut tx = self.pool.begin().await.map_err(store_error)?;
        // Recorders of one job take turns: the cap's count below runs in a statement that
        // starts after this lock, so it sees every wake-up the previous holder committed.
        // Without it, concurrent callbacks each count the same rows and all insert.
        sqlx::query("SELECT 1 FROM jobs WHERE id = $1 FOR NO KEY UPDATE")
            .bind(job.get())
            .fetch_optional(&mut *tx)
            .await
            .map_err(store_error)?;
        let (owned, recorded): (bool, bool) = sqlx::query_as(RECORD)
            .bind(job.get())
            .bind(&task.task_id)
            .bind(i64::from(MAX_PENDING_WAKEUPS))
            .bind(task.key_id.as_deref())
            .bind(task.model.as_deref())
            .fetch_one(&mut *tx)
            .await
            .map_err(store_error)?;
        if recorded {
            // Delivered at commit, when the row is visible to the woken worker.
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(CHANNEL)
                .bind(job.get().to_string())
                .execute(&mut *tx)
                .await
                .map_err(store_error)?;
        }
        tx.commit().await.map_err(store_error)?;
        if fastrand::u8(..) == 0 {
            // A wake-up nobody consumed (its job finished by polling) is only clutter.
            let _ = sqlx::query(
                "DELETE FROM task_wakeups WHERE received_at < now() - interval '1 day'",
            )
            .execute(&self.pool)
            .await;
        }
        Ok(match (owned, recorded) {
            (_, true) => WakeupOutcome::Recorded,
            (true, false) => WakeupOutcome::Pending,
            (false, false) => WakeupOutcome::NotOwned,
        })
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

/// Removes a job's waiter entry when its last local waiter leaves.
struct WaiterGuard<'a> {
    waiters: &'a Waiters,
    key: &'a str,
}

impl Drop for WaiterGuard<'_> {
    fn drop(&mut self) {
        let mut waiters = locked(self.waiters);
        if waiters.get(self.key).is_some_and(|n| Arc::strong_count(n) <= 1) {
            waiters.remove(self.key);
        }
    }
}

#[async_trait::async_trait]
impl TaskSignals for PgTaskSignals {
    async fn record_wakeup(
        &self,
        job: JobId,
        task: &WakeupTask,
    ) -> Result<WakeupOutcome, PipelineStoreError> {
        match self.record_once(job, task).await {
            // A callback comes once: one lost to a pooled connection the server dropped (a
            // restart) would leave the job waiting for it. Sweep the dead connections and store
            // it once more (storing is idempotent).
            Err(PipelineStoreError::Unavailable(e)) => {
                tracing::warn!(job_id = %job, error = %e, "wake-up not stored; retrying on a live connection");
                super::discard_dead_idle(&self.pool).await;
                self.record_once(job, task).await
            }
            other => other,
        }
    }

    async fn wait_wakeup(
        &self,
        job: JobId,
        task_id: &str,
        timeout: Duration,
    ) -> Result<bool, PipelineStoreError> {
        self.ensure_listener();
        let deadline = tokio::time::Instant::now() + timeout;
        let key = job.get().to_string();
        let notify = Arc::clone(locked(&self.waiters).entry(key.clone()).or_default());
        let _guard = WaiterGuard { waiters: &self.waiters, key: &key };
        loop {
            // Registered before reading, so a wake-up stored after the read still wakes us.
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.take(job, task_id).await? {
                return Ok(true);
            }
            // A wake-up without a row (the listener reconnected) just waits on.
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Ok(false);
            }
        }
    }

    async fn wakeup_tasks(&self, job: JobId) -> Result<Vec<WakeupTask>, PipelineStoreError> {
        let rows: Vec<(String, Option<String>, Option<String>)> = sqlx::query_as(
            "SELECT task_id, key_id, model FROM task_wakeups WHERE job_id = $1 \
             ORDER BY received_at, task_id",
        )
        .bind(job.get())
        .fetch_all(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(rows
            .into_iter()
            .map(|(task_id, key_id, model)| WakeupTask { task_id, key_id, model })
            .collect())
    }

    async fn abandon_task(&self, lease: Lease) -> Result<(), PipelineStoreError> {
        // The job's pending wake-ups named the abandoned task (or an orphan of it): gone too.
        let (done,): (i64,) = sqlx::query_as(
            "WITH j AS ( \
                 UPDATE jobs SET provider_task_id = NULL, provider_model = NULL, \
                        provider_key_id = NULL, provider_submitted_at = NULL, \
                        current_step = CASE WHEN current_step IN ('submit', 'wait') \
                                            THEN NULL ELSE current_step END \
                 WHERE id = $1 AND lease_token = $2 AND state = 'running' \
                 RETURNING id \
             ), gone AS ( \
                 DELETE FROM task_wakeups w USING j WHERE w.job_id = j.id \
             ) \
             SELECT count(*) FROM j",
        )
        .bind(lease.job_id.get())
        .bind(lease.token.0)
        .fetch_one(&self.pool)
        .await
        .map_err(store_error)?;
        if done == 0 {
            return Err(PipelineStoreError::LeaseLost(lease.job_id));
        }
        Ok(())
    }
}
