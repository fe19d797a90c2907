//! Admin commands: allowed for `ADMIN_IDS`, answered like any unknown command for everyone
//! else; the command list registered with Telegram.

use neurocards_core::conversation::{register_commands, ConversationSettings};
use neurocards_core::domain::UserId;
use neurocards_testkit::bot_harness::{test_settings, BotHarness};
use neurocards_testkit::fake_telegram::TgUser;
use neurocards_testkit::stores::pg_database;

const ADMIN: i64 = 500;

fn admin_settings() -> ConversationSettings {
    ConversationSettings { admin_ids: [UserId(ADMIN)].into(), ..test_settings() }
}

#[tokio::test]
async fn admin_commands_work_for_admins() {
    let Some(db) = pg_database().await else { return };
    let pool = db.pool.clone();
    let h = BotHarness::start(pool, admin_settings()).await;
    let admin = TgUser::new(ADMIN).language("en");
    let user = TgUser::new(501).language("en");
    h.onboard(&admin).await;
    h.onboard(&user).await;

    h.say(&admin, "/grant 501 5 contest").await;
    assert!(h.last(&admin).text.contains("Granted 5 credits to 501. Balance: 5"));
    assert!(h.last(&user).text.contains("You received 5 credits"));
    assert_eq!(h.balance(&user).await, 5);

    h.say(&admin, "/balance 501").await;
    assert!(h.last(&admin).text.contains("balance 5"), "{}", h.last(&admin).text);

    h.say(&admin, "/grant 501 zero").await;
    assert!(h.last(&admin).text.starts_with("Usage: /grant"));
    h.say(&admin, "/balance 999").await;
    assert!(h.last(&admin).text.contains("User 999 not found"));

    h.say(&admin, "/ban 501").await;
    assert!(h.last(&admin).text.contains("is banned"));
    h.say(&user, "/menu").await;
    assert!(h.last(&user).text.contains("suspended"));
    h.say(&admin, "/unban 501").await;
    h.say(&user, "/menu").await;
    assert!(h.last(&user).callback_data().contains(&"create"));

    h.say(&admin, "/stats").await;
    let stats = h.last(&admin).text;
    assert!(stats.contains("Users: 2"), "{stats}");

    let blocked = TgUser::new(502);
    h.onboard(&blocked).await;
    h.telegram.block_bot(502);
    h.say(&admin, "/broadcast Hello <all>").await;
    let done = h
        .telegram
        .wait_until(std::time::Duration::from_secs(10), |tg| {
            tg.texts_to(ADMIN).iter().any(|t| t.contains("Broadcast finished"))
        })
        .await;
    assert!(done, "the broadcast reports back");
    assert!(h
        .telegram
        .texts_to(501)
        .iter()
        .any(|t| t == "Hello &lt;all&gt;" || t == "Hello <all>"));
    let report = h.telegram.texts_to(ADMIN).into_iter().rev().find(|t| t.contains("finished"));
    assert!(report.expect("report").contains("1 blocked the bot"));
    let (blocked_at,): (Option<chrono::DateTime<chrono::Utc>>,) =
        sqlx::query_as("SELECT blocked_bot_at FROM users WHERE id = 502")
            .fetch_one(h.pool())
            .await
            .expect("user");
    assert!(blocked_at.is_some(), "blocked users are recorded and skipped next time");
}

#[tokio::test]
async fn admin_commands_are_unknown_commands_for_everyone_else() {
    let Some(db) = pg_database().await else { return };
    let pool = db.pool.clone();
    let h = BotHarness::start(pool, admin_settings()).await;
    let user = TgUser::new(600).language("en");
    h.onboard(&user).await;
    for command in ["/stats", "/grant 600 100", "/balance 600", "/ban 500", "/broadcast hi"] {
        h.say(&user, command).await;
        assert!(h.last(&user).text.contains("don't know this command"), "{command}");
    }
    assert_eq!(h.balance(&user).await, 0, "no self-granted credits");

    // Empty ADMIN_IDS means nobody.
    let nobody = BotHarness::start(h.pool().clone(), test_settings()).await;
    let admin = TgUser::new(ADMIN).language("en");
    nobody.onboard(&admin).await;
    nobody.say(&admin, "/stats").await;
    assert!(nobody.last(&admin).text.contains("don't know this command"));
}

#[tokio::test]
async fn the_command_list_is_registered() {
    let Some(db) = pg_database().await else { return };
    let pool = db.pool.clone();
    let h = BotHarness::start(pool, admin_settings()).await;
    register_commands(&h.bot, &h.ctx).await.expect("setMyCommands accepted");
    let calls = h.telegram.calls("setMyCommands");
    assert_eq!(calls.len(), 3, "ru, en and the admin's chat");
    let names: Vec<String> = calls[0].params["commands"]
        .as_array()
        .expect("commands")
        .iter()
        .filter_map(|c| c["command"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        names,
        [
            "start",
            "menu",
            "account",
            "orders",
            "videos",
            "buy",
            "paysupport",
            "help",
            "language",
            "cancel"
        ]
    );
    assert!(calls[2].params["commands"].to_string().contains("broadcast"));
    assert!(calls[2].params["commands"].to_string().contains("refund"));
}

/// Latin words an admin text must not carry into the Russian interface.
const ENGLISH: [&str; 8] =
    ["yes", "no", "temporary", "billing", "unknown", "Failed", "error", "stars"];

neurocards_testkit::both_stores! {
    async fn admin_answers_speak_the_admins_language(store) {
        use neurocards_core::domain::{ErrorClass, WorkerId};
        use neurocards_core::ports::JobFailure;
        let h = BotHarness::start(store, admin_settings()).await;
        let admin = TgUser::new(ADMIN).language("ru");
        let user = TgUser::new(510).language("en");
        h.onboard(&admin).await;
        h.onboard(&user).await;
        h.grant(&user, 2).await;
        h.spend_one(&user).await;
        let job = h.queue.claim(&WorkerId::new("w"), 1).await.expect("claim").remove(0);
        let failure = JobFailure { class: ErrorClass::Temporary, message: "KIE 500".into() };
        h.queue.fail(job.lease, &failure).await.expect("fail");

        h.say(&admin, "/balance 510").await;
        let balance = h.last(&admin).text;
        assert!(balance.contains("заблокирован: нет"), "{balance}");
        h.say(&admin, "/ban 510").await;
        h.say(&admin, "/balance 510").await;
        let balance = h.last(&admin).text;
        assert!(balance.contains("заблокирован: да"), "{balance}");
        h.say(&admin, "/stats").await;
        let stats = h.last(&admin).text;
        assert!(stats.contains("временные сбои: 1"), "{stats}");
        for text in [&balance, &stats] {
            let words: Vec<&str> = text.split(|c: char| !c.is_ascii_alphabetic()).collect();
            for english in ENGLISH {
                assert!(!words.contains(&english), "{english:?} in: {text}");
            }
        }
    }
}

neurocards_testkit::both_stores! {
    async fn a_broadcast_resumes_where_it_stopped_waits_out_flood_control_and_reaches_unblocked_users(store) {
        use neurocards_core::conversation::broadcast::resume_broadcasts;
        use neurocards_core::domain::Language;
        use neurocards_testkit::fake_telegram::Failure;
        use std::time::Duration;
        let h = BotHarness::start(store, admin_settings()).await;
        let admin = TgUser::new(ADMIN).language("ru");
        h.onboard(&admin).await;
        let users: Vec<TgUser> = (601..=603).map(|id| TgUser::new(id).language("en")).collect();
        for u in &users {
            h.onboard(u).await;
        }
        // 603 blocked the bot (a broadcast recorded it), then unblocked it and wrote again.
        h.accounts.set_bot_blocked(UserId(603), true).await.expect("recorded");
        h.say(&users[2], "/menu").await;
        let account = h.accounts.user(UserId(603)).await.expect("read").expect("exists");
        assert_eq!(account.blocked_bot_at, None, "writing again makes the user reachable");

        // A broadcast a stopped bot process left after reaching 601.
        let store = h.ctx.broadcasts.clone().expect("broadcasts are stored");
        let short = Duration::from_millis(50);
        let mut b = store.start(ADMIN, Language::Ru, "Новость <дня>", "stopped-bot", short)
            .await.expect("start");
        b.cursor = Some(UserId(601));
        b.sent = 1;
        assert!(store.advance(&b, "stopped-bot", short).await.expect("advance"));
        tokio::time::sleep(Duration::from_millis(150)).await;

        // Telegram asks the first message to wait: it is sent again, not dropped.
        h.telegram.fail_next("sendMessage", Failure::RetryAfter(1));
        resume_broadcasts(h.bot.clone(), h.ctx.clone(), tokio::time::sleep(Duration::from_millis(300))).await;
        let done = h.telegram.wait_until(Duration::from_secs(15), |tg| {
            tg.texts_to(ADMIN).iter().any(|t| t.contains("Рассылка завершена"))
        }).await;
        assert!(done, "the resumed broadcast reports back: {:?}", h.telegram.texts_to(ADMIN));
        let got = |id: i64| h.telegram.texts_to(id).iter().filter(|t| t.contains("Новость")).count();
        assert_eq!(got(601), 0, "not sent again to the user reached before the stop");
        assert_eq!(got(602), 1, "the flood-controlled message was sent again");
        assert_eq!(got(603), 1, "the unblocked user gets it");
        let report = h.telegram.texts_to(ADMIN).into_iter().rev()
            .find(|t| t.contains("Рассылка завершена")).expect("report");
        assert!(report.contains("отправлено 3") && report.contains("ошибок 0"), "{report}");
        assert_eq!(store.take_abandoned("another-bot", short).await.expect("read"), None, "finished");
    }
}

neurocards_testkit::both_stores! {
    async fn stats_show_the_fleets_key_states_and_an_admin_puts_keys_back(store) {
        use neurocards_core::domain::ErrorClass;
        use neurocards_core::ports::{KeyOff, KeyOffKind};
        use neurocards_core::queue_config::QueueConfig;
        let keys = store.stores(QueueConfig::default()).keys;
        let h = BotHarness::start(store, admin_settings()).await;
        let admin = TgUser::new(ADMIN).language("en");
        h.onboard(&admin).await;
        // What workers record: one key blocked for billing, one with a balance read.
        let until = chrono::Utc::now() + chrono::Duration::hours(24);
        keys.set_off("key-0a0a0a0a", KeyOff { kind: KeyOffKind::Blocked, until, class: ErrorClass::Billing })
            .await
            .expect("recorded");
        keys.record_balance("key-0b0b0b0b", Ok(4321.0)).await.expect("recorded");

        h.say(&admin, "/stats").await;
        let stats = h.last(&admin).text;
        assert!(stats.contains("key-0a0a0a0a: blocked until"), "{stats}");
        assert!(stats.contains("(billing)"), "{stats}");
        assert!(stats.contains("key-0b0b0b0b: in rotation · 4321 credits"), "{stats}");

        h.say(&admin, "/unblock_keys sk-secret").await;
        assert!(h.last(&admin).text.contains("Usage: /unblock_keys"));
        h.say(&admin, "/unblock_keys key-0a0a0a0a").await;
        let answer = h.last(&admin).text;
        assert!(answer.contains("1 were out"), "{answer}");
        h.say(&admin, "/stats").await;
        let stats = h.last(&admin).text;
        assert!(stats.contains("key-0a0a0a0a: in rotation"), "{stats}");
        assert!(keys.keys().await.expect("listed").iter().all(|k| k.off.is_none()));
    }
}
