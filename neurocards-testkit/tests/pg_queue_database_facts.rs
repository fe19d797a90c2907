//! Guarantees the schema itself keeps, whatever code writes to it, and the invariants check
//! catching broken data.

use neurocards_core::domain::{ErrorClass, WorkerId};
use neurocards_core::ports::{JobFailure, JobQueue};
use neurocards_core::postgres::{PgAccounts, PgJobQueue, QueueConfig};
use neurocards_testkit::conformance::job_queue::order;
use neurocards_testkit::invariants::{assert_invariants, check_invariants};
use neurocards_testkit::pg::funded_user;
use neurocards_testkit::stores::pg_database;
use std::time::Duration;

#[tokio::test]
async fn a_second_refund_for_a_job_is_refused_by_the_database() {
    let Some(db) = pg_database().await else { return };
    let pool = db.pool.clone();
    let accounts = PgAccounts::new(pool.clone());
    let queue = PgJobQueue::new(pool.clone(), QueueConfig::default());
    let user = funded_user(&accounts, 1).await;
    queue.place_order(&order(user, 1, 1)).await.expect("order");
    let job = queue.claim(&WorkerId::new("w"), 1).await.expect("claim").remove(0);
    let failure = JobFailure { class: ErrorClass::Billing, message: "402".to_owned() };
    queue.fail(job.lease, &failure).await.expect("fail");

    let second = sqlx::query(
        "INSERT INTO ledger (user_id, delta, reason, job_id) VALUES ($1, 1, 'refund', $2)",
    )
    .bind(user.get())
    .bind(job.lease.job_id.get())
    .execute(&pool)
    .await
    .expect_err("unique index refuses a second refund");
    assert!(second.to_string().contains("ledger_one_refund_per_job"), "{second}");
    assert_invariants(&pool).await;
}

#[tokio::test]
async fn the_ledger_is_append_only_and_balance_cannot_go_negative() {
    let Some(db) = pg_database().await else { return };
    let pool = db.pool.clone();
    let accounts = PgAccounts::new(pool.clone());
    let user = funded_user(&accounts, 2).await;
    let edit = sqlx::query("UPDATE ledger SET delta = 100 WHERE user_id = $1")
        .bind(user.get())
        .execute(&pool)
        .await
        .expect_err("ledger rows cannot be edited");
    assert!(edit.to_string().contains("append-only"), "{edit}");
    sqlx::query("DELETE FROM ledger WHERE user_id = $1")
        .bind(user.get())
        .execute(&pool)
        .await
        .expect_err("ledger rows cannot be deleted");
    sqlx::query("INSERT INTO ledger (user_id, delta, reason) VALUES ($1, -3, 'charge')")
        .bind(user.get())
        .execute(&pool)
        .await
        .expect_err("an overdraft violates the balance check");
    assert_invariants(&pool).await;
}

#[tokio::test]
async fn a_terminal_job_cannot_hold_a_lease() {
    let Some(db) = pg_database().await else { return };
    let pool = db.pool.clone();
    let accounts = PgAccounts::new(pool.clone());
    let queue = PgJobQueue::new(pool.clone(), QueueConfig::default());
    let user = funded_user(&accounts, 1).await;
    let placed = queue.place_order(&order(user, 1, 1)).await.expect("order");
    let err = sqlx::query(
        "UPDATE jobs SET state = 'succeeded', finished_at = now(), leased_by = 'w', \
                lease_expires_at = now() WHERE id = $1",
    )
    .bind(placed.jobs[0].get())
    .execute(&pool)
    .await
    .expect_err("terminal and leased is refused");
    assert!(err.to_string().contains("check"), "{err}");
}

#[tokio::test]
async fn invariants_check_reports_broken_data() {
    let Some(db) = pg_database().await else { return };
    let pool = db.pool.clone();
    let accounts = PgAccounts::new(pool.clone());
    let queue = PgJobQueue::new(pool.clone(), QueueConfig::default());
    let user = funded_user(&accounts, 5).await;
    let placed = queue.place_order(&order(user, 2, 1)).await.expect("order");
    assert!(check_invariants(&pool).await.expect("check").is_empty());

    // Break things behind the code's back: a failed job without a refund, and a balance that
    // drifted from the ledger (triggers off for this session only).
    let mut conn = pool.acquire().await.expect("connection");
    sqlx::query("SET session_replication_role = replica")
        .execute(&mut *conn)
        .await
        .expect("disable triggers");
    sqlx::query("UPDATE jobs SET state = 'failed', finished_at = now() WHERE id = $1")
        .bind(placed.jobs[0].get())
        .execute(&mut *conn)
        .await
        .expect("fail without refund");
    sqlx::query("UPDATE users SET balance = balance + 7 WHERE id = $1")
        .bind(user.get())
        .execute(&mut *conn)
        .await
        .expect("drift balance");
    sqlx::query("SET session_replication_role = origin")
        .execute(&mut *conn)
        .await
        .expect("enable triggers");
    drop(conn);

    let found = check_invariants(&pool).await.expect("check");
    let text: Vec<String> = found.iter().map(ToString::to_string).collect();
    assert_eq!(found.len(), 2, "{text:?}");
    assert!(text.iter().any(|v| v.contains("with 0 refunds")), "{text:?}");
    assert!(text.iter().any(|v| v.contains("ledger sums to")), "{text:?}");
    let panicked = tokio::spawn({
        let pool = pool.clone();
        async move { assert_invariants(&pool).await }
    })
    .await;
    assert!(panicked.is_err(), "assert_invariants panics on violations");
}

#[tokio::test]
async fn stats_report_waits_of_claimed_jobs() {
    let Some(db) = pg_database().await else { return };
    let pool = db.pool.clone();
    let accounts = PgAccounts::new(pool.clone());
    let queue = PgJobQueue::new(pool.clone(), QueueConfig::default());
    let user = funded_user(&accounts, 2).await;
    let placed = queue.place_order(&order(user, 2, 1)).await.expect("order");
    sqlx::query("UPDATE jobs SET created_at = now() - interval '10 seconds' WHERE id = $1")
        .bind(placed.jobs[0].get())
        .execute(&pool)
        .await
        .expect("age a job");
    queue.claim(&WorkerId::new("w"), 2).await.expect("claim");
    let stats = queue.stats(Duration::from_secs(60)).await.expect("stats");
    assert!(stats.avg_wait_secs >= 4.9 && stats.avg_wait_secs < 6.0, "{stats:?}");
    assert!(stats.p95_wait_secs >= 9.0, "{stats:?}");
    assert_eq!(stats.running, 2);
    assert_eq!(stats.window_secs, 60);
}

#[tokio::test]
async fn stats_keep_waits_of_jobs_finished_in_the_window() {
    let Some(db) = pg_database().await else { return };
    let pool = db.pool.clone();
    let accounts = PgAccounts::new(pool.clone());
    let queue = PgJobQueue::new(pool.clone(), QueueConfig::default());
    let user = funded_user(&accounts, 3).await;
    let placed = queue.place_order(&order(user, 3, 1)).await.expect("order");
    sqlx::query("UPDATE jobs SET created_at = now() - interval '10 seconds' WHERE order_id = $1")
        .bind(placed.order_id.get())
        .execute(&pool)
        .await
        .expect("age the jobs");
    let claimed = queue.claim(&WorkerId::new("w"), 3).await.expect("claim");
    assert_eq!(claimed.len(), 3);
    queue.complete(&[claimed[0].lease]).await.expect("complete one");
    queue
        .fail(
            claimed[1].lease,
            &JobFailure { class: ErrorClass::Temporary, message: "boom".to_owned() },
        )
        .await
        .expect("fail one");
    let stats = queue.stats(Duration::from_secs(60)).await.expect("stats");
    // Succeeded, failed and running jobs all waited about 10 s; none is missing or counted twice.
    assert!(stats.avg_wait_secs >= 9.9 && stats.avg_wait_secs < 11.0, "{stats:?}");
    assert_eq!((stats.succeeded, stats.failed, stats.running), (1, 1, 1), "{stats:?}");
}
