//! Every inbound route is bounded: body limits per route, a header-read timeout, a cap on
//! connections, and a bearer token on the operator routes (bot and worker).

use neurocards_core::web::{self, HttpLimits};
use neurocards_testkit::bot_harness::{test_settings, BotHarness};
use neurocards_testkit::fake_telegram::TgUser;
use neurocards_testkit::stores::pg_database;
use neurocards_testkit::system::TestSystem;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SECRET: &str = "bounds_secret-0123456789";
const TOKEN: &str = "metrics-token-0123456789";

fn addr_of(base: &str) -> String {
    base.trim_start_matches("http://").to_owned()
}

/// Sends a request head announcing `content_length` bytes without sending them, and returns
/// the status line of the answer (the server must decide from the head alone).
async fn announce(addr: &str, method: &str, path: &str, content_length: usize) -> String {
    let mut c = TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nX-Telegram-Bot-Api-Secret-Token: {SECRET}\r\n\
         Content-Type: application/json\r\nContent-Length: {content_length}\r\n\r\n"
    );
    c.write_all(head.as_bytes()).await.expect("head");
    let mut buf = [0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf))
        .await
        .expect("answered without waiting for the body")
        .expect("read");
    String::from_utf8_lossy(&buf[..n]).lines().next().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn bodies_over_a_routes_limit_are_refused_before_reading() {
    let Some(db) = pg_database().await else { return };
    let pool = db.pool.clone();
    let h = BotHarness::start(pool, test_settings()).await;
    let base = h.serve_http(SECRET).await;
    let addr = addr_of(&base);

    // A Telegram update is a few kilobytes; 1.5 MiB is refused, even with the right secret.
    let status = announce(&addr, "POST", web::WEBHOOK_PATH, 1536 * 1024).await;
    assert_eq!(status, "HTTP/1.1 413 Payload Too Large");
    // The read-only routes take no body worth the name.
    let status = announce(&addr, "GET", "/healthz", 64 * 1024).await;
    assert_eq!(status, "HTTP/1.1 413 Payload Too Large");

    // A normal update still goes through.
    let user = TgUser::new(901);
    let update = h.telegram.command_update(&user, "/start");
    let answer = reqwest::Client::new()
        .post(format!("{base}{}", web::WEBHOOK_PATH))
        .header("X-Telegram-Bot-Api-Secret-Token", SECRET)
        .json(&update)
        .send()
        .await
        .expect("request");
    assert_eq!(answer.status(), 200);
    assert!(h.last(&user).callback_data().contains(&"terms"));
}

#[tokio::test]
async fn a_client_that_trickles_its_headers_is_disconnected() {
    let Some(db) = pg_database().await else { return };
    let pool = db.pool.clone();
    let h = BotHarness::start(pool, test_settings()).await;
    let limits =
        HttpLimits { header_read_timeout: Duration::from_millis(300), ..HttpLimits::default() };
    let base = h.serve_http_bounded(SECRET, None, None, limits).await;

    let mut slow = TcpStream::connect(addr_of(&base)).await.expect("connect");
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await.expect("partial head");
    let started = Instant::now();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the server closed the connection");
    assert!(started.elapsed() < Duration::from_secs(3), "within the header timeout");
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_for_a_free_slot() {
    let Some(db) = pg_database().await else { return };
    let pool = db.pool.clone();
    let h = BotHarness::start(pool, test_settings()).await;
    let limits = HttpLimits { max_connections: 2, ..HttpLimits::default() };
    let base = h.serve_http_bounded(SECRET, None, None, limits).await;
    let addr = addr_of(&base);

    // Two idle keep-alive connections take both slots.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut c = TcpStream::connect(&addr).await.expect("connect");
        c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.expect("request");
        let mut buf = [0u8; 256];
        let n = c.read(&mut buf).await.expect("answer");
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
        held.push(c);
    }
    let client = reqwest::Client::new();
    let third = tokio::time::timeout(
        Duration::from_millis(700),
        client.get(format!("{base}/healthz")).send(),
    )
    .await;
    assert!(third.is_err(), "a third connection is not served while two are held");

    drop(held.pop());
    let third =
        tokio::time::timeout(Duration::from_secs(5), client.get(format!("{base}/healthz")).send())
            .await
            .expect("served once a slot is free")
            .expect("request");
    assert_eq!(third.status(), 200);
}

#[tokio::test]
async fn metrics_and_queue_stats_require_the_token_and_health_does_not() {
    let Some(db) = pg_database().await else { return };
    let pool = db.pool.clone();
    let h = BotHarness::start(pool, test_settings()).await;
    let base = h.serve_http_bounded(SECRET, None, Some(TOKEN), HttpLimits::default()).await;
    let client = reqwest::Client::new();
    for path in ["/metrics", "/queue_stats"] {
        let url = format!("{base}{path}");
        let none = client.get(&url).send().await.expect("request");
        assert_eq!(none.status(), 401, "{path} without a token");
        assert_eq!(none.headers()["www-authenticate"], "Bearer");
        let wrong =
            client.get(&url).bearer_auth("metrics-token-0123456780").send().await.expect("request");
        assert_eq!(wrong.status(), 401, "{path} with a wrong token");
        let right = client.get(&url).bearer_auth(TOKEN).send().await.expect("request");
        assert_eq!(right.status(), 200, "{path} with the token");
    }
    for path in ["/healthz", "/readyz"] {
        let open = client.get(format!("{base}{path}")).send().await.expect("request");
        assert_eq!(open.status(), 200, "{path} stays open for probes");
    }
}

#[tokio::test]
async fn the_worker_metrics_require_the_same_token() {
    let Some(db) = pg_database().await else { return };
    let pool = db.pool.clone();
    let sys = TestSystem::start(pool).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut process = sys
        .spawn_worker_binary_with(&[("WORKER_HTTP_ADDR", addr.as_str()), ("METRICS_TOKEN", TOKEN)]);
    let http = reqwest::Client::new();
    let mut health = None;
    for _ in 0..300 {
        if let Ok(r) = http.get(format!("http://{addr}/healthz")).send().await {
            health = Some(r.status());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(health.map(|s| s.as_u16()), Some(200), "the worker serves health openly");
    let none = http.get(format!("http://{addr}/metrics")).send().await.expect("metrics");
    assert_eq!(none.status(), 401);
    let right = http
        .get(format!("http://{addr}/metrics"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("metrics");
    assert_eq!(right.status(), 200);
    assert!(right.text().await.expect("body").contains("neurocards_"));
    process.start_kill().expect("kill");
    let _ = process.wait().await;
}
