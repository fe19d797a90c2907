//! The pipeline's PostgreSQL stores: the single progress message and the callback inbox.

use neurocards_core::domain::*;
use neurocards_core::ports::*;
use neurocards_core::postgres::{
    PgAccounts, PgJobQueue, PgOrderProgress, PgQueueConfig, PgTaskSignals,
};
use neurocards_testkit::pg::funded_user;
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;

async fn place(pool: &PgPool, count: u32) -> (PgJobQueue, PlacedOrder) {
    let accounts = PgAccounts::new(pool.clone());
    let queue = PgJobQueue::new(pool.clone(), PgQueueConfig::default());
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
            options: GenerationOptions::default(),
            language: Language::En,
        },
    };
    let placed = queue.place_order(&order).await.expect("place order");
    (queue, placed)
}

#[sqlx::test(migrations = "../migrations")]
async fn only_one_of_many_concurrent_workers_may_create_the_progress_message(pool: PgPool) {
    let (_queue, placed) = place(&pool, 3).await;
    let store = Arc::new(PgOrderProgress::new(pool.clone()));
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.claim_stage(placed.order_id, 10).await })
        })
        .collect();
    let mut creates = 0;
    for t in tasks {
        match t.await.expect("task").expect("claim") {
            ProgressSlot::Create => creates += 1,
            ProgressSlot::Skip => {}
            ProgressSlot::Edit(_) => panic!("no message exists yet"),
        }
    }
    assert_eq!(creates, 1);

    let msg = MessageRef { chat_id: 1, message_id: 77 };
    store.set_message(placed.order_id, msg).await.expect("set message");
    assert_eq!(
        store.claim_stage(placed.order_id, 20).await.expect("claim"),
        ProgressSlot::Edit(msg)
    );
    // The same or an earlier stage is never shown again.
    assert_eq!(store.claim_stage(placed.order_id, 20).await.expect("claim"), ProgressSlot::Skip);
    assert_eq!(store.claim_stage(placed.order_id, 15).await.expect("claim"), ProgressSlot::Skip);
    // An order whose first job already started is not announced as queued.
    assert!(store.claim_unannounced(1, 10).await.expect("announce").is_empty());
}

#[sqlx::test(migrations = "../migrations")]
async fn order_status_counts_jobs_by_outcome(pool: PgPool) {
    let (queue, placed) = place(&pool, 3).await;
    let store = PgOrderProgress::new(pool.clone());
    let claimed = queue.claim(&WorkerId::new("w"), 3).await.expect("claim");
    queue.complete(&[claimed[0].lease]).await.expect("complete");
    queue
        .fail(claimed[1].lease, &JobFailure { class: ErrorClass::Config, message: "x".into() })
        .await
        .expect("fail");
    let status = store.order_status(placed.order_id).await.expect("status");
    assert_eq!((status.total, status.succeeded, status.failed), (3, 1, 1));
    assert!(!status.is_finished());
    assert_eq!(status.price_per_video.get(), 1);
}

#[sqlx::test(migrations = "../migrations")]
async fn the_first_final_callback_wins_and_wakes_the_waiter(pool: PgPool) {
    let signals = Arc::new(PgTaskSignals::new(pool.clone()));
    let waiter = {
        let signals = Arc::clone(&signals);
        tokio::spawn(async move { signals.wait_update("task-9", Duration::from_secs(30)).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let receiver = PgTaskSignals::new(pool.clone());
    let done = TaskUpdate {
        task_id: "task-9".into(),
        state: TaskState::Succeeded { video_urls: vec!["https://v/1.mp4".into()] },
    };
    assert!(receiver.record_update(&done).await.expect("record"));
    let started = std::time::Instant::now();
    let got = waiter.await.expect("task").expect("wait");
    assert_eq!(got, Some(done.state.clone()));
    assert!(started.elapsed() < Duration::from_secs(10), "woken by the notification");

    let late = TaskUpdate {
        task_id: "task-9".into(),
        state: TaskState::Failed(ProviderError::new(ErrorClass::Temporary, "late")),
    };
    assert!(!receiver.record_update(&late).await.expect("record duplicate"));
    assert!(!receiver
        .record_update(&TaskUpdate {
            task_id: "t2".into(),
            state: TaskState::Pending { progress: None }
        })
        .await
        .expect("pending is ignored"));
    let again = signals.wait_update("task-9", Duration::from_millis(10)).await.expect("wait");
    assert_eq!(again, Some(done.state));
    assert_eq!(signals.wait_update("t2", Duration::from_millis(10)).await.expect("wait"), None);
}

#[sqlx::test(migrations = "../migrations")]
async fn abandoning_a_task_is_fenced_by_the_lease(pool: PgPool) {
    let (queue, _placed) = place(&pool, 1).await;
    let signals = PgTaskSignals::new(pool.clone());
    let job = queue.claim(&WorkerId::new("w"), 1).await.expect("claim").remove(0);
    let task = ProviderTaskRef {
        task_id: "t1".into(),
        model: "m".into(),
        key_id: "k".into(),
        submitted_at: chrono::Utc::now(),
    };
    queue.record_step(job.lease, &StepResult::Submitted { task }).await.expect("record");
    signals.abandon_task(job.lease).await.expect("abandon");
    let snapshot = queue.job(job.lease.job_id).await.expect("read").expect("job");
    assert_eq!(snapshot.progress.provider_task, None);
    let stale = Lease { job_id: job.lease.job_id, token: LeaseToken(job.lease.token.0 + 100) };
    assert!(matches!(signals.abandon_task(stale).await, Err(PipelineStoreError::LeaseLost(_))));
}
