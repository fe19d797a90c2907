//! The queue under real concurrency: separate connections, separate tasks.

use neurocards_core::domain::{Credits, JobId, Lease, LeaseToken, UserId, WorkerId};
use neurocards_core::ports::{Accounts, JobQueue, QueueError};
use neurocards_core::postgres::{PgAccounts, PgJobQueue, QueueConfig};
use neurocards_testkit::conformance::job_queue::order;
use neurocards_testkit::invariants::assert_invariants;
use neurocards_testkit::pg::funded_user;
use neurocards_testkit::stores::pg_database;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

async fn own_pool(opts: &PgConnectOptions, connections: u32) -> PgPool {
    PgPoolOptions::new()
        .max_connections(connections)
        .connect_with(opts.clone())
        .await
        .expect("connect")
}

#[tokio::test]
async fn eight_claimers_drain_5000_jobs_each_claimed_once() {
    let Some(db) = pg_database().await else { return };
    let opts = db.connect_options();
    let setup = own_pool(&opts, 2).await;
    let accounts = PgAccounts::new(setup.clone());
    let config = QueueConfig { per_user_cap: 1000, ..QueueConfig::default() };
    let enqueue = PgJobQueue::new(setup.clone(), config.clone());
    for _ in 0..50 {
        let user = funded_user(&accounts, 100).await;
        enqueue.place_order(&order(user, 100, 1)).await.expect("order of 100");
    }

    let mut claimers = Vec::new();
    for n in 0..8 {
        // Each claimer is its own queue on its own connection.
        let queue = PgJobQueue::new(own_pool(&opts, 1).await, config.clone());
        claimers.push(tokio::spawn(async move {
            let worker = WorkerId::new(format!("claimer-{n}"));
            let mut mine = Vec::new();
            loop {
                let jobs = queue.claim(&worker, 25).await.expect("claim");
                if jobs.is_empty() {
                    return mine;
                }
                let leases: Vec<Lease> = jobs.iter().map(|j| j.lease).collect();
                let done = queue.complete(&leases).await.expect("complete");
                assert_eq!(done.len(), leases.len(), "nobody else may hold these leases");
                mine.extend(done);
            }
        }));
    }
    let mut seen: HashMap<JobId, usize> = HashMap::new();
    for c in claimers {
        for id in c.await.expect("claimer task") {
            *seen.entry(id).or_default() += 1;
        }
    }
    assert_eq!(seen.len(), 5000, "every job was claimed and completed");
    assert!(seen.values().all(|n| *n == 1), "no job was claimed twice");
    let states: Vec<(String, i64)> =
        sqlx::query_as("SELECT state, count(*) FROM jobs GROUP BY state")
            .fetch_all(&setup)
            .await
            .expect("count states");
    assert_eq!(states, vec![("succeeded".to_owned(), 5000)]);
    assert_invariants(&setup).await;
}

#[tokio::test]
async fn silent_worker_loses_its_jobs_and_its_late_writes_are_refused() {
    let Some(db) = pg_database().await else { return };
    let opts = db.connect_options();
    // A short lease so the test runs in seconds; the mechanism is the same at 60 s.
    let config = QueueConfig { lease: Duration::from_secs(2), ..QueueConfig::default() };
    let setup = own_pool(&opts, 2).await;
    let accounts = PgAccounts::new(setup.clone());
    let user = funded_user(&accounts, 3).await;
    let dead = PgJobQueue::new(own_pool(&opts, 1).await, config.clone());
    let alive = Arc::new(PgJobQueue::new(own_pool(&opts, 2).await, config.clone()));
    dead.place_order(&order(user, 3, 1)).await.expect("order");

    let dead_worker = WorkerId::new("dead");
    let taken = dead.claim(&dead_worker, 3).await.expect("claim");
    assert_eq!(taken.len(), 3);

    // The live worker keeps sweeping and claiming, as every worker does, until it has them all.
    let sweeper = {
        let alive = alive.clone();
        tokio::spawn(async move {
            let worker = WorkerId::new("alive");
            let mut got = Vec::new();
            while got.len() < 3 {
                alive.rescue_expired(100).await.expect("rescue");
                got.extend(alive.claim(&worker, 3).await.expect("claim"));
                alive.wait_for_work(Duration::from_millis(200)).await.expect("wait");
            }
            got
        })
    };
    let rescued = tokio::time::timeout(Duration::from_secs(30), sweeper)
        .await
        .expect("jobs are rescued within a few lease times")
        .expect("sweeper task");
    assert_eq!(rescued.len(), 3);

    // The silent worker wakes up: every write it tries is refused.
    let lost = dead.heartbeat(&dead_worker, &[taken[0].lease]).await.expect("heartbeat");
    assert_eq!(lost, vec![taken[0].lease.job_id]);
    let leases: Vec<Lease> = taken.iter().map(|j| j.lease).collect();
    assert!(dead.complete(&leases).await.expect("complete").is_empty());
    let err = dead
        .fail(
            taken[1].lease,
            &neurocards_core::ports::JobFailure {
                class: neurocards_core::domain::ErrorClass::Unknown,
                message: "late".to_owned(),
            },
        )
        .await
        .expect_err("late failure refused");
    assert!(matches!(err, QueueError::LeaseLost(_)));
    assert_eq!(accounts.balance(user).await.expect("balance"), Credits::ZERO);

    // The new holder finishes them.
    let done = alive.complete(&rescued.iter().map(|j| j.lease).collect::<Vec<_>>()).await;
    assert_eq!(done.expect("complete").len(), 3);
    assert_invariants(&setup).await;
}

#[tokio::test]
async fn fifty_concurrent_orders_with_credit_for_twenty_place_exactly_twenty() {
    let Some(db) = pg_database().await else { return };
    let opts = db.connect_options();
    let pool = own_pool(&opts, 20).await;
    let accounts = PgAccounts::new(pool.clone());
    let user: UserId = funded_user(&accounts, 20).await;
    let queue = Arc::new(PgJobQueue::new(pool.clone(), QueueConfig::default()));
    let barrier = Arc::new(tokio::sync::Barrier::new(50));
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let queue = queue.clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                queue.place_order(&order(user, 1, 1)).await
            })
        })
        .collect();
    let (mut placed, mut refused) = (0, 0);
    for t in tasks {
        match t.await.expect("order task") {
            Ok(p) => {
                assert!(p.newly_placed);
                placed += 1;
            }
            Err(QueueError::InsufficientCredits { .. }) => refused += 1,
            Err(other) => panic!("unexpected error {other:?}"),
        }
    }
    assert_eq!((placed, refused), (20, 30));
    assert_eq!(accounts.balance(user).await.expect("balance"), Credits::ZERO);
    assert_invariants(&pool).await;
}

#[tokio::test]
async fn ten_light_users_are_claimed_before_a_heavy_users_backlog() {
    let Some(db) = pg_database().await else { return };
    let pool = db.pool.clone();
    let accounts = PgAccounts::new(pool.clone());
    // A cap high enough that only fair ordering, not the cap, can let the light users in.
    let config = QueueConfig { per_user_cap: 1000, ..QueueConfig::default() };
    let queue = PgJobQueue::new(pool.clone(), config);
    let heavy = funded_user(&accounts, 500).await;
    for _ in 0..5 {
        queue.place_order(&order(heavy, 100, 1)).await.expect("bulk order");
    }
    let mut light = Vec::new();
    for _ in 0..10 {
        let user = funded_user(&accounts, 1).await;
        queue.place_order(&order(user, 1, 1)).await.expect("order");
        light.push(user);
    }
    let mut first = Vec::new();
    let worker = WorkerId::new("w");
    while first.len() < 20 {
        first.extend(queue.claim(&worker, 4).await.expect("claim"));
    }
    for user in light {
        assert!(first.iter().any(|j| j.user_id == user), "user {user} waits behind the backlog");
    }
    assert_invariants(&pool).await;
}

#[tokio::test]
async fn racing_claimers_never_exceed_the_per_user_cap() {
    let Some(db) = pg_database().await else { return };
    let opts = db.connect_options();
    let setup = own_pool(&opts, 2).await;
    let accounts = PgAccounts::new(setup.clone());
    let config = QueueConfig { per_user_cap: 5, ..QueueConfig::default() };
    let enqueue = PgJobQueue::new(setup.clone(), config.clone());
    let heavy = funded_user(&accounts, 200).await;
    enqueue.place_order(&order(heavy, 200, 1)).await.expect("order of 200");

    // Eight processes (own queue, own connection) claim at the same moment, round after round;
    // the user's jobs in flight must never pass the cap.
    for round in 0..5 {
        let start = Arc::new(tokio::sync::Barrier::new(8));
        let mut claimers = Vec::new();
        for n in 0..8 {
            let queue = PgJobQueue::new(own_pool(&opts, 1).await, config.clone());
            let start = start.clone();
            claimers.push(tokio::spawn(async move {
                start.wait().await;
                let worker = WorkerId::new(format!("round-{round}-claimer-{n}"));
                queue.claim(&worker, 5).await.expect("claim")
            }));
        }
        let mut claimed = Vec::new();
        for c in claimers {
            claimed.extend(c.await.expect("claimer task"));
        }
        let (running,): (i64,) =
            sqlx::query_as("SELECT count(*) FROM jobs WHERE state = 'running'")
                .fetch_one(&setup)
                .await
                .expect("count running");
        assert_eq!(running, 5, "round {round}: the cap of 5 holds across racing claimers");
        let room = if round == 0 { 5 } else { 3 };
        assert_eq!(claimed.len(), room, "round {round}: exactly the free room is claimed");
        // Finish three of the five, so the next round has room for exactly three.
        let leases: Vec<Lease> = sqlx::query_as::<_, (i64, i64)>(
            "SELECT id, lease_token FROM jobs WHERE state = 'running' ORDER BY id LIMIT 3",
        )
        .fetch_all(&setup)
        .await
        .expect("running leases")
        .into_iter()
        .map(|(id, token)| Lease { job_id: JobId(id), token: LeaseToken(token) })
        .collect();
        let done = enqueue.complete(&leases).await.expect("complete three");
        assert_eq!(done.len(), 3);
    }
    assert_invariants(&setup).await;
}
