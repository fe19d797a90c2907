//! The conversation driven through FakeTelegram with a real database: the user's story, one
//! update at a time, through the real handler tree.

use neurocards_core::conversation::{Action, ConversationSettings};
use neurocards_core::domain::Credits;
use neurocards_testkit::bot_harness::{test_settings, BotHarness};
use neurocards_testkit::both_stores;
use neurocards_testkit::fake_telegram::TgUser;

fn answers(h: &BotHarness) -> Vec<Option<String>> {
    h.telegram
        .calls("answerCallbackQuery")
        .iter()
        .map(|c| c.str_param("text").map(str::to_owned))
        .collect()
}

/// Photo, description, template `tpl`, its wishes or idea, `count` videos, Start.
async fn order_with(h: &BotHarness, user: &TgUser, tpl: &str, count: u32) {
    h.press(user, "create").await;
    assert!(h.last(user).text.contains("10"), "the photo question states the photo rules");
    h.send_photo(user).await;
    h.say(user, "Ceramic mug, 350 ml, <dishwasher safe> & microwave safe").await;
    h.press(user, &format!("tpl:{tpl}")).await;
    match tpl {
        "own_idea" => {
            h.say(user, "The mug on a windowsill at sunrise, steam rising").await;
            assert!(h.last(user).callback_data().contains(&"idea:ok"));
            h.press(user, "idea:ok").await;
        }
        "ad" => h.say(user, "Warm light, cosy kitchen").await,
        _ => h.press(user, "skip").await,
    }
    h.press(user, &format!("cnt:{count}")).await;
    let summary = h.last(user);
    assert!(summary.text.contains("&lt;dishwasher safe&gt; &amp;"), "user text is escaped");
    let start = summary
        .callback_data()
        .into_iter()
        .find(|d| d.starts_with("go:"))
        .expect("the summary offers Start")
        .to_owned();
    assert!(summary.all_buttons()[0].text.contains(&count.to_string()));
    h.press(user, &start).await;
}

both_stores! {
    async fn whole_conversation_for_each_template_with_one_and_three_videos(store) {
        let h = BotHarness::start(store, test_settings()).await;
        let mut id = 1000;
        for tpl in ["ugc", "ad", "own_idea"] {
            for count in [1u32, 3] {
                id += 1;
                let user = TgUser::new(id);
                h.onboard(&user).await;
                h.grant(&user, 10).await;
                order_with(&h, &user, tpl, count).await;
                let accepted = h.last(&user);
                assert!(accepted.text.contains("Приняла"), "{tpl}/{count}: {}", accepted.text);
                assert_eq!(h.orders_of(&user).await, 1, "{tpl}/{count}");
                assert_eq!(h.jobs_of(&user).await, i64::from(count), "{tpl}/{count}");
                assert_eq!(h.balance(&user).await, 10 - i64::from(count), "{tpl}/{count}");
                let (template,): (String,) = h
                    .store
                    .row(&format!("SELECT template FROM orders WHERE user_id = {}", user.id))
                    .await;
                assert_eq!(template, tpl);
            }
        }
        let (prompt,): (Option<String>,) = h
            .store
            .row("SELECT user_prompt FROM orders WHERE template = 'own_idea' LIMIT 1")
            .await;
        assert!(prompt.expect("approved prompt stored").contains("windowsill"));
        assert!(answers(&h).iter().all(Option::is_none), "every happy-path tap is acknowledged");
    }
}

both_stores! {
    async fn start_registers_once_asks_consent_once_and_gives_start_credits_once(store) {
        let settings = ConversationSettings {
            start_credits: Credits::new(2).expect("valid"),
            welcome_video_ids: vec!["demo-1".into(), "demo-2".into()],
            ..test_settings()
        };
        let h = BotHarness::start(store, settings).await;
        let user = TgUser::new(7).language("en");
        h.say(&user, "/start").await;
        assert!(
            h.last(&user).text.contains("user agreement"),
            "English from the Telegram language"
        );
        h.press(&user, "terms").await;
        assert_eq!(h.telegram.calls("sendMediaGroup").len(), 1, "demo videos after consent");
        assert!(h.last(&user).callback_data().contains(&"create"), "main menu shown");
        h.say(&user, "/start").await;
        assert!(h.last(&user).callback_data().contains(&"create"), "no second consent question");
        assert_eq!(h.balance(&user).await, 2, "start credits once");
        let (consents,): (i64,) = h
            .store
            .row("SELECT count(*) FROM users WHERE id = 7 AND consent_at IS NOT NULL")
            .await;
        assert_eq!(consents, 1);
    }
}

both_stores! {
    async fn make_another_returns_to_the_template_choice_with_the_same_product(store) {
        let h = BotHarness::start(store, test_settings()).await;
        let user = TgUser::new(11);
        h.onboard(&user).await;
        h.grant(&user, 5).await;
        order_with(&h, &user, "ugc", 1).await;
        let (product_id,): (i64,) =
            h.store.row("SELECT product_id FROM orders WHERE user_id = 11").await;
        // The worker's button under the video (its message is not the bot's conversation message).
        let product = neurocards_core::domain::ProductId(product_id);
        let data = Action::MakeAnother { product_id: product }.encode();
        h.press_on(&user, 9999, &data).await;
        assert!(h.last(&user).callback_data().contains(&"tpl:ad"), "template choice again");
        h.press(&user, "tpl:ad").await;
        h.press(&user, "skip").await;
        h.press(&user, "cnt:1").await;
        let start = h.button_data(&user, "🚀");
        h.press(&user, &start).await;
        let products: Vec<(Option<i64>,)> =
            h.store.rows("SELECT product_id FROM orders WHERE user_id = 11 ORDER BY id").await;
        assert_eq!(products, vec![(Some(product_id),), (Some(product_id),)]);
    }
}

both_stores! {
    async fn insufficient_credits_say_how_many_are_missing_and_offer_top_up(store) {
        let h = BotHarness::start(store, test_settings()).await;
        let user = TgUser::new(12).language("en");
        h.onboard(&user).await;
        h.grant(&user, 1).await;
        order_with(&h, &user, "ugc", 3).await;
        let reply = h.last(&user);
        assert!(reply.text.contains("costs 3") && reply.text.contains("2 more"), "{}", reply.text);
        assert!(reply.callback_data().contains(&"topup"));
        assert_eq!(h.orders_of(&user).await, 0);
        assert_eq!(h.balance(&user).await, 1);
        h.press(&user, "topup").await;
        let packs = h.last(&user);
        assert!(packs.text.contains("Buy credits"), "{}", packs.text);
        assert!(packs.callback_data().contains(&"buy:s:pack5"), "a Stars button per pack");
    }
}

both_stores! {
    async fn wrong_pictures_get_a_specific_message_and_the_question_again(store) {
        let h = BotHarness::start(store, test_settings()).await;
        let user = TgUser::new(13).language("en");
        h.onboard(&user).await;
        h.press(&user, "create").await;

        let (pdf, _) =
            h.telegram.document_update(&user, "a.pdf", "application/pdf", b"%PDF".to_vec(), None);
        h.deliver(pdf).await;
        let texts = h.telegram.texts_to(user.id);
        assert!(texts[texts.len() - 2].contains("application/pdf"), "{:?}", texts);
        assert!(texts[texts.len() - 1].contains("no people"), "the question again");

        let (big, _) = h.telegram.document_update(
            &user,
            "big.png",
            "image/png",
            b"\x89PNG\r\n\x1a\n".to_vec(),
            Some(11 * 1024 * 1024),
        );
        h.deliver(big).await;
        let texts = h.telegram.texts_to(user.id);
        assert!(texts[texts.len() - 2].contains("11.0 MB"), "{:?}", texts);

        h.say(&user, "here it is").await;
        let texts = h.telegram.texts_to(user.id);
        assert!(texts[texts.len() - 2].contains("I need a product photo"), "{:?}", texts);

        h.say(&user, "https://example.com/p/1").await;
        let texts = h.telegram.texts_to(user.id);
        assert!(texts[texts.len() - 2].contains("Wildberries, Ozon and Yandex Market only"));

        // A marketplace link whose image cannot be taken (here: no image finder at all) asks
        // for a photo and stores nothing; an image sent as a file is fine.
        h.say(&user, "https://www.ozon.ru/product/mug-123/").await;
        assert!(h.last(&user).text.contains("couldn't take a product image"));
        let (png, _) = h.telegram.document_update(
            &user,
            "p.png",
            "image/png",
            b"\x89PNG\r\n\x1a\n".to_vec(),
            None,
        );
        h.deliver(png).await;
        assert!(h.last(&user).text.contains("describe the product"));
        h.say(&user, "A mug").await;
        let (url, mime): (Option<String>, Option<String>) = h
            .store
            .row("SELECT marketplace_url, photo_mime FROM products WHERE user_id = 13")
            .await;
        assert_eq!((url, mime.as_deref()), (None, Some("png")));
    }
}

both_stores! {
    async fn free_text_limits_and_unexpected_input_get_hints_never_silence(store) {
        let h = BotHarness::start(store, test_settings()).await;
        let user = TgUser::new(14).language("en");
        h.onboard(&user).await;
        h.press(&user, "create").await;
        h.send_photo(&user).await;
        h.say(&user, &"x".repeat(2001)).await;
        assert!(h.last(&user).text.contains("2001 characters, the limit is 2000"));
        h.send_photo(&user).await;
        assert!(h.last(&user).text.contains("description as text"), "hint for the step");
        h.say(&user, "A mug").await;
        h.say(&user, "ugc please").await;
        let hint = h.last(&user);
        assert!(hint.text.contains("choose a template"), "{}", hint.text);
        assert!(hint.callback_data().contains(&"tpl:ugc"), "the buttons again");
        h.press(&user, "tpl:ugc").await;
        h.say(&user, &"w".repeat(1001)).await;
        assert!(h.last(&user).text.contains("limit is 1000"));
        h.press(&user, "skip").await;
        h.say(&user, "three").await;
        assert!(h.last(&user).callback_data().contains(&"cnt:3"), "count hint with buttons");
        h.say(&user, "/cancel").await;
        assert!(h.last(&user).callback_data().contains(&"create"), "/cancel leaves the step");
        h.say(&user, "/nonsense").await;
        assert!(h.last(&user).text.contains("don't know this command"));
    }
}

both_stores! {
    async fn stale_and_unknown_buttons_get_a_short_answer(store) {
        let h = BotHarness::start(store, test_settings()).await;
        let user = TgUser::new(15).language("en");
        h.onboard(&user).await;
        let before = h.message_count(&user);
        h.press_on(&user, 1, "cnt:3").await;
        h.press_on(&user, 1, "go:0123456789abcdef0123456789abcdef").await;
        h.press_on(&user, 1, "make_another_same_product").await;
        h.press_on(&user, 1, "tpl:nonexistent").await;
        assert_eq!(h.message_count(&user), before, "no new messages for stale buttons");
        let answered = answers(&h);
        let stale: Vec<_> = answered.iter().rev().take(4).collect();
        assert!(
            stale.iter().all(|a| a.as_deref() == Some("This button is no longer active.")),
            "{stale:?}"
        );
    }
}

both_stores! {
    async fn double_tap_on_start_places_one_order(store) {
        let h = BotHarness::start(store, test_settings()).await;
        let second_replica = h.restart().await;
        let user = TgUser::new(16);
        h.onboard(&user).await;
        h.grant(&user, 10).await;
        h.press(&user, "create").await;
        h.send_photo(&user).await;
        h.say(&user, "A mug").await;
        h.press(&user, "tpl:ugc").await;
        h.press(&user, "skip").await;
        h.press(&user, "cnt:3").await;
        let start = h.button_data(&user, "🚀");
        let summary = h.last(&user).message_id;
        let taps = answers(&h).len();
        // Two taps at once, on two replicas (no shared in-process lock), plus a late third.
        let first = h.telegram.callback_update(&user, summary, &start);
        let second = h.telegram.callback_update(&user, summary, &start);
        tokio::join!(h.deliver(first), second_replica.deliver(second));
        h.press_on(&user, summary, &start).await;
        assert_eq!(h.orders_of(&user).await, 1);
        assert_eq!(h.jobs_of(&user).await, 3);
        assert_eq!(h.balance(&user).await, 7, "charged once");
        assert_eq!(answers(&h).len(), taps + 3, "every tap answered");
        let texts = h.telegram.texts_to(user.id);
        let accepted = texts.iter().filter(|t| t.contains("Приняла")).count();
        assert_eq!(accepted, 1, "accepted said once");
    }
}

both_stores! {
    async fn a_restart_in_the_middle_of_a_dialogue_keeps_the_state(store) {
        let h = BotHarness::start(store, test_settings()).await;
        let user = TgUser::new(17).language("en");
        h.onboard(&user).await;
        h.press(&user, "create").await;
        h.send_photo(&user).await;
        let restarted = h.restart().await;
        drop(h);
        restarted.say(&user, "A mug").await;
        assert!(restarted.last(&user).callback_data().contains(&"tpl:ugc"), "went on to templates");
        // A host that reads state and account separately sees the same dialogue.
        let separate = restarted.restart_reading_separately().await;
        drop(restarted);
        separate.press(&user, "tpl:ugc").await;
        assert!(separate.last(&user).callback_data().contains(&"skip"), "went on to wishes");
    }
}

both_stores! {
    async fn banned_users_are_told_so(store) {
        let h = BotHarness::start(store, test_settings()).await;
        let user = TgUser::new(18).language("en");
        h.onboard(&user).await;
        assert_eq!(h.store.execute("UPDATE users SET banned = true WHERE id = 18").await, 1);
        h.say(&user, "/start").await;
        assert!(h.last(&user).text.contains("suspended"));
        h.press_on(&user, 1, "create").await;
        assert_eq!(
            answers(&h).last().cloned().flatten().as_deref().map(|t| t.contains("suspended")),
            Some(true)
        );
    }
}

both_stores! {
    async fn order_rate_limit_refuses_the_next_order(store) {
        let settings = ConversationSettings {
            order_rate_limit: Some(neurocards_core::conversation::OrderRateLimit {
                max_orders: 1,
                window: std::time::Duration::from_secs(600),
            }),
            ..test_settings()
        };
        let h = BotHarness::start(store, settings).await;
        let user = TgUser::new(19).language("en");
        h.onboard(&user).await;
        h.grant(&user, 10).await;
        order_with(&h, &user, "ugc", 1).await;
        order_with(&h, &user, "ugc", 1).await;
        assert!(h.last(&user).text.contains("Too many orders"), "{}", h.last(&user).text);
        assert_eq!(h.orders_of(&user).await, 1);
    }
}

both_stores! {
    async fn every_button_the_bot_sends_has_a_handler(store) {
        let h = BotHarness::start(store, test_settings()).await;
        // Walk every screen in both languages: onboarding, menu, account, help, top-up, each
        // template up to the summary, insufficient credits, an accepted order.
        for (id, lang) in [(40, "ru"), (41, "en")] {
            let user = TgUser::new(id).language(lang);
            h.onboard(&user).await;
            for screen in ["account", "help", "topup", "menu"] {
                h.press(&user, screen).await;
            }
            order_with(&h, &user, "own_idea", 5).await;
            h.press(&user, "idea:more").await;
            h.grant(&user, 5).await;
            order_with(&h, &user, "ad", 1).await;
            h.say(&user, "/language").await;
        }
        let mut seen = std::collections::BTreeSet::new();
        for call in h.telegram.all_calls() {
            for button in call.buttons().into_iter().flatten() {
                if let Some(data) = button.callback_data {
                    assert!(
                        Action::parse(&data).is_some(),
                        "{data:?} ({}) has no handler",
                        button.text
                    );
                    seen.insert(data);
                }
            }
        }
        let expected = ["terms", "create", "account", "help", "topup", "menu", "skip", "idea:ok"];
        for data in expected {
            assert!(seen.contains(data), "{data} was never offered: {seen:?}");
        }
        // Pressing every one of them from the menu is answered, without a handler error.
        let user = TgUser::new(42).language("en");
        h.onboard(&user).await;
        let before = h.telegram.calls("answerCallbackQuery").len();
        for data in &seen {
            h.press_on(&user, 1, data).await;
            h.say(&user, "/menu").await;
        }
        assert_eq!(h.telegram.calls("answerCallbackQuery").len(), before + seen.len());
        let errors = h.ctx.counters.handler_errors.load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(errors, 0, "no handler failed");
    }
}

both_stores! {
    async fn send_the_video_sends_a_finished_video_to_its_owner_only(store) {
        use neurocards_core::domain::{Language, StepResult, WorkerId};
        use neurocards_core::ports::{Notifier, Recipient, VideoMessage};
        use neurocards_core::telegram::{build_bot, BotOptions, TelegramNotifier};
        let h = BotHarness::start(store, test_settings()).await;
        let owner = TgUser::new(60).language("en");
        let stranger = TgUser::new(61).language("ru");
        h.onboard(&owner).await;
        h.onboard(&stranger).await;
        h.grant(&owner, 1).await;
        h.spend_one(&owner).await;
        // A worker generated the video; its send may not have arrived, so it offered it.
        let job = h.queue.claim(&WorkerId::new("w"), 1).await.expect("claim").remove(0);
        let url = "https://files.example/v/offered.mp4";
        let generated = StepResult::Generated { video_url: url.into() };
        h.queue.record_step(job.lease, &generated).await.expect("record video");
        // The worker's notifier sends the offer, as the pipeline does.
        let tg = build_bot(&h.telegram.token(), &h.telegram.api_url(), &BotOptions::default())
            .expect("bot builds");
        let notifier = TelegramNotifier::new(tg, neurocards_testkit::local_fetch());
        let video = VideoMessage {
            video_url: url.into(),
            order_id: job.order_id,
            job_id: job.lease.job_id,
            product_id: job.spec.product_id,
            index: 1,
            total: 1,
        };
        let to = Recipient { user_id: job.user_id, language: Language::En };
        let offer = notifier.offer_video(to, &video).await.expect("offer sent");
        let text = h.last(&owner).text;
        assert!(text.contains("may not have arrived") && text.contains(url), "{text}");
        let data = format!("vid:{}", job.lease.job_id);
        assert!(h.last(&owner).callback_data().contains(&data.as_str()));

        h.press_on(&stranger, offer.message_id, &data).await;
        assert!(h.telegram.videos_to(stranger.id).is_empty(), "another user's video is not sent");
        assert!(h.telegram.videos_to(owner.id).is_empty());
        let stale = answers(&h).pop().flatten().expect("the stranger is told");
        assert!(stale.contains("больше не активна"), "{stale}");

        h.press(&owner, &data).await;
        let videos = h.telegram.videos_to(owner.id);
        assert_eq!(videos.len(), 1, "sent on request");
        let offer_now = h.telegram.messages_to(owner.id).into_iter()
            .find(|m| m.message_id == offer.message_id).expect("the offer stays");
        assert!(offer_now.buttons.is_empty(), "the offer no longer invites a second copy");
        assert!(format!("{:?}", videos[0].source).contains("offered.mp4"), "{:?}", videos[0].source);
        assert!(videos[0].caption.contains("ready"), "{}", videos[0].caption);
        let buttons: Vec<&str> = videos[0].buttons.iter().flatten()
            .filter_map(|b| b.callback_data.as_deref()).collect();
        assert!(buttons.contains(&"menu") && buttons.iter().any(|d| d.starts_with("mk:")), "{buttons:?}");

        h.press_on(&owner, offer.message_id, "vid:987654321").await;
        assert_eq!(h.telegram.videos_to(owner.id).len(), 1, "an unknown job sends nothing");
        let errors = h.ctx.counters.handler_errors.load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(errors, 0);
    }
}

both_stores! {
    async fn a_photo_at_the_main_menu_starts_a_new_video(store) {
        let h = BotHarness::start(store, test_settings()).await;
        for (id, lang, asks) in [(70, "en", "describe the product"), (71, "ru", "опиши товар")] {
            let user = TgUser::new(id).language(lang);
            // Before consent a photo only brings the terms back.
            h.say(&user, "/start").await;
            h.send_photo(&user).await;
            assert!(
                h.last(&user).callback_data().contains(&"terms"),
                "{lang}: consent first: {}",
                h.last(&user).text
            );
            h.press(&user, "terms").await;
            // Right after /start (consent given, menu shown) and from the main menu.
            h.send_photo(&user).await;
            let text = h.last(&user).text.to_lowercase();
            assert!(text.contains(asks), "{lang}: the photo starts a video: {text}");
            h.say(&user, "A ceramic mug, 350 ml").await;
            assert!(h.last(&user).callback_data().iter().any(|d| d.starts_with("tpl:")), "{lang}");
            h.press(&user, "menu").await;
            h.send_photo(&user).await;
            let text = h.last(&user).text.to_lowercase();
            assert!(text.contains(asks), "{lang}: from the menu too: {text}");
        }
    }
}

both_stores! {
    async fn retry_after_a_failure_orders_the_same_request_again(store) {
        use neurocards_core::domain::{ErrorClass, WorkerId};
        use neurocards_core::ports::JobFailure;
        let h = BotHarness::start(store, test_settings()).await;
        for (id, lang, asks) in [(80, "en", "How many videos"), (81, "ru", "Сколько видео")] {
            let user = TgUser::new(id).language(lang);
            h.onboard(&user).await;
            h.grant(&user, 2).await;
            order_with(&h, &user, "ad", 1).await;
            // The worker failed the job for good and refunded it.
            let mut claimed = h.queue.claim(&WorkerId::new("w"), 10).await.expect("claim");
            let at = claimed.iter().position(|j| j.user_id.get() == id).expect("this user's job");
            let job = claimed.remove(at);
            let others: Vec<_> = claimed.iter().map(|j| j.lease).collect();
            h.queue.release(&others).await.expect("release the others");
            let failure = JobFailure { class: ErrorClass::Temporary, message: "KIE 500".into() };
            h.queue.fail(job.lease, &failure).await.expect("fail with refund");
            assert_eq!(h.balance(&user).await, 2, "{lang}: refunded");

            h.press_on(&user, 1, &format!("rt:{}", job.order_id)).await;
            let question = h.last(&user);
            assert!(question.text.contains(asks), "{lang}: straight to the count: {}", question.text);
            h.press(&user, "cnt:1").await;
            let start = h.last(&user).callback_data().into_iter()
                .find(|d| d.starts_with("go:")).expect("Start").to_owned();
            h.press(&user, &start).await;
            assert_eq!(h.orders_of(&user).await, 2, "{lang}: ordered again");
            assert_eq!(h.balance(&user).await, 1, "{lang}");
            let (same,): (i64,) = h.store.row(&format!(
                "SELECT count(DISTINCT product_id || '/' || template || '/' || coalesce(wishes, '')) \
                 FROM orders WHERE user_id = {}", user.id)).await;
            assert_eq!(same, 1, "{lang}: the same product, template and wishes");
            // Another user's order is not theirs to retry: the menu, not a copy of it.
            let stranger = TgUser::new(id + 100).language(lang);
            h.onboard(&stranger).await;
            h.press_on(&stranger, 1, &format!("rt:{}", job.order_id)).await;
            assert!(!h.last(&stranger).text.contains(asks), "{lang}: {}", h.last(&stranger).text);
            assert_eq!(h.orders_of(&stranger).await, 0);
        }
    }
}

both_stores! {
    async fn add_details_extends_an_own_idea_before_it_is_approved(store) {
        let h = BotHarness::start(store, test_settings()).await;
        for (id, lang) in [(90, "en"), (91, "ru")] {
            let user = TgUser::new(id).language(lang);
            h.onboard(&user).await;
            h.grant(&user, 1).await;
            h.press(&user, "create").await;
            h.send_photo(&user).await;
            h.say(&user, "Ceramic mug, 350 ml").await;
            h.press(&user, "tpl:own_idea").await;
            h.say(&user, "The mug on a windowsill at sunrise").await;
            h.press(&user, "idea:more").await;
            h.say(&user, "with steam rising from fresh coffee").await;
            let review = h.last(&user);
            assert!(review.text.contains("windowsill"), "{lang}: the idea kept: {}", review.text);
            assert!(review.text.contains("steam rising"), "{lang}: the details added: {}", review.text);
            h.press(&user, "idea:ok").await;
            h.press(&user, "cnt:1").await;
            let start = h.last(&user).callback_data().into_iter()
                .find(|d| d.starts_with("go:")).expect("Start").to_owned();
            h.press(&user, &start).await;
            let (prompt,): (Option<String>,) = h.store.row(&format!(
                "SELECT user_prompt FROM orders WHERE user_id = {}", user.id)).await;
            let prompt = prompt.expect("the approved idea is the order's prompt");
            assert!(prompt.contains("windowsill") && prompt.contains("steam rising"), "{lang}: {prompt}");
        }
    }
}

fn with_choices() -> ConversationSettings {
    use neurocards_core::conversation::formats::{ModelChoice, VideoChoices, VideoPrice};
    let model = |slug: &str, name: &str, durations: Vec<u32>| ModelChoice {
        slug: slug.into(),
        name: name.into(),
        durations,
    };
    let price = |model: &str, duration_secs, credits| VideoPrice {
        model: model.into(),
        duration_secs,
        credits: Credits::new(credits).expect("credits"),
    };
    ConversationSettings {
        video_choices: VideoChoices {
            models: vec![
                model("sora-2-image-to-video", "Sora 2", vec![10, 15]),
                model("kling-3.0/video", "Kling 3.0", vec![5, 10, 15]),
            ],
            prices: vec![price("sora-2-image-to-video", 15, 2), price("kling-3.0/video", 15, 3)],
        },
        ..test_settings()
    }
}

both_stores! {
    async fn the_summary_offers_model_aspect_and_length_and_charges_the_choice(store) {
        let h = BotHarness::start(store, with_choices()).await;
        let user = TgUser::new(3_001).language("en");
        h.onboard(&user).await;
        h.grant(&user, 20).await;
        h.press(&user, "create").await;
        h.send_photo(&user).await;
        h.say(&user, "Ceramic mug, 350 ml").await;
        h.press(&user, "tpl:ugc").await;
        h.press(&user, "skip").await;
        // The default: the template's 15 s vertical on the primary model, at its price.
        assert!(h.last(&user).all_buttons()[1].text.contains("6 cr."), "3 × 2 credits");
        h.press(&user, "cnt:3").await;
        let summary = h.last(&user);
        assert!(summary.text.contains("Sora 2 · 9:16 vertical, 15 s, 2 cr. per video"), "{}", summary.text);
        assert!(summary.text.contains("Cost: 6 credits"), "{}", summary.text);
        assert!(summary.text.contains("one video costs 2"), "{}", summary.text);
        let labels: Vec<String> = summary.all_buttons().iter().map(|b| b.text.clone()).collect();
        assert!(labels.contains(&"✅ 9:16 vertical".to_owned()), "{labels:?}");
        assert!(labels.contains(&"✅ 15 s — 2 cr.".to_owned()), "{labels:?}");
        assert!(labels.contains(&"10 s — 1 cr.".to_owned()), "{labels:?}");
        assert!(labels.contains(&"✅ Sora 2".to_owned()) && labels.contains(&"Kling 3.0".to_owned()));
        let old_start = h.button_data(&user, "🚀");

        // Kling, horizontal, 5 s: each change shows the summary again with a new total.
        h.press(&user, "fm:1").await;
        assert!(h.last(&user).text.contains("Kling 3.0 · 9:16 vertical, 15 s, 3 cr."), "{}", h.last(&user).text);
        h.press(&user, "fa:h").await;
        h.press(&user, "fd:5").await;
        let summary = h.last(&user);
        assert!(summary.text.contains("Kling 3.0 · 16:9 horizontal, 5 s, 1 cr. per video"), "{}", summary.text);
        assert!(summary.text.contains("Cost: 3 credits"), "{}", summary.text);
        // A length the model does not make, or the old Start with the old total: refused.
        let last = h.last(&user).message_id;
        h.press_on(&user, last, "fd:7").await;
        assert!(h.last(&user).text.contains("5 s, 1 cr."), "nothing changed");
        assert!(h.last(&user).text.contains("one video costs 1"), "{}", h.last(&user).text);
        let before = h.orders_of(&user).await;
        h.press(&user, &old_start).await;
        assert_eq!(h.orders_of(&user).await, before, "the old Start places nothing");
        assert_eq!(h.balance(&user).await, 20);

        let start = h.button_data(&user, "🚀");
        assert!(start.starts_with("go:") && start != old_start);
        h.press(&user, &start).await;
        assert_eq!(h.balance(&user).await, 17, "3 videos at the chosen 1 credit");
        let jobs = h.queue.claim(&neurocards_core::domain::WorkerId::new("w"), 3).await.expect("claim");
        assert_eq!(jobs.len(), 3);
        for job in &jobs {
            assert_eq!(job.spec.model.as_deref(), Some("kling-3.0/video"));
            assert_eq!(job.spec.options.aspect, neurocards_core::domain::AspectRatio::Landscape);
            assert_eq!(job.spec.options.duration_secs, 5);
        }
        h.store.assert_invariants().await;
    }

    async fn russian_sellers_see_the_format_in_russian_and_one_tap_still_works(store) {
        let h = BotHarness::start(store, with_choices()).await;
        let user = TgUser::new(3_002).language("ru");
        h.onboard(&user).await;
        h.grant(&user, 5).await;
        h.press(&user, "create").await;
        h.send_photo(&user).await;
        h.say(&user, "Кружка керамическая, 350 мл").await;
        h.press(&user, "tpl:ugc").await;
        h.press(&user, "skip").await;
        h.press(&user, "cnt:1").await;
        let summary = h.last(&user);
        assert!(summary.text.contains("Формат: Sora 2 · 9:16 вертикальное, 15 с, 2 кр. за видео"), "{}", summary.text);
        assert!(summary.all_buttons().iter().any(|b| b.text == "16:9 горизонтальное"));
        // Start right away: the default format at its price.
        let start = h.button_data(&user, "🚀");
        h.press(&user, &start).await;
        assert_eq!(h.balance(&user).await, 3);
        let job = h.queue.claim(&neurocards_core::domain::WorkerId::new("w"), 1).await.expect("claim");
        assert_eq!(job[0].spec.model.as_deref(), Some("sora-2-image-to-video"));
        assert_eq!(job[0].spec.options.duration_secs, 15);
    }
}
