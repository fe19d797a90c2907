//! The README's run command on a fresh machine: `neurocards-bot` with only the bot token, the
//! Telegram API, a KIE key and the OpenAI settings — no database server — serves a whole order
//! in one process on the embedded store; the same all-in-one bot on PostgreSQL; and the
//! refusals that keep the embedded store to one process.

use neurocards_core::sqlite::SqliteStore;
use neurocards_testkit::binaries::service_command;
use neurocards_testkit::bot_harness::bot_binary;
use neurocards_testkit::fake_kie::FakeKie;
use neurocards_testkit::fake_openai::{FakeOpenAi, FAKE_OPENAI_KEY};
use neurocards_testkit::fake_telegram::{FakeTelegram, TgUser, TOKEN};
use neurocards_testkit::first_order::{place_first_order, wait_for_videos};
use neurocards_testkit::invariants::assert_invariants_sqlite;
use neurocards_testkit::stores::{pg_database, TempSqlite};
use std::collections::HashMap;
use std::time::Duration;

/// The fakes a bot talks to.
struct Fakes {
    telegram: FakeTelegram,
    kie: FakeKie,
    openai: FakeOpenAi,
}

impl Fakes {
    async fn start() -> Self {
        Self {
            telegram: FakeTelegram::start().await,
            kie: FakeKie::start().await,
            openai: FakeOpenAi::start().await,
        }
    }

    /// Only what the README's run command needs, plus what local fakes need: a free HTTP
    /// port, one start credit (to order without an admin) and fetches from 127.0.0.1 (the
    /// fakes serve the result videos there).
    fn env(&self) -> HashMap<String, String> {
        [
            ("BOT_TOKEN", TOKEN.to_owned()),
            ("TELEGRAM_API_URL", self.telegram.api_url().to_string()),
            ("KIE_API_KEY", "kie-test-key-1".to_owned()),
            ("KIE_BASE_URL", self.kie.base_url().to_string()),
            ("KIE_UPLOAD_URL", self.kie.upload_url().to_string()),
            ("OPENAI_API_KEY", FAKE_OPENAI_KEY.to_owned()),
            ("OPENAI_BASE_URL", self.openai.base_url().to_string()),
            ("HTTP_ADDR", "127.0.0.1:0".to_owned()),
            ("START_CREDITS", "1".to_owned()),
            ("FETCH_ALLOW_LOCAL", "1".to_owned()),
            ("RUST_LOG", "warn".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bot_alone_serves_an_order_on_the_embedded_store() {
    let fakes = Fakes::start().await;
    let data = tempdir("all-in-one");
    let mut env = fakes.env();
    env.insert("DATA_DIR".into(), data.to_string_lossy().into_owned());
    let mut bot = service_command(&bot_binary(), env).spawn().expect("start neurocards-bot");

    let user = TgUser::new(91_001).language("en");
    place_first_order(&fakes.telegram, &user).await;
    wait_for_videos(&fakes.telegram, &user, 1, Duration::from_secs(60)).await;

    let _ = bot.start_kill();
    let _ = bot.wait().await;
    let db = data.join("neurocards.db");
    assert!(db.exists(), "the store is neurocards.db in DATA_DIR");
    let store = SqliteStore::open(&db.to_string_lossy()).await.expect("reopen the store");
    let balance: i64 = sqlx::query_scalar("SELECT balance FROM users WHERE id = ?")
        .bind(user.id)
        .fetch_one(store.reader())
        .await
        .expect("the user is stored");
    assert_eq!(balance, 0, "the start credit paid for the video");
    assert_invariants_sqlite(&store).await;
    store.close().await;
    let _ = std::fs::remove_dir_all(&data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_bot_on_the_same_file_is_refused_with_a_sentence() {
    let fakes = Fakes::start().await;
    let data = TempSqlite::new().await;
    let mut env = fakes.env();
    env.insert("DATA_DIR".into(), data.dir().to_string_lossy().into_owned());
    let mut first = service_command(&bot_binary(), env.clone()).spawn().expect("first bot");
    // The first bot holds the file once it answers Telegram's getMe.
    let started =
        fakes.telegram.wait_until(Duration::from_secs(30), |t| !t.calls("getMe").is_empty()).await;
    assert!(started, "the first bot started");
    let out = service_command(&bot_binary(), env)
        .stderr(std::process::Stdio::piped())
        .output()
        .await
        .expect("run a second bot");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("another neurocards-bot is running on"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let _ = first.start_kill();
    let _ = first.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_all_in_one_bot_on_postgres_serves_an_order() {
    let Some(db) = pg_database().await else { return };
    let fakes = Fakes::start().await;
    let mut env = fakes.env();
    env.insert("DATABASE_URL".into(), db.url());
    env.insert("ALL_IN_ONE".into(), "1".into());
    let mut bot = service_command(&bot_binary(), env).spawn().expect("start neurocards-bot");

    let user = TgUser::new(91_002).language("en");
    place_first_order(&fakes.telegram, &user).await;
    wait_for_videos(&fakes.telegram, &user, 1, Duration::from_secs(60)).await;

    let _ = bot.start_kill();
    let _ = bot.wait().await;
    neurocards_testkit::invariants::assert_invariants(&db.pool).await;
}

fn tempdir(prefix: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("neurocards-{prefix}-{}", uuid::Uuid::new_v4()))
}
