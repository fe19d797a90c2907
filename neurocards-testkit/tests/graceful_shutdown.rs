//! SIGTERM to the real binaries: an idle bot (polling and webhook) and an idle worker stop at
//! once and exit 0. Orchestrators send SIGKILL after a grace period (Docker: 10 s), so a slow
//! stop is a crash.

use neurocards_testkit::binaries::{free_local_addr, service_command, terminate};
use neurocards_testkit::bot_harness::bot_binary;
use neurocards_testkit::stores::pg_database;
use neurocards_testkit::system::TestSystem;
use std::collections::HashMap;
use std::time::Duration;

/// The promise is 5 s; this bound only catches a regression to a long-poll-sized stop.
const STOP_LIMIT: Duration = Duration::from_secs(10);

async fn wait_http_ok(url: &str, timeout: Duration) -> bool {
    let http = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if http.get(url).send().await.is_ok_and(|r| r.status().is_success()) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

fn bot_env(system: &TestSystem, mode: &str, addr: &str) -> HashMap<String, String> {
    let mut env = system.env();
    env.insert("BOT_MODE".into(), mode.into());
    env.insert("HTTP_ADDR".into(), addr.into());
    env.insert("RUST_LOG".into(), "info".into());
    if mode == "webhook" {
        env.insert("PUBLIC_BASE_URL".into(), format!("http://{addr}/"));
        env.insert("WEBHOOK_SECRET".into(), "shutdown-test-secret".into());
    }
    env
}

async fn stop_idle_bot(system: &TestSystem, mode: &str) {
    // Telegram slow to answer (or the network dropping packets): a stop must not wait for
    // the long-poll in flight, nor for one more getUpdates.
    system.telegram.answer_slowly("getUpdates", Duration::from_secs(120));
    let addr = free_local_addr().to_string();
    let mut bot = service_command(&bot_binary(), bot_env(system, mode, &addr))
        .spawn()
        .expect("start neurocards-bot");
    assert!(
        wait_http_ok(&format!("http://{addr}/readyz"), Duration::from_secs(30)).await,
        "the {mode} bot became ready"
    );
    if mode == "polling" {
        // Idle means long-polling: wait until it is inside getUpdates.
        let polling = system
            .telegram
            .wait_until(Duration::from_secs(10), |t| !t.calls("getUpdates").is_empty())
            .await;
        assert!(polling, "the bot polls");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, took) = terminate(&mut bot, STOP_LIMIT)
        .await
        .unwrap_or_else(|| panic!("the idle {mode} bot did not exit within {STOP_LIMIT:?}"));
    println!("idle {mode} bot stopped in {took:?} ({status})");
    assert!(status.success(), "the {mode} bot exits 0 on SIGTERM: {status}");
}

#[tokio::test]
async fn an_idle_polling_bot_stops_promptly_on_sigterm() {
    let Some(db) = pg_database().await else { return };
    let pool = db.pool.clone();
    let system = TestSystem::start(pool).await;
    stop_idle_bot(&system, "polling").await;
}

#[tokio::test]
async fn an_idle_webhook_bot_stops_promptly_on_sigterm() {
    let Some(db) = pg_database().await else { return };
    let pool = db.pool.clone();
    let system = TestSystem::start(pool).await;
    stop_idle_bot(&system, "webhook").await;
}

#[tokio::test]
async fn an_idle_worker_stops_promptly_on_sigterm() {
    let Some(db) = pg_database().await else { return };
    let pool = db.pool.clone();
    let system = TestSystem::start(pool).await;
    let addr = free_local_addr().to_string();
    let mut worker = system
        .spawn_worker_binary_with(&[("WORKER_HTTP_ADDR", addr.as_str()), ("RUST_LOG", "info")]);
    assert!(
        wait_http_ok(&format!("http://{addr}/healthz"), Duration::from_secs(30)).await,
        "the worker serves /healthz"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, took) = terminate(&mut worker, STOP_LIMIT)
        .await
        .unwrap_or_else(|| panic!("the idle worker did not exit within {STOP_LIMIT:?}"));
    println!("idle worker stopped in {took:?} ({status})");
    assert!(status.success(), "the worker exits 0 on SIGTERM: {status}");
}

#[tokio::test]
async fn a_bot_still_starting_against_a_silent_telegram_stops_promptly_on_sigterm() {
    let Some(db) = pg_database().await else { return };
    let pool = db.pool.clone();
    let system = TestSystem::start(pool).await;
    system.telegram.answer_slowly("getMe", Duration::from_secs(120));
    let addr = free_local_addr().to_string();
    let mut bot = service_command(&bot_binary(), bot_env(&system, "polling", &addr))
        .spawn()
        .expect("start neurocards-bot");
    let asked =
        system.telegram.wait_until(Duration::from_secs(30), |t| !t.calls("getMe").is_empty()).await;
    assert!(asked, "the bot asked Telegram who it is");
    let (status, took) = terminate(&mut bot, STOP_LIMIT)
        .await
        .unwrap_or_else(|| panic!("the starting bot did not exit within {STOP_LIMIT:?}"));
    println!("starting bot stopped in {took:?} ({status})");
    assert!(status.success(), "the bot exits 0 on SIGTERM: {status}");
}

#[tokio::test]
async fn a_worker_hands_jobs_waiting_on_the_provider_back_at_once_on_sigterm() {
    let Some(db) = pg_database().await else { return };
    let pool = db.pool.clone();
    let system = TestSystem::start(pool).await;
    system.kie.script(neurocards_testkit::fake_kie::Scenario::Never);
    let mut worker = system.spawn_worker_binary();
    let mut jobs = Vec::new();
    for _ in 0..3 {
        let (_, order) = system.user_with_order(1, 1).await;
        jobs.extend(order.jobs);
    }
    for job in &jobs {
        system.wait_task_of(*job, Duration::from_secs(30)).await;
    }
    let (status, took) = terminate(&mut worker, STOP_LIMIT)
        .await
        .unwrap_or_else(|| panic!("the worker did not exit within {STOP_LIMIT:?}"));
    println!("worker with 3 jobs waiting on the provider stopped in {took:?} ({status})");
    assert!(status.success(), "the worker exits 0 on SIGTERM: {status}");
    assert!(took < Duration::from_secs(5), "waiting jobs do not hold the stop: {took:?}");
    for job in &jobs {
        let snap = system.job(*job).await;
        assert_eq!(
            snap.status,
            neurocards_core::domain::JobStatus::Queued,
            "handed back: {snap:?}"
        );
        assert!(snap.progress.provider_task.is_some(), "its task is kept for the next claim");
    }
    assert_eq!(system.kie.tasks_created(), 3, "one paid task per job");
}
