//! From the first `/start` to the delivered video: the conversation places the order, the
//! worker generates it against FakeKie and FakeOpenAi and delivers it through FakeTelegram.

use neurocards_testkit::binaries::service_command;
use neurocards_testkit::bot_harness::{bot_binary, test_settings, BotHarness};
use neurocards_testkit::both_stores;
use neurocards_testkit::fake_telegram::{Failure, MediaSource, TgUser};
use neurocards_testkit::first_order::{place_first_order, wait_for_videos};
use neurocards_testkit::stores::pg_database;
use neurocards_testkit::system::TestSystem;
use std::time::Duration;

/// Photo, description, template, wishes or idea, `count`, Start — from the main menu.
async fn order(h: &BotHarness, user: &TgUser, tpl: &str, count: u32) {
    h.press(user, "create").await;
    h.send_photo(user).await;
    h.say(user, "Ceramic mug, 350 ml, dishwasher safe").await;
    h.press(user, &format!("tpl:{tpl}")).await;
    match tpl {
        "own_idea" => {
            h.say(user, "The mug on a windowsill at sunrise").await;
            h.press(user, "idea:ok").await;
        }
        "ad" => h.say(user, "Warm light").await,
        _ => h.press(user, "skip").await,
    }
    h.press(user, &format!("cnt:{count}")).await;
    let start = h.button_data(user, "🚀");
    h.press(user, &start).await;
}

both_stores! {
    async fn the_conversation_ends_with_the_worker_delivering_the_videos(store) {
        let mut system = TestSystem::start(store).await;
        system.start_worker();
        let telegram = system.telegram.clone();
        let h = BotHarness::with_telegram(telegram, system.store.clone(), test_settings()).await;
        let mut id = 70_000;
        for tpl in ["ugc", "ad", "own_idea"] {
            for count in [1usize, 3] {
                id += 1;
                let user = TgUser::new(id).language("en");
                h.onboard(&user).await;
                h.grant(&user, 10).await;
                order(&h, &user, tpl, count as u32).await;
                let delivered = system
                    .telegram
                    .wait_until(Duration::from_secs(60), |tg| tg.videos_to(user.id).len() >= count)
                    .await;
                assert!(delivered, "{tpl}/{count}: {:?}", system.telegram.texts_to(user.id));
                let videos = system.telegram.videos_to(user.id);
                assert_eq!(videos.len(), count, "{tpl}/{count}: each video once");
                assert_eq!(h.balance(&user).await, 10 - count as i64);
            }
        }

        // "Make another with this product" under the last video: back to the template choice.
        let user = TgUser::new(id).language("en");
        let video = system.telegram.videos_to(user.id).pop().expect("a video");
        let again = video
            .buttons
            .iter()
            .flatten()
            .find_map(|b| b.callback_data.clone().filter(|d| d.starts_with("mk:")))
            .expect("the video offers Make another");
        h.press_on(&user, video.message_id, &again).await;
        assert!(h.last(&user).callback_data().contains(&"tpl:ugc"));
        system.wait_all_terminal(Duration::from_secs(30)).await;
        system.assert_invariants().await;
    }
}

both_stores! {
    async fn my_videos_pages_the_delivered_videos_by_file_id_and_repeats_an_order(store) {
        let mut system = TestSystem::start(store).await;
        system.start_worker();
        let telegram = system.telegram.clone();
        let h = BotHarness::with_telegram(telegram, system.store.clone(), test_settings()).await;
        let user = TgUser::new(71_001).language("en");
        h.onboard(&user).await;
        h.grant(&user, 10).await;
        h.say(&user, "/videos").await;
        assert!(h.last(&user).text.contains("No videos yet"), "{}", h.last(&user).text);
        order(&h, &user, "ugc", 3).await;
        order(&h, &user, "ad", 1).await;
        let delivered = system
            .telegram
            .wait_until(Duration::from_secs(60), |tg| tg.videos_to(user.id).len() >= 4)
            .await;
        assert!(delivered, "{:?}", system.telegram.texts_to(user.id));
        system.wait_all_terminal(Duration::from_secs(30)).await;
        let file_ids: Vec<String> = system
            .telegram
            .videos_to(user.id)
            .iter()
            .filter_map(|v| v.file_id.clone())
            .collect();
        assert_eq!(file_ids.len(), 4);

        // Page 1: three videos, re-sent by file id, newest first, each with its buttons.
        let before = system.telegram.videos_to(user.id).len();
        h.press(&user, "gal:0").await;
        let page = h.last(&user);
        assert!(page.text.contains("1–3 of 4"), "{}", page.text);
        assert!(page.callback_data().contains(&"gal:1") && !page.callback_data().contains(&"gal:-1"));
        let shown = system.telegram.videos_to(user.id).split_off(before);
        assert_eq!(shown.len(), 3);
        let mut seen = std::collections::HashSet::new();
        for video in &shown {
            let MediaSource::FileId(id) = &video.source else {
                panic!("re-sent by file id, no download, no URL: {:?}", video.source)
            };
            assert!(file_ids.contains(id) && seen.insert(id.clone()), "{id} among {file_ids:?}");
            let data: Vec<&str> =
                video.buttons.iter().flatten().filter_map(|b| b.callback_data.as_deref()).collect();
            assert!(data.iter().any(|d| d.starts_with("rt:")), "{data:?}");
            assert!(data.iter().any(|d| d.starts_with("mk:")), "{data:?}");
        }
        let template = ["UGC blogger", "Product ad"]
            .into_iter()
            .find(|t| shown[0].caption.contains(t))
            .unwrap_or_else(|| panic!("the caption names the template: {}", shown[0].caption));

        // Page 2: the oldest one; a video Telegram no longer has is said to be gone.
        h.telegram.fail_next("sendVideo", Failure::bad_request("wrong file identifier/HTTP URL specified"));
        h.press(&user, "gal:1").await;
        let texts = h.telegram.texts_to(user.id);
        assert!(texts[texts.len() - 2].contains("can no longer be sent"), "{texts:?}");
        let page = h.last(&user);
        assert!(page.text.contains("4–4 of 4"), "{}", page.text);
        assert!(page.callback_data().contains(&"gal:0"));
        assert!(!page.callback_data().contains(&"gal:2"));
        // A forged page past the end shows the newest page.
        h.press_on(&user, page.message_id, "gal:99").await;
        assert!(h.last(&user).text.contains("1–3 of 4"));

        // "Repeat this order" on the newest: the same template, straight to the count.
        let repeat = shown[0]
            .buttons
            .iter()
            .flatten()
            .find_map(|b| b.callback_data.clone().filter(|d| d.starts_with("rt:")))
            .expect("repeat");
        h.press_on(&user, shown[0].message_id, &repeat).await;
        assert!(h.last(&user).callback_data().contains(&"cnt:1"), "{}", h.last(&user).text);
        h.press(&user, "cnt:1").await;
        assert!(h.last(&user).text.contains(template), "{}", h.last(&user).text);
        system.assert_invariants().await;
    }
}

#[tokio::test]
async fn the_bot_and_worker_binaries_complete_an_order() {
    let Some(db) = pg_database().await else { return };
    let pool = db.pool.clone();
    let system = TestSystem::start(pool).await;
    let mut worker = system.spawn_worker_binary();
    let mut env = system.env();
    env.insert("BOT_MODE".into(), "polling".into());
    env.insert("HTTP_ADDR".into(), "127.0.0.1:0".into());
    env.insert("START_CREDITS".into(), "1".into());
    let mut bot = service_command(&bot_binary(), env).spawn().expect("start neurocards-bot");

    let tg = &system.telegram;
    let user = TgUser::new(88_001).language("en");
    place_first_order(tg, &user).await;
    wait_for_videos(tg, &user, 1, Duration::from_secs(60)).await;
    assert!(!tg.registered_commands().to_string().is_empty(), "commands registered");

    let _ = bot.start_kill();
    let _ = worker.start_kill();
    let _ = bot.wait().await;
    let _ = worker.wait().await;
    system.assert_invariants().await;
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

#[tokio::test]
async fn queue_stats_keeps_the_previous_shape_in_polling_and_webhook_mode() {
    let Some(db) = pg_database().await else { return };
    let pool = db.pool.clone();
    // Built first: a build after the order would age its jobs by minutes.
    let bin = bot_binary();
    let system = TestSystem::start(pool).await;
    // One order of two videos waiting, no worker.
    let (_user, _order) = system.user_with_order(2, 2).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let http = reqwest::Client::new();
    for mode in ["polling", "webhook"] {
        let port = free_port();
        let mut env = system.env();
        env.insert("BOT_MODE".into(), mode.into());
        env.insert("HTTP_ADDR".into(), format!("127.0.0.1:{port}"));
        env.insert("PUBLIC_BASE_URL".into(), format!("http://127.0.0.1:{port}/"));
        env.insert("WEBHOOK_SECRET".into(), "queue-stats-webhook-secret".into());
        env.insert("WORKER_INSTANCES".into(), "4".into());
        env.remove("METRICS_TOKEN");
        let mut bot = service_command(&bin, env).spawn().expect("start neurocards-bot");
        let url = format!("http://127.0.0.1:{port}/queue_stats");
        let mut body = None;
        for _ in 0..300 {
            if let Ok(r) = http.get(&url).send().await {
                assert_eq!(r.status(), 200, "{mode}");
                body = Some(r.json::<serde_json::Value>().await.expect("JSON"));
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = bot.start_kill();
        let _ = bot.wait().await;
        let b = body.unwrap_or_else(|| panic!("{mode}: /queue_stats never answered"));
        // The previous system's fields, with their JSON types.
        assert_eq!(b["status"], "ok", "{mode}: {b}");
        assert_eq!(b["queue"]["queued"].as_u64(), Some(2), "{mode}: {b}");
        assert_eq!(b["queue"]["processing"].as_u64(), Some(0), "{mode}: {b}");
        assert_eq!(b["queue"]["total"].as_u64(), Some(2), "{mode}: {b}");
        let age = b["avg_wait_minutes"].as_f64().expect("a number");
        assert!(age > 0.0 && age < 5.0, "{mode}: average age of the waiting jobs: {b}");
        assert_eq!(b["workers_configured"].as_u64(), Some(4), "{mode}: {b}");
        let now = chrono::Utc::now().timestamp() as f64;
        let at = b["timestamp"].as_f64().expect("timestamp is a number");
        assert!((at - now).abs() < 120.0, "{mode}: {b}");
        // Our additions.
        for field in ["ready", "workers", "window_minutes", "succeeded", "failed", "cancelled"] {
            assert!(b[field].is_u64(), "{mode}: {field} in {b}");
        }
        for field in ["avg_claim_wait_minutes", "p95_claim_wait_minutes"] {
            assert!(b[field].is_f64(), "{mode}: {field} in {b}");
        }
    }
    system.assert_invariants().await;
}
