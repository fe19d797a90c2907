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

/// Checks the store's invariants and panics on the first broken one:
/// 1. per user, the cached balance equals the sum of their ledger entries, and is ≥ 0;
/// 2. every failed or cancelled job has exactly one refund, and no other job has any;
/// 3. an order's charge equals its count × price;
/// 4. no job is both terminal and leased, and every running job holds a lease.
pub async fn assert_sqlite_invariants(store: &SqliteStore) {
    let reader = store.reader();
    let balances: Vec<(i64, i64, i64)> = sqlx::query_as(
        "SELECT u.id, u.balance, coalesce(sum(l.delta), 0) \
         FROM users u LEFT JOIN ledger l ON l.user_id = u.id \
         GROUP BY u.id, u.balance \
         HAVING u.balance <> coalesce(sum(l.delta), 0) OR coalesce(sum(l.delta), 0) < 0",
    )
    .fetch_all(reader)
    .await
    .expect("check balances");
    assert!(balances.is_empty(), "balance differs from the ledger: {balances:?}");

    let refunds: Vec<(i64, String, i64)> = sqlx::query_as(
        "SELECT j.id, j.state, \
                (SELECT count(*) FROM ledger l WHERE l.job_id = j.id AND l.reason = 'refund') AS n \
         FROM jobs j \
         WHERE n <> CASE WHEN j.state IN ('failed', 'cancelled') THEN 1 ELSE 0 END",
    )
    .fetch_all(reader)
    .await
    .expect("check refunds");
    assert!(refunds.is_empty(), "jobs with a wrong number of refunds: {refunds:?}");

    let charges: Vec<(i64, i64, i64)> = sqlx::query_as(
        "SELECT o.id, o.count * o.price_per_video, \
                coalesce((SELECT -sum(l.delta) FROM ledger l \
                          WHERE l.order_id = o.id AND l.reason = 'charge'), 0) AS charged \
         FROM orders o \
         WHERE charged <> o.count * o.price_per_video",
    )
    .fetch_all(reader)
    .await
    .expect("check charges");
    assert!(charges.is_empty(), "orders charged wrongly (id, price, charged): {charges:?}");

    let leases: Vec<(i64, String)> = sqlx::query_as(
        "SELECT id, state FROM jobs \
         WHERE (state = 'running') <> (leased_by IS NOT NULL AND lease_expires_at IS NOT NULL)",
    )
    .fetch_all(reader)
    .await
    .expect("check leases");
    assert!(leases.is_empty(), "jobs whose lease does not match their state: {leases:?}");
}
