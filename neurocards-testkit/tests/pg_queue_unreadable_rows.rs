//! A claimed batch with rows the decoder refuses: each such job fails alone, with refund, and
//! its batch neighbours are leased and returned as usual.

use neurocards_core::domain::{ErrorClass, JobId, JobStatus, UserId, WorkerId};
use neurocards_core::ports::{Accounts, JobQueue};
use neurocards_core::postgres::{PgAccounts, PgJobQueue, QueueConfig};
use neurocards_testkit::conformance::job_queue::order;
use neurocards_testkit::invariants::assert_invariants;
use neurocards_testkit::pg::funded_user;
use neurocards_testkit::stores::pg_database;

async fn one_job(queue: &PgJobQueue, accounts: &PgAccounts) -> (UserId, JobId) {
    let user = funded_user(accounts, 1).await;
    let placed = queue.place_order(&order(user, 1, 1)).await.expect("order");
    (user, placed.jobs[0])
}

#[tokio::test]
async fn an_unreadable_row_fails_only_its_own_job_and_the_batch_is_claimed() {
    let Some(db) = pg_database().await else { return };
    let pool = db.pool.clone();
    let accounts = PgAccounts::new(pool.clone());
    let queue = PgJobQueue::new(pool.clone(), QueueConfig::default());
    let (good_user, good) = one_job(&queue, &accounts).await;
    let (bad_template_user, bad_template) = one_job(&queue, &accounts).await;
    let (good_user_2, good_2) = one_job(&queue, &accounts).await;
    let (bad_prompt_user, bad_prompt) = one_job(&queue, &accounts).await;
    // A template id the decoder refuses, and a blank recorded prompt.
    sqlx::query("UPDATE orders SET template = 'Not A Template!' WHERE id = (SELECT order_id FROM jobs WHERE id = $1)")
        .bind(bad_template.get())
        .execute(&pool)
        .await
        .expect("corrupt the template");
    sqlx::query("UPDATE jobs SET prompt = '   ' WHERE id = $1")
        .bind(bad_prompt.get())
        .execute(&pool)
        .await
        .expect("corrupt the prompt");

    let worker = WorkerId::new("w");
    let claimed = queue.claim(&worker, 10).await.expect("the claim succeeds");
    let ids: Vec<JobId> = claimed.iter().map(|j| j.lease.job_id).collect();
    assert_eq!(ids, vec![good, good_2], "the readable jobs are returned");

    for bad in [bad_template, bad_prompt] {
        let (state, class, message): (String, Option<String>, Option<String>) =
            sqlx::query_as("SELECT state, error_class, error_message FROM jobs WHERE id = $1")
                .bind(bad.get())
                .fetch_one(&pool)
                .await
                .expect("read the bad job");
        assert_eq!(state, "failed", "job {bad}");
        assert_eq!(class.as_deref(), Some(ErrorClass::Config.as_str()));
        assert!(message.unwrap_or_default().contains("cannot be read"));
    }
    assert_eq!(accounts.balance(bad_template_user).await.expect("balance").get(), 1, "refunded");
    assert_eq!(accounts.balance(bad_prompt_user).await.expect("balance").get(), 1, "refunded");

    // The neighbours' leases hold: they are running and their writes go through.
    let leases: Vec<_> = claimed.iter().map(|j| j.lease).collect();
    assert!(queue.heartbeat(&worker, &leases).await.expect("heartbeat").is_empty());
    for id in [good, good_2] {
        assert_eq!(queue.job(id).await.expect("read").expect("exists").status, JobStatus::Running);
    }
    assert_eq!(queue.complete(&leases).await.expect("complete"), vec![good, good_2]);
    assert_eq!(accounts.balance(good_user).await.expect("balance").get(), 0);
    assert_eq!(accounts.balance(good_user_2).await.expect("balance").get(), 0);

    // Nothing is left behind for another claim or a rescue.
    assert!(queue.claim(&worker, 10).await.expect("claim").is_empty());
    let open: i64 =
        sqlx::query_scalar("SELECT count(*) FROM jobs WHERE state IN ('queued', 'running')")
            .fetch_one(&pool)
            .await
            .expect("count open jobs");
    assert_eq!(open, 0);
    assert_invariants(&pool).await;
}
