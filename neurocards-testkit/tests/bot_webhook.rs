//! The bot's HTTP surface: the webhook's secret, health, readiness and queue statistics.

use neurocards_core::web::{self, QueueStatsBody};
use neurocards_testkit::bot_harness::{test_settings, BotHarness};
use neurocards_testkit::fake_telegram::TgUser;
use sqlx::PgPool;

const SECRET: &str = "webhook_secret-123";

async fn serve(h: &BotHarness) -> String {
    h.serve_http(SECRET).await
}

#[sqlx::test(migrations = "../migrations")]
async fn webhook_refuses_a_wrong_or_missing_secret_and_handles_the_right_one(pool: PgPool) {
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

#[sqlx::test(migrations = "../migrations")]
async fn health_readiness_queue_stats_and_metrics(pool: PgPool) {
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

    h.pool.close().await;
    assert_eq!(get("/readyz").await.expect("readyz").status(), 503, "database gone");
}

#[sqlx::test(migrations = "../migrations")]
async fn kie_callback_is_verified_stored_once_and_answered(pool: PgPool) {
    use neurocards_core::kie::{KieConfig, KieProvider};
    use neurocards_core::postgres::PgTaskSignals;
    use neurocards_core::secret::Secret;
    use std::sync::Arc;

    let h = BotHarness::start(pool, test_settings()).await;
    let config = KieConfig {
        callback_hmac_key: Some(Secret::new("hmac-key")),
        ..KieConfig::new(vec![Secret::new("kie-key")])
    };
    let route = web::CallbackRoute {
        provider: Arc::new(KieProvider::new(config).expect("provider")),
        signals: Arc::new(PgTaskSignals::new(h.pool.clone())),
    };
    let base = h.serve_http_with(SECRET, Some(route)).await;
    let url = format!("{base}{}", web::KIE_CALLBACK_PATH);
    let client = reqwest::Client::new();
    let body = serde_json::json!({
        "code": 200,
        "msg": "Playground task completed successfully.",
        "data": {
            "taskId": "task_77",
            "state": "success",
            "resultJson": "{\"resultUrls\":[\"https://files.example/v.mp4\"]}"
        }
    });

    let unsigned = client.post(&url).json(&body).send().await.expect("request");
    assert_eq!(unsigned.status(), 401, "a missing signature is refused");

    let ts = chrono::Utc::now().timestamp().to_string();
    let signature = {
        use base64::Engine as _;
        use hmac::Mac as _;
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"hmac-key").expect("key");
        mac.update(format!("task_77.{ts}").as_bytes());
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    };
    for _ in 0..2 {
        let signed = client
            .post(&url)
            .header("X-Webhook-Timestamp", &ts)
            .header("X-Webhook-Signature", &signature)
            .json(&body)
            .send()
            .await
            .expect("request");
        assert_eq!(signed.status(), 200, "stored, and a duplicate is harmless");
    }
    let (stored,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM provider_callbacks WHERE task_id = 'task_77'")
            .fetch_one(&h.pool)
            .await
            .expect("provider_callbacks");
    assert_eq!(stored, 1);

    let garbage = client
        .post(&url)
        .header("X-Webhook-Timestamp", &ts)
        .header("X-Webhook-Signature", &signature)
        .body("not json")
        .send()
        .await
        .expect("request");
    assert_eq!(garbage.status(), 400);
}
