//! PostgreSQL fixtures: the [`QueueFixture`] the conformance suite runs against, and small
//! helpers for tests that need funded users.

use crate::conformance::job_queue::QueueFixture;
use neurocards_core::domain::{Credits, JobId, Language, LedgerReason, UserId};
use neurocards_core::ports::{Accounts, NewUser};
use neurocards_core::postgres::{PgAccounts, PgJobQueue, QueueConfig};
use sqlx::PgPool;
use std::sync::atomic::{AtomicI64, Ordering};

static NEXT_USER: AtomicI64 = AtomicI64::new(1_000);

/// Registers a new user (a fresh id) and grants them `credits`.
pub async fn funded_user(accounts: &PgAccounts, credits: i64) -> UserId {
    let id = UserId(NEXT_USER.fetch_add(1, Ordering::Relaxed));
    let user = NewUser {
        id,
        username: Some(format!("user{id}")),
        first_name: Some("Test".to_owned()),
        language: Language::En,
    };
    accounts.register(&user, Credits::ZERO).await.expect("register user");
    if credits > 0 {
        let amount = Credits::new(credits).expect("non-negative credits");
        accounts.credit(id, amount, LedgerReason::Grant, "test funds").await.expect("grant");
    }
    id
}

/// A default queue on `pool` and an order of `count` "ugc" videos (no product, 1 credit each)
/// placed for a new user funded with 10 credits.
pub async fn placed_order(
    pool: &PgPool,
    count: u32,
) -> (PgJobQueue, neurocards_core::ports::PlacedOrder) {
    use neurocards_core::domain::{GenerationOptions, JobSpec, OrderKey, TemplateId, VideoCount};
    use neurocards_core::ports::{JobQueue, NewOrder};
    let accounts = PgAccounts::new(pool.clone());
    let queue = PgJobQueue::new(pool.clone(), QueueConfig::default());
    let user = funded_user(&accounts, 10).await;
    let order = NewOrder {
        user_id: user,
        key: OrderKey::random(),
        count: VideoCount::bulk(count).expect("count"),
        price_per_video: Credits::new(1).expect("credits"),
        spec: JobSpec {
            product_id: None,
            template: TemplateId::parse("ugc").expect("template"),
            wishes: None,
            user_prompt: None,
            model: None,
            options: GenerationOptions::default(),
            language: Language::En,
        },
    };
    let placed = queue.place_order(&order).await.expect("place order");
    (queue, placed)
}

/// A queue, accounts and the pool under them, on one test database.
#[derive(Debug)]
pub struct PgQueueFixture {
    pub pool: PgPool,
    pub queue: PgJobQueue,
    pub accounts: PgAccounts,
}

impl PgQueueFixture {
    pub fn new(pool: PgPool, config: QueueConfig) -> Self {
        Self {
            queue: PgJobQueue::new(pool.clone(), config),
            accounts: PgAccounts::new(pool.clone()),
            pool,
        }
    }
}

#[async_trait::async_trait]
impl QueueFixture for PgQueueFixture {
    type Queue = PgJobQueue;

    fn queue(&self) -> &PgJobQueue {
        &self.queue
    }

    fn per_user_cap(&self) -> u32 {
        self.queue.config().per_user_cap
    }

    fn max_rescues(&self) -> u32 {
        self.queue.config().max_rescues
    }

    async fn funded_user(&self, credits: i64) -> UserId {
        funded_user(&self.accounts, credits).await
    }

    async fn balance(&self, user: UserId) -> Credits {
        self.accounts.balance(user).await.expect("read balance")
    }

    async fn expire_lease(&self, job: JobId) {
        sqlx::query(
            "UPDATE jobs SET lease_expires_at = now() - interval '1 second' \
             WHERE id = $1 AND state = 'running'",
        )
        .bind(job.get())
        .execute(&self.pool)
        .await
        .expect("expire lease");
    }

    async fn make_past_deadline(&self, job: JobId) {
        let age = self.queue.config().job_deadline + std::time::Duration::from_secs(60);
        sqlx::query(
            "UPDATE jobs SET created_at = now() - make_interval(secs => $2), \
                             first_claimed_at = now() - make_interval(secs => $2) \
             WHERE id = $1",
        )
        .bind(job.get())
        .bind(age.as_secs_f64())
        .execute(&self.pool)
        .await
        .expect("age the job");
    }

    async fn make_due(&self, job: JobId) {
        sqlx::query("UPDATE jobs SET run_at = now() WHERE id = $1 AND state = 'queued'")
            .bind(job.get())
            .execute(&self.pool)
            .await
            .expect("make job due");
    }
}

/// What a PostgreSQL restart or failover does to the clients of the pool's database, without
/// touching other databases: terminates every backend connected to it (from a connection of
/// its own, outside the pool). Returns how many were terminated.
pub async fn terminate_backends(pool: &PgPool) -> i64 {
    use sqlx::Connection as _;
    let mut admin = sqlx::PgConnection::connect_with(&pool.connect_options())
        .await
        .expect("a connection to terminate the others from");
    let terminated: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM ( \
             SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid() \
         ) AS t",
    )
    .fetch_one(&mut admin)
    .await
    .expect("terminate backends");
    let _ = admin.close().await;
    terminated
}
