//! The bot's HTTP surface: the webhook's secret, health, readiness and queue statistics.

use neurocards_core::domain::JobId;
use neurocards_core::web::{self, QueueStatsBody};
use neurocards_testkit::bot_harness::{test_settings, BotHarness};
use neurocards_testkit::fake_telegram::TgUser;
use neurocards_testkit::stores::pg_database;
use sqlx::PgPool;

const SECRET: &str = "webhook_secret-123";

async fn serve(h: &BotHarness) -> String {
    h.serve_http(SECRET).await
}

#[tokio::test]
async fn webhook_refuses_a_wrong_or_missing_secret_and_handles_the_right_one() {
    let Some(db) = pg_database().await else { return };
    let pool = db.pool.clone();
    let h = BotHarness::start(pool, test_settings()).await;
    let base = serve(&h).await;
    let client = reqwest::Client::new();
    let user = TgUser::new(31);
    let url = format!("{base}{}", web::WEBHOOK_PATH);

    let update = h.telegram.command_update(&user, "/start");
    let missing = client.post(&url).json(&update).send().await.expect("request");
    assert_eq!(missing.status(), 401);
    let wrong = client
        .post(&url)
        .header("X-Telegram-Bot-Api-Secret-Token", "webhook_secret-124")
        .json(&update)
        .send()
        .await
        .expect("request");
    assert_eq!(wrong.status(), 401);
    assert!(h.telegram.texts_to(user.id).is_empty(), "refused updates are not handled");

    let right = client
        .post(&url)
        .header("X-Telegram-Bot-Api-Secret-Token", SECRET)
        .json(&update)
        .send()
        .await
        .expect("request");
    assert_eq!(right.status(), 200);
    assert!(h.last(&user).callback_data().contains(&"terms"), "answered within the request");
}

#[tokio::test]
async fn health_readiness_queue_stats_and_metrics() {
    let Some(db) = pg_database().await else { return };
    let pool = db.pool.clone();
    let h = BotHarness::start(pool, test_settings()).await;
    let base = serve(&h).await;
    let client = reqwest::Client::new();
    let get = |path: &str| client.get(format!("{base}{path}")).send();
    assert_eq!(get("/healthz").await.expect("healthz").status(), 200);
    assert_eq!(get("/readyz").await.expect("readyz").status(), 200);
    let stats: QueueStatsBody =
        get("/queue_stats").await.expect("stats").json().await.expect("old JSON shape");
    assert_eq!(stats.status, "ok");
    assert_eq!(stats.queue.total, 0);
    let user = TgUser::new(32);
    h.say(&user, "/start").await;
    let metrics = get("/metrics").await.expect("metrics").text().await.expect("text");
    assert!(metrics.contains("neurocards_bot_updates_total 1"), "{metrics}");

    h.pool().close().await;
    assert_eq!(get("/readyz").await.expect("readyz").status(), 503, "database gone");
}

/// A job of a funded user, claimed, with `task` recorded as its provider task.
async fn job_with_task(pool: &PgPool, task: &str) -> JobId {
    use neurocards_core::domain::*;
    use neurocards_core::ports::JobQueue;
    let (queue, _placed) = neurocards_testkit::pg::placed_order(pool, 1).await;
    let job = queue.claim(&WorkerId::new("w"), 1).await.expect("claim").remove(0);
    let task = ProviderTaskRef {
        task_id: task.into(),
        model: "sora-2-image-to-video".into(),
        key_id: "k".into(),
        submitted_at: chrono::Utc::now(),
    };
    queue.record_step(job.lease, &StepResult::Submitted { task }).await.expect("step");
    job.lease.job_id
}

async fn wakeups(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM task_wakeups").fetch_one(pool).await.expect("count")
}

#[tokio::test]
async fn kie_callback_route_wakes_only_the_owner_behind_its_secret_and_signature() {
    let Some(db) = pg_database().await else { return };
    let pool = db.pool.clone();
    use neurocards_core::kie::{sign, KieConfig, KieProvider};
    use neurocards_core::postgres::PgTaskSignals;
    use neurocards_core::secret::Secret;
    use std::sync::Arc;

    const PATH_SECRET: &str = "callback_path_secret_0123456789";
    let h = BotHarness::start(pool, test_settings()).await;
    let job = job_with_task(h.pool(), "task_77").await;
    let config = KieConfig {
        callback_hmac_key: Some(Secret::new("hmac-key")),
        ..KieConfig::new(vec![Secret::new("kie-key")])
    };
    let route = web::CallbackRoute {
        secret: Secret::new(PATH_SECRET),
        provider: Arc::new(KieProvider::new(config).expect("provider")),
        signals: Arc::new(PgTaskSignals::new(h.pool().clone())),
    };
    let base = h.serve_http_with(SECRET, Some(route)).await;
    let url = |secret: &str, job: i64| format!("{base}/kie/callback/{secret}?job={job}");
    let client = reqwest::Client::new();
    // A lying body: "success" with a foreign video. Only the task id is ever read.
    let body = |task: &str| {
        serde_json::json!({
            "code": 200,
            "msg": "Playground task completed successfully.",
            "data": {
                "taskId": task,
                "state": "success",
                "resultJson": "{\"resultUrls\":[\"https://evil.example/phish.mp4\"]}"
            }
        })
    };
    let signed = |task: &str| {
        let ts = chrono::Utc::now().timestamp().to_string();
        let sig = sign(&Secret::new("hmac-key"), task, &ts);
        (ts, sig)
    };
    let post = |url: String, task: &'static str, sign_it: bool| {
        let client = client.clone();
        let (ts, sig) = signed(task);
        async move {
            let mut req = client.post(url).json(&body(task));
            if sign_it {
                req = req.header("X-Webhook-Timestamp", ts).header("X-Webhook-Signature", sig);
            }
            req.send().await.expect("request").status().as_u16()
        }
    };

    assert_eq!(post(url("wrong_secret_0123456789", job.get()), "task_77", true).await, 404);
    assert_eq!(
        client
            .post(format!("{base}/kie/callback"))
            .json(&body("task_77"))
            .send()
            .await
            .expect("req")
            .status(),
        404,
        "the bare path is not a route"
    );
    assert_eq!(post(url(PATH_SECRET, job.get()), "task_77", false).await, 401, "unsigned");
    assert_eq!(post(url(PATH_SECRET, job.get()), "task_78", true).await, 404, "not the job's task");
    assert_eq!(post(url(PATH_SECRET, job.get() + 1000), "task_77", true).await, 404, "no such job");
    let no_job = format!("{base}/kie/callback/{PATH_SECRET}");
    assert_eq!(client.post(no_job).json(&body("task_77")).send().await.expect("req").status(), 404);
    assert_eq!(wakeups(h.pool()).await, 0, "nothing stored for anything refused");

    let huge = "x".repeat(web::CALLBACK_BODY_LIMIT + 1);
    let too_big = client
        .post(url(PATH_SECRET, job.get()))
        .header("content-type", "application/json")
        .body(format!(r#"{{"taskId":"task_77","pad":"{huge}"}}"#))
        .send()
        .await
        .expect("request");
    assert_eq!(too_big.status(), 413);

    for _ in 0..2 {
        assert_eq!(
            post(url(PATH_SECRET, job.get()), "task_77", true).await,
            200,
            "a repeat is harmless"
        );
    }
    assert_eq!(wakeups(h.pool()).await, 1, "one wake-up, no body stored");
    let probe = format!("{base}/kie/callback/{PATH_SECRET}?probe=1");
    assert_eq!(client.post(probe).send().await.expect("probe").status(), 200);
    let (columns,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM information_schema.columns WHERE table_name = 'task_wakeups'",
    )
    .fetch_one(h.pool())
    .await
    .expect("columns");
    assert_eq!(columns, 5, "job, task, the URL's key and model hints, time: nothing of the body");
}
