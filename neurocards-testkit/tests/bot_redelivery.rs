//! Every update is processed once: Telegram redelivers an update it saw no answer for (same
//! `update_id`), through the webhook or `getUpdates`, to this replica or another. The second
//! delivery changes nothing and sends nothing.

use neurocards_core::conversation::{self, ConversationSettings, Delivery};
use neurocards_core::domain::UserId;
use neurocards_core::web;
use neurocards_testkit::bot_harness::{test_settings, BotHarness};
use neurocards_testkit::fake_telegram::TgUser;
use neurocards_testkit::stores::pg_database;
use std::sync::Arc;
use std::time::Duration;
use teloxide::update_listeners::Polling;

const ADMIN: i64 = 700;
const SECRET: &str = "redelivery_secret-0123";

fn admin_settings() -> ConversationSettings {
    ConversationSettings { admin_ids: [UserId(ADMIN)].into(), ..test_settings() }
}

async fn grants_to(h: &BotHarness, user: i64) -> i64 {
    let (n,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM ledger WHERE user_id = $1 AND reason = 'grant'")
            .bind(user)
            .fetch_one(h.pool())
            .await
            .expect("ledger");
    n
}

#[tokio::test]
async fn a_redelivered_grant_mints_credits_once() {
    let Some(db) = pg_database().await else { return };
    let pool = db.pool.clone();
    let h = BotHarness::start(pool, admin_settings()).await;
    let other_replica = h.restart().await;
    let admin = TgUser::new(ADMIN).language("en");
    let user = TgUser::new(701).language("en");
    h.onboard(&admin).await;
    h.onboard(&user).await;

    let grant = h.telegram.command_update(&admin, "/grant 701 5 contest");
    assert_eq!(h.deliver(grant.clone()).await, Delivery::Done);
    let calls = h.telegram.all_calls().len();
    // Again on this replica, and on another one (after a restart or behind a load balancer).
    assert_eq!(h.deliver(grant.clone()).await, Delivery::Done);
    assert_eq!(other_replica.deliver(grant).await, Delivery::Done);

    assert_eq!(grants_to(&h, 701).await, 1, "one ledger entry");
    assert_eq!(h.balance(&user).await, 5);
    assert_eq!(h.telegram.all_calls().len(), calls, "nothing sent for the repeats");
    let notices = h.telegram.texts_to(701).iter().filter(|t| t.contains("You received")).count();
    assert_eq!(notices, 1);
    let metrics = h.ctx.counters.render();
    assert!(metrics.contains("neurocards_bot_repeated_updates_total 1"), "{metrics}");
}

#[tokio::test]
async fn a_redelivered_start_tap_places_one_order_and_answers_once() {
    let Some(db) = pg_database().await else { return };
    let pool = db.pool.clone();
    let h = BotHarness::start(pool, test_settings()).await;
    let user = TgUser::new(702);
    h.onboard(&user).await;
    h.grant(&user, 10).await;
    h.press(&user, "create").await;
    h.send_photo(&user).await;
    h.say(&user, "A mug").await;
    h.press(&user, "tpl:ugc").await;
    h.press(&user, "skip").await;
    h.press(&user, "cnt:3").await;
    let tap = h.telegram.press_update(&user, "go:").expect("the summary offers Start");

    h.deliver(tap.clone()).await;
    let second_replica = h.restart().await;
    let calls = h.telegram.all_calls().len();
    second_replica.deliver(tap.clone()).await;
    h.deliver(tap).await;

    assert_eq!(h.orders_of(&user).await, 1);
    assert_eq!(h.jobs_of(&user).await, 3);
    assert_eq!(h.balance(&user).await, 7, "charged once");
    assert_eq!(h.telegram.all_calls().len(), calls, "the repeats are not even answered again");
}

#[tokio::test]
async fn a_redelivered_broadcast_runs_once() {
    let Some(db) = pg_database().await else { return };
    let pool = db.pool.clone();
    let h = BotHarness::start(pool, admin_settings()).await;
    let admin = TgUser::new(ADMIN).language("en");
    let user = TgUser::new(703).language("en");
    h.onboard(&admin).await;
    h.onboard(&user).await;

    let broadcast = h.telegram.command_update(&admin, "/broadcast Sale today");
    h.deliver(broadcast.clone()).await;
    h.deliver(broadcast).await;
    let done = h
        .telegram
        .wait_until(Duration::from_secs(10), |tg| {
            tg.texts_to(ADMIN).iter().any(|t| t.contains("Broadcast finished"))
        })
        .await;
    assert!(done, "the broadcast reports back");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let received = h.telegram.texts_to(703).iter().filter(|t| t.contains("Sale today")).count();
    assert_eq!(received, 1, "each user gets the broadcast once");
    let reports =
        h.telegram.texts_to(ADMIN).iter().filter(|t| t.contains("Broadcast finished")).count();
    assert_eq!(reports, 1);
}

#[tokio::test]
async fn the_webhook_handles_a_redelivered_update_once_and_asks_again_when_it_cannot_claim() {
    let Some(db) = pg_database().await else { return };
    let pool = db.pool.clone();
    let h = BotHarness::start(pool, admin_settings()).await;
    let base = h.serve_http(SECRET).await;
    let url = format!("{base}{}", web::WEBHOOK_PATH);
    let client = reqwest::Client::new();
    let admin = TgUser::new(ADMIN).language("en");
    let user = TgUser::new(704).language("en");
    h.onboard(&admin).await;
    h.onboard(&user).await;

    let grant = h.telegram.command_update(&admin, "/grant 704 3");
    for _ in 0..3 {
        let answer = client
            .post(&url)
            .header("X-Telegram-Bot-Api-Secret-Token", SECRET)
            .json(&grant)
            .send()
            .await
            .expect("request");
        assert_eq!(answer.status(), 200);
    }
    assert_eq!(grants_to(&h, 704).await, 1);
    assert_eq!(h.balance(&user).await, 3);

    // The claim cannot be recorded: nothing is done and Telegram is asked to deliver again.
    let calls = h.telegram.all_calls().len();
    let next = h.telegram.command_update(&admin, "/grant 704 3");
    h.pool().close().await;
    let answer = client
        .post(&url)
        .header("X-Telegram-Bot-Api-Secret-Token", SECRET)
        .json(&next)
        .send()
        .await
        .expect("request");
    assert_eq!(answer.status(), 503);
    assert_eq!(h.telegram.all_calls().len(), calls, "nothing was done or said");
}

#[tokio::test]
async fn a_polled_update_delivered_twice_is_handled_once() {
    let Some(db) = pg_database().await else { return };
    let pool = db.pool.clone();
    let h = BotHarness::start(pool, admin_settings()).await;
    let admin = TgUser::new(ADMIN).language("en");
    let user = TgUser::new(705).language("en");
    h.onboard(&admin).await;
    h.onboard(&user).await;

    // A poller that died before confirming its offset leaves the update for the next one,
    // which may see it again beside the first copy.
    let grant = h.telegram.command_update(&admin, "/grant 705 4");
    h.telegram.push_update(grant.clone());
    h.telegram.push_update(grant);
    let storage = neurocards_core::postgres::PgDialogueStorage::erased(h.pool().clone());
    let mut dispatcher = conversation::dispatcher(h.bot.clone(), h.ctx.clone(), storage);
    let token = dispatcher.shutdown_token();
    let listener = Polling::builder(h.bot.clone())
        .timeout(Duration::from_secs(1))
        .allowed_updates(conversation::ALLOWED_UPDATES.to_vec())
        .build();
    let polling = tokio::spawn(async move {
        dispatcher
            .dispatch_with_listener(
                listener,
                Arc::new(teloxide::error_handlers::IgnoringErrorHandler),
            )
            .await;
    });
    let granted = h
        .telegram
        .wait_until(Duration::from_secs(10), |tg| {
            tg.texts_to(ADMIN).iter().any(|t| t.contains("Granted 4 credits"))
        })
        .await;
    assert!(granted, "the poller handled the update");
    tokio::time::sleep(Duration::from_millis(500)).await;
    loop {
        if let Ok(done) = token.shutdown() {
            done.await;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    polling.await.expect("dispatcher");

    assert_eq!(grants_to(&h, 705).await, 1, "granted once");
    assert_eq!(h.balance(&user).await, 4);
}
