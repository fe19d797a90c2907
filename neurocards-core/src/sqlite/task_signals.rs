//! [`TaskSignals`] on the embedded store: a wake-up is a row of `task_wakeups` (job, task),
//! stored only when the job owns the task, announced through the store's in-process
//! [`Wakeups`](super::Wakeups). Every waiter registers for the notification before it looks
//! for its row, and looks again after each notification, so a wake-up stored before the wait
//! or between the look and the wait is never missed.

use super::error::pipeline_store_error;
use super::time::now_ms;
use super::SqliteStore;
use crate::domain::{JobId, Lease};
use crate::ports::{
    PipelineStoreError, TaskSignals, WakeupOutcome, WakeupTask, MAX_PENDING_WAKEUPS,
};
use std::time::Duration;

/// Wake-ups older than this nobody consumed (their job finished by polling): only clutter.
const STALE_AFTER_MS: i64 = 24 * 60 * 60 * 1000;

/// The embedded store's [`TaskSignals`]. Every instance on one store (the callback route's
/// and the pipeline's) shares the store's wake-ups.
#[derive(Debug, Clone)]
pub struct SqliteTaskSignals {
    store: SqliteStore,
}

impl SqliteTaskSignals {
    /// Task signals on `store` (a clone of it: every clone is the same store).
    pub fn new(store: &SqliteStore) -> Self {
        Self { store: store.clone() }
    }

    /// Consumes a pending wake-up of the job's task; `true` when there was one. Every waiter
    /// looks after every notification: the look is a read, and only a waiter whose row is
    /// there queues for the writer.
    async fn take(&self, job: JobId, task_id: &str) -> Result<bool, PipelineStoreError> {
        let pending: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM task_wakeups WHERE job_id = ?1 AND task_id = ?2")
                .bind(job.get())
                .bind(task_id)
                .fetch_optional(self.store.reader())
                .await
                .map_err(pipeline_store_error)?;
        if pending.is_none() {
            return Ok(false);
        }
        let done = sqlx::query("DELETE FROM task_wakeups WHERE job_id = ?1 AND task_id = ?2")
            .bind(job.get())
            .bind(task_id)
            .execute(self.store.writer())
            .await
            .map_err(pipeline_store_error)?;
        Ok(done.rows_affected() > 0)
    }
}

#[async_trait::async_trait]
impl TaskSignals for SqliteTaskSignals {
    async fn record_wakeup(
        &self,
        job: JobId,
        task: &WakeupTask,
    ) -> Result<WakeupOutcome, PipelineStoreError> {
        let mut tx = self
            .store
            .writer()
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(pipeline_store_error)?;
        // The job owns the task when it is queued or running and has this task recorded, or
        // none yet (the answer to its create call may still be on its way).
        let owned: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM jobs \
             WHERE id = ?1 AND state IN ('queued', 'running') \
               AND (provider_task_id = ?2 OR provider_task_id IS NULL)",
        )
        .bind(job.get())
        .bind(&task.task_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(pipeline_store_error)?;
        if owned.is_none() {
            return Ok(WakeupOutcome::NotOwned);
        }
        let recorded = sqlx::query(
            "INSERT INTO task_wakeups (job_id, task_id, key_id, model, received_at) \
             SELECT ?1, ?2, ?4, ?5, ?6 \
             WHERE (SELECT count(*) FROM task_wakeups WHERE job_id = ?1) < ?3 \
             ON CONFLICT (job_id, task_id) DO NOTHING",
        )
        .bind(job.get())
        .bind(&task.task_id)
        .bind(i64::from(MAX_PENDING_WAKEUPS))
        .bind(task.key_id.as_deref())
        .bind(task.model.as_deref())
        .bind(now_ms())
        .execute(&mut *tx)
        .await
        .map_err(pipeline_store_error)?
        .rows_affected()
            > 0;
        if fastrand::u8(..) == 0 {
            sqlx::query("DELETE FROM task_wakeups WHERE received_at < ?1")
                .bind(now_ms() - STALE_AFTER_MS)
                .execute(&mut *tx)
                .await
                .map_err(pipeline_store_error)?;
        }
        tx.commit().await.map_err(pipeline_store_error)?;
        if !recorded {
            return Ok(WakeupOutcome::Pending);
        }
        // After the commit, when the row is visible to the woken waiter.
        self.store.wakeups().tasks.notify_waiters();
        Ok(WakeupOutcome::Recorded)
    }

    async fn wait_wakeup(
        &self,
        job: JobId,
        task_id: &str,
        timeout: Duration,
    ) -> Result<bool, PipelineStoreError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let wakeups = std::sync::Arc::clone(self.store.wakeups());
        loop {
            // Registered before reading, so a wake-up stored after the read still wakes us.
            let notified = wakeups.tasks.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.take(job, task_id).await? {
                return Ok(true);
            }
            // Another job's wake-up (or this job's other task) just makes us look again.
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Ok(false);
            }
        }
    }

    async fn wakeup_tasks(&self, job: JobId) -> Result<Vec<WakeupTask>, PipelineStoreError> {
        let rows: Vec<(String, Option<String>, Option<String>)> = sqlx::query_as(
            "SELECT task_id, key_id, model FROM task_wakeups WHERE job_id = ?1 \
             ORDER BY received_at, rowid",
        )
        .bind(job.get())
        .fetch_all(self.store.reader())
        .await
        .map_err(pipeline_store_error)?;
        Ok(rows
            .into_iter()
            .map(|(task_id, key_id, model)| WakeupTask { task_id, key_id, model })
            .collect())
    }

    async fn abandon_task(&self, lease: Lease) -> Result<(), PipelineStoreError> {
        let mut tx = self
            .store
            .writer()
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(pipeline_store_error)?;
        let done = sqlx::query(
            "UPDATE jobs SET provider_task_id = NULL, provider_model = NULL, \
                    provider_key_id = NULL, provider_submitted_at = NULL, \
                    current_step = CASE WHEN current_step IN ('submit', 'wait') \
                                        THEN NULL ELSE current_step END \
             WHERE id = ?1 AND lease_token = ?2 AND state = 'running'",
        )
        .bind(lease.job_id.get())
        .bind(lease.token.0)
        .execute(&mut *tx)
        .await
        .map_err(pipeline_store_error)?
        .rows_affected();
        if done == 0 {
            return Err(PipelineStoreError::LeaseLost(lease.job_id));
        }
        // The job's pending wake-ups named the abandoned task (or an orphan of it): gone too.
        sqlx::query("DELETE FROM task_wakeups WHERE job_id = ?1")
            .bind(lease.job_id.get())
            .execute(&mut *tx)
            .await
            .map_err(pipeline_store_error)?;
        tx.commit().await.map_err(pipeline_store_error)?;
        Ok(())
    }
}
