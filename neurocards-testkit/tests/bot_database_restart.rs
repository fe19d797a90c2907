//! The real bot binary survives its database: every connection cut at once (a PostgreSQL
//! restart or a managed failover) stops polling, `/readyz` says so, the polling lock is taken
//! again and the bot answers — including the update sent while it was not polling. The
//! process never exits.
//!
//! The restart is simulated by terminating every backend of the test's database, which is
//! exactly what a restart does to a client (restarting the server would break parallel tests).

use neurocards_testkit::binaries::{free_local_addr, service_command, terminate, CapturedLog};
use neurocards_testkit::bot_harness::bot_binary;
use neurocards_testkit::fake_telegram::{FakeTelegram, TgUser};
use neurocards_testkit::pg::terminate_backends;
use neurocards_testkit::stores::pg_database;
use neurocards_testkit::system::TestSystem;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// `/readyz` answers, one per poll: `true` for 200.
#[derive(Clone, Default)]
struct ReadyzLog(Arc<Mutex<Vec<bool>>>);

impl ReadyzLog {
    /// Polls `url` every 20 ms until the returned task is aborted.
    fn watch(url: String) -> (Self, tokio::task::JoinHandle<()>) {
        let log = Self::default();
        let seen = log.0.clone();
        let task = tokio::spawn(async move {
            let http =
                reqwest::Client::builder().timeout(Duration::from_secs(2)).build().expect("client");
            loop {
                let ok = http.get(&url).send().await.is_ok_and(|r| r.status().is_success());
                seen.lock().unwrap_or_else(|p| p.into_inner()).push(ok);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        (log, task)
    }

    fn answers(&self) -> Vec<bool> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Whether, after the `from`-th answer, it went unready and then ready again.
    fn dipped_and_recovered(&self, from: usize) -> bool {
        let answers = self.answers();
        let after = answers.get(from..).unwrap_or_default();
        after.iter().position(|ok| !ok).is_some_and(|down| after[down..].contains(&true))
    }

    async fn wait(&self, timeout: Duration, condition: impl Fn(&Self) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < deadline {
            if condition(self) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        condition(self)
    }
}

/// Sends `/start` for `user` and waits for the consent question (a new user's first answer).
async fn start_is_answered(tg: &FakeTelegram, user: &TgUser, timeout: Duration) -> bool {
    tg.wait_until(timeout, |t| {
        t.messages_to(user.id)
            .iter()
            .any(|m| m.callback_data().iter().any(|d| d.starts_with("terms")))
    })
    .await
}

#[tokio::test]
async fn the_polling_bot_answers_again_after_its_database_connections_are_cut() {
    let Some(db) = pg_database().await else { return };
    let pool = db.pool.clone();
    let system = TestSystem::start(pool.clone()).await;
    let tg = &system.telegram;
    let addr = free_local_addr().to_string();
    let mut env = system.env();
    env.insert("BOT_MODE".into(), "polling".into());
    env.insert("HTTP_ADDR".into(), addr.clone());
    env.insert("RUST_LOG".into(), "info".into());
    let mut bot = service_command(&bot_binary(), env)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start neurocards-bot");
    let log = CapturedLog::capture(&mut bot, "bot");

    let (readyz, watcher) = ReadyzLog::watch(format!("http://{addr}/readyz"));
    assert!(
        readyz.wait(Duration::from_secs(30), |r| r.answers().last() == Some(&true)).await,
        "the bot became ready"
    );
    let before = TgUser::new(91_001).language("en");
    tg.push_update(tg.command_update(&before, "/start"));
    assert!(start_is_answered(tg, &before, Duration::from_secs(30)).await, "answered before");

    // The restart.
    let seen_before_cut = readyz.answers().len();
    let terminated = terminate_backends(&pool).await;
    assert!(terminated >= 2, "the bot's lock and pool connections were cut ({terminated})");
    assert!(
        log.wait_for(&["polling lock lost"], Duration::from_secs(10)).await,
        "the bot noticed that the lock went with its connection"
    );
    assert!(
        readyz
            .wait(Duration::from_secs(10), |r| r.answers()[seen_before_cut..].contains(&false))
            .await,
        "/readyz reports the bot not serving: {:?}",
        &readyz.answers()[seen_before_cut..]
    );
    // Sent while the bot is not polling: it waits at Telegram and is answered after.
    let during = TgUser::new(91_002).language("en");
    tg.push_update(tg.command_update(&during, "/start"));
    let reacquired = log
        .wait(Duration::from_secs(30), |l| {
            l.lines().iter().filter(|l| l.contains("polling lock acquired")).count() == 2
        })
        .await;
    assert!(reacquired, "the lock was taken again");
    assert!(
        readyz.wait(Duration::from_secs(30), |r| r.dipped_and_recovered(seen_before_cut)).await,
        "/readyz is ready again: {:?}",
        &readyz.answers()[seen_before_cut..]
    );
    assert!(
        start_is_answered(tg, &during, Duration::from_secs(30)).await,
        "the update sent during the outage is answered: {:?}",
        tg.texts_to(during.id)
    );
    let after = TgUser::new(91_003).language("en");
    tg.push_update(tg.command_update(&after, "/start"));
    assert!(
        start_is_answered(tg, &after, Duration::from_secs(30)).await,
        "answered after: {:?}",
        tg.texts_to(after.id)
    );
    watcher.abort();

    assert!(bot.try_wait().expect("process status").is_none(), "the process never exited");
    let acquired = log.lines().iter().filter(|l| l.contains("polling lock acquired")).count();
    assert_eq!(acquired, 2, "the lock was taken again once");
    let dips = readyz.answers()[seen_before_cut..].iter().filter(|ok| !**ok).count();
    println!("/readyz answered 503 {dips} times during the outage");

    let (status, took) =
        terminate(&mut bot, Duration::from_secs(10)).await.expect("the bot stops on SIGTERM");
    println!("the bot stopped in {took:?}");
    assert!(status.success(), "{status}");
}
