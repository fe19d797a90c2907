//! Cancelling waiting videos (from the "accepted" message and from /orders, against a worker
//! claiming at the same moment), bans that cancel with refund and keep a reason, and the
//! per-user flood limit. Through the real conversation, on both stores.

use futures::future::join_all;
use neurocards_core::conversation::ConversationSettings;
use neurocards_core::domain::{JobStatus, UserId, WorkerId};
use neurocards_testkit::bot_harness::{test_settings, BotHarness};
use neurocards_testkit::both_stores;
use neurocards_testkit::fake_telegram::TgUser;

const ADMIN: i64 = 900;

fn admin_settings() -> ConversationSettings {
    ConversationSettings { admin_ids: [UserId(ADMIN)].into(), ..test_settings() }
}

/// Photo, description, template, `count` videos, Start.
async fn order(h: &BotHarness, user: &TgUser, count: u32) {
    h.press(user, "create").await;
    h.send_photo(user).await;
    h.say(user, "Ceramic mug, 350 ml").await;
    h.press(user, "tpl:ugc").await;
    h.press(user, "skip").await;
    h.press(user, &format!("cnt:{count}")).await;
    let start = h.button_data(user, "🚀");
    h.press(user, &start).await;
}

async fn job_states(h: &BotHarness, user: &TgUser) -> Vec<JobStatus> {
    let sql = format!("SELECT id FROM jobs WHERE user_id = {} ORDER BY id", user.id);
    let ids: Vec<(i64,)> = h.store.rows(&sql).await;
    let mut states = Vec::new();
    for (id,) in ids {
        let job = h.queue.job(neurocards_core::domain::JobId(id)).await.expect("read");
        states.push(job.expect("exists").status);
    }
    states
}

fn toasts(h: &BotHarness) -> Vec<String> {
    h.telegram
        .calls("answerCallbackQuery")
        .iter()
        .filter_map(|c| c.str_param("text").map(str::to_owned))
        .collect()
}

both_stores! {
    async fn cancel_from_the_accepted_message_refunds_at_once_and_only_once(store) {
        let h = BotHarness::start(store, test_settings()).await;
        let user = TgUser::new(91_001).language("en");
        h.onboard(&user).await;
        h.grant(&user, 10).await;
        order(&h, &user, 3).await;
        assert_eq!(h.balance(&user).await, 7);
        let accepted = h.last(&user);
        let cancel = accepted
            .callback_data()
            .into_iter()
            .find(|d| d.starts_with("cxl:"))
            .expect("the accepted message offers Cancel")
            .to_owned();

        h.press(&user, &cancel).await;
        let answer = h.last(&user).text;
        assert!(answer.contains("cancelled 3 video(s)"), "{answer}");
        assert!(answer.contains("3 credits returned. Balance: 10"), "{answer}");
        assert_eq!(h.balance(&user).await, 10);
        assert_eq!(job_states(&h, &user).await, vec![JobStatus::Cancelled; 3]);
        let after = h.telegram.messages_to(user.id);
        let pressed = after.iter().find(|m| m.message_id == accepted.message_id).expect("kept");
        assert!(pressed.buttons.is_empty(), "the Cancel button is taken away");

        // Pressed again (an old copy of the button): nothing more is refunded.
        let before = h.message_count(&user);
        h.press_on(&user, accepted.message_id, &cancel).await;
        assert_eq!(h.balance(&user).await, 10);
        assert_eq!(h.message_count(&user), before, "answered with a toast only");
        assert!(toasts(&h).last().is_some_and(|t| t.contains("Nothing to cancel")), "{:?}", toasts(&h));

        // Another user's order cannot be cancelled with a forged button.
        let other = TgUser::new(91_002).language("en");
        h.onboard(&other).await;
        h.grant(&other, 2).await;
        order(&h, &other, 1).await;
        let theirs = h.button_data(&other, "Cancel");
        h.press_on(&user, accepted.message_id, &theirs).await;
        assert_eq!(h.balance(&other).await, 1, "not cancelled by a stranger");
        assert_eq!(job_states(&h, &other).await, vec![JobStatus::Queued]);
        h.store.assert_invariants().await;
    }

    async fn orders_lists_waiting_videos_and_cancels_only_those_not_started(store) {
        let h = BotHarness::start(store, test_settings()).await;
        let user = TgUser::new(91_011).language("ru");
        h.onboard(&user).await;
        h.grant(&user, 10).await;
        order(&h, &user, 3).await;
        // A worker takes one video of the order.
        let running = h.queue.claim(&WorkerId::new("w"), 1).await.expect("claim");
        assert_eq!(running.len(), 1);

        h.say(&user, "/orders").await;
        let list = h.last(&user);
        assert!(list.text.contains("Мои заказы"), "{}", list.text);
        assert!(list.text.contains("можно отменить"), "{}", list.text);
        let label = &list.all_buttons()[0].text;
        assert!(label.contains("ждут: 2"), "{label}");
        let cancel = list.callback_data()[0].to_owned();
        assert!(cancel.starts_with("cxl:"));

        h.press(&user, &cancel).await;
        let answer = h.last(&user).text;
        assert!(answer.contains("— 2; возвращено 2 кр."), "{answer}");
        assert!(answer.contains("уже делаются, — 1"), "{answer}");
        assert_eq!(h.balance(&user).await, 9);
        let mut states = job_states(&h, &user).await;
        states.sort_by_key(|s| format!("{s:?}"));
        assert_eq!(states, vec![JobStatus::Cancelled, JobStatus::Cancelled, JobStatus::Running]);

        // Nothing left to cancel: the list offers no Cancel button.
        h.say(&user, "/orders").await;
        assert!(h.last(&user).callback_data().iter().all(|d| !d.starts_with("cxl:")));
        h.store.assert_invariants().await;
    }

    async fn a_cancel_racing_two_replicas_and_a_claiming_worker_refunds_each_job_once(store) {
        let h = BotHarness::start(store, test_settings()).await;
        let replica = h.restart().await;
        let mut users = Vec::new();
        for i in 0..6 {
            let user = TgUser::new(91_100 + i).language("en");
            h.onboard(&user).await;
            h.grant(&user, 10).await;
            order(&h, &user, 5).await;
            let cancel = h.button_data(&user, "Cancel");
            let message = h.last(&user).message_id;
            users.push((user, cancel, message));
        }
        // Each user taps Cancel on both replicas at once while a worker claims.
        let presses = users.iter().flat_map(|(user, cancel, message)| {
            [&h, &replica].map(|target| {
                let update = h.telegram.callback_update(user, *message, cancel);
                target.deliver(update)
            })
        });
        let claims = async {
            let mut claimed = 0;
            for _ in 0..15 {
                claimed += h.queue.claim(&WorkerId::new("w"), 2).await.expect("claim").len();
                tokio::task::yield_now().await;
            }
            claimed
        };
        let (_, claimed) = tokio::join!(join_all(presses), claims);
        let mut cancelled_total = 0;
        for (user, _, _) in &users {
            let states = job_states(&h, user).await;
            let cancelled = states.iter().filter(|s| **s == JobStatus::Cancelled).count() as i64;
            let running = states.iter().filter(|s| **s == JobStatus::Running).count() as i64;
            assert_eq!(cancelled + running, 5, "each job claimed or cancelled: {states:?}");
            assert_eq!(h.balance(user).await, 5 + cancelled, "refunded once per cancelled job");
            let confirmations = h
                .telegram
                .texts_to(user.id)
                .iter()
                .filter(|t| t.contains("credits returned"))
                .count();
            assert_eq!(confirmations, usize::from(cancelled > 0), "one confirmation");
            cancelled_total += cancelled;
        }
        assert_eq!(cancelled_total + claimed as i64, 30);
        h.store.assert_invariants().await;
    }

    async fn a_ban_keeps_its_reason_and_cancels_the_users_waiting_videos(store) {
        let h = BotHarness::start(store, admin_settings()).await;
        let admin = TgUser::new(ADMIN).language("en");
        let user = TgUser::new(91_201).language("en");
        h.onboard(&admin).await;
        h.onboard(&user).await;
        h.grant(&user, 10).await;
        order(&h, &user, 3).await;
        order(&h, &user, 1).await;
        let running = h.queue.claim(&WorkerId::new("w"), 1).await.expect("claim");
        assert_eq!(running.len(), 1);
        assert_eq!(h.balance(&user).await, 6);

        h.say(&admin, "/ban 91201 chargebacks <3 times>").await;
        let answer = h.last(&admin).text;
        assert!(answer.contains("Reason: chargebacks &lt;3 times&gt;"), "{answer}");
        assert!(answer.contains("Waiting videos cancelled: 3, credits returned: 3"), "{answer}");
        assert!(answer.contains("already in the works: 1"), "{answer}");
        assert_eq!(h.balance(&user).await, 9);
        h.say(&admin, "/balance 91201").await;
        let balance = h.last(&admin).text;
        assert!(balance.contains("banned: yes, reason: chargebacks &lt;3 times&gt;"), "{balance}");

        // The banned user is stopped; unbanning clears the reason.
        h.say(&user, "/menu").await;
        assert!(h.last(&user).text.contains("suspended"));
        h.say(&admin, "/unban 91201").await;
        h.say(&admin, "/balance 91201").await;
        assert!(h.last(&admin).text.contains("banned: no"), "{}", h.last(&admin).text);
        h.say(&admin, "/ban 91201").await;
        assert!(h.last(&admin).text.contains("Reason: not given"), "{}", h.last(&admin).text);
        h.store.assert_invariants().await;
    }

    async fn a_flood_is_answered_once_then_ignored_and_payments_still_pass(store) {
        let settings = ConversationSettings { updates_per_minute: 6, ..test_settings() };
        let h = BotHarness::start(store, settings).await;
        let user = TgUser::new(91_301).language("en");
        let calm = TgUser::new(91_302).language("ru");
        h.onboard(&user).await; // updates 1 and 2
        h.onboard(&calm).await;
        h.say(&user, "/buy").await; // 3
        let pack = h.button_data(&user, "⭐");
        h.press(&user, &pack).await; // 4
        let invoice = h.telegram.invoices().last().cloned().expect("an invoice");
        for _ in 0..2 {
            h.say(&user, "/menu").await; // 5 and 6: answered
        }
        let answered = h.message_count(&user);
        for _ in 0..40 {
            h.say(&user, "/menu").await;
        }
        let texts = h.telegram.texts_to(user.id);
        assert_eq!(texts.len(), answered + 1, "one answer to the whole flood: {texts:?}");
        assert!(texts[answered].contains("Too many messages"), "{}", texts[answered]);
        assert!(h.ctx_metrics().contains("neurocards_bot_flood_updates_total 40"));

        // Paying in the pause: the pre-checkout is answered and the payment credited.
        let amount = u32::try_from(invoice.total_amount()).expect("stars");
        h.deliver(h.telegram.pre_checkout_update(&user, &invoice.payload, amount)).await;
        assert!(h.telegram.pre_checkout_answers().last().is_some_and(|a| a.ok));
        let payment = h.telegram.pay_stars_without_update(&user, &invoice.payload, amount);
        h.deliver(h.telegram.successful_payment_update(&payment)).await;
        assert!(h.balance(&user).await > 0, "credited during the pause");

        // Another user is answered as usual, in their language.
        h.say(&calm, "/menu").await;
        assert!(h.last(&calm).text.contains("Нейрокарточки"), "{}", h.last(&calm).text);

        // A button press in the pause is ignored too (no reply queued up).
        let before = h.message_count(&user);
        h.press(&user, "create").await;
        assert_eq!(h.message_count(&user), before);
    }
}

both_stores! {
    async fn orders_videos_bans_and_floods_speak_russian(store) {
        let settings = ConversationSettings { updates_per_minute: 4, ..admin_settings() };
        let h = BotHarness::start(store, settings).await;
        let admin = TgUser::new(ADMIN).language("ru");
        let user = TgUser::new(91_401).language("ru");
        h.onboard(&admin).await;
        h.onboard(&user).await; // updates 1 and 2
        h.say(&user, "/videos").await; // 3
        assert!(h.last(&user).text.contains("Видео пока нет"), "{}", h.last(&user).text);
        h.say(&user, "/orders").await; // 4
        assert!(h.last(&user).text.contains("Мои заказы"), "{}", h.last(&user).text);
        h.say(&user, "/menu").await; // 5: over the limit
        h.say(&user, "/menu").await;
        let last = h.last(&user).text;
        assert!(last.contains("Слишком много сообщений") && last.contains("30 секунд"), "{last}");

        h.say(&admin, "/ban 91401 спам").await;
        let answer = h.last(&admin).text;
        assert!(answer.contains("Причина: спам"), "{answer}");
        assert!(answer.contains("Отменено ожидающих видео: 0"), "{answer}");
        h.say(&admin, "/balance 91401").await;
        assert!(h.last(&admin).text.contains("да, причина: спам"), "{}", h.last(&admin).text);
    }
}
