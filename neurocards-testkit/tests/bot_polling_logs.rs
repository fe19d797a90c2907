//! teloxide reports `getUpdates` failures through the `log` crate; the bot bridges them into
//! its own logs, so an operator sees a revoked token (401) or a second poller / a webhook
//! (409) instead of a bot that silently stops answering.

use neurocards_testkit::binaries::{free_local_addr, service_command, terminate, CapturedLog};
use neurocards_testkit::bot_harness::bot_binary;
use neurocards_testkit::fake_telegram::{Failure, TOKEN};
use neurocards_testkit::stores::pg_database;
use neurocards_testkit::system::TestSystem;
use sqlx::PgPool;
use std::time::Duration;

async fn bot_logs_get_updates_failure(pool: PgPool, status: u16, description: &str, shown: &str) {
    let system = TestSystem::start(pool).await;
    for _ in 0..3 {
        system
            .telegram
            .fail_next("getUpdates", Failure::Api { status, description: description.to_owned() });
    }
    let mut env = system.env();
    env.insert("BOT_MODE".into(), "polling".into());
    env.insert("HTTP_ADDR".into(), free_local_addr().to_string());
    // The default level: errors must show without asking for more.
    env.insert("RUST_LOG".into(), "info".into());
    let mut bot = service_command(&bot_binary(), env)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start neurocards-bot");
    let log = CapturedLog::capture(&mut bot, "bot");
    let logged = log.wait_for(&["getUpdates failed", shown], Duration::from_secs(30)).await;
    let _ = terminate(&mut bot, Duration::from_secs(10)).await;
    assert!(logged, "the {status} from getUpdates is in the bot's log");
    let secret = TOKEN.split_once(':').map_or(TOKEN, |(_, s)| s);
    assert!(
        log.lines().iter().all(|l| !l.contains(secret)),
        "the bot token never appears in the log"
    );
}

#[tokio::test]
async fn a_revoked_token_on_get_updates_is_logged() {
    let Some(db) = pg_database().await else { return };
    let pool = db.pool.clone();
    bot_logs_get_updates_failure(pool, 401, "Unauthorized", "InvalidToken").await;
}

#[tokio::test]
async fn a_conflict_with_another_poller_on_get_updates_is_logged() {
    let Some(db) = pg_database().await else { return };
    let pool = db.pool.clone();
    bot_logs_get_updates_failure(
        pool,
        409,
        "Conflict: terminated by other getUpdates request; make sure that only one bot instance \
         is running",
        "TerminatedByOtherGetUpdates",
    )
    .await;
}
