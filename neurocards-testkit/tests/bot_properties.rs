//! Random sequences of updates — texts, commands, photos, documents, presses on the buttons the
//! bot showed, presses with random callback data, and redeliveries — against the real handler
//! tree, FakeTelegram and a real database: no panic, no negative balance, the database
//! invariants hold, and every button press is answered.

use neurocards_core::conversation::Action;
use neurocards_testkit::bot_harness::{test_settings, BotHarness, JPEG};
use neurocards_testkit::fake_telegram::TgUser;
use neurocards_testkit::stores::pg_database;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};
use serde_json::Value;

/// One thing a user does.
#[derive(Debug, Clone)]
enum Step {
    Text(String),
    Command(String),
    Photo,
    Document {
        mime: String,
        size: u32,
    },
    /// Presses the `n`-th button (modulo) of the latest message that has buttons.
    PressShown(usize),
    PressRandom(String),
    /// Telegram delivers the previous update again.
    Redeliver,
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("A ceramic mug, 350 ml, dishwasher safe".to_owned()),
        Just("skip".to_owned()),
        Just("https://www.wildberries.ru/catalog/12345/detail.aspx".to_owned()),
        Just("x".repeat(5_000)),
        "\\PC{0,80}",
        "[<>&{}a-z ]{0,40}",
    ]
}

fn command() -> impl Strategy<Value = String> {
    let name = prop::sample::select(vec![
        "/start",
        "/menu",
        "/account",
        "/help",
        "/language",
        "/cancel",
        "/grant",
        "/balance",
        "/stats",
        "/ban",
        "/broadcast",
        "/orders",
        "/videos",
        "/nope",
    ]);
    (name, "[ a-z0-9_-]{0,20}").prop_map(|(n, args)| format!("{n}{args}"))
}

fn callback_data() -> impl Strategy<Value = String> {
    let prefix = prop::sample::select(vec![
        "create", "terms", "menu", "tpl:", "cnt:", "go:", "idea:", "skip", "lang:", "more:",
        "retry:", "topup", "account", "cxl:", "gal:", "lnk:", "vid:", "",
    ]);
    (prefix, "[a-z0-9:_-]{0,20}").prop_map(|(p, rest)| format!("{p}{rest}"))
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => text().prop_map(Step::Text),
        2 => command().prop_map(Step::Command),
        2 => Just(Step::Photo),
        1 => (prop::sample::select(vec!["image/png", "image/jpeg", "application/pdf", "video/mp4"]), 0u32..30_000_000)
            .prop_map(|(m, size)| Step::Document { mime: m.to_owned(), size }),
        6 => (0usize..8).prop_map(Step::PressShown),
        2 => callback_data().prop_map(Step::PressRandom),
        1 => Just(Step::Redeliver),
    ]
}

/// A user's story: credits to start with, then up to 14 steps.
fn story() -> impl Strategy<Value = (i64, Vec<Step>)> {
    (0i64..6, prop::collection::vec(step(), 1..14))
}

async fn run_story(h: &BotHarness, user: &TgUser, steps: &[Step]) {
    let mut last: Option<Value> = None;
    for step in steps {
        let update = match step {
            Step::Text(t) => Some(h.telegram.text_update(user, t)),
            Step::Command(c) => Some(h.telegram.command_update(user, c)),
            Step::Photo => Some(h.telegram.photo_update(user, JPEG.to_vec(), None).0),
            Step::Document { mime, size } => {
                let update = h.telegram.document_update(
                    user,
                    "product.bin",
                    mime,
                    JPEG.to_vec(),
                    Some(u64::from(*size)),
                );
                Some(update.0)
            }
            Step::PressShown(n) => {
                let shown = h
                    .telegram
                    .messages_to(user.id)
                    .into_iter()
                    .rev()
                    .find(|m| !m.callback_data().is_empty());
                shown.map(|m| {
                    let data = m.callback_data();
                    let pick = data[n % data.len()].to_owned();
                    h.telegram.callback_update(user, m.message_id, &pick)
                })
            }
            Step::PressRandom(data) => {
                let message = h.telegram.last_message_to(user.id).map_or(1, |m| m.message_id);
                Some(h.telegram.callback_update(user, message, data))
            }
            Step::Redeliver => last.clone(),
        };
        if let Some(update) = update {
            h.deliver(update.clone()).await;
            last = Some(update);
        }
    }
}

#[tokio::test]
async fn random_updates_never_break_the_conversation_or_the_ledger() {
    let Some(db) = pg_database().await else { return };
    let pool = db.pool.clone();
    let h = BotHarness::start(pool, test_settings()).await;
    let mut runner = TestRunner::new(Config { cases: 48, ..Config::default() });
    let strategy = story();
    for case in 0..48i64 {
        let (credits, steps) = strategy.new_tree(&mut runner).expect("a story").current();
        let user = TgUser::new(100_000 + case).language(if case % 2 == 0 { "ru" } else { "en" });
        // Half the users start at the menu, half from nothing.
        if case % 2 == 0 {
            h.onboard(&user).await;
        }
        if credits > 0 && case % 2 == 0 {
            h.grant(&user, credits).await;
        }
        let presses_before = h.telegram.calls("answerCallbackQuery").len();
        let presses = count_presses(&steps);
        run_story(&h, &user, &steps).await;

        // A user who never got past an unknown button may not be registered at all.
        let (balance,): (i64,) = sqlx::query_as(
            "SELECT COALESCE((SELECT sum(delta) FROM ledger WHERE user_id = $1), 0)::bigint",
        )
        .bind(user.id)
        .fetch_one(h.pool())
        .await
        .expect("ledger readable");
        assert!(balance >= 0, "case {case}: negative balance {balance} after {steps:?}");
        assert!(balance <= credits, "case {case}: credits appeared from nowhere after {steps:?}");
        let violations = neurocards_testkit::invariants::check_invariants(h.pool())
            .await
            .expect("invariants readable");
        assert!(violations.is_empty(), "case {case}: {violations:?} after {steps:?}");
        let answered = h.telegram.calls("answerCallbackQuery").len() - presses_before;
        assert!(answered <= presses, "case {case}: more answers than presses after {steps:?}");
    }
    // The callback data the bot parses never panics on its own either.
    let mut runner = TestRunner::new(Config { cases: 256, ..Config::default() });
    runner
        .run(&"\\PC{0,80}", |data| {
            let _ = Action::parse(&data);
            Ok(())
        })
        .expect("callback data parsing never panics");
}

/// Upper bound on the presses a story makes (each is answered at most once).
fn count_presses(steps: &[Step]) -> usize {
    steps
        .iter()
        .filter(|s| matches!(s, Step::PressShown(_) | Step::PressRandom(_) | Step::Redeliver))
        .count()
}
