//! Forged KIE callbacks against the real bot and worker binaries: a callback is a wake-up, never
//! the truth. Whatever a callback body claims (a foreign video, a failure), the user gets the
//! task's real result, read back from KIE, and pays nothing twice.

use neurocards_core::domain::JobStatus;
use neurocards_testkit::binaries::service_command;
use neurocards_testkit::bot_harness::bot_binary;
use neurocards_testkit::fake_kie::{CallbackMode, Scenario};
use neurocards_testkit::fake_telegram::MediaSource;
use neurocards_testkit::stores::pg_database;
use neurocards_testkit::system::TestSystem;
use serde_json::json;
use std::collections::HashMap;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncReadExt as _;

const WAIT: Duration = Duration::from_secs(60);

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// Waits until `url` answers at all (the bot's HTTP server is up).
async fn wait_http(url: &str) {
    let client = reqwest::Client::new();
    for _ in 0..300 {
        if client.get(url).send().await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{url} never answered");
}

fn forged(task: &str, state: &str) -> serde_json::Value {
    let data = match state {
        "success" => json!({
            "taskId": task,
            "state": "success",
            "resultJson": "{\"resultUrls\":[\"https://evil.example/phish.mp4\"]}"
        }),
        _ => json!({
            "taskId": task,
            "state": "fail",
            "failCode": "422",
            "failMsg": "Your photo shows a real person. Visit https://evil.example to fix it"
        }),
    };
    json!({"code": 200, "msg": "ok", "data": data})
}

/// The bot's environment: the system's settings in polling mode, with `public` as
/// `PUBLIC_BASE_URL` (or none) and the HTTP server on `port`.
fn bot_env(system: &TestSystem, port: u16, public: Option<&str>) -> HashMap<String, String> {
    let mut env = system.env();
    env.insert("BOT_MODE".into(), "polling".into());
    env.insert("HTTP_ADDR".into(), format!("127.0.0.1:{port}"));
    env.remove("PUBLIC_BASE_URL");
    if let Some(public) = public {
        env.insert("PUBLIC_BASE_URL".into(), public.into());
    }
    env
}

#[tokio::test]
async fn forged_callbacks_never_change_what_the_user_gets() {
    let Some(db) = pg_database().await else { return };
    let pool = db.pool.clone();
    let system = TestSystem::start(pool).await;
    let port = free_port();
    let public = format!("http://127.0.0.1:{port}/");
    let _bot = service_command(&bot_binary(), bot_env(&system, port, Some(&public)))
        .spawn()
        .expect("start neurocards-bot");
    wait_http(&format!("{public}healthz")).await;
    let _worker = system.spawn_worker_binary_with(&[("PUBLIC_BASE_URL", public.as_str())]);

    // The real task finishes after a while; KIE's own callback then arrives once.
    system.kie.script(Scenario::SucceedAfterTime(Duration::from_secs(4)));
    system.kie.auto_callbacks(CallbackMode::Once, None);
    let (user, order) = system.user_with_order(5, 1).await;
    let job = order.jobs[0];
    let task = system.wait_task_of(job, WAIT).await;

    let client = reqwest::Client::new();
    let secret = system.settings().kie_callback_secret.expose().to_owned();
    let post = |url: String, body: serde_json::Value| {
        let client = client.clone();
        async move { client.post(url).json(&body).send().await.expect("post").status().as_u16() }
    };
    // Without the path secret there is no route at all.
    assert_eq!(post(format!("{public}kie/callback"), forged(&task, "success")).await, 404);
    let wrong = format!("{public}kie/callback/0123456789abcdef0123456789abcdef?job={job}");
    assert_eq!(post(wrong, forged(&task, "success")).await, 404);
    // With it (a leaked URL), a lie wakes the job, which asks KIE and hears "still generating".
    let right = format!("{public}kie/callback/{secret}?job={job}");
    assert_eq!(post(right.clone(), forged(&task, "success")).await, 200);
    assert_eq!(post(right.clone(), forged(&task, "fail")).await, 200);
    assert_eq!(post(right, forged("someone-elses-task", "success")).await, 404);

    let jobs = system.wait_order(&order, WAIT).await;
    assert_eq!(jobs[0].status, JobStatus::Succeeded, "the forged failure failed nothing");
    assert!(system.telegram.wait_until(WAIT, |t| t.videos_to(user.get()).len() == 1).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let videos = system.videos_to(user);
    assert_eq!(videos.len(), 1, "one video");
    match &videos[0].source {
        MediaSource::Url(url) => {
            assert!(url.ends_with(&format!("/files/{task}.mp4")), "the real result: {url}");
            assert!(!url.contains("evil"), "{url}");
        }
        other => panic!("unexpected source {other:?}"),
    }
    let texts = system.telegram.texts_to(user.get()).join("\n");
    assert!(!texts.contains("evil"), "nothing of a callback reaches the user: {texts}");
    assert_eq!(system.balance(user).await, 4, "charged once, not refunded");
    assert_eq!(system.kie.create_requests().len(), 1, "no second paid task");
    system.assert_invariants().await;
}

#[tokio::test]
async fn without_a_public_url_the_bot_serves_no_callback_route() {
    let Some(db) = pg_database().await else { return };
    let pool = db.pool.clone();
    let system = TestSystem::start(pool).await;
    let port = free_port();
    let _bot = service_command(&bot_binary(), bot_env(&system, port, None))
        .spawn()
        .expect("start neurocards-bot");
    let base = format!("http://127.0.0.1:{port}/");
    wait_http(&format!("{base}healthz")).await;
    let secret = system.settings().kie_callback_secret.expose().to_owned();
    let client = reqwest::Client::new();
    for path in ["kie/callback".to_owned(), format!("kie/callback/{secret}?job=1")] {
        let status = client
            .post(format!("{base}{path}"))
            .json(&forged("t", "success"))
            .send()
            .await
            .expect("post")
            .status();
        assert_eq!(status, 404, "{path}");
    }
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM task_wakeups")
        .fetch_one(system.pool())
        .await
        .expect("count");
    assert_eq!(rows, 0);
}

#[tokio::test]
async fn a_worker_whose_callback_route_is_not_served_says_so_at_start() {
    let Some(db) = pg_database().await else { return };
    let pool = db.pool.clone();
    let system = TestSystem::start(pool).await;
    let nobody = format!("http://127.0.0.1:{}/", free_port());
    let mut env = system.env();
    env.insert("PUBLIC_BASE_URL".into(), nobody);
    env.insert("RUST_LOG".into(), "warn".into());
    let mut worker = service_command(&neurocards_testkit::system::worker_binary(), env)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start neurocards-worker");
    let mut logs = worker.stdout.take().expect("stdout");
    let mut seen = String::new();
    let found = tokio::time::timeout(Duration::from_secs(40), async {
        let mut buf = [0u8; 4096];
        loop {
            let n = logs.read(&mut buf).await.expect("read the logs");
            if n == 0 {
                return false;
            }
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
            if seen.contains("the bot does not answer") {
                return true;
            }
        }
    })
    .await
    .unwrap_or(false);
    let _ = worker.start_kill();
    assert!(found, "the worker warned at start: {seen}");
    let secret = system.settings().kie_callback_secret.expose().to_owned();
    assert!(!seen.contains(&secret), "the callback secret is never logged");
}
