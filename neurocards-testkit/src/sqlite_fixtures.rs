//! Embedded-store fixtures: the [`QueueFixture`] the conformance suite runs against on SQLite,
//! funded users written straight into the store, and the store's invariants check.

use crate::conformance::job_queue::QueueFixture;
use crate::stores::TempSqlite;
use neurocards_core::domain::{Credits, JobId, UserId};
use neurocards_core::queue_config::QueueConfig;
use neurocards_core::sqlite::{SqliteJobQueue, SqliteStore};
use std::sync::atomic::{AtomicI64, Ordering};

static NEXT_USER: AtomicI64 = AtomicI64::new(1_000);

/// "Now" in the store's milliseconds, as SQL.
const NOW_MS: &str = "CAST(unixepoch('subsec') * 1000 AS INTEGER)";

/// Creates a new user (a fresh id) holding `credits`, granted by one ledger row, in one
/// transaction on the store's writer.
pub async fn funded_user(store: &SqliteStore, credits: i64) -> UserId {
    let id = UserId(NEXT_USER.fetch_add(1, Ordering::Relaxed));
    insert_funded_user(store, id, credits).await;
    id
}

/// Creates user `id` holding `credits` (see [`funded_user`]).
pub async fn insert_funded_user(store: &SqliteStore, id: UserId, credits: i64) {
    let mut tx = store.writer().begin().await.expect("begin");
    sqlx::query(
        "INSERT INTO users (id, username, first_name, language) VALUES (?, ?, 'Test', 'en')",
    )
    .bind(id.get())
    .bind(format!("user{id}"))
    .execute(&mut *tx)
    .await
    .expect("insert user");
    if credits > 0 {
        sqlx::query(
            "INSERT INTO ledger (user_id, delta, reason, note) VALUES (?, ?, 'grant', 'test funds')",
        )
        .bind(id.get())
        .bind(credits)
        .execute(&mut *tx)
        .await
        .expect("grant credits");
    }
    tx.commit().await.expect("commit the user");
}

/// A queue on a fresh temporary store; the store lives as long as the fixture.
#[derive(Debug)]
pub struct SqliteQueueFixture {
    pub db: TempSqlite,
    pub queue: SqliteJobQueue,
}

impl SqliteQueueFixture {
    /// A fresh store and a queue with `config` on it.
    pub async fn new(config: QueueConfig) -> Self {
        let db = TempSqlite::new().await;
        let queue = SqliteJobQueue::new(&db.store, config);
        Self { db, queue }
    }

    /// The store under the queue.
    pub fn store(&self) -> &SqliteStore {
        &self.db.store
    }

    async fn update(&self, sql: &str, job: JobId, arg: i64) {
        sqlx::query(sql)
            .bind(job.get())
            .bind(arg)
            .execute(self.store().writer())
            .await
            .expect("update the job");
    }
}

#[async_trait::async_trait]
impl QueueFixture for SqliteQueueFixture {
    type Queue = SqliteJobQueue;

    fn queue(&self) -> &SqliteJobQueue {
        &self.queue
    }

    fn per_user_cap(&self) -> u32 {
        self.queue.config().per_user_cap
    }

    fn max_rescues(&self) -> u32 {
        self.queue.config().max_rescues
    }

    async fn funded_user(&self, credits: i64) -> UserId {
        funded_user(self.store(), credits).await
    }

    async fn balance(&self, user: UserId) -> Credits {
        let balance: i64 = sqlx::query_scalar("SELECT balance FROM users WHERE id = ?")
            .bind(user.get())
            .fetch_one(self.store().reader())
            .await
            .expect("read balance");
        Credits::new(balance).expect("a stored balance is never negative")
    }

    async fn expire_lease(&self, job: JobId) {
        let sql = format!(
            "UPDATE jobs SET lease_expires_at = {NOW_MS} - ?2 WHERE id = ?1 AND state = 'running'"
        );
        self.update(&sql, job, 1_000).await;
    }

    async fn make_due(&self, job: JobId) {
        let sql =
            format!("UPDATE jobs SET run_at = {NOW_MS} - ?2 WHERE id = ?1 AND state = 'queued'");
        self.update(&sql, job, 0).await;
    }

    async fn make_past_deadline(&self, job: JobId) {
        let age = self.queue.config().job_deadline + std::time::Duration::from_secs(60);
        let sql = format!(
            "UPDATE jobs SET created_at = {NOW_MS} - ?2, first_claimed_at = {NOW_MS} - ?2 \
             WHERE id = ?1"
        );
        self.update(&sql, job, i64::try_from(age.as_millis()).expect("age in ms")).await;
    }
}
