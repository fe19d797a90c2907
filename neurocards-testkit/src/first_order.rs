//! A new user's first order, driven through the bot's real conversation the way a person would:
//! `/start`, accept the terms, "Create", a photo, a description, the UGC template, no wishes,
//! one video, Start. For tests that run the bot as a process against [`FakeTelegram`].

use crate::bot_harness::JPEG;
use crate::fake_telegram::{FakeTelegram, TgUser};
use std::time::Duration;

/// How long each step waits for the bot's answer.
const STEP_WAIT: Duration = Duration::from_secs(30);

/// Drives the whole first order of `user` (who must have a credit, e.g. `START_CREDITS=1`)
/// and asserts that each step is answered and the order is accepted.
pub async fn place_first_order(tg: &FakeTelegram, user: &TgUser) {
    step(tg, user, tg.command_update(user, "/start")).await;
    step(tg, user, press(tg, user, "terms").await).await;
    step(tg, user, press(tg, user, "create").await).await;
    step(tg, user, tg.photo_update(user, JPEG.to_vec(), None).0).await;
    step(tg, user, tg.text_update(user, "A ceramic mug")).await;
    step(tg, user, press(tg, user, "tpl:ugc").await).await;
    step(tg, user, press(tg, user, "skip").await).await;
    step(tg, user, press(tg, user, "cnt:1").await).await;
    step(tg, user, press(tg, user, "go:").await).await;
    assert!(
        tg.texts_to(user.id).iter().any(|t| t.contains("Accepted")),
        "the order was accepted: {:?}",
        tg.texts_to(user.id)
    );
}

/// Waits until `user` has received `count` videos; panics with the conversation otherwise.
pub async fn wait_for_videos(tg: &FakeTelegram, user: &TgUser, count: usize, within: Duration) {
    let delivered = tg.wait_until(within, |t| t.videos_to(user.id).len() >= count).await;
    assert!(delivered, "{count} video(s) delivered: {:?}", tg.texts_to(user.id));
}

/// The user acts (`update`), then waits for the bot's next message.
async fn step(tg: &FakeTelegram, user: &TgUser, update: serde_json::Value) {
    let before = tg.messages_to(user.id).len();
    tg.push_update(update);
    let answered = tg.wait_until(STEP_WAIT, |t| t.messages_to(user.id).len() > before).await;
    assert!(answered, "the bot answered: {:?}", tg.texts_to(user.id));
}

/// The press of the newest button whose data starts with `data`, once the bot has sent it (a
/// step's answer may come as several messages, the keyboard in the last one).
async fn press(tg: &FakeTelegram, user: &TgUser, data: &str) -> serde_json::Value {
    let has_button = |t: &FakeTelegram| {
        t.messages_to(user.id).iter().any(|m| m.callback_data().iter().any(|d| d.starts_with(data)))
    };
    let shown = tg.wait_until(STEP_WAIT, has_button).await;
    assert!(shown, "no {data} button: {:?}", tg.texts_to(user.id));
    tg.press_update(user, data)
        .unwrap_or_else(|| panic!("no {data} button: {:?}", tg.texts_to(user.id)))
}
